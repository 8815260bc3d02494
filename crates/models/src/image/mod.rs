//! Image decode and Hugging Face-parity preprocessing.
//!
//! - [`decode`]: PNG/JPEG files or bytes to 8-bit RGB, converting modes the way Pillow's
//!   `Image.convert("RGB")` does (or, optionally, compositing transparency onto white the way
//!   transformers' `convert_to_rgb` does), with a decompression-bomb guard.
//! - [`jpeg`]: JPEG decoding bit-identical to Pillow's (libjpeg-turbo, driven as Pillow drives it).
//! - [`orientation`]: EXIF / XMP orientation, applied as transformers' `load_image` does.
//! - [`resize`]: Pillow's resampling (`Image.resize`) for 8-bit RGB, bit-exact: the separable
//!   fixed-point convolution of `ImagingResample` (bicubic, bilinear, box, hamming, lanczos) and the
//!   affine nearest-neighbour path.
//! - [`processor`]: the transformers image processors (CLIP, SigLIP, LLaVA; PIL backend) read from
//!   `preprocessor_config.json` / `processor_config.json`, producing `pixel_values` in CHW f32
//!   (Qwen2-VL: patch rows, [`qwen2_vl`]).
//!
//! The goldens these are tested against are made by `eval/tools/make_resize_goldens.py` and live in
//! `eval/fixtures/preprocess/`; the JPEG ones by `eval/tools/make_jpeg_goldens.py` in `eval/fixtures/jpeg/`.

pub mod decode;
pub mod jpeg;
pub mod orientation;
pub mod processor;
pub mod qwen2_vl;
pub mod resize;

pub use decode::{decode_bytes, decode_file, AlphaMode, DecodeOptions, DEFAULT_MAX_PIXELS};
pub use processor::{preprocess, ImageProcessorConfig, ProcessorKind, SizeSpec};
pub use resize::{pillow_pass_order, resize, resize_with_order, Filter, PassOrder};

/// An 8-bit RGB image, rows top to bottom, pixels interleaved (`[r, g, b, r, g, b, ...]`), no padding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl RgbImage {
    /// Wraps interleaved RGB bytes; `data.len()` must be `width * height * 3`.
    pub fn new(width: usize, height: usize, data: Vec<u8>) -> foveate_core::Result<Self> {
        if width.checked_mul(height).and_then(|n| n.checked_mul(3)) != Some(data.len()) {
            return Err(foveate_core::Error::Msg(format!(
                "RgbImage: {} bytes do not hold a {width}x{height} RGB image",
                data.len()
            )));
        }
        Ok(RgbImage {
            width,
            height,
            data,
        })
    }

    /// The pixel at column `x`, row `y`.
    pub fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        let i = (y * self.width + x) * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }

    /// A copy of the `w` x `h` window whose top-left corner is (`x`, `y`); it must lie inside the image.
    pub fn crop(&self, x: usize, y: usize, w: usize, h: usize) -> RgbImage {
        assert!(
            x + w <= self.width && y + h <= self.height,
            "crop window outside the image"
        );
        let mut data = Vec::with_capacity(w * h * 3);
        for row in y..y + h {
            let start = (row * self.width + x) * 3;
            data.extend_from_slice(&self.data[start..start + w * 3]);
        }
        RgbImage {
            width: w,
            height: h,
            data,
        }
    }
}
