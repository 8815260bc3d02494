//! Hugging Face image processors (transformers 5.x, PIL backend) as data plus one pipeline.
//!
//! Supported `image_processor_type`s: `CLIPImageProcessor` (and `CLIPFeatureExtractor`),
//! `SiglipImageProcessor`, `LlavaImageProcessor`, `Qwen2VLImageProcessor` (smart resize and patch
//! rows, [`super::qwen2_vl`]), with or without the `Pil`/`Fast` suffix. The
//! pipeline is the PIL backend's: convert to RGB, (LLaVA `do_pad`: pad to a square with the mean
//! colour), resize with Pillow, center crop (zero-padding when the image is smaller), rescale
//! (`f32(f64(u8) * rescale_factor)`), normalise (`(x - f32(mean)) / f32(std)` in f32).

use std::path::Path;

use foveate_core::{Error, Result};
use serde_json::{Map, Value};

use super::qwen2_vl::{patchify, smart_resize, PatchSpec};
use super::resize::{resize, Filter};
use super::RgbImage;

pub const OPENAI_CLIP_MEAN: [f64; 3] = [0.48145466, 0.4578275, 0.40821073];
pub const OPENAI_CLIP_STD: [f64; 3] = [0.26862954, 0.26130258, 0.27577711];
pub const IMAGENET_STANDARD_MEAN: [f64; 3] = [0.5, 0.5, 0.5];
pub const IMAGENET_STANDARD_STD: [f64; 3] = [0.5, 0.5, 0.5];

/// Which transformers class the config names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessorKind {
    Clip,
    Siglip,
    Llava,
    /// `Qwen2VLImageProcessor` (Qwen2-VL and Qwen2.5-VL): smart resize, patch rows.
    Qwen2Vl,
}

/// The `size` of a config, standardised as transformers does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SizeSpec {
    /// `{"shortest_edge": s}` (optionally with `"longest_edge"`): keep the aspect ratio.
    ShortestEdge {
        shortest: usize,
        longest: Option<usize>,
    },
    /// `{"height": h, "width": w}`: resize to exactly this.
    Exact { height: usize, width: usize },
}

/// Everything the preprocessing pipeline reads from `preprocessor_config.json`.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageProcessorConfig {
    /// The file this came from (for messages).
    pub source: String,
    pub kind: ProcessorKind,
    pub do_convert_rgb: bool,
    pub do_resize: bool,
    pub size: SizeSpec,
    pub resample: Filter,
    pub do_center_crop: bool,
    /// (height, width)
    pub crop_size: Option<(usize, usize)>,
    pub do_rescale: bool,
    pub rescale_factor: f64,
    pub do_normalize: bool,
    pub image_mean: [f64; 3],
    pub image_std: [f64; 3],
    /// LLaVA's `do_pad`: pad to a square (background `int(mean * 255)`) before resizing.
    pub do_pad_to_square: bool,
    /// Qwen2-VL: smart resize within pixel bounds and patch rows instead of CHW (`size` unused).
    pub patches: Option<PatchSpec>,
}

impl ImageProcessorConfig {
    /// The class defaults of transformers 5.23 for `kind` (what a key missing from the file means).
    pub fn defaults(kind: ProcessorKind) -> Self {
        let clip_like = ImageProcessorConfig {
            source: String::from("<defaults>"),
            kind,
            do_convert_rgb: true,
            do_resize: true,
            size: SizeSpec::ShortestEdge {
                shortest: 224,
                longest: None,
            },
            resample: Filter::Bicubic,
            do_center_crop: true,
            crop_size: Some((224, 224)),
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: OPENAI_CLIP_MEAN,
            image_std: OPENAI_CLIP_STD,
            do_pad_to_square: false,
            patches: None,
        };
        match kind {
            ProcessorKind::Clip | ProcessorKind::Llava => clip_like,
            ProcessorKind::Qwen2Vl => ImageProcessorConfig {
                do_center_crop: false,
                crop_size: None,
                patches: Some(PatchSpec::default()),
                ..clip_like
            },
            ProcessorKind::Siglip => ImageProcessorConfig {
                size: SizeSpec::Exact {
                    height: 224,
                    width: 224,
                },
                do_center_crop: false,
                crop_size: None,
                image_mean: IMAGENET_STANDARD_MEAN,
                image_std: IMAGENET_STANDARD_STD,
                ..clip_like
            },
        }
    }

    /// Reads a model directory as transformers does: the `"image_processor"` object nested in
    /// `processor_config.json` if there is one, otherwise `preprocessor_config.json`.
    pub fn from_model_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let nested = dir.join("processor_config.json");
        if nested.is_file() {
            let v = read_json(&nested)?;
            if let Some(ip) = v.get("image_processor") {
                return Self::from_json(ip, &format!("{} (image_processor)", nested.display()));
            }
        }
        let flat = dir.join("preprocessor_config.json");
        if flat.is_file() {
            return Self::from_json(&read_json(&flat)?, &flat.display().to_string());
        }
        Err(Error::format(
            dir.display().to_string(),
            "preprocessor_config.json",
            "no image processor config: neither processor_config.json with an \"image_processor\" \
             object nor preprocessor_config.json is present",
        ))
    }

    /// Parses an image-processor JSON object; `source` names it in errors.
    pub fn from_json(v: &Value, source: &str) -> Result<Self> {
        let err = |field: &str, msg: String| Error::format(source, field, msg);
        let obj = v
            .as_object()
            .ok_or_else(|| err("<root>", "expected a JSON object".into()))?;
        let kind = parse_kind(obj).map_err(|(f, m)| err(&f, m))?;
        let mut c = Self::defaults(kind);
        c.source = source.to_string();
        let get_bool = |key: &str, default: bool| -> Result<bool> {
            match obj.get(key) {
                None | Some(Value::Null) => Ok(default),
                Some(Value::Bool(b)) => Ok(*b),
                Some(other) => Err(err(key, format!("expected true or false, got {other}"))),
            }
        };
        c.do_convert_rgb = get_bool("do_convert_rgb", c.do_convert_rgb)?;
        c.do_resize = get_bool("do_resize", c.do_resize)?;
        c.do_center_crop = get_bool("do_center_crop", c.do_center_crop)?;
        c.do_rescale = get_bool("do_rescale", c.do_rescale)?;
        c.do_normalize = get_bool("do_normalize", c.do_normalize)?;
        if kind == ProcessorKind::Llava {
            c.do_pad_to_square = get_bool("do_pad", false)?;
        }
        if kind == ProcessorKind::Qwen2Vl {
            c.patches = Some(PatchSpec::from_json(obj, source)?);
        } else if let Some(s) = obj.get("size").filter(|s| !s.is_null()) {
            c.size = parse_size(s).map_err(|m| err("size", m))?;
        }
        if let Some(s) = obj.get("crop_size").filter(|s| !s.is_null()) {
            c.crop_size = Some(parse_hw(s).map_err(|m| err("crop_size", m))?);
        }
        if c.do_center_crop && c.crop_size.is_none() {
            return Err(err(
                "crop_size",
                "do_center_crop is true but no crop_size is given".into(),
            ));
        }
        if let Some(r) = obj.get("resample").filter(|s| !s.is_null()) {
            let code = r
                .as_i64()
                .ok_or_else(|| err("resample", format!("expected an integer, got {r}")))?;
            c.resample = Filter::from_pil(code).ok_or_else(|| {
                err(
                    "resample",
                    format!("unknown PIL resampling filter {code} (supported: 0..=5)"),
                )
            })?;
        }
        if let Some(r) = obj.get("rescale_factor").filter(|s| !s.is_null()) {
            c.rescale_factor = r
                .as_f64()
                .ok_or_else(|| err("rescale_factor", format!("expected a number, got {r}")))?;
        }
        if let Some(m) = obj.get("image_mean").filter(|s| !s.is_null()) {
            c.image_mean = parse_triple(m).map_err(|e| err("image_mean", e))?;
        }
        if let Some(m) = obj.get("image_std").filter(|s| !s.is_null()) {
            c.image_std = parse_triple(m).map_err(|e| err("image_std", e))?;
        }
        if c.do_normalize && c.image_std.contains(&0.0) {
            return Err(err(
                "image_std",
                format!("{:?} has a zero (normalising divides by it)", c.image_std),
            ));
        }
        Ok(c)
    }

    /// The shape of `pixel_values` for one image whose processed size is `height x width`:
    /// `[1, 3, H, W]`, or the patch rows `[grid_h · grid_w, 3 · T · P · P]` of Qwen2-VL.
    pub fn pixel_shape(&self, height: usize, width: usize) -> Vec<usize> {
        match &self.patches {
            Some(p) => {
                let (gh, gw) = p.grid(height, width);
                vec![gh * gw, p.row_len()]
            }
            None => vec![1, 3, height, width],
        }
    }

    /// The (height, width) the resize step produces for an input of `height` x `width` (for
    /// Qwen2-VL, [`smart_resize`]; (0, 0) for an aspect ratio it refuses).
    pub fn resize_output_size(&self, height: usize, width: usize) -> (usize, usize) {
        if let Some(p) = &self.patches {
            return smart_resize(height, width, p).unwrap_or((0, 0));
        }
        match self.size {
            SizeSpec::Exact { height, width } => (height, width),
            SizeSpec::ShortestEdge {
                shortest,
                longest: None,
            } => {
                // transformers' get_resize_output_image_size(default_to_square=False)
                let (short, long) = if width <= height {
                    (width, height)
                } else {
                    (height, width)
                };
                let new_long = ((shortest * long) as f64 / short as f64) as usize;
                if width <= height {
                    (new_long, shortest)
                } else {
                    (shortest, new_long)
                }
            }
            SizeSpec::ShortestEdge {
                shortest,
                longest: Some(max_size),
            } => size_with_aspect_ratio(height, width, shortest, max_size),
        }
    }
}

/// transformers' `get_size_with_aspect_ratio((height, width), size, max_size)`.
fn size_with_aspect_ratio(
    height: usize,
    width: usize,
    size: usize,
    max_size: usize,
) -> (usize, usize) {
    let mut size = size;
    let mut raw_size = None;
    let min_orig = height.min(width) as f64;
    let max_orig = height.max(width) as f64;
    if max_orig / min_orig * size as f64 > max_size as f64 {
        let raw = max_size as f64 * min_orig / max_orig;
        size = raw.round_ties_even() as usize; // Python's round()
        raw_size = Some(raw);
    }
    if (height <= width && height == size) || (width <= height && width == size) {
        (height, width)
    } else if width < height {
        let oh = match raw_size {
            Some(raw) => (raw * height as f64 / width as f64) as usize,
            None => ((size * height) as f64 / width as f64) as usize,
        };
        (oh, size)
    } else {
        let ow = match raw_size {
            Some(raw) => (raw * width as f64 / height as f64) as usize,
            None => ((size * width) as f64 / height as f64) as usize,
        };
        (size, ow)
    }
}

fn read_json(path: &Path) -> Result<Value> {
    let text = foveate_core::read_utf8(path)?;
    serde_json::from_str(&text).map_err(|e| {
        Error::format(
            path.display().to_string(),
            "<json>",
            format!("invalid JSON: {e}"),
        )
    })
}

const SUPPORTED_TYPES: &str =
    "CLIPImageProcessor, SiglipImageProcessor, LlavaImageProcessor, Qwen2VLImageProcessor";

fn parse_kind(obj: &Map<String, Value>) -> std::result::Result<ProcessorKind, (String, String)> {
    let (field, name) = match (
        obj.get("image_processor_type"),
        obj.get("feature_extractor_type"),
    ) {
        (Some(Value::String(s)), _) => ("image_processor_type", s.as_str()),
        (_, Some(Value::String(s))) => ("feature_extractor_type", s.as_str()),
        _ => {
            return Err((
                "image_processor_type".into(),
                format!("missing; supported: {SUPPORTED_TYPES}"),
            ))
        }
    };
    let base = name
        .strip_suffix("Fast")
        .or_else(|| name.strip_suffix("Pil"))
        .unwrap_or(name);
    match base {
        "CLIPImageProcessor" | "CLIPFeatureExtractor" => Ok(ProcessorKind::Clip),
        "SiglipImageProcessor" => Ok(ProcessorKind::Siglip),
        "LlavaImageProcessor" => Ok(ProcessorKind::Llava),
        "Qwen2VLImageProcessor" => Ok(ProcessorKind::Qwen2Vl),
        _ => Err((
            field.into(),
            format!("unsupported image processor `{name}`; supported: {SUPPORTED_TYPES}"),
        )),
    }
}

/// Largest side a config may ask the resize or crop step for.
pub const MAX_SIDE: usize = 1 << 15;

fn as_usize(v: &Value) -> std::result::Result<usize, String> {
    match v.as_u64() {
        Some(n) if n > 0 && n <= MAX_SIDE as u64 => Ok(n as usize),
        Some(n) if n > 0 => Err(format!("{n} is larger than the supported {MAX_SIDE}")),
        _ => Err(format!("expected a positive integer, got {v}")),
    }
}

/// `size`: an int means `{"shortest_edge": n}` (all supported classes have default_to_square=False);
/// `[h, w]` means height/width.
fn parse_size(v: &Value) -> std::result::Result<SizeSpec, String> {
    match v {
        Value::Number(_) => Ok(SizeSpec::ShortestEdge {
            shortest: as_usize(v)?,
            longest: None,
        }),
        Value::Array(_) => {
            let (height, width) = parse_hw(v)?;
            Ok(SizeSpec::Exact { height, width })
        }
        Value::Object(o) => {
            let get = |k: &str| o.get(k).filter(|x| !x.is_null());
            if let Some(s) = get("shortest_edge") {
                let longest = get("longest_edge").map(as_usize).transpose()?;
                return Ok(SizeSpec::ShortestEdge {
                    shortest: as_usize(s)?,
                    longest,
                });
            }
            if get("height").is_some() || get("width").is_some() {
                let (height, width) = parse_hw(v)?;
                return Ok(SizeSpec::Exact { height, width });
            }
            let keys: Vec<&String> = o.keys().collect();
            Err(format!(
                "unsupported keys {keys:?}; supported: {{shortest_edge[, longest_edge]}} or {{height, width}}"
            ))
        }
        _ => Err(format!(
            "expected an object, an integer or [height, width], got {v}"
        )),
    }
}

/// `crop_size`-style (height, width): `{"height", "width"}`, an int (square) or `[h, w]`.
fn parse_hw(v: &Value) -> std::result::Result<(usize, usize), String> {
    match v {
        Value::Number(_) => {
            let n = as_usize(v)?;
            Ok((n, n))
        }
        Value::Array(a) if a.len() == 2 => Ok((as_usize(&a[0])?, as_usize(&a[1])?)),
        Value::Object(o) => {
            let h = o.get("height").ok_or("missing \"height\"")?;
            let w = o.get("width").ok_or("missing \"width\"")?;
            Ok((as_usize(h)?, as_usize(w)?))
        }
        _ => Err(format!(
            "expected {{\"height\", \"width\"}}, an integer or [height, width], got {v}"
        )),
    }
}

fn parse_triple(v: &Value) -> std::result::Result<[f64; 3], String> {
    match v {
        Value::Number(n) => {
            let x = n.as_f64().ok_or("not a number")?;
            Ok([x; 3])
        }
        Value::Array(a) if a.len() == 3 => {
            let mut out = [0.0; 3];
            for (o, x) in out.iter_mut().zip(a) {
                *o = x
                    .as_f64()
                    .ok_or_else(|| format!("expected numbers, got {x}"))?;
            }
            Ok(out)
        }
        _ => Err(format!(
            "expected a number or a list of 3 numbers (RGB), got {v}"
        )),
    }
}

/// LLaVA's pad_to_square: the longer side stays, the image is centred (offset `(max - side) // 2`).
fn pad_to_square(img: &RgbImage, fill: [u8; 3]) -> RgbImage {
    let side = img.width.max(img.height);
    if img.width == img.height {
        return img.clone();
    }
    let mut data: Vec<u8> = fill.iter().copied().cycle().take(side * side * 3).collect();
    let (x0, y0) = if img.width > img.height {
        (0, (side - img.height) / 2)
    } else {
        ((side - img.width) / 2, 0)
    };
    for y in 0..img.height {
        let dst = ((y0 + y) * side + x0) * 3;
        data[dst..dst + img.width * 3]
            .copy_from_slice(&img.data[y * img.width * 3..(y + 1) * img.width * 3]);
    }
    RgbImage {
        width: side,
        height: side,
        data,
    }
}

/// transformers' numpy `center_crop`: top = (h - ch) // 2, left = (w - cw) // 2; an image smaller
/// than the crop is first zero-padded (centred with ceil offsets).
fn center_crop(img: &RgbImage, crop_h: usize, crop_w: usize) -> RgbImage {
    let (h, w) = (img.height as i64, img.width as i64);
    let (ch, cw) = (crop_h as i64, crop_w as i64);
    let top = (h - ch).div_euclid(2);
    let left = (w - cw).div_euclid(2);
    if top >= 0 && left >= 0 && top + ch <= h && left + cw <= w {
        return img.crop(left as usize, top as usize, crop_w, crop_h);
    }
    let (nh, nw) = (ch.max(h), cw.max(w));
    let top_pad = (nh - h + 1) / 2; // ceil((nh - h) / 2)
    let left_pad = (nw - w + 1) / 2;
    let mut padded = RgbImage {
        width: nw as usize,
        height: nh as usize,
        data: vec![0; (nh * nw * 3) as usize],
    };
    for y in 0..img.height {
        let dst = (((top_pad as usize) + y) * padded.width + left_pad as usize) * 3;
        padded.data[dst..dst + img.width * 3]
            .copy_from_slice(&img.data[y * img.width * 3..(y + 1) * img.width * 3]);
    }
    let (t, l) = (top + top_pad, left + left_pad);
    let (t0, l0) = (t.max(0), l.max(0));
    let (t1, l1) = ((t + ch).min(nh), (l + cw).min(nw));
    padded.crop(
        l0 as usize,
        t0 as usize,
        (l1 - l0) as usize,
        (t1 - t0) as usize,
    )
}

/// Runs the processor on an RGB image. Returns `pixel_values` and the processed (h, w): CHW order
/// (3 x h x w), or for Qwen2-VL the patch rows of [`super::qwen2_vl::patchify`] (shape
/// [`ImageProcessorConfig::pixel_shape`]).
///
/// The input is RGB already; decode with [`super::AlphaMode::CompositeWhite`] to match handing
/// transformers a PIL image with transparency, or [`super::AlphaMode::Drop`] to match
/// `Image.open(f).convert("RGB")`.
pub fn preprocess(cfg: &ImageProcessorConfig, img: &RgbImage) -> Result<(Vec<f32>, usize, usize)> {
    if img.width == 0 || img.height == 0 {
        return Err(Error::Msg(format!(
            "{}: cannot preprocess a zero-size image",
            cfg.source
        )));
    }
    // Every intermediate image is bounded like a decoded one, so an extreme aspect ratio cannot
    // make the pad or resize step allocate without limit.
    let check = |step: &str, field: &str, w: usize, h: usize| -> Result<()> {
        let px = (w as u64).saturating_mul(h as u64);
        if px > super::DEFAULT_MAX_PIXELS {
            return Err(Error::format(
                cfg.source.clone(),
                field,
                format!(
                    "{step} the {}x{} image gives {w}x{h} = {px} pixels, above the limit of {}",
                    img.width,
                    img.height,
                    super::DEFAULT_MAX_PIXELS
                ),
            ));
        }
        Ok(())
    };
    let mut cur = std::borrow::Cow::Borrowed(img);
    if cfg.do_pad_to_square {
        let side = cur.width.max(cur.height);
        check("padding", "do_pad", side, side)?;
        let fill = cfg.image_mean.map(|m| (m * 255.0) as u8); // Python int(x * 255)
        cur = std::borrow::Cow::Owned(pad_to_square(&cur, fill));
    }
    if let (Some(p), false) = (&cfg.patches, cfg.do_resize) {
        let f = p.factor();
        if cur.height % f != 0 || cur.width % f != 0 {
            return Err(Error::format(cfg.source.clone(), "do_resize", format!(
                "false, but the {}x{} image's sides are not multiples of patch_size x merge_size = {f}",
                cur.width, cur.height
            )));
        }
    }
    if cfg.do_resize {
        if let Some(p) = &cfg.patches {
            smart_resize(cur.height, cur.width, p)
                .map_err(|m| Error::format(cfg.source.clone(), "size", m))?;
        }
        let (h, w) = cfg.resize_output_size(cur.height, cur.width);
        if h == 0 || w == 0 {
            return Err(Error::format(
                cfg.source.clone(),
                "size",
                format!(
                    "resizing {}x{} gives an empty image ({w}x{h})",
                    cur.width, cur.height
                ),
            ));
        }
        check("resizing", "size", w, h)?;
        cur = std::borrow::Cow::Owned(resize(&cur, w, h, cfg.resample)?);
    }
    if cfg.do_center_crop {
        let (ch, cw) = cfg.crop_size.ok_or_else(|| {
            Error::format(
                cfg.source.clone(),
                "crop_size",
                "do_center_crop is true but no crop_size is given",
            )
        })?;
        check(
            "cropping",
            "crop_size",
            cw.max(cur.width),
            ch.max(cur.height),
        )?;
        cur = std::borrow::Cow::Owned(center_crop(&cur, ch, cw));
    }
    let (h, w) = (cur.height, cur.width);
    let mean = cfg.image_mean.map(|m| m as f32);
    let std = cfg.image_std.map(|s| s as f32);
    let mut out = vec![0f32; 3 * h * w];
    for (i, px) in cur.data.chunks_exact(3).enumerate() {
        for c in 0..3 {
            let mut x = if cfg.do_rescale {
                (px[c] as f64 * cfg.rescale_factor) as f32
            } else {
                px[c] as f32
            };
            if cfg.do_normalize {
                x = (x - mean[c]) / std[c];
            }
            out[c * h * w + i] = x;
        }
    }
    if let Some(p) = &cfg.patches {
        return Ok((patchify(&out, 3, h, w, p), h, w));
    }
    Ok((out, h, w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortest_edge_sizes_match_transformers_rounding() {
        let c = ImageProcessorConfig::defaults(ProcessorKind::Clip);
        assert_eq!(c.resize_output_size(1077, 808), (298, 224));
        assert_eq!(c.resize_output_size(156, 240), (224, 344));
        assert_eq!(c.resize_output_size(300, 300), (224, 224));
    }

    #[test]
    fn center_crop_pads_small_images_with_zeros() {
        let img = RgbImage::new(2, 1, vec![1, 2, 3, 4, 5, 6]).unwrap();
        let out = center_crop(&img, 3, 4);
        assert_eq!((out.width, out.height), (4, 3));
        // ceil((3-1)/2) = 1 row above, ceil((4-2)/2) = 1 column left
        assert_eq!(out.pixel(1, 1), [1, 2, 3]);
        assert_eq!(out.pixel(2, 1), [4, 5, 6]);
        assert_eq!(out.pixel(0, 0), [0, 0, 0]);
        assert_eq!(out.pixel(3, 2), [0, 0, 0]);
    }

    #[test]
    fn unsupported_type_names_the_field() {
        let v: Value = serde_json::json!({"image_processor_type": "Idefics3ImageProcessor"});
        let e = ImageProcessorConfig::from_json(&v, "x/preprocessor_config.json")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("x/preprocessor_config.json") && e.contains("image_processor_type"),
            "{e}"
        );
        let v: Value =
            serde_json::json!({"image_processor_type": "CLIPImageProcessor", "resample": 9});
        let e = ImageProcessorConfig::from_json(&v, "cfg.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("resample"), "{e}");
    }
}
