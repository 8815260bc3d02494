//! Shared helpers for the image tests: the golden fixtures made by eval/tools/make_resize_goldens.py.
#![allow(dead_code)]

use std::path::PathBuf;

use foveate_models::image::{decode_file, DecodeOptions, RgbImage};
use serde_json::Value;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../eval/fixtures/preprocess")
}

pub fn manifest() -> Value {
    let p = fixtures().join("manifest.json");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

/// Decodes a fixture PNG (lossless) with Pillow's conversion rules.
pub fn load(rel: &str) -> RgbImage {
    let p = fixtures().join(rel);
    decode_file(&p, &DecodeOptions::default()).unwrap_or_else(|e| panic!("{e}"))
}

pub fn fnv1a64(bytes: &[u8]) -> String {
    let mut h: u64 = 0xCBF29CE484222325;
    for &b in bytes {
        h = (h ^ b as u64).wrapping_mul(0x100000001B3);
    }
    format!("{h:016x}")
}

/// (number of differing bytes, largest absolute difference)
pub fn byte_diff(a: &[u8], b: &[u8]) -> (usize, u8) {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold((0, 0), |(n, m), (&x, &y)| {
        let d = x.abs_diff(y);
        (n + (d != 0) as usize, m.max(d))
    })
}

/// A unique scratch directory for files a test writes.
pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("foveate-image-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
