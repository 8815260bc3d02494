//! Decoding: Pillow's mode conversions, Pillow's JPEG pixels, and clear errors for bad files.

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

#[test]
fn jpeg_decode_is_pillows() {
    // The preprocessing photo (a Pillow-written baseline 4:2:0 JPEG) decodes to exactly Pillow's pixels.
    // The full variant set is in jpeg_pillow.rs.
    let want = load("inputs/photo_pillow_rgb.png");
    let got = decode_file(
        fixtures().join("inputs/photo.jpg"),
        &DecodeOptions::default(),
    )
    .unwrap();
    assert_eq!((got.width, got.height), (want.width, want.height));
    let (n, d) = byte_diff(&got.data, &want.data);
    assert_eq!(
        (n, d),
        (0, 0),
        "photo.jpg: {n} bytes differ from Pillow's decode (max {d})"
    );
}

fn jpeg_fixture(name: &str) -> std::path::PathBuf {
    fixtures().join("../jpeg/files").join(name)
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
    // JPEGs libjpeg refuses (a Huffman table that cannot exist) and a truncated progressive file: no
    // panic, no exit(), errors naming the file.
    let mut bad_huff = jpg.clone();
    let dht = bad_huff
        .windows(2)
        .position(|w| w == [0xFF, 0xC4])
        .expect("DHT");
    for b in &mut bad_huff[dht + 5..dht + 21] {
        *b = 0xFF; // 16 code-length counts of 255: more codes than 16 bits hold
    }
    expect_error(
        &bad_huff,
        "bad_huffman.jpg",
        &dir,
        &opts,
        "libjpeg: bogus huffman table",
    );
    // A 2-component frame (Pillow: "cannot handle 2-layer images"): the grayscale file with its SOF
    // and SOS rewritten to name a second component using the same tables.
    let gray = std::fs::read(jpeg_fixture("doc_gray_q90.jpg")).unwrap();
    let sof = gray
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("SOF0");
    let sos = gray
        .windows(2)
        .position(|w| w == [0xFF, 0xDA])
        .expect("SOS");
    let mut two = gray[..sof].to_vec();
    two.extend_from_slice(&[0xFF, 0xC0, 0, 14]);
    two.extend_from_slice(&gray[sof + 4..sof + 10]); // precision, height, width, then a new count
    *two.last_mut().unwrap() = 2;
    two.extend_from_slice(&[1, 0x11, 0, 2, 0x11, 0]);
    two.extend_from_slice(&gray[sof + 2 + 11..sos]); // the segments between SOF and SOS
    two.extend_from_slice(&[0xFF, 0xDA, 0, 10, 2, 1, 0x00, 2, 0x00, 0, 63, 0]);
    two.extend_from_slice(&gray[sos + 2 + 8..]);
    expect_error(
        &two,
        "two_components.jpg",
        &dir,
        &opts,
        "components: cannot handle 2-layer images",
    );
    let prog = std::fs::read(jpeg_fixture("coco2_progressive_420_q75.jpg")).unwrap();
    expect_error(
        &prog[..prog.len() * 2 / 3],
        "progressive_cut.jpg",
        &dir,
        &opts,
        "truncated",
    );
    // Cut after the first scan, behind a comment that happens to hold the bytes FF D9: the file seems
    // to end properly, and libjpeg runs out of data instead (its "premature end" warning).
    let scans: Vec<usize> = prog
        .windows(2)
        .enumerate()
        .filter(|(_, w)| *w == [0xFF, 0xDA])
        .map(|(i, _)| i)
        .collect();
    assert!(scans.len() > 2, "not a progressive file");
    let mut cut = prog[..scans[1]].to_vec();
    cut.extend_from_slice(&[0xFF, 0xFE, 0x00, 0x04, 0xFF, 0xD9]);
    expect_error(
        &cut,
        "progressive_first_scan_only.jpg",
        &dir,
        &opts,
        "the data ends before",
    );
    // zero-size header
    expect_error(
        &synth::png_header(0, 5),
        "zero.png",
        &dir,
        &opts,
        "zero-size",
    );
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

#[test]
fn corrupted_jpegs_return_errors_or_images_never_panic() {
    // Random byte damage to real JPEGs (baseline, progressive, grayscale, CMYK, restart markers):
    // every decode returns, as an image or an error naming the file; libjpeg's errors come back
    // through the unwinding error handler each time, and nothing leaks into the next decode.
    let files = [
        "coco_420_q95.jpg",
        "coco2_progressive_420_q75.jpg",
        "doc_gray_q90.jpg",
        "coco_ycck_q90.jpg",
        "tv_restart_blocks_420_q80.jpg",
    ];
    let mut state = 0x9E3779B97F4A7C15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut ok, mut errs) = (0, 0);
    for f in files {
        let clean = std::fs::read(jpeg_fixture(f)).unwrap();
        let want = decode_bytes(&clean, f, &DecodeOptions::default()).unwrap();
        for _ in 0..300 {
            let mut b = clean.clone();
            for _ in 0..1 + next() % 8 {
                let i = (next() as usize) % b.len();
                b[i] = next() as u8;
            }
            match decode_bytes(&b, f, &DecodeOptions::default()) {
                Ok(img) => {
                    assert_eq!(img.data.len(), img.width * img.height * 3);
                    ok += 1;
                }
                Err(e) => {
                    assert!(e.to_string().starts_with(f), "{e}");
                    errs += 1;
                }
            }
        }
        // The clean file still decodes to the same pixels afterwards.
        assert_eq!(
            decode_bytes(&clean, f, &DecodeOptions::default()).unwrap(),
            want
        );
    }
    println!("corrupted JPEGs: {ok} decoded (as Pillow would, with libjpeg's warnings ignored), {errs} refused with an error");
    assert!(
        errs > 100 && ok > 100,
        "{ok} decoded, {errs} errors: the damage did not exercise both paths"
    );
}
