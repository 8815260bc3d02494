//! The Qwen2-VL / Qwen2.5-VL image processor's own steps (`Qwen2VLImageProcessor`, PIL backend),
//! read in transformers' `models/qwen2_vl/image_processing_pil_qwen2_vl.py` (transformers 5.25.0,
//! the release the fixtures were made with; the same functions as at commit
//! 928b5565ecea2852ac5a41701c90589321548522's `image_processing_qwen2_vl.py`):
//!
//! * [`smart_resize`]: the output size, both sides multiples of `patch_size · merge_size`, the
//!   area within `[min_pixels, max_pixels]` (`size.shortest_edge` / `size.longest_edge` in
//!   transformers 5, which despite the names are pixel counts), the aspect ratio kept;
//! * the resize itself, rescale and normalisation are the shared PIL pipeline of
//!   [`super::processor::preprocess`] (Pillow bicubic by default);
//! * [`patchify`]: the `temporal_patch_size` frames of an image (the image repeated), cut into
//!   `patch_size` patches and flattened to rows `[grid_h · grid_w, C · T · P · P]`, the rows in
//!   merge-block order (`merge_size x merge_size` patches of one merged token next to each other).

use foveate_core::{Error, Result};
use serde_json::{Map, Value};

/// transformers' `smart_resize` refuses images whose long side is more than this many times the short one.
pub const MAX_ASPECT_RATIO: f64 = 200.0;

/// The patching settings of a Qwen2-VL image processor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PatchSpec {
    pub patch_size: usize,
    pub temporal_patch_size: usize,
    pub merge_size: usize,
    pub min_pixels: usize,
    pub max_pixels: usize,
}

impl Default for PatchSpec {
    /// The class defaults: patch 14, 2 frames, 2x2 merge, `56·56 ..= 28·28·1280` pixels.
    fn default() -> Self {
        PatchSpec {
            patch_size: 14,
            temporal_patch_size: 2,
            merge_size: 2,
            min_pixels: 56 * 56,
            max_pixels: 28 * 28 * 1280,
        }
    }
}

impl PatchSpec {
    /// `patch_size · merge_size`: both output sides are multiples of it.
    pub fn factor(&self) -> usize {
        self.patch_size * self.merge_size
    }

    /// Values in one patch row: `3 · temporal_patch_size · patch_size²`.
    pub fn row_len(&self) -> usize {
        3 * self.temporal_patch_size * self.patch_size * self.patch_size
    }

    /// The patch grid `(grid_h, grid_w)` of a resized `height x width` image.
    pub fn grid(&self, height: usize, width: usize) -> (usize, usize) {
        (height / self.patch_size, width / self.patch_size)
    }

    /// Reads the settings from a processor config object: `patch_size`, `temporal_patch_size`,
    /// `merge_size`, and the pixel bounds from `size: {shortest_edge, longest_edge}`
    /// (transformers 5) or `min_pixels` / `max_pixels` (transformers 4; these win, as in
    /// transformers' `__init__`).
    pub fn from_json(obj: &Map<String, Value>, source: &str) -> Result<PatchSpec> {
        let err = |field: &str, msg: String| Error::format(source, field, msg);
        let get = |key: &str| obj.get(key).filter(|v| !v.is_null());
        let int = |key: &str, v: &Value, max: u64| -> Result<usize> {
            match v.as_u64() {
                Some(n) if n > 0 && n <= max => Ok(n as usize),
                _ => Err(err(
                    key,
                    format!("{v} is not supported (a positive integer up to {max} is expected)"),
                )),
            }
        };
        let mut p = PatchSpec::default();
        for (key, slot) in [
            ("patch_size", &mut p.patch_size),
            ("temporal_patch_size", &mut p.temporal_patch_size),
            ("merge_size", &mut p.merge_size),
        ] {
            if let Some(v) = get(key) {
                *slot = int(key, v, 1 << 10)?;
            }
        }
        const MAX_PX: u64 = 1 << 32;
        if let Some(size) = get("size") {
            let o = size.as_object().ok_or_else(|| {
                err(
                    "size",
                    format!(
                        "{size} must be an object {{shortest_edge, longest_edge}} (pixel counts)"
                    ),
                )
            })?;
            for (key, slot) in [
                ("shortest_edge", &mut p.min_pixels),
                ("longest_edge", &mut p.max_pixels),
            ] {
                if let Some(v) = o.get(key).filter(|v| !v.is_null()) {
                    *slot = int(&format!("size.{key}"), v, MAX_PX)?;
                }
            }
            if let Some(k) = o.keys().find(|k| {
                !["shortest_edge", "longest_edge", "min_pixels", "max_pixels"].contains(&k.as_str())
            }) {
                return Err(err("size", format!("key `{k}` is not supported (supported: shortest_edge, longest_edge: the min and max pixel counts)")));
            }
        }
        for (key, slot) in [
            ("min_pixels", &mut p.min_pixels),
            ("max_pixels", &mut p.max_pixels),
        ] {
            if let Some(v) = get(key) {
                *slot = int(key, v, MAX_PX)?;
            }
        }
        if p.min_pixels > p.max_pixels {
            return Err(err(
                "size",
                format!(
                    "min pixels {} exceed max pixels {}",
                    p.min_pixels, p.max_pixels
                ),
            ));
        }
        if p.max_pixels < p.factor() * p.factor() {
            return Err(err(
                "size",
                format!(
                    "max pixels {} are fewer than one {f}x{f} merged patch",
                    p.max_pixels,
                    f = p.factor()
                ),
            ));
        }
        Ok(p)
    }
}

/// transformers' `smart_resize(height, width, factor, min_pixels, max_pixels)`: `(height, width)`
/// of the resized image. Python's `round` rounds half to even; the area test uses the rounded
/// sides, the rescale `beta` the original ones.
pub fn smart_resize(
    height: usize,
    width: usize,
    p: &PatchSpec,
) -> std::result::Result<(usize, usize), String> {
    let (h, w, f) = (height as f64, width as f64, p.factor() as f64);
    let ratio = h.max(w) / h.min(w);
    if height == 0 || width == 0 || ratio > MAX_ASPECT_RATIO {
        return Err(format!("absolute aspect ratio must be smaller than {MAX_ASPECT_RATIO}, got {ratio} ({width}x{height})"));
    }
    let mut hb = (h / f).round_ties_even() * f;
    let mut wb = (w / f).round_ties_even() * f;
    if hb * wb > p.max_pixels as f64 {
        let beta = ((h * w) / p.max_pixels as f64).sqrt();
        hb = f.max((h / beta / f).floor() * f);
        wb = f.max((w / beta / f).floor() * f);
    } else if hb * wb < p.min_pixels as f64 {
        let beta = (p.min_pixels as f64 / (h * w)).sqrt();
        hb = (h * beta / f).ceil() * f;
        wb = (w * beta / f).ceil() * f;
    }
    Ok((hb as usize, wb as usize))
}

/// transformers' `patchify`: CHW values of a `height x width` image (sides multiples of
/// `patch_size · merge_size`) to patch rows `[grid_h · grid_w, C · T · P · P]`. Row order:
/// merged block row, merged block column, row in the block, column in the block; each row holds
/// channel, frame (the image repeated `temporal_patch_size` times), patch row, patch column.
pub fn patchify(
    chw: &[f32],
    channels: usize,
    height: usize,
    width: usize,
    p: &PatchSpec,
) -> Vec<f32> {
    let (ps, m, t) = (p.patch_size, p.merge_size, p.temporal_patch_size);
    let (gh, gw) = p.grid(height, width);
    let row_len = channels * t * ps * ps;
    let mut out = Vec::with_capacity(gh * gw * row_len);
    for bh in 0..gh / m {
        for bw in 0..gw / m {
            for mh in 0..m {
                for mw in 0..m {
                    let (y0, x0) = ((bh * m + mh) * ps, (bw * m + mw) * ps);
                    for c in 0..channels {
                        let plane = &chw[c * height * width..(c + 1) * height * width];
                        for _ in 0..t {
                            for y in y0..y0 + ps {
                                out.extend_from_slice(&plane[y * width + x0..y * width + x0 + ps]);
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smart_resize_matches_transformers() {
        let p = PatchSpec::default();
        // Values from transformers 5.25 `smart_resize(h, w, 28, 56*56, 28*28*1280)`.
        assert_eq!(smart_resize(359, 270, &p), Ok((364, 280)));
        assert_eq!(smart_resize(214, 320, &p), Ok((224, 308)));
        // 3000x4000 is above max_pixels: floor after the rescale.
        assert_eq!(smart_resize(3000, 4000, &p), Ok((840, 1148)));
        // Below min_pixels: ceil.
        assert_eq!(smart_resize(20, 30, &p), Ok((56, 84)));
        // Half-way rounding is to even: 42 / 28 = 1.5 -> 2, 70 / 28 = 2.5 -> 2.
        assert_eq!(
            smart_resize(42, 70, &PatchSpec { min_pixels: 1, ..p }),
            Ok((56, 56))
        );
        assert!(smart_resize(1, 201, &p)
            .unwrap_err()
            .contains("aspect ratio"));
    }

    #[test]
    fn patchify_orders_rows_by_merge_block() {
        // One channel, 4x4 image of value y*4+x, patch 1, merge 2, 2 frames.
        let p = PatchSpec {
            patch_size: 1,
            temporal_patch_size: 2,
            merge_size: 2,
            min_pixels: 1,
            max_pixels: 1 << 20,
        };
        let img: Vec<f32> = (0..16).map(|i| i as f32).collect();
        let rows = patchify(&img, 1, 4, 4, &p);
        // Block (0,0) holds pixels (0,0), (0,1), (1,0), (1,1), then block (0,1) ...
        let firsts: Vec<f32> = rows.chunks(2).map(|r| r[0]).collect();
        assert_eq!(
            firsts,
            [0., 1., 4., 5., 2., 3., 6., 7., 8., 9., 12., 13., 10., 11., 14., 15.]
        );
        assert!(
            rows.chunks(2).all(|r| r[0] == r[1]),
            "the two frames are the same image"
        );
    }
}
