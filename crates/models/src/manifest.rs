//! The tensors a LLaVA model reads, with their shapes, derived from the config: the single list
//! the executor loads from and the synthetic-checkpoint writer writes.

use crate::config::{LlavaConfig, VisionKind};
use crate::names::Part;

#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub part: Part,
    pub name: String,
    pub shape: Vec<usize>,
}

fn e(part: Part, name: impl Into<String>, shape: &[usize]) -> Entry {
    Entry { part, name: name.into(), shape: shape.to_vec() }
}

/// Vision-tower tensors up to (not including) encoder layer `layers`.
pub fn vision(cfg: &LlavaConfig, layers: usize) -> Vec<Entry> {
    let v = &cfg.vision;
    let (d, i) = (v.hidden_size, v.intermediate_size);
    let mut out = vec![e(Part::Vision, "embeddings.patch_embedding.weight", &[d, v.num_channels, v.patch_size, v.patch_size])];
    match v.kind {
        VisionKind::Clip => {
            out.push(e(Part::Vision, "embeddings.class_embedding", &[d]));
            out.push(e(Part::Vision, "pre_layrnorm.weight", &[d]));
            out.push(e(Part::Vision, "pre_layrnorm.bias", &[d]));
        }
        VisionKind::Siglip => out.push(e(Part::Vision, "embeddings.patch_embedding.bias", &[d])),
    }
    out.push(e(Part::Vision, "embeddings.position_embedding.weight", &[v.num_positions(), d]));
    for l in 0..layers {
        let p = format!("encoder.layers.{l}.");
        for n in ["layer_norm1", "layer_norm2"] {
            out.push(e(Part::Vision, format!("{p}{n}.weight"), &[d]));
            out.push(e(Part::Vision, format!("{p}{n}.bias"), &[d]));
        }
        for n in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            out.push(e(Part::Vision, format!("{p}self_attn.{n}.weight"), &[d, d]));
            out.push(e(Part::Vision, format!("{p}self_attn.{n}.bias"), &[d]));
        }
        out.push(e(Part::Vision, format!("{p}mlp.fc1.weight"), &[i, d]));
        out.push(e(Part::Vision, format!("{p}mlp.fc1.bias"), &[i]));
        out.push(e(Part::Vision, format!("{p}mlp.fc2.weight"), &[d, i]));
        out.push(e(Part::Vision, format!("{p}mlp.fc2.bias"), &[d]));
    }
    out
}

pub fn projector(cfg: &LlavaConfig) -> Vec<Entry> {
    let (dv, dt) = (cfg.vision.hidden_size, cfg.text.hidden_size);
    let mut out = vec![e(Part::Projector, "linear_1.weight", &[dt, dv])];
    if cfg.projector_bias {
        out.push(e(Part::Projector, "linear_1.bias", &[dt]));
    }
    out.push(e(Part::Projector, "linear_2.weight", &[dt, dt]));
    if cfg.projector_bias {
        out.push(e(Part::Projector, "linear_2.bias", &[dt]));
    }
    out
}

/// Decoder tensors, LM head included unless tied.
pub fn text(cfg: &LlavaConfig) -> Vec<Entry> {
    let t = &cfg.text;
    let (d, i) = (t.hidden_size, t.intermediate_size);
    let (qd, kvd) = (t.num_heads * t.head_dim, t.num_kv_heads * t.head_dim);
    let mut out = vec![e(Part::Text, "embed_tokens.weight", &[t.vocab_size, d])];
    for l in 0..t.num_layers {
        let p = format!("layers.{l}.");
        out.push(e(Part::Text, format!("{p}input_layernorm.weight"), &[d]));
        out.push(e(Part::Text, format!("{p}self_attn.q_proj.weight"), &[qd, d]));
        out.push(e(Part::Text, format!("{p}self_attn.k_proj.weight"), &[kvd, d]));
        out.push(e(Part::Text, format!("{p}self_attn.v_proj.weight"), &[kvd, d]));
        if t.qkv_bias {
            out.push(e(Part::Text, format!("{p}self_attn.q_proj.bias"), &[qd]));
            out.push(e(Part::Text, format!("{p}self_attn.k_proj.bias"), &[kvd]));
            out.push(e(Part::Text, format!("{p}self_attn.v_proj.bias"), &[kvd]));
        }
        out.push(e(Part::Text, format!("{p}self_attn.o_proj.weight"), &[d, qd]));
        out.push(e(Part::Text, format!("{p}post_attention_layernorm.weight"), &[d]));
        out.push(e(Part::Text, format!("{p}mlp.gate_proj.weight"), &[i, d]));
        out.push(e(Part::Text, format!("{p}mlp.up_proj.weight"), &[i, d]));
        out.push(e(Part::Text, format!("{p}mlp.down_proj.weight"), &[d, i]));
    }
    out.push(e(Part::Text, "norm.weight", &[d]));
    if !t.tie_word_embeddings {
        out.push(e(Part::LmHead, "weight", &[t.vocab_size, d]));
    }
    out
}

/// Everything the model reads.
pub fn all(cfg: &LlavaConfig) -> Vec<Entry> {
    let mut v = vision(cfg, cfg.vision_layers_to_run());
    v.extend(projector(cfg));
    v.extend(text(cfg));
    v
}
