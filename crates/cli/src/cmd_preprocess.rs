//! `foveate preprocess`: the model's `pixel_values` for one image, written as safetensors, so
//! foveate's preprocessing can be diffed against transformers' in one command:
//!
//! ```text
//! foveate preprocess --model DIR --image photo.jpg --out px.safetensors
//! python3 -c "from safetensors.numpy import load_file; from transformers import AutoImageProcessor; \
//!   import numpy as np; a = load_file('px.safetensors')['pixel_values']; \
//!   b = AutoImageProcessor.from_pretrained('DIR', backend='pil')('photo.jpg', return_tensors='np')['pixel_values']; \
//!   print(a.shape, b.shape, np.abs(a - b).max())"
//! ```
//!
//! The image is decoded as transformers' `load_image(path)` does (Pillow's pixels, EXIF orientation
//! applied; `--ignore-exif-orientation` matches handing the processor `Image.open(path)` instead) and
//! preprocessed with the model's image processor (`processor_config.json` or `preprocessor_config.json`).
//! The tensor is `pixel_values`, f32, the processor's shape `[1, 3, H, W]` (Qwen2-VL: the patch
//! rows `[grid_h · grid_w, 3 · 2 · 14 · 14]`).

use crate::CmdResult;
use foveate_core::Error;
use foveate_models::image::{
    decode_file, preprocess, DecodeOptions, ImageProcessorConfig, SizeSpec,
};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The model directory (HF layout; only its image-processor config is read).
    #[arg(long)]
    model: PathBuf,
    /// The image file (PNG or JPEG).
    #[arg(long)]
    image: PathBuf,
    /// Where to write the safetensors file with the `pixel_values` tensor.
    #[arg(long)]
    out: PathBuf,
    /// Do not apply the EXIF orientation (as when transformers is handed `Image.open(path)`).
    #[arg(long)]
    ignore_exif_orientation: bool,
}

fn describe(cfg: &ImageProcessorConfig) -> Vec<(&'static str, String)> {
    let onoff = |b: bool| if b { "yes" } else { "no" };
    let mut rows = vec![
        (
            "processor",
            format!(
                "{}ImageProcessor (transformers, PIL backend) from {}",
                class_stem(cfg),
                cfg.source
            ),
        ),
        ("convert_rgb", onoff(cfg.do_convert_rgb).to_string()),
    ];
    if cfg.do_pad_to_square {
        rows.push((
            "pad",
            "to a square with the mean colour (LLaVA do_pad)".to_string(),
        ));
    }
    rows.push((
        "resize",
        if cfg.do_resize {
            let size = match (cfg.patches, cfg.size) {
                (Some(p), _) => format!(
                    "smart resize to multiples of {} within {}..={} pixels",
                    p.factor(),
                    p.min_pixels,
                    p.max_pixels
                ),
                (None, size) => match size {
                    SizeSpec::ShortestEdge {
                        shortest,
                        longest: None,
                    } => format!("shortest_edge {shortest}"),
                    SizeSpec::ShortestEdge {
                        shortest,
                        longest: Some(l),
                    } => format!("shortest_edge {shortest}, longest_edge {l}"),
                    SizeSpec::Exact { height, width } => {
                        format!("{height}x{width} (height x width)")
                    }
                },
            };
            format!(
                "{size}, resample {} (PIL {})",
                cfg.resample.name(),
                cfg.resample as u8
            )
        } else {
            "no".to_string()
        },
    ));
    rows.push((
        "center_crop",
        match (cfg.do_center_crop, cfg.crop_size) {
            (true, Some((h, w))) => format!("{h}x{w} (height x width)"),
            _ => "no".to_string(),
        },
    ));
    rows.push((
        "rescale",
        if cfg.do_rescale {
            format!("x {}", cfg.rescale_factor)
        } else {
            "no".to_string()
        },
    ));
    rows.push((
        "normalize",
        if cfg.do_normalize {
            format!("mean {:?}, std {:?}", cfg.image_mean, cfg.image_std)
        } else {
            "no".to_string()
        },
    ));
    if let Some(p) = cfg.patches {
        rows.push((
            "patches",
            format!(
                "{0}x{0} patches, {1} frames (the image repeated), rows in {2}x{2} merge blocks",
                p.patch_size, p.temporal_patch_size, p.merge_size
            ),
        ));
    }
    rows
}

fn class_stem(cfg: &ImageProcessorConfig) -> &'static str {
    match cfg.kind {
        foveate_models::image::ProcessorKind::Clip => "CLIP",
        foveate_models::image::ProcessorKind::Siglip => "Siglip",
        foveate_models::image::ProcessorKind::Llava => "Llava",
        foveate_models::image::ProcessorKind::Qwen2Vl => "Qwen2VL",
    }
}

pub fn run(args: Args) -> CmdResult {
    if !args.model.is_dir() {
        return Err(Error::format(
            args.model.display().to_string(),
            "--model",
            "not a directory",
        )
        .into());
    }
    let cfg = ImageProcessorConfig::from_model_dir(&args.model)?;
    let opts = DecodeOptions {
        exif_orientation: !args.ignore_exif_orientation,
        ..Default::default()
    };
    let img = decode_file(&args.image, &opts)?;
    let (px, h, w) = preprocess(&cfg, &img)?;
    let shape = cfg.pixel_shape(h, w);
    let bytes: Vec<u8> = px.iter().flat_map(|v| v.to_le_bytes()).collect();
    let out = args.out.display().to_string();
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), &bytes)
        .map_err(|e| Error::format(out.clone(), "pixel_values", e.to_string()))?;
    let meta = HashMap::from([
        ("image".to_string(), args.image.display().to_string()),
        ("processor".to_string(), cfg.source.clone()),
        (
            "exif_orientation".to_string(),
            opts.exif_orientation.to_string(),
        ),
        (
            "producer".to_string(),
            format!("foveate {}", env!("CARGO_PKG_VERSION")),
        ),
    ]);
    let file = safetensors::serialize(vec![("pixel_values", view)], Some(meta))
        .map_err(|e| Error::format(out.clone(), "pixel_values", e.to_string()))?;
    foveate_core::write_atomic(&args.out, &file)?;

    let (mut lo, mut hi, mut sum) = (f32::INFINITY, f32::NEG_INFINITY, 0f64);
    for &v in &px {
        lo = lo.min(v);
        hi = hi.max(v);
        sum += v as f64;
    }
    println!(
        "image        {}: {}x{} RGB after decoding ({})",
        args.image.display(),
        img.width,
        img.height,
        if opts.exif_orientation {
            "EXIF orientation applied, as transformers' load_image"
        } else {
            "EXIF orientation ignored"
        }
    );
    for (k, v) in describe(&cfg) {
        println!("{k:<12} {v}");
    }
    println!(
        "pixel_values {shape:?} f32 -> {out} (min {lo:.6}, max {hi:.6}, mean {:.6})",
        sum / px.len().max(1) as f64
    );
    Ok(ExitCode::SUCCESS)
}
