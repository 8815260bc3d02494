//! JPEG decoding is bit-identical to Pillow's, and the CLIP / SigLIP pixel_values made from it are
//! bit-identical to transformers' PIL-backend processors, on every file of eval/fixtures/jpeg/ (made by
//! eval/tools/make_jpeg_goldens.py), on the real VQAv2 / TextVQA JPEGs of shared/datasets as they are,
//! and on the two JPEGs elsewhere in eval/fixtures/.
//!
//! Goldens: SHA-256 of Pillow's decoded RGB bytes (every pixel counts), Pillow's pixels themselves as PNG
//! for the small files (so a failure says where and by how much), and SHA-256 of transformers' float32
//! pixel_values.

mod image_support;

use std::path::{Path, PathBuf};

use foveate_models::image::{
    decode_file, preprocess, DecodeOptions, ImageProcessorConfig, RgbImage,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn jpeg_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../eval/fixtures/jpeg")
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// shared/datasets next to the repository (a link or folder), else /work/shared/datasets.
fn datasets() -> PathBuf {
    let local = repo().join("shared/datasets");
    if local.is_dir() {
        local
    } else {
        PathBuf::from("/work/shared/datasets")
    }
}

fn manifest() -> Value {
    let p = jpeg_dir().join("manifest.json");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn size(v: &Value) -> (usize, usize) {
    (
        v[0].as_u64().unwrap() as usize,
        v[1].as_u64().unwrap() as usize,
    )
}

fn decode(path: &Path, exif_orientation: bool) -> RgbImage {
    let opts = DecodeOptions {
        exif_orientation,
        ..Default::default()
    };
    decode_file(path, &opts).unwrap_or_else(|e| panic!("{e}"))
}

/// Compares a decode with Pillow's: `None` when identical, else what differs.
fn compare(
    got: &RgbImage,
    want_size: (usize, usize),
    want_sha: &str,
    png: Option<&str>,
) -> Option<String> {
    if (got.width, got.height) != want_size {
        return Some(format!(
            "size {}x{}, Pillow {}x{}",
            got.width, got.height, want_size.0, want_size.1
        ));
    }
    if sha256(&got.data) == want_sha {
        return None;
    }
    Some(match png {
        Some(rel) => {
            let want = decode(&jpeg_dir().join(rel), false);
            let (n, d) = image_support::byte_diff(&got.data, &want.data);
            let px = got
                .data
                .chunks_exact(3)
                .zip(want.data.chunks_exact(3))
                .filter(|(a, b)| a != b)
                .count();
            format!("{px} pixels ({n} bytes) differ from Pillow's, max abs err {d}")
        }
        None => "decoded bytes differ from Pillow's (SHA-256)".to_string(),
    })
}

/// Every check for one file; returns the failures. `entry` holds the goldens, `path` the JPEG.
fn check_file(entry: &Value, path: &Path, m: &Value, label: &str) -> Vec<String> {
    let mut failures = Vec::new();
    let s = size(&entry["size"]);
    // 1. Image.open(f).convert("RGB"): no orientation applied.
    let raw = decode(path, false);
    if let Some(d) = compare(
        &raw,
        s,
        entry["decoded_sha256"].as_str().unwrap(),
        entry["decoded_png"].as_str(),
    ) {
        failures.push(format!("{label}: Image.open().convert(\"RGB\"): {d}"));
    }
    // 2. transformers' load_image(path): exif_transpose, then convert("RGB") (the default here).
    let loaded = decode(path, true);
    let png = entry["loaded_png"]
        .as_str()
        .or(entry["decoded_png"].as_str());
    if let Some(d) = compare(
        &loaded,
        size(&entry["loaded_size"]),
        entry["loaded_sha256"].as_str().unwrap(),
        png,
    ) {
        failures.push(format!("{label}: load_image(path): {d}"));
    }
    // 3. pixel_values of each processor, from the loaded image.
    let mut pv_line = Vec::new();
    for (name, want) in entry["pixel_values"].as_object().unwrap() {
        let cfg_dir = jpeg_dir().join(m["processors"][name]["config_dir"].as_str().unwrap());
        let cfg = ImageProcessorConfig::from_model_dir(&cfg_dir).unwrap_or_else(|e| panic!("{e}"));
        let (px, h, w) = preprocess(&cfg, &loaded).unwrap_or_else(|e| panic!("{label}: {e}"));
        let shape: Vec<usize> = want["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let bytes: Vec<u8> = px.iter().flat_map(|v| v.to_le_bytes()).collect();
        let same = shape == [3, h, w] && sha256(&bytes) == want["sha256"].as_str().unwrap();
        pv_line.push(format!(
            "{name} {}",
            if same { "identical" } else { "DIFFERS" }
        ));
        if !same {
            let mean = px.iter().map(|&v| v as f64).sum::<f64>() / px.len() as f64;
            failures.push(format!(
                "{label}: {name} pixel_values differ from {}'s: shape [3, {h}, {w}] vs {shape:?}, mean {mean} vs {}",
                want["class"].as_str().unwrap(),
                want["mean"]
            ));
        }
    }
    println!(
        "{label} ({} {}x{}, {}): decoded {}, {}",
        entry["pillow_mode"].as_str().unwrap(),
        s.0,
        s.1,
        entry
            .get("made_with")
            .and_then(|v| v.as_str())
            .unwrap_or("as found"),
        if failures.is_empty() {
            "identical to Pillow"
        } else {
            "DIFFERS"
        },
        pv_line.join(", ")
    );
    failures
}

fn assert_no_failures(failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_jpeg_variant_decodes_and_preprocesses_exactly_as_pillow_and_transformers() {
    let m = manifest();
    let files = m["files"].as_array().unwrap();
    assert!(
        files.len() >= 40,
        "expected the full variant set, got {}",
        files.len()
    );
    println!(
        "goldens: Pillow {} (libjpeg-turbo {}), transformers {}",
        m["pillow"], m["pillow_libjpeg_turbo"], m["transformers"]
    );
    let mut failures = Vec::new();
    for f in files {
        let path = jpeg_dir().join(f["file"].as_str().unwrap());
        failures.extend(check_file(f, &path, &m, f["name"].as_str().unwrap()));
    }
    assert_no_failures(&failures);
}

#[test]
fn real_dataset_jpegs_as_they_are_decode_and_preprocess_exactly() {
    let m = manifest();
    let mut failures = Vec::new();
    let mut n = 0;
    for e in m["external"].as_array().unwrap() {
        let (path, label) = match (e["datasets_path"].as_str(), e["repo_path"].as_str()) {
            (Some(rel), _) => (datasets().join(rel), rel.to_string()),
            (None, Some(rel)) => (repo().join(rel), rel.to_string()),
            _ => panic!("external entry without a path: {e}"),
        };
        let bytes = std::fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        assert_eq!(
            sha256(&bytes),
            e["file_sha256"].as_str().unwrap(),
            "{}: not the file the goldens were made from",
            path.display()
        );
        failures.extend(check_file(e, &path, &m, &label));
        n += 1;
    }
    assert!(
        n >= 8,
        "expected the 6 dataset JPEGs and 2 fixture JPEGs, got {n}"
    );
    assert_no_failures(&failures);
}

#[test]
fn the_variant_set_covers_what_it_claims() {
    // Guards the golden set itself: a regenerated manifest that lost a kind of file fails here.
    let m = manifest();
    let files = m["files"].as_array().unwrap();
    let has = |pred: &dyn Fn(&Value) -> bool| files.iter().any(pred);
    let sampling = |f: &Value| -> Vec<(u64, u64)> {
        f["components"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c[1].as_u64().unwrap(), c[2].as_u64().unwrap()))
            .collect()
    };
    for (h, v, what) in [
        (1, 1, "4:4:4"),
        (2, 1, "4:2:2"),
        (2, 2, "4:2:0"),
        (1, 2, "4:4:0"),
        (4, 1, "4:1:1"),
    ] {
        assert!(
            has(&|f| f["pillow_mode"] == "RGB"
                && sampling(f)[0] == (h, v)
                && sampling(f)[1] == (1, 1)),
            "no {what} file"
        );
    }
    assert!(
        has(&|f| f["progressive"] == true && f["pillow_mode"] == "RGB"),
        "no progressive file"
    );
    assert!(
        has(&|f| f["progressive"] == true && sampling(f)[0] == (1, 2)),
        "no progressive 4:4:0 file"
    );
    for sof in ["SOF9", "SOF10"] {
        assert!(
            has(&|f| f["made_with"].as_str().unwrap().contains(sof)),
            "no arithmetic-coded {sof} file"
        );
    }
    assert!(has(&|f| f["pillow_mode"] == "L"), "no grayscale file");
    assert!(
        has(&|f| f["pillow_mode"] == "CMYK" && f["adobe_transform"] == 0),
        "no Adobe CMYK file"
    );
    assert!(
        has(&|f| f["pillow_mode"] == "CMYK" && f["adobe_transform"] == 2),
        "no YCCK file"
    );
    assert!(
        has(&|f| f["name"].as_str().unwrap().contains("restart")),
        "no restart-marker file"
    );
    for o in 2..=8 {
        assert!(
            has(&|f| f["exif_orientation"] == o),
            "no EXIF orientation {o}"
        );
    }
    assert!(
        has(&|f| f["name"].as_str().unwrap().starts_with("xmp_orientation")),
        "no XMP orientation"
    );
    for q in ["q50", "q95"] {
        assert!(
            has(&|f| f["name"].as_str().unwrap().contains(q)),
            "no {q} file"
        );
    }
    assert!(
        has(&|f| size(&f["size"]) == (37, 23)) && has(&|f| size(&f["size"]) == (101, 67)),
        "no odd sizes"
    );
}
