//! Image files to 8-bit RGB, with Pillow's mode conversions and a decompression-bomb guard.
//!
//! Conversions follow Pillow (`Image.open(f).convert("RGB")`), which is what preprocessing scripts
//! usually do:
//! - grayscale `L` (and 1-bit, expanded to 0/255): the value is replicated to R, G and B;
//! - `LA` / `RGBA` / palette with transparency: alpha is dropped (no compositing) in
//!   [`AlphaMode::Drop`]; [`AlphaMode::CompositeWhite`] instead blends onto opaque white with
//!   Pillow's integer `alpha_composite`, which is what transformers' `convert_to_rgb` does when it
//!   is handed a PIL image that has transparency;
//! - 16-bit PNG: Pillow opens 16-bit RGB/RGBA/LA as 8-bit using the high byte, and 16-bit
//!   grayscale as mode `I;16`, whose conversion to RGB clamps the value to 255.
//!
//! - JPEG: decoded by libjpeg-turbo exactly as Pillow decodes it ([`super::jpeg`]), in Pillow's mode
//!   for the file: `L` is replicated, `RGB` kept, `CMYK` (Adobe-inverted, YCCK converted by libjpeg)
//!   turned into RGB with Pillow's `cmyk2rgb` (`Convert.c`: `255 - k - c * (255 - k) / 255`, rounded).
//!   Then the EXIF orientation is applied as transformers' `load_image` does ([`super::orientation`];
//!   [`DecodeOptions::exif_orientation`]).
//!
//! PNG files are read by the `image` crate (PNG decoding is lossless, so any correct decoder agrees).

use std::io::Cursor;
use std::path::Path;

use foveate_core::{Error, Result};
use image::{DynamicImage, ImageReader, Limits};

use super::jpeg::{self, JpegError, JpegMode};
use super::{orientation, RgbImage};

/// Pillow's `Image.MAX_IMAGE_PIXELS` (above it Pillow warns; above twice it Pillow refuses).
pub const DEFAULT_MAX_PIXELS: u64 = 89_478_485;

/// What to do with an alpha channel (or palette / colour-key transparency).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlphaMode {
    /// Drop alpha, as Pillow's `convert("RGB")` does.
    Drop,
    /// Blend onto opaque white, as transformers' `convert_to_rgb` does (Pillow `alpha_composite`).
    CompositeWhite,
}

/// Decode settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Refuse images with more than this many pixels (width * height), before decoding them.
    pub max_pixels: u64,
    pub alpha: AlphaMode,
    /// Apply the EXIF (or XMP) orientation of a JPEG as `PIL.ImageOps.exif_transpose`, which is what
    /// transformers does to every image it opens from a path (see [`super::orientation`]). On by default.
    pub exif_orientation: bool,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            max_pixels: DEFAULT_MAX_PIXELS,
            alpha: AlphaMode::Drop,
            exif_orientation: true,
        }
    }
}

/// Reads and decodes an image file; errors name the file.
pub fn decode_file(path: impl AsRef<Path>, opts: &DecodeOptions) -> Result<RgbImage> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_bytes(&bytes, &path.display().to_string(), opts)
}

/// Decodes an in-memory image; `name` (a file name or other label) is used in error messages.
pub fn decode_bytes(bytes: &[u8], name: &str, opts: &DecodeOptions) -> Result<RgbImage> {
    let err = |field: &str, msg: String| Error::format(name, field, msg);
    if bytes.is_empty() {
        return Err(err("image", "empty file".into()));
    }
    if jpeg::is_jpeg(bytes) {
        return decode_jpeg(bytes, opts).map_err(|e| err(e.field, e.message));
    }
    let reader = || -> Result<ImageReader<Cursor<&[u8]>>> {
        let r = ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| err("image", format!("cannot read: {e}")))?;
        if r.format().is_none() {
            return Err(err(
                "image",
                "unrecognised image format (supported: PNG, JPEG)".into(),
            ));
        }
        Ok(r)
    };
    let first = reader()?;
    let format = first.format();
    let fmt = format
        .and_then(|f| f.extensions_str().first())
        .map(|e| e.to_uppercase())
        .unwrap_or_default();
    // PNG: take the size straight from IHDR, so zero-size and bomb-sized headers are named as such
    // even when the rest of the file is missing or damaged.
    let (w, h) = match png_ihdr_size(bytes) {
        Some(wh) => wh,
        None => first
            .into_dimensions()
            .map_err(|e| err("header", format!("corrupt or unsupported {fmt} image: {e}")))?,
    };
    check_size(w as usize, h as usize, opts).map_err(|e| err(e.field, e.message))?;
    let pixels = w as u64 * h as u64;
    let mut second = reader()?;
    // The size was checked above; the allocation limit only needs to admit that many pixels.
    let mut limits = Limits::default();
    limits.max_alloc = Some(pixels.saturating_mul(16).max(1 << 26));
    second.limits(limits);
    let img = second
        .decode()
        .map_err(|e| err("image", format!("corrupt {fmt} image: {e}")))?;
    to_rgb(img, opts.alpha).map_err(|m| err("image", m))
}

/// The decompression-bomb guard, on the size a header declares (before any pixel is decoded).
fn check_size(w: usize, h: usize, opts: &DecodeOptions) -> std::result::Result<(), JpegError> {
    let fail = |message: String| JpegError {
        field: "dimensions",
        message,
    };
    if w == 0 || h == 0 {
        return Err(fail(format!("zero-size image ({w}x{h})")));
    }
    let pixels = w as u64 * h as u64;
    if pixels > opts.max_pixels {
        return Err(fail(format!(
            "{w}x{h} = {pixels} pixels exceeds the limit of {} pixels (decompression-bomb guard; \
             raise DecodeOptions::max_pixels to allow it)",
            opts.max_pixels
        )));
    }
    Ok(())
}

/// A JPEG as transformers' `load_image` gets it: Pillow's decode, `exif_transpose`, `convert("RGB")`.
fn decode_jpeg(bytes: &[u8], opts: &DecodeOptions) -> std::result::Result<RgbImage, JpegError> {
    let j = jpeg::decode(bytes, &|w, h| check_size(w, h, opts))?;
    let data = match j.mode {
        JpegMode::Rgb => j.data,
        JpegMode::L => j.data.iter().flat_map(|&v| [v, v, v]).collect(),
        JpegMode::Cmyk => j.data.chunks_exact(4).flat_map(cmyk_to_rgb).collect(),
    };
    let img = RgbImage {
        width: j.width,
        height: j.height,
        data,
    };
    if !opts.exif_orientation {
        return Ok(img);
    }
    let o = orientation::orientation(j.exif.as_deref(), j.xmp.as_deref());
    Ok(orientation::apply(img, o))
}

/// Pillow's `cmyk2rgb` (`Convert.c`): `CLIP8(nk - MULDIV255(c, nk))` with `nk = 255 - k`.
fn cmyk_to_rgb(p: &[u8]) -> [u8; 3] {
    let nk = 255 - p[3] as u32;
    let ch = |c: u8| {
        let tmp = c as u32 * nk + 128;
        let muldiv = ((tmp >> 8) + tmp) >> 8;
        nk.saturating_sub(muldiv) as u8
    };
    [ch(p[0]), ch(p[1]), ch(p[2])]
}

/// (width, height) from a PNG's IHDR chunk, if the bytes start with one.
fn png_ihdr_size(b: &[u8]) -> Option<(u32, u32)> {
    if b.len() < 24 || &b[..8] != b"\x89PNG\r\n\x1a\n" || &b[12..16] != b"IHDR" {
        return None;
    }
    let w = u32::from_be_bytes([b[16], b[17], b[18], b[19]]);
    let h = u32::from_be_bytes([b[20], b[21], b[22], b[23]]);
    Some((w, h))
}

/// Pillow's `alpha_composite(white, src)` for one channel value `c` with alpha `a`.
fn composite_on_white(c: u8, a: u8) -> u8 {
    if a == 0 {
        return 255;
    }
    const PRECISION_BITS: u32 = 7;
    let (c, a) = (c as u32, a as u32);
    let blend = 255 * (255 - a); // destination alpha is 255
    let outa255 = a * 255 + blend;
    let coef1 = a * 255 * 255 * (1 << PRECISION_BITS) / outa255;
    let coef2 = 255 * (1 << PRECISION_BITS) - coef1;
    let tmp = c * coef1 + 255 * coef2 + (0x80 << PRECISION_BITS);
    let div255 = ((tmp >> 8) + tmp) >> 8;
    (div255 >> PRECISION_BITS) as u8
}

fn with_alpha(rgba: impl Iterator<Item = [u8; 4]>, n: usize, mode: AlphaMode) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * 3);
    for [r, g, b, a] in rgba {
        match mode {
            AlphaMode::Drop => out.extend_from_slice(&[r, g, b]),
            AlphaMode::CompositeWhite => out.extend_from_slice(&[
                composite_on_white(r, a),
                composite_on_white(g, a),
                composite_on_white(b, a),
            ]),
        }
    }
    out
}

/// Converts any decoded image to RGB8 the way Pillow's `convert("RGB")` does (see module docs).
pub fn to_rgb(img: DynamicImage, alpha: AlphaMode) -> std::result::Result<RgbImage, String> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let n = w * h;
    let data = match img {
        DynamicImage::ImageRgb8(b) => b.into_raw(),
        DynamicImage::ImageLuma8(b) => b.as_raw().iter().flat_map(|&v| [v, v, v]).collect(),
        DynamicImage::ImageLumaA8(b) => with_alpha(
            b.as_raw().chunks_exact(2).map(|p| [p[0], p[0], p[0], p[1]]),
            n,
            alpha,
        ),
        DynamicImage::ImageRgba8(b) => with_alpha(
            b.as_raw().chunks_exact(4).map(|p| [p[0], p[1], p[2], p[3]]),
            n,
            alpha,
        ),
        // Pillow: 16-bit grayscale PNG is mode I;16, and I;16 -> RGB clamps to 255.
        DynamicImage::ImageLuma16(b) => b
            .as_raw()
            .iter()
            .flat_map(|&v| {
                let v = v.min(255) as u8;
                [v, v, v]
            })
            .collect(),
        // Pillow: 16-bit LA / RGB / RGBA PNGs are read as 8-bit with the high byte.
        DynamicImage::ImageLumaA16(b) => with_alpha(
            b.as_raw().chunks_exact(2).map(|p| {
                let l = (p[0] >> 8) as u8;
                [l, l, l, (p[1] >> 8) as u8]
            }),
            n,
            alpha,
        ),
        DynamicImage::ImageRgb16(b) => b.as_raw().iter().map(|&v| (v >> 8) as u8).collect(),
        DynamicImage::ImageRgba16(b) => with_alpha(
            b.as_raw().chunks_exact(4).map(|p| {
                [
                    (p[0] >> 8) as u8,
                    (p[1] >> 8) as u8,
                    (p[2] >> 8) as u8,
                    (p[3] >> 8) as u8,
                ]
            }),
            n,
            alpha,
        ),
        other => return Err(format!("unsupported pixel type {:?}", other.color())),
    };
    debug_assert_eq!(data.len(), n * 3);
    Ok(RgbImage {
        width: w,
        height: h,
        data,
    })
}
