//! EXIF orientation as transformers applies it: `PIL.ImageOps.exif_transpose`.
//!
//! transformers 5.23 (`image_utils.load_image`; huggingface/transformers 56c49c8 has the same function)
//! calls `PIL.ImageOps.exif_transpose(image)` and then `convert("RGB")` on every image it opens itself:
//! the CLIP / SigLIP / LLaVA image processors and processors route a path, URL or base64 string through
//! `fetch_images` -> `load_image`. An already-open `PIL.Image` handed to a processor is used as it is
//! (no transpose). foveate is given files, so [`super::DecodeOptions::exif_orientation`] (on by default)
//! matches `processor(images="photo.jpg")`; turn it off to match `processor(images=Image.open(path))`.
//!
//! The orientation is read as Pillow 13.0 reads it (`Image.getexif`, `Exif.load`,
//! `TiffImagePlugin.ImageFileDirectory_v2.load`): the EXIF block (`info["exif"]`, leading `Exif\0\0`
//! stripped) is a TIFF header plus IFD0, whose first loadable entry for tag 0x0112 gives the value (its
//! first element when there are several); numeric types count by value, so a RATIONAL 6/1 or a FLOAT 6.0
//! rotates like a SHORT 6. Only when IFD0 has no such entry, the XMP packet's first
//! `tiff:Orientation="N"` / `tiff:Orientation>N` is used. Values 2..=8 transpose
//! (`Image.Transpose`), anything else leaves the image as it is. One difference: Pillow raises on an
//! EXIF block that is not a TIFF structure, so transformers cannot load such a file; here it is read as
//! having no orientation.

use super::RgbImage;

/// The EXIF / XMP orientation (1..=8 as stored; `None` when absent or not a number Pillow would match).
pub fn orientation(exif: Option<&[u8]>, xmp: Option<&[u8]>) -> Option<u8> {
    match exif.and_then(exif_orientation_entry) {
        Some(value) => as_orientation(value),
        None => xmp.and_then(xmp_orientation),
    }
}

fn as_orientation(v: Option<f64>) -> Option<u8> {
    let v = v?;
    (v.fract() == 0.0 && (1.0..=8.0).contains(&v)).then_some(v as u8)
}

/// `Some(value)` when IFD0 has a loadable orientation entry (`value` is `None` when it is not a number).
fn exif_orientation_entry(exif: &[u8]) -> Option<Option<f64>> {
    let mut d = exif;
    for _ in 0..2 {
        d = d.strip_prefix(b"Exif\0\0").unwrap_or(d);
    }
    let be = match d.get(..4)? {
        b"II*\0" => false,
        b"MM\0*" => true,
        _ => return None,
    };
    let u16_at = |o: usize| -> Option<u16> {
        let b = d.get(o..o + 2)?;
        Some(if be {
            u16::from_be_bytes([b[0], b[1]])
        } else {
            u16::from_le_bytes([b[0], b[1]])
        })
    };
    let u32_at = |o: usize| -> Option<u32> {
        let b: [u8; 4] = d.get(o..o + 4)?.try_into().ok()?;
        Some(if be {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    };
    let ifd = u32_at(4)? as usize;
    let count = u16_at(ifd)? as usize;
    for i in 0..count {
        let e = ifd + 2 + 12 * i;
        let (Some(tag), Some(typ), Some(n)) = (u16_at(e), u16_at(e + 2), u32_at(e + 4)) else {
            return None; // a short read ends the directory (Pillow keeps what it read so far)
        };
        if tag != 0x0112 {
            continue;
        }
        let unit = match typ {
            1 | 2 | 6 | 7 => 1,
            3 | 8 => 2,
            4 | 9 | 11 | 13 => 4,
            5 | 10 | 12 | 16 => 8,
            _ => continue, // unsupported type: skipped, a later entry may still load
        };
        let size = unit * n as usize;
        let at = if size > 4 {
            u32_at(e + 8)? as usize
        } else {
            e + 8
        };
        let Some(v) = d.get(at..at + size) else {
            continue; // data outside the block: skipped
        };
        if n == 0 {
            return Some(None);
        }
        // The first 8 bytes of `v` in little-endian order.
        let le8 = |v: &[u8]| -> Option<[u8; 8]> {
            let mut b: [u8; 8] = v.get(..8)?.try_into().ok()?;
            if be {
                b.reverse();
            }
            Some(b)
        };
        let u16v = || u16_at(at).unwrap_or(0);
        let u32v = || u32_at(at).unwrap_or(0);
        let value = match typ {
            1 | 7 => Some(v[0] as f64),
            6 => Some(v[0] as i8 as f64),
            3 => Some(u16v() as f64),
            8 => Some(u16v() as i16 as f64),
            4 | 13 => Some(u32v() as f64),
            9 => Some(u32v() as i32 as f64),
            11 => Some(f32::from_bits(u32v()) as f64),
            5 | 10 => {
                let (num, den) = (u32v(), u32_at(at + 4).unwrap_or(0));
                let (num, den) = if typ == 5 {
                    (num as f64, den as f64)
                } else {
                    (num as i32 as f64, den as i32 as f64)
                };
                (den != 0.0).then(|| num / den)
            }
            12 => Some(f64::from_le_bytes(le8(v)?)),
            16 => Some(u64::from_le_bytes(le8(v)?) as f64),
            _ => None, // ASCII
        };
        return Some(value);
    }
    None
}

/// The first `tiff:Orientation="N"` or `tiff:Orientation>N` in an XMP packet.
fn xmp_orientation(xmp: &[u8]) -> Option<u8> {
    const KEY: &[u8] = b"tiff:Orientation";
    let mut from = 0;
    while let Some(p) = xmp[from..].windows(KEY.len()).position(|w| w == KEY) {
        let rest = &xmp[from + p + KEY.len()..];
        let digit = match rest {
            [b'=', b'"', d, ..] | [b'>', d, ..] if d.is_ascii_digit() => Some(d - b'0'),
            _ => None,
        };
        if let Some(d) = digit {
            return Some(d);
        }
        from += p + 1;
    }
    None
}

/// Applies an orientation value as `exif_transpose` does (2..=8 transpose; others do nothing).
pub fn apply(img: RgbImage, orientation: Option<u8>) -> RgbImage {
    let (w, h) = (img.width, img.height);
    // For each output pixel (x, y) of an out_w x out_h image, the source pixel.
    let map: fn(usize, usize, usize, usize) -> (usize, usize) = match orientation {
        Some(2) => |x, y, w, _h| (w - 1 - x, y), // FLIP_LEFT_RIGHT
        Some(3) => |x, y, w, h| (w - 1 - x, h - 1 - y), // ROTATE_180
        Some(4) => |x, y, _w, h| (x, h - 1 - y), // FLIP_TOP_BOTTOM
        Some(5) => |x, y, _w, _h| (y, x),        // TRANSPOSE
        Some(6) => |x, y, _w, h| (y, h - 1 - x), // ROTATE_270 (clockwise)
        Some(7) => |x, y, w, h| (w - 1 - y, h - 1 - x), // TRANSVERSE
        Some(8) => |x, y, w, _h| (w - 1 - y, x), // ROTATE_90 (counter-clockwise)
        _ => return img,
    };
    let swap = matches!(orientation, Some(5..=8));
    let (ow, oh) = if swap { (h, w) } else { (w, h) };
    let mut data = vec![0u8; ow * oh * 3];
    for y in 0..oh {
        for x in 0..ow {
            let (sx, sy) = map(x, y, w, h);
            let s = (sy * w + sx) * 3;
            let o = (y * ow + x) * 3;
            data[o..o + 3].copy_from_slice(&img.data[s..s + 3]);
        }
    }
    RgbImage {
        width: ow,
        height: oh,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiff(be: bool, typ: u16, count: u32, value: [u8; 4]) -> Vec<u8> {
        let mut t = Vec::new();
        let w16 =
            |t: &mut Vec<u8>, v: u16| t.extend(if be { v.to_be_bytes() } else { v.to_le_bytes() });
        let w32 =
            |t: &mut Vec<u8>, v: u32| t.extend(if be { v.to_be_bytes() } else { v.to_le_bytes() });
        t.extend(if be { b"MM\0*" } else { b"II*\0" });
        w32(&mut t, 8);
        w16(&mut t, 2);
        for (tag, ty, n, v) in [(0x010F, 2, 4, *b"cam\0"), (0x0112, typ, count, value)] {
            w16(&mut t, tag);
            w16(&mut t, ty);
            w32(&mut t, n);
            t.extend(v);
        }
        w32(&mut t, 0);
        t
    }

    #[test]
    fn reads_the_orientation_entry_like_pillow() {
        let short6 = tiff(false, 3, 1, [6, 0, 0, 0]);
        assert_eq!(orientation(Some(&short6), None), Some(6));
        let mut with_header = b"Exif\0\0".to_vec();
        with_header.extend(tiff(true, 3, 1, [0, 8, 0, 0]));
        assert_eq!(orientation(Some(&with_header), None), Some(8));
        // LONG and BYTE count by value; ASCII is not a number; an EXIF entry hides the XMP one.
        assert_eq!(
            orientation(Some(&tiff(false, 4, 1, [3, 0, 0, 0])), None),
            Some(3)
        );
        assert_eq!(
            orientation(Some(&tiff(false, 1, 1, [5, 0, 0, 0])), None),
            Some(5)
        );
        let xmp = b"<x:xmpmeta><rdf:Description tiff:Orientation=\"6\"/></x:xmpmeta>";
        assert_eq!(
            orientation(Some(&tiff(false, 2, 2, *b"6\0\0\0")), Some(xmp)),
            None
        );
        // No EXIF entry: the XMP packet decides, in either of its two spellings.
        assert_eq!(orientation(None, Some(xmp)), Some(6));
        assert_eq!(
            orientation(None, Some(b"<tiff:Orientation>7</tiff:Orientation>")),
            Some(7)
        );
        assert_eq!(
            orientation(Some(b"not tiff"), Some(b"tiff:Orientation=x")),
            None
        );
    }

    #[test]
    fn transposes_as_pillow_names_them() {
        // 3 x 2 image whose pixels are numbered 0..6 row by row.
        let img = RgbImage::new(3, 2, (0..6u8).flat_map(|v| [v, v, v]).collect()).unwrap();
        let ids = |o: u8| {
            let r = apply(img.clone(), Some(o));
            let v: Vec<u8> = r.data.chunks(3).map(|p| p[0]).collect();
            (r.width, r.height, v)
        };
        assert_eq!(ids(1), (3, 2, vec![0, 1, 2, 3, 4, 5]));
        assert_eq!(ids(2), (3, 2, vec![2, 1, 0, 5, 4, 3]));
        assert_eq!(ids(3), (3, 2, vec![5, 4, 3, 2, 1, 0]));
        assert_eq!(ids(4), (3, 2, vec![3, 4, 5, 0, 1, 2]));
        assert_eq!(ids(5), (2, 3, vec![0, 3, 1, 4, 2, 5]));
        assert_eq!(ids(6), (2, 3, vec![3, 0, 4, 1, 5, 2]));
        assert_eq!(ids(7), (2, 3, vec![5, 2, 4, 1, 3, 0]));
        assert_eq!(ids(8), (2, 3, vec![2, 5, 1, 4, 0, 3]));
    }
}
