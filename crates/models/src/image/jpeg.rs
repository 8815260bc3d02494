//! JPEG decoding exactly as Pillow does it: libjpeg-turbo's decoder, driven the way Pillow drives it.
//!
//! The decoder is libjpeg-turbo's, as the `mozjpeg-sys` crate vendors it (mozjpeg is a libjpeg-turbo
//! fork whose decompressor is libjpeg-turbo's), built from C by the `cc` crate without SIMD (no nasm),
//! with arithmetic decoding (Pillow's libjpeg-turbo has it too).
//! libjpeg-turbo's SIMD and C paths for the accurate integer IDCT, fancy upsampling and YCbCr->RGB are
//! bit-exact with each other, so this matches Pillow's SIMD build; the tests
//! (`crates/models/tests/jpeg_pillow.rs`) prove it pixel for pixel on every variant in
//! `eval/fixtures/jpeg/`.
//!
//! Settings, as Pillow 13.0 (`src/libImaging/JpegDecode.c`, python-pillow/Pillow 4e5f09f) sets them
//! when an image is loaded without `draft()` (transformers never calls it): `jpeg_read_header`, libjpeg's
//! own colour-space guess (`jpeg_color_space` untouched: Pillow's `jpegmode` is empty), the default
//! accurate integer IDCT (`JDCT_ISLOW`), fancy upsampling and block smoothing on, no scaling. The
//! output colour space follows the mode Pillow gives the file from the frame header's component count
//! (`JpegImagePlugin.SOF`): 1 -> `L` (`JCS_GRAYSCALE`), 3 -> `RGB` (`JCS_RGB`; libjpeg converts YCbCr or
//! passes RGB through), 4 -> `CMYK` (`JCS_CMYK`; libjpeg converts YCCK), unpacked as `CMYK;I` ("assume
//! adobe conventions": every byte inverted, whether or not an Adobe marker is present). Any other
//! component count is refused, as Pillow refuses it.
//!
//! Errors: libjpeg's `error_exit` would call `exit()`. Here it formats libjpeg's message and unwinds
//! with [`std::panic::resume_unwind`] (which runs no panic hook and prints nothing) out through the C
//! frames, which `mozjpeg-sys`'s `unwinding` feature compiles with `-fexceptions`, and every libjpeg
//! entry point is declared `extern "C-unwind"`; [`std::panic::catch_unwind`] turns it back into an
//! error and `jpeg_destroy_decompress` frees everything libjpeg allocated. Warnings (corrupt entropy
//! data and the like) are ignored as Pillow ignores them (its `output_message` does nothing), except
//! libjpeg's "premature end of data", which Pillow reports as a truncated file.

use std::ffi::{c_int, c_uint, c_ulong};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use mozjpeg_sys as ffi;

#[cfg(panic = "abort")]
compile_error!(
    "foveate-models turns libjpeg errors into Rust errors by unwinding; with panic = \"abort\" a \
     corrupt JPEG would abort the process"
);

/// The mode Pillow opens a JPEG in (from the number of components in the frame header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JpegMode {
    /// 1 component: grayscale.
    L,
    /// 3 components: YCbCr (converted by libjpeg) or RGB.
    Rgb,
    /// 4 components: CMYK or YCCK, as Pillow stores it (Adobe-inverted bytes already undone).
    Cmyk,
}

impl JpegMode {
    pub fn channels(self) -> usize {
        match self {
            JpegMode::L => 1,
            JpegMode::Rgb => 3,
            JpegMode::Cmyk => 4,
        }
    }
}

/// A decoded JPEG in Pillow's mode for it, plus the APP1 segments that carry orientation metadata.
#[derive(Clone, Debug)]
pub struct JpegImage {
    pub width: usize,
    pub height: usize,
    pub mode: JpegMode,
    /// `width * height * mode.channels()` bytes, rows top to bottom, interleaved.
    pub data: Vec<u8>,
    /// Pillow's `info["exif"]`: the first `Exif\0\0` APP1 segment, with the bodies of later ones appended.
    pub exif: Option<Vec<u8>>,
    /// Pillow's `info["xmp"]`: the last XMP APP1 segment's packet.
    pub xmp: Option<Vec<u8>>,
}

/// Why a JPEG did not decode: the field it concerns and a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JpegError {
    pub field: &'static str,
    pub message: String,
}

impl JpegError {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        JpegError {
            field,
            message: message.into(),
        }
    }
}

/// True when the bytes start like a JPEG file (SOI then a marker), as Pillow's `_accept` checks.
pub fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xFF, 0xD8, 0xFF])
}

/// The payload `error_exit` unwinds with: libjpeg's formatted message.
struct LibjpegFailure(String);

/// libjpeg's error manager plus what the handlers record (the `jpeg_error_mgr` must come first: libjpeg
/// only knows that part, and the handlers cast back to the whole).
#[repr(C)]
struct ErrorManager {
    base: ffi::jpeg_error_mgr,
    premature_end: bool,
}

/// libjpeg's message for the current `msg_code` (`format_message` writes up to `JMSG_LENGTH_MAX` = 200
/// bytes; the binding types the buffer as 80, so the call goes through a pointer-typed signature).
unsafe fn message(cinfo: &mut ffi::jpeg_common_struct) -> String {
    let mut buf = [0u8; 256];
    if let Some(format) = (*cinfo.err).format_message {
        type RawFormat = unsafe extern "C-unwind" fn(&mut ffi::jpeg_common_struct, *mut u8);
        let format: RawFormat = std::mem::transmute(format);
        format(cinfo, buf.as_mut_ptr());
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

unsafe extern "C-unwind" fn error_exit(cinfo: &mut ffi::jpeg_common_struct) {
    let msg = message(cinfo);
    resume_unwind(Box::new(LibjpegFailure(msg)));
}

unsafe extern "C-unwind" fn emit_message(cinfo: &mut ffi::jpeg_common_struct, level: c_int) {
    if level < 0 {
        let err = &mut *(cinfo.err as *mut ErrorManager);
        err.base.num_warnings += 1;
        if err.base.msg_code == ffi::JWRN_JPEG_EOF as c_int {
            err.premature_end = true;
        }
    }
}

unsafe extern "C-unwind" fn output_message(_cinfo: &mut ffi::jpeg_common_struct) {}

/// A decompressor that is destroyed (freeing all of libjpeg's memory) however decoding ends.
struct Decompressor {
    cinfo: Box<ffi::jpeg_decompress_struct>,
    err: Box<ErrorManager>,
}

impl Decompressor {
    fn new() -> Self {
        // SAFETY: both are plain C structs for which all-zero is the state before jpeg_std_error /
        // jpeg_create_decompress (a zero `mem` pointer makes jpeg_destroy a no-op).
        let mut d = Decompressor {
            cinfo: Box::new(unsafe { std::mem::zeroed() }),
            err: Box::new(unsafe { std::mem::zeroed() }),
        };
        unsafe {
            ffi::jpeg_std_error(&mut d.err.base);
        }
        d.err.base.error_exit = Some(error_exit);
        d.err.base.emit_message = Some(emit_message);
        d.err.base.output_message = Some(output_message);
        d.cinfo.common.err = &mut d.err.base;
        d
    }
}

impl Drop for Decompressor {
    fn drop(&mut self) {
        // SAFETY: the struct was zeroed and then at most created; destroy handles both.
        unsafe { ffi::jpeg_destroy_decompress(&mut self.cinfo) }
    }
}

/// Decodes a JPEG file's bytes as Pillow does. `check_size(width, height)` runs on the frame header's
/// size before any pixel is decoded (the decompression-bomb guard), and again on libjpeg's reading of
/// it; its error is returned as is.
pub fn decode(
    bytes: &[u8],
    check_size: &dyn Fn(usize, usize) -> Result<(), JpegError>,
) -> Result<JpegImage, JpegError> {
    // The size guard runs on the frame header before libjpeg sees the file (libjpeg itself refuses
    // sides above 65500 with a message that would hide the reason).
    let markers = scan_markers(bytes);
    if let Some((w, h)) = markers.size {
        check_size(w, h)?;
    }
    if !markers.has_end {
        return Err(JpegError::new(
            "image",
            "truncated JPEG: no end-of-image marker after the scan data",
        ));
    }
    let mut d = Decompressor::new();
    let run = catch_unwind(AssertUnwindSafe(|| unsafe {
        run(&mut d, bytes, check_size)
    }));
    let out = match run {
        Ok(r) => r?,
        Err(payload) => {
            return Err(match payload.downcast::<LibjpegFailure>() {
                Ok(f) => JpegError::new(
                    "image",
                    format!("corrupt or unsupported JPEG (libjpeg: {})", f.0),
                ),
                // A panic from Rust code inside the closure is a bug: let it continue.
                Err(other) => resume_unwind(other),
            });
        }
    };
    if d.err.premature_end {
        return Err(JpegError::new(
            "image",
            "truncated JPEG: the data ends before the image is complete",
        ));
    }
    Ok(out)
}

/// The libjpeg calls; every libjpeg error unwinds out of here (see the module docs).
unsafe fn run(
    d: &mut Decompressor,
    bytes: &[u8],
    check_size: &dyn Fn(usize, usize) -> Result<(), JpegError>,
) -> Result<JpegImage, JpegError> {
    let cinfo = &mut *d.cinfo;
    ffi::jpeg_create_decompress(cinfo);
    ffi::jpeg_mem_src(cinfo, bytes.as_ptr(), bytes.len() as c_ulong);
    ffi::jpeg_save_markers(cinfo, 0xE1, 0xFFFF); // APP1: EXIF and XMP
    ffi::jpeg_read_header(cinfo, 1);
    let (width, height) = (cinfo.image_width as usize, cinfo.image_height as usize);
    let mode = match cinfo.num_components {
        1 => JpegMode::L,
        3 => JpegMode::Rgb,
        4 => JpegMode::Cmyk,
        n => {
            return Err(JpegError::new(
                "components",
                format!("cannot handle {n}-layer images (Pillow reads 1, 3 or 4 components)"),
            ))
        }
    };
    check_size(width, height)?;
    let (exif, xmp) = app1_metadata(cinfo);
    cinfo.out_color_space = match mode {
        JpegMode::L => ffi::JCS_GRAYSCALE,
        JpegMode::Rgb => ffi::JCS_RGB,
        JpegMode::Cmyk => ffi::JCS_CMYK,
    };
    cinfo.dct_method = ffi::J_DCT_METHOD::JDCT_ISLOW;
    cinfo.do_fancy_upsampling = 1;
    cinfo.do_block_smoothing = 1;
    cinfo.scale_num = 1;
    cinfo.scale_denom = 1;
    ffi::jpeg_start_decompress(cinfo);
    let channels = mode.channels();
    let (ow, oh) = (cinfo.output_width as usize, cinfo.output_height as usize);
    if (ow, oh) != (width, height) || cinfo.output_components as usize != channels {
        return Err(JpegError::new(
            "header",
            format!(
                "decoder output {ow}x{oh}x{} does not match the header's {width}x{height}x{channels}",
                cinfo.output_components
            ),
        ));
    }
    let stride = width * channels;
    let mut data = vec![0u8; stride * height];
    while (cinfo.output_scanline as usize) < height {
        let y = cinfo.output_scanline as usize;
        let mut row = data[y * stride..].as_mut_ptr();
        if ffi::jpeg_read_scanlines(cinfo, &mut row, 1 as c_uint) != 1 {
            return Err(JpegError::new(
                "image",
                format!("the decoder stopped at row {y} of {height}"),
            ));
        }
    }
    ffi::jpeg_finish_decompress(cinfo);
    if mode == JpegMode::Cmyk {
        // Pillow's "CMYK;I" unpacker.
        for b in &mut data {
            *b = !*b;
        }
    }
    Ok(JpegImage {
        width,
        height,
        mode,
        data,
        exif,
        xmp,
    })
}

/// Pillow's `info["exif"]` and `info["xmp"]` from the APP1 segments before the first scan
/// (`JpegImagePlugin.APP`).
unsafe fn app1_metadata(cinfo: &ffi::jpeg_decompress_struct) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    const EXIF: &[u8] = b"Exif\0\0";
    const XMP: &[u8] = b"http://ns.adobe.com/xap/1.0/\0";
    let (mut exif, mut xmp): (Option<Vec<u8>>, Option<Vec<u8>>) = (None, None);
    let mut m = cinfo.marker_list;
    while !m.is_null() {
        let mk = &*m;
        if mk.marker == 0xE1 && !mk.data.is_null() {
            let s = std::slice::from_raw_parts(mk.data, mk.data_length as usize);
            if s.starts_with(EXIF) {
                match &mut exif {
                    Some(e) => e.extend_from_slice(&s[EXIF.len()..]),
                    None => exif = Some(s.to_vec()),
                }
            } else if s.starts_with(XMP) {
                xmp = Some(s[XMP.len()..].to_vec());
            }
        }
        m = mk.next;
    }
    (exif, xmp)
}

/// What a walk over the marker segments before the first scan finds.
struct Markers {
    /// (width, height) from the first start-of-frame segment.
    size: Option<(usize, usize)>,
    /// An EOI marker (FF D9) somewhere after the first start-of-scan: a file cut short loses it.
    /// (Pillow refuses such files with "image file is truncated".)
    has_end: bool,
}

fn scan_markers(b: &[u8]) -> Markers {
    let mut out = Markers {
        size: None,
        has_end: false,
    };
    let mut i = 2; // after SOI
    while i + 4 <= b.len() {
        if b[i] != 0xFF {
            return out;
        }
        let marker = b[i + 1];
        if marker == 0xFF {
            i += 1; // fill byte
            continue;
        }
        if marker == 0xD8 || (0xD0..=0xD7).contains(&marker) || marker == 0x01 {
            i += 2;
            continue;
        }
        let len = u16::from_be_bytes([b[i + 2], b[i + 3]]) as usize;
        // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC): height then width after the precision.
        let is_sof = (0xC0..=0xCF).contains(&marker) && ![0xC4, 0xC8, 0xCC].contains(&marker);
        if is_sof && out.size.is_none() && i + 9 <= b.len() {
            let h = u16::from_be_bytes([b[i + 5], b[i + 6]]) as usize;
            let w = u16::from_be_bytes([b[i + 7], b[i + 8]]) as usize;
            out.size = Some((w, h));
        }
        if marker == 0xDA {
            let scan = &b[(i + 2 + len).min(b.len())..];
            out.has_end = scan.windows(2).any(|w| w == [0xFF, 0xD9]);
            return out;
        }
        i += 2 + len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_come_back_as_values_and_leave_the_decoder_usable() {
        let ok = |_: usize, _: usize| Ok(());
        // SOI, then an SOF0 whose length field is impossible, then SOS/EOI so the EOI check passes.
        let bad = [
            0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x02, 0xFF, 0xDA, 0x00, 0x02, 0xFF, 0xD9,
        ];
        for _ in 0..3 {
            let e = decode(&bad, &ok).unwrap_err();
            assert_eq!(e.field, "image");
            assert!(
                e.message
                    .starts_with("corrupt or unsupported JPEG (libjpeg: "),
                "{e:?}"
            );
        }
    }
}
