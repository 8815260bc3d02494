//! Decoding: Pillow's mode conversions, JPEG decoder differences, and clear errors for bad files.

mod image_support;

use std::path::Path;

use foveate_models::image::{decode_bytes, decode_file, AlphaMode, DecodeOptions};
use foveate_models::synth;
use image_support::{byte_diff, fixtures, load, manifest, scratch};

#[test]
fn mode_conversions_match_pillow_and_transformers() {
    let m = manifest();
    let cases = m["decode"].as_array().unwrap();
    assert!(cases.len() >= 8);
    let mut failures = Vec::new();
    for c in cases {
        let input = fixtures().join("decode").join(c["input"].as_str().unwrap());
        for (mode, key) in [
            (AlphaMode::Drop, "pil_rgb"),
            (AlphaMode::CompositeWhite, "hf_rgb"),
        ] {
            let got = decode_file(
                &input,
                &DecodeOptions {
                    alpha: mode,
                    ..Default::default()
                },
            )
            .unwrap_or_else(|e| panic!("{e}"));
            let want = load(&format!("decode/{}", c[key].as_str().unwrap()));
            assert_eq!((got.width, got.height), (want.width, want.height));
            let (n, d) = byte_diff(&got.data, &want.data);
            println!(
                "{} (Pillow mode {}) {mode:?}: {n} bytes differ (max {d})",
                c["input"], c["pillow_mode"]
            );
            if n != 0 {
                failures.push(format!(
                    "{} {mode:?}: {n} bytes differ, max {d}",
                    c["input"]
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Counts pixels where two decodes of the same JPEG differ.
fn jpeg_diff(jpeg: &Path, pillow_rgb: &[u8]) -> (usize, usize, u8) {
    let got = decode_file(jpeg, &DecodeOptions::default()).unwrap();
    assert_eq!(
        got.data.len(),
        pillow_rgb.len(),
        "{}: size differs from Pillow's decode",
        jpeg.display()
    );
    let mut px = 0;
    let mut maxd = 0;
    for (a, b) in got.data.chunks_exact(3).zip(pillow_rgb.chunks_exact(3)) {
        let d = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).max().unwrap();
        px += (d != 0) as usize;
        maxd = maxd.max(d);
    }
    (px, got.width * got.height, maxd)
}

#[test]
fn jpeg_decoder_vs_pillow() {
    // The image crate's JPEG decoder is not libjpeg-turbo; measure (not assert) the pixel difference, and check
    // it is the same picture. The preprocessing goldens for this photo start from Pillow's decode instead.
    let want = load("inputs/photo_pillow_rgb.png");
    let (px, total, maxd) = jpeg_diff(&fixtures().join("inputs/photo.jpg"), &want.data);
    println!(
        "photo.jpg: {px} of {total} decoded pixels differ from Pillow's (max channel diff {maxd})"
    );
    assert!(
        maxd <= 16,
        "decoded JPEG differs from Pillow's by up to {maxd}: not the same picture?"
    );
    // Optional: a folder of X.jpg with X.rgb (Pillow's raw RGB bytes), e.g. made from the dataset images.
    match std::env::var("FOVEATE_JPEG_COMPARE_DIR") {
        Err(_) => println!("set FOVEATE_JPEG_COMPARE_DIR to also compare a folder of X.jpg + X.rgb (Pillow decodes)"),
        Ok(dir) => {
            for e in std::fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                if p.extension().is_some_and(|x| x == "jpg") {
                    let rgb = std::fs::read(p.with_extension("rgb")).unwrap();
                    let (px, total, maxd) = jpeg_diff(&p, &rgb);
                    println!("{}: {px} of {total} pixels differ from Pillow (max channel diff {maxd})", p.display());
                }
            }
        }
    }
}

fn expect_error(
    bytes: &[u8],
    file: &str,
    dir: &Path,
    opts: &DecodeOptions,
    needle: &str,
) -> String {
    let path = dir.join(file);
    std::fs::write(&path, bytes).unwrap();
    let e = decode_file(&path, opts).expect_err(file).to_string();
    assert!(e.contains(file), "error does not name the file: {e}");
    assert!(
        e.to_lowercase().contains(needle),
        "error for {file} does not say `{needle}`: {e}"
    );
    println!("{file}: {e}");
    e
}

#[test]
fn bad_files_give_clear_errors_naming_the_file() {
    let dir = scratch("bad");
    let opts = DecodeOptions::default();
    let png = std::fs::read(fixtures().join("inputs/doc_page.png")).unwrap();
    let jpg = std::fs::read(fixtures().join("inputs/photo.jpg")).unwrap();

    // corrupt PNG: a real header, then the compressed data overwritten
    let mut corrupt = png.clone();
    let n = corrupt.len();
    for b in &mut corrupt[200..n - 100] {
        *b = b.wrapping_mul(31).wrapping_add(7);
    }
    expect_error(&corrupt, "corrupt.png", &dir, &opts, "corrupt");
    // truncated PNG and JPEG
    expect_error(&png[..png.len() / 2], "truncated.png", &dir, &opts, "png");
    expect_error(
        &jpg[..jpg.len() / 2],
        "truncated.jpg",
        &dir,
        &opts,
        "truncated",
    );
    // zero-size header
    expect_error(&synth::png_header(0, 5), "zero.png", &dir, &opts, "zero-size");
    // bomb-sized headers (nothing after them: refused before any pixel is decoded)
    expect_error(
        &synth::png_header(100_000, 100_000),
        "bomb.png",
        &dir,
        &opts,
        "exceeds the limit",
    );
    let mut bomb_jpg = jpg.clone();
    let sof = bomb_jpg
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("baseline SOF0");
    bomb_jpg[sof + 5..sof + 9].copy_from_slice(&[0xFF, 0xF0, 0xFF, 0xF0]); // 65520 x 65520
    expect_error(&bomb_jpg, "bomb.jpg", &dir, &opts, "exceeds the limit");
    // the limit is configurable
    let small = DecodeOptions {
        max_pixels: 1000,
        ..Default::default()
    };
    expect_error(
        &jpg,
        "photo_with_small_limit.jpg",
        &dir,
        &small,
        "1000 pixels",
    );
    assert!(decode_bytes(&jpg, "photo.jpg", &opts).is_ok());
    // not an image, empty, missing
    expect_error(
        b"hello, I am not a picture",
        "text.png",
        &dir,
        &opts,
        "unrecognised",
    );
    expect_error(b"", "empty.jpg", &dir, &opts, "empty");
    let missing = dir.join("missing.png");
    let e = decode_file(&missing, &opts).unwrap_err().to_string();
    assert!(e.contains("missing.png"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}
