//! Tiny random LLaVA checkpoints written in the layouts HF uses, for tests and benches that must
//! run without the Python fixtures: config.json, model.safetensors (or shards), a word-level
//! tokenizer.json with `<image>` as an added token, a chat template and a CLIP-style
//! preprocessor_config.json.

use crate::config::LlavaConfig;
use crate::manifest::{self, Entry};
use crate::names::Part;
use crate::vars::Role;
use foveate_core::{Error, Result};
use half::{bf16, f16};
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use serde_json::json;
use std::path::Path;

/// Which tensor-name layout to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// transformers 5 `save_pretrained`: `vision_tower.encoder...`, `language_model.model...`.
    Transformers5,
    /// Hub checkpoints: `vision_tower.vision_model.encoder...`.
    Hub,
    /// `model.vision_tower...`, `model.language_model...`, `lm_head.weight`.
    ModelPrefix,
}

#[derive(Clone, Debug)]
pub struct SynthSpec {
    pub vision: &'static str,
    pub text: &'static str,
    pub layout: Layout,
    /// Storage dtype: "F32", "F16" or "BF16".
    pub dtype: &'static str,
    /// Write two shards and an index instead of one file.
    pub sharded: bool,
    pub sliding_window: Option<usize>,
    pub seed: u64,
}

impl Default for SynthSpec {
    fn default() -> Self {
        SynthSpec {
            vision: "clip_vision_model",
            text: "llama",
            layout: Layout::Transformers5,
            dtype: "F32",
            sharded: false,
            sliding_window: None,
            seed: 7,
        }
    }
}

pub const VOCAB: usize = 64;
pub const IMAGE_TOKEN: u32 = (VOCAB - 1) as u32;

/// The config.json this spec writes.
pub fn config_json(spec: &SynthSpec) -> serde_json::Value {
    let siglip = spec.vision == "siglip_vision_model";
    let mut text = json!({
        "model_type": spec.text, "hidden_size": 32, "intermediate_size": 48, "num_attention_heads": 4,
        "num_key_value_heads": 2, "num_hidden_layers": 2, "rms_norm_eps": 1e-6, "vocab_size": VOCAB,
        "max_position_embeddings": 256, "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
        "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
        "tie_word_embeddings": spec.text == "qwen2",
    });
    if let Some(w) = spec.sliding_window {
        text["sliding_window"] = json!(w);
    }
    json!({
        "architectures": ["LlavaForConditionalGeneration"],
        "model_type": "llava",
        "image_token_index": IMAGE_TOKEN,
        "projector_hidden_act": "gelu",
        "multimodal_projector_bias": true,
        "vision_feature_layer": if siglip { -1 } else { -2 },
        "vision_feature_select_strategy": if siglip { "full" } else { "default" },
        "tie_word_embeddings": spec.text == "qwen2",
        "vision_config": {
            "model_type": spec.vision, "hidden_size": 24, "intermediate_size": 40, "num_attention_heads": 2,
            "num_hidden_layers": 3, "image_size": 28, "patch_size": 7, "num_channels": 3,
            "hidden_act": if siglip { "gelu_pytorch_tanh" } else { "quick_gelu" }, "layer_norm_eps": 1e-5,
        },
        "text_config": text,
    })
}

fn file_name(layout: Layout, e: &Entry) -> String {
    let prefix = match (layout, e.part) {
        (Layout::Transformers5, Part::Vision) => "vision_tower.",
        (Layout::Hub, Part::Vision) => "vision_tower.vision_model.",
        (Layout::ModelPrefix, Part::Vision) => "model.vision_tower.",
        (Layout::ModelPrefix, Part::Text) => "model.language_model.",
        (_, Part::Text) => "language_model.model.",
        (Layout::ModelPrefix, Part::Projector) => "model.multi_modal_projector.",
        (_, Part::Projector) => "multi_modal_projector.",
        (Layout::ModelPrefix, Part::LmHead) => "lm_head.",
        (_, Part::LmHead) => "language_model.lm_head.",
    };
    format!("{prefix}{}", e.name)
}

/// A deterministic xorshift stream of values in [-1, 1).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

fn values(e: &Entry, rng: &mut Rng) -> Vec<f32> {
    let n: usize = e.shape.iter().product();
    (0..n)
        .map(|_| {
            let r = rng.next();
            if e.role == Role::Norm {
                1.0 + 0.2 * r
            } else if e.shape.len() >= 2 {
                let fan_in = e.shape[1..].iter().product::<usize>() as f32;
                r * 1.7 / fan_in.sqrt()
            } else {
                0.1 * r
            }
        })
        .collect()
}

fn encode(dtype: &str, v: &[f32]) -> (Dtype, Vec<u8>) {
    match dtype {
        "F16" => (
            Dtype::F16,
            v.iter()
                .flat_map(|x| f16::from_f32(*x).to_le_bytes())
                .collect(),
        ),
        "BF16" => (
            Dtype::BF16,
            v.iter()
                .flat_map(|x| bf16::from_f32(*x).to_le_bytes())
                .collect(),
        ),
        _ => (Dtype::F32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::io(path, e)
}

/// Writes a complete checkpoint into `dir` (created if needed). Returns the parsed config.
pub fn write_checkpoint(dir: &Path, spec: &SynthSpec) -> Result<LlavaConfig> {
    write_checkpoint_with(dir, spec, config_json(spec))
}

/// [`write_checkpoint`] with another config (e.g. [`config_json`] of `spec`, resized): the weights
/// follow `cfg_json`, the tokenizer and processor files are the tiny ones.
pub fn write_checkpoint_with(
    dir: &Path,
    spec: &SynthSpec,
    cfg_json: serde_json::Value,
) -> Result<LlavaConfig> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let cfg_path = dir.join("config.json");
    std::fs::write(&cfg_path, serde_json::to_string_pretty(&cfg_json).unwrap())
        .map_err(io(&cfg_path))?;
    let cfg = LlavaConfig::from_json(&cfg_json, "config.json")?;

    // Every vision layer is written (HF checkpoints hold them all, even past the feature layer).
    let entries = manifest::stored(&cfg);
    let mut rng = Rng(spec.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let data: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = entries
        .iter()
        .map(|e| {
            let (dt, bytes) = encode(spec.dtype, &values(e, &mut rng));
            (file_name(spec.layout, e), dt, e.shape.clone(), bytes)
        })
        .collect();
    let shards: Vec<&[(String, Dtype, Vec<usize>, Vec<u8>)]> = if spec.sharded {
        let h = data.len() / 2;
        vec![&data[..h], &data[h..]]
    } else {
        vec![&data[..]]
    };
    let mut weight_map = serde_json::Map::new();
    for (si, shard) in shards.iter().enumerate() {
        let name = if spec.sharded {
            format!("model-{:05}-of-{:05}.safetensors", si + 1, shards.len())
        } else {
            "model.safetensors".into()
        };
        let views: Vec<(String, TensorView)> = shard
            .iter()
            .map(|(n, dt, s, b)| {
                (
                    n.clone(),
                    TensorView::new(*dt, s.clone(), b).expect("consistent view"),
                )
            })
            .collect();
        let path = dir.join(&name);
        safetensors::serialize_to_file(views, None, &path)
            .map_err(|e| Error::Msg(format!("{}: {e}", path.display())))?;
        for (n, ..) in shard.iter() {
            weight_map.insert(n.clone(), json!(name));
        }
    }
    if spec.sharded {
        let p = dir.join("model.safetensors.index.json");
        let idx = json!({"metadata": {}, "weight_map": weight_map});
        std::fs::write(&p, serde_json::to_string_pretty(&idx).unwrap()).map_err(io(&p))?;
    }
    write_tokenizer(dir)?;
    let pp = dir.join("preprocessor_config.json");
    let pre = json!({
        "image_processor_type": "CLIPImageProcessor", "do_resize": true, "size": {"shortest_edge": 28},
        "resample": 3, "do_center_crop": true, "crop_size": {"height": 28, "width": 28}, "do_rescale": true,
        "rescale_factor": 1.0 / 255.0, "do_normalize": true, "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711], "do_convert_rgb": true,
    });
    std::fs::write(&pp, serde_json::to_string_pretty(&pre).unwrap()).map_err(io(&pp))?;
    Ok(cfg)
}

/// Words of the synthetic vocabulary (ids 3..VOCAB-1).
pub fn word(i: usize) -> String {
    const W: [&str; 12] = [
        "USER",
        "ASSISTANT",
        ":",
        "what",
        "is",
        "the",
        "color",
        "of",
        "a",
        "cat",
        "?",
        "it",
    ];
    match W.get(i) {
        Some(w) => (*w).to_string(),
        None => format!("w{i}"),
    }
}

fn write_tokenizer(dir: &Path) -> Result<()> {
    let mut vocab = serde_json::Map::new();
    vocab.insert("<unk>".into(), json!(0));
    vocab.insert("<s>".into(), json!(1));
    vocab.insert("</s>".into(), json!(2));
    for id in 3..VOCAB - 1 {
        vocab.insert(word(id - 3), json!(id));
    }
    vocab.insert("<image>".into(), json!(IMAGE_TOKEN));
    let added = |id: u32, s: &str| json!({"id": id, "content": s, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true});
    let tok = json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [added(0, "<unk>"), added(1, "<s>"), added(2, "</s>"), added(IMAGE_TOKEN, "<image>")],
        "normalizer": null,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}
        },
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"}
    });
    let p = dir.join("tokenizer.json");
    std::fs::write(&p, serde_json::to_string_pretty(&tok).unwrap()).map_err(io(&p))?;
    let template = "{% for m in messages %}{{ m['role'].upper() }}: {% for c in m['content'] %}{% if c['type'] == 'image' %}<image>\n{% else %}{{ c['text'] }}{% endif %}{% endfor %}\n{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}";
    let cfg = json!({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "chat_template": template});
    let p = dir.join("tokenizer_config.json");
    std::fs::write(&p, serde_json::to_string_pretty(&cfg).unwrap()).map_err(io(&p))?;
    Ok(())
}

/// Copy every file of checkpoint folder `src` into `dst` (created), for tests that break a copy.
pub fn copy_checkpoint(src: &Path, dst: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dst)?;
    for f in std::fs::read_dir(src)? {
        let f = f?.path();
        if f.is_file() {
            std::fs::copy(&f, dst.join(f.file_name().unwrap_or_default()))?;
        }
    }
    Ok(())
}

/// Write `dst` as the safetensors file `src` (its bytes) without tensor `drop` and with tensor
/// `reshape.0` declared as shape `reshape.1` (same bytes): the two ways a test breaks a checkpoint
/// whose file is otherwise well formed.
pub fn rewrite_safetensors(
    src: &[u8],
    dst: &Path,
    drop: Option<&str>,
    reshape: Option<(&str, &[usize])>,
) -> std::result::Result<(), safetensors::SafeTensorError> {
    let f = safetensors::SafeTensors::deserialize(src)?;
    let mut out = Vec::new();
    for (n, t) in f.tensors() {
        if Some(n.as_str()) == drop {
            continue;
        }
        let shape = match reshape {
            Some((r, s)) if r == n => s.to_vec(),
            _ => t.shape().to_vec(),
        };
        out.push((n, TensorView::new(t.dtype(), shape, t.data())?));
    }
    safetensors::serialize_to_file(out, None, dst)
}

/// A PNG signature and an IHDR chunk (8-bit RGB, `w` x `h`) with a correct CRC, nothing after it:
/// for tests of size limits and truncated files.
pub fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut chunk = b"IHDR".to_vec();
    chunk.extend_from_slice(&w.to_be_bytes());
    chunk.extend_from_slice(&h.to_be_bytes());
    chunk.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut crc = !0u32;
    for &b in &chunk {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                0xEDB8_8320 ^ (crc >> 1)
            } else {
                crc >> 1
            };
        }
    }
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    v.extend_from_slice(&13u32.to_be_bytes());
    v.extend_from_slice(&chunk);
    v.extend_from_slice(&(!crc).to_be_bytes());
    v
}
