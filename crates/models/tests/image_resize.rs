//! Pillow resampling, bit for bit: every case in eval/fixtures/preprocess/manifest.json "resize".

mod image_support;

use foveate_models::image::{pillow_pass_order, resize, resize_with_order, Filter, PassOrder};
use image_support::{byte_diff, fixtures, fnv1a64, load, manifest};

fn pass_order_name(o: PassOrder) -> &'static str {
    match o {
        PassOrder::HorizontalFirst => "horizontal-first",
        PassOrder::VerticalFirst => "vertical-first",
    }
}

#[test]
fn resize_matches_pillow_bit_exactly() {
    let m = manifest();
    let cases = m["resize"].as_array().unwrap();
    assert!(
        cases.len() >= 20,
        "manifest lists only {} resize cases",
        cases.len()
    );
    let mut failures = Vec::new();
    let mut checked_bytes = 0usize;
    let mut vertical_first = 0;
    for c in cases {
        let input = load(&format!("inputs/{}", c["input"].as_str().unwrap()));
        let (w, h) = (
            c["width"].as_u64().unwrap() as usize,
            c["height"].as_u64().unwrap() as usize,
        );
        let fname = c["filter"].as_str().unwrap();
        let filter = Filter::from_name(fname).unwrap();
        let out = resize(&input, w, h, filter).unwrap();
        // Pillow 13 runs the vertical pass first in some cases; `resize` must pick the order Pillow did.
        if let Some(order) = c["pillow_pass_order"].as_str() {
            let ours = pillow_pass_order(input.width, input.height, w, h);
            if order == "vertical-first" {
                vertical_first += 1;
            }
            if pass_order_name(ours) != order {
                failures.push(format!(
                    "{w}x{h} {fname}: Pillow ran {order}, pillow_pass_order says {ours:?}"
                ));
            }
        }
        assert_eq!((out.width, out.height), (w, h));
        let label = format!(
            "{} {}x{} -> {w}x{h} {fname}",
            c["input"], input.width, input.height
        );
        let hash_ok = fnv1a64(&out.data) == c["fnv1a64"].as_str().unwrap();
        // Byte-level comparison: the whole output, or the stored windows of a large one.
        let (mut ndiff, mut maxd, mut nbytes) = (0, 0, 0);
        if let Some(name) = c["output"].as_str() {
            let want = load(&format!("resize/{name}"));
            let (n, d) = byte_diff(&out.data, &want.data);
            (ndiff, maxd, nbytes) = (n, d, want.data.len());
        } else {
            for win in c["windows"].as_array().unwrap() {
                let g = |k: &str| win[k].as_u64().unwrap() as usize;
                let want = load(&format!("resize/{}", win["png"].as_str().unwrap()));
                let got = out.crop(g("x"), g("y"), g("width"), g("height"));
                let (n, d) = byte_diff(&got.data, &want.data);
                ndiff += n;
                maxd = maxd.max(d);
                nbytes += want.data.len();
            }
        }
        checked_bytes += nbytes;
        println!(
            "{label}: whole-image hash {}, {ndiff} of {nbytes} compared bytes differ (max {maxd})",
            if hash_ok { "equal" } else { "DIFFERS" }
        );
        if !hash_ok || ndiff != 0 {
            failures.push(format!(
                "{label}: hash {}, {ndiff}/{nbytes} bytes differ, max diff {maxd}",
                if hash_ok { "ok" } else { "differs" }
            ));
        }
    }
    println!("{} cases ({vertical_first} with Pillow's vertical-first order), {checked_bytes} bytes compared byte by byte",
        cases.len());
    assert!(
        failures.is_empty(),
        "not bit-exact with Pillow:\n{}",
        failures.join("\n")
    );
}

#[test]
fn resize_rejects_empty_targets() {
    let img = load("inputs/photo_pillow_rgb.png");
    let e = resize(&img, 0, 10, Filter::Bicubic)
        .unwrap_err()
        .to_string();
    assert!(e.contains("0x10"), "{e}");
}

/// Pillow 13's pass order, on both sides of its boundary and on it
/// (eval/fixtures/preprocess/pass_order, made by eval/tools/make_pass_order_goldens.py): `resize`
/// matches Pillow bit for bit, and where the two orders give different bytes, the other order
/// does not (so each case tells the orders apart).
#[test]
fn resize_follows_pillow_pass_order() {
    let dir = fixtures().join("pass_order");
    let text = std::fs::read_to_string(dir.join("manifest.json"))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let m: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cases = m["cases"].as_array().unwrap();
    let mut failures = Vec::new();
    let (mut vertical, mut discriminating) = (0, 0);
    for c in cases {
        let input = load(&format!("pass_order/{}", c["input"].as_str().unwrap()));
        let (w, h) = (
            c["width"].as_u64().unwrap() as usize,
            c["height"].as_u64().unwrap() as usize,
        );
        let fname = c["filter"].as_str().unwrap();
        let filter = Filter::from_name(fname).unwrap();
        let want = load(&format!("pass_order/{}", c["output"].as_str().unwrap()));
        let label = format!("{}x{} -> {w}x{h} {fname}", input.width, input.height);
        let order = pillow_pass_order(input.width, input.height, w, h);
        let pillow = c["pillow_pass_order"].as_str().unwrap();
        vertical += (pillow == "vertical-first") as usize;
        if pillow != "either" && pass_order_name(order) != pillow {
            failures.push(format!(
                "{label}: Pillow ran {pillow}, pillow_pass_order says {order:?}"
            ));
        }
        let out = resize(&input, w, h, filter).unwrap();
        let (n, d) = byte_diff(&out.data, &want.data);
        if n != 0 {
            failures.push(format!(
                "{label}: {n} of {} bytes differ from Pillow (max {d})",
                want.data.len()
            ));
        }
        let other = match order {
            PassOrder::HorizontalFirst => PassOrder::VerticalFirst,
            PassOrder::VerticalFirst => PassOrder::HorizontalFirst,
        };
        let (n_other, _) = byte_diff(
            &resize_with_order(&input, w, h, filter, other).unwrap().data,
            &want.data,
        );
        if c["orders_differ"].as_bool().unwrap() {
            discriminating += 1;
            if n_other == 0 {
                failures.push(format!(
                    "{label}: the other pass order also matches, but Pillow's two orders differ"
                ));
            }
        }
        println!(
            "{label}: Pillow {pillow}; resize differs in {n} bytes, the other order in {n_other}"
        );
    }
    println!(
        "{} cases, {vertical} vertical-first, {discriminating} where the two orders differ",
        cases.len()
    );
    assert!(
        vertical >= 4 && discriminating >= 10,
        "the pass-order goldens no longer cover both orders"
    );
    assert!(
        failures.is_empty(),
        "not bit-exact with Pillow:\n{}",
        failures.join("\n")
    );
}
