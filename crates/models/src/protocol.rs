//! The model's side of a run's protocol card: what, besides the task spec and the scorer, decides
//! the answers a model gives. Written by the in-process eval into results.json and served by
//! `foveate serve` (in `GET /v1/models`), so an eval over an endpoint records the same card and two
//! runs can be compared field by field.
//!
//! Only what changes the outputs is here (weights, compute dtype, chat template, image
//! processing, stop tokens, context window); how they were computed (backend, device, attention
//! kernel, batch size) is the engine's business and is recorded beside the card, not in it.

use crate::image::{AlphaMode, DecodeOptions, ImageProcessorConfig};
use crate::model::Model;
use foveate_core::Result;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// The model side of the protocol card (see the module doc). The weights hash reads every byte
/// of the safetensors files once (about 1 s per GB).
pub fn model_card(model: &Model) -> Result<Value> {
    let ck = &model.checkpoint;
    let mut h = Sha256::new();
    let (mut files, mut bytes) = (0usize, 0usize);
    for (path, data) in ck.weights.files() {
        // The file name is part of the hash (a renamed shard is a different checkpoint layout);
        // the folder is not (the same checkpoint copied elsewhere hashes the same).
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update((data.len() as u64).to_le_bytes());
        h.update(data);
        files += 1;
        bytes += data.len();
    }
    let mut stored: Vec<String> = ck
        .weights
        .names()
        .filter_map(|n| ck.weights.info(n))
        .map(|i| format!("{:?}", i.dtype))
        .collect();
    stored.sort();
    stored.dedup();
    let (window, _) = ck.config.context_window();
    let mut card = json!({
        "model_type": ck.config.model_type(),
        "weights": {"sha256": hex(&h.finalize()), "files": files, "bytes": bytes, "stored_dtypes": stored},
        "compute_dtype": model.dtype().to_string(),
        "chat_template_sha256": ck.prompt.chat_template_source().map(|s| sha256_hex(s.as_bytes())),
        "image_processor": image_processor_json(&ck.image_processor()?, &DecodeOptions::default()),
        "image_tokens_per_image": ck.config.image_tokens_per_image(),
        "context_window": window,
        "stop_token_ids": ck.eos_token_ids,
    });
    // Only a load with other weight formats than the compute dtype says so (older cards unchanged).
    let f = model.formats();
    if f.mixed() {
        card["weight_formats"] = json!({"linear": f.weights.name(), "lm_head": f.head().name(), "vision_linear": f.vision.name(), "embedding": f.embed.name(), "quantised_checkpoint": ck.quant.is_some()});
    }
    // Likewise a KV cache in another dtype than the compute dtype.
    if f.kv != f.compute {
        card["kv_dtype"] = json!(f.kv.name());
    }
    Ok(card)
}

/// The image-processing settings that change `pixel_values` (not the file they came from).
pub fn image_processor_json(p: &ImageProcessorConfig, d: &DecodeOptions) -> Value {
    json!({
        "kind": format!("{:?}", p.kind),
        "decode": {
            "alpha": match d.alpha { AlphaMode::Drop => "drop", AlphaMode::CompositeWhite => "composite_white" },
            "exif_orientation": d.exif_orientation,
        },
        "do_convert_rgb": p.do_convert_rgb,
        "do_pad_to_square": p.do_pad_to_square,
        "do_resize": p.do_resize,
        "size": format!("{:?}", p.size),
        "resample": p.resample.name(),
        "do_center_crop": p.do_center_crop,
        "crop_size": p.crop_size.map(|(h, w)| json!({"height": h, "width": w})),
        "do_rescale": p.do_rescale,
        "rescale_factor": p.rescale_factor,
        "do_normalize": p.do_normalize,
        "image_mean": p.image_mean,
        "image_std": p.image_std,
    })
}

/// How a model computes, beside the card (not part of it): `{"engine": "foveate", "version",
/// "mode", "backend", "device", "attention", "batch_size"}`; `mode` is `in-process` for
/// `foveate eval --model`, `server` for `foveate serve`.
pub fn engine_json(model: &Model, mode: &str, attention: &str, batch_size: usize) -> Value {
    json!({
        "engine": "foveate",
        "version": env!("CARGO_PKG_VERSION"),
        "mode": mode,
        "backend": model.backend().name(),
        "device": model.backend().device_name(),
        "attention": attention,
        "batch_size": batch_size,
    })
}
