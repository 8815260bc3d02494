//! `config.json` of a `LlavaForConditionalGeneration` checkpoint, parsed into the settings the
//! executor needs. Every unsupported value is an `Error::Format` naming `config.json`, the field
//! and the supported values.

use foveate_core::{Activation, Error, Result};
use serde_json::Value;
use std::path::Path;

/// Largest size a config may give for a width, length or count (hidden sizes, vocabulary,
/// context window, image side): far above any real model, low enough that products of sizes
/// cannot overflow and a corrupt value is refused instead of driving a huge allocation.
pub const MAX_DIM: usize = 1 << 24;
/// Most layers a config may give a vision tower or decoder.
pub const MAX_LAYERS: usize = 1024;

/// Vision tower family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VisionKind {
    /// CLIP: CLS token, pre-layernorm, patch conv without bias.
    Clip,
    /// SigLIP: no CLS, no pre-layernorm, patch conv with bias.
    Siglip,
}

#[derive(Clone, Debug, PartialEq)]
pub struct VisionConfig {
    pub kind: VisionKind,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_heads: usize,
    pub num_layers: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub num_channels: usize,
    pub act: Activation,
    pub layer_norm_eps: f32,
}

impl VisionConfig {
    pub fn num_patches(&self) -> usize {
        (self.image_size / self.patch_size).pow(2)
    }
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }
    /// Tokens the tower produces: patches plus the CLS row for CLIP.
    pub fn num_positions(&self) -> usize {
        self.num_patches() + (self.kind == VisionKind::Clip) as usize
    }
}

/// Language-model family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextKind {
    Llama,
    Mistral,
    Qwen2,
}

/// Attention kind of one decoder layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerAttention {
    Full,
    /// Causal with HF's window: key j is visible from query q when `q - j < window`.
    Sliding(usize),
}

#[derive(Clone, Debug, PartialEq)]
pub struct TextConfig {
    pub kind: TextKind,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub num_layers: usize,
    pub rms_norm_eps: f32,
    pub rope_theta: f32,
    pub vocab_size: usize,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    /// q/k/v projections carry a bias (Qwen2, or Llama with `attention_bias`).
    pub qkv_bias: bool,
    /// One entry per layer.
    pub layers: Vec<LayerAttention>,
    pub eos_token_ids: Vec<u32>,
    pub bos_token_id: Option<u32>,
    /// M-RoPE: frequency pairs per position axis (temporal, height, width), adding up to
    /// `head_dim / 2` (Qwen2-VL's `mrope_section`); None for 1-D text RoPE.
    pub mrope_section: Option<[usize; 3]>,
}

/// Which vision hidden states feed the projector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeatureStrategy {
    /// Drops the CLS row.
    Default,
    /// Keeps every row.
    Full,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LlavaConfig {
    pub vision: VisionConfig,
    pub text: TextConfig,
    /// As written in the config (negative counts from the end of `hidden_states`).
    pub vision_feature_layer: i64,
    pub strategy: FeatureStrategy,
    pub image_token_id: u32,
    pub projector_act: Activation,
    pub projector_bias: bool,
}

impl LlavaConfig {
    /// Index into HF's `hidden_states` (length `num_layers + 1`, entry 0 being the embeddings):
    /// the number of encoder layers to run.
    pub fn vision_layers_to_run(&self) -> usize {
        let n = self.vision.num_layers as i64 + 1;
        let i = if self.vision_feature_layer < 0 {
            n + self.vision_feature_layer
        } else {
            self.vision_feature_layer
        };
        i as usize
    }

    /// Image tokens one image expands into (what the HF processor writes for `<image>`).
    pub fn image_tokens_per_image(&self) -> usize {
        self.feature_rows().1
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = foveate_core::read_utf8(path)?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| Error::format(path.display().to_string(), "(json)", e.to_string()))?;
        Self::from_json(&v, &path.display().to_string())
    }

    pub fn from_json(v: &Value, file: &str) -> Result<Self> {
        let c = Cfg {
            v,
            file,
            prefix: "",
        };
        let mt = c.str_or("model_type", "")?;
        if mt != "llava" {
            let archs = v
                .get("architectures")
                .map(|a| a.to_string())
                .unwrap_or_default();
            return Err(Error::format(file, "model_type", format!(
                "`{mt}` (architectures {archs}) is not supported (supported: llava, i.e. LlavaForConditionalGeneration)"
            )));
        }
        let vision = parse_vision(&c.sub("vision_config")?)?;
        let tie_top = c.opt_bool("tie_word_embeddings")?;
        let text = parse_text(&c.sub("text_config")?, tie_top)?;
        let vision_feature_layer = match v.get("vision_feature_layer") {
            None | Some(Value::Null) => -2,
            Some(Value::Number(n)) if n.is_i64() => n.as_i64().unwrap(),
            Some(other) => {
                return Err(Error::format(file, "vision_feature_layer", format!(
                    "{other} is not supported (supported: a single integer layer index; lists of layers are not)"
                )))
            }
        };
        let n = vision.num_layers as i64;
        if vision_feature_layer < -(n + 1) || vision_feature_layer > n {
            return Err(Error::format(file, "vision_feature_layer", format!(
                "{vision_feature_layer} is out of range for {n} vision layers (supported: -{} ..= {n})", n + 1
            )));
        }
        let strategy = match c
            .str_or("vision_feature_select_strategy", "default")?
            .as_str()
        {
            "default" => FeatureStrategy::Default,
            "full" => FeatureStrategy::Full,
            other => {
                return Err(Error::format(
                    file,
                    "vision_feature_select_strategy",
                    format!("`{other}` is not supported (supported: default, full)"),
                ))
            }
        };
        let image_token_id = match (
            c.opt_u64("image_token_index")?,
            c.opt_u64("image_token_id")?,
        ) {
            (Some(i), _) | (None, Some(i)) => u32::try_from(i).map_err(|_| {
                Error::format(
                    file,
                    "image_token_index",
                    format!("{i} is not a valid token id (above u32)"),
                )
            })?,
            (None, None) => 32000,
        };
        if strategy == FeatureStrategy::Default && vision.num_positions() < 2 {
            return Err(Error::format(file, "vision_feature_select_strategy", format!(
                "`default` drops the first of {} vision rows, leaving no image features (supported here: full)",
                vision.num_positions()
            )));
        }
        let act_name = c.str_or("projector_hidden_act", "gelu")?;
        let projector_act = Activation::from_hf(&act_name).ok_or_else(|| {
            Error::format(file, "projector_hidden_act", format!(
                "`{act_name}` is not supported (supported: gelu, gelu_pytorch_tanh, gelu_new, quick_gelu, silu, linear)"
            ))
        })?;
        let projector_bias = c.opt_bool("multimodal_projector_bias")?.unwrap_or(true);
        Ok(LlavaConfig {
            vision,
            text,
            vision_feature_layer,
            strategy,
            image_token_id,
            projector_act,
            projector_bias,
        })
    }
}

impl LlavaConfig {
    /// `(first row, rows)` of the vision tower output fed to the projector. Strategy `default`
    /// drops row 0 (CLIP's CLS; with SigLIP, HF drops the first patch the same way).
    pub fn feature_rows(&self) -> (usize, usize) {
        let rows = self.vision.num_positions();
        match self.strategy {
            FeatureStrategy::Default => (1, rows - 1),
            FeatureStrategy::Full => (0, rows),
        }
    }
}

fn parse_vision(c: &Cfg) -> Result<VisionConfig> {
    let mt = c.str_or("model_type", "clip_vision_model")?;
    let kind = match mt.as_str() {
        "clip_vision_model" => VisionKind::Clip,
        "siglip_vision_model" => VisionKind::Siglip,
        other => {
            return Err(c.err(
                "model_type",
                format!(
                "`{other}` is not supported (supported: clip_vision_model, siglip_vision_model)"
            ),
            ))
        }
    };
    let (dh, di, dn, dl, dimg, dp, dact) = match kind {
        VisionKind::Clip => (768, 3072, 12, 12, 224, 32, "quick_gelu"),
        VisionKind::Siglip => (768, 3072, 12, 12, 224, 16, "gelu_pytorch_tanh"),
    };
    let act_name = c.str_or("hidden_act", dact)?;
    let act = Activation::from_hf(&act_name).ok_or_else(|| {
        c.err("hidden_act", format!("`{act_name}` is not supported (supported: gelu, gelu_pytorch_tanh, quick_gelu, silu)"))
    })?;
    let v = VisionConfig {
        kind,
        hidden_size: c.usize_or("hidden_size", dh)?,
        intermediate_size: c.usize_or("intermediate_size", di)?,
        num_heads: c.usize_or("num_attention_heads", dn)?,
        num_layers: c.usize_or("num_hidden_layers", dl)?,
        image_size: c.usize_or("image_size", dimg)?,
        patch_size: c.usize_or("patch_size", dp)?,
        num_channels: c.usize_or("num_channels", 3)?,
        act,
        layer_norm_eps: c.f32_or("layer_norm_eps", 1e-5)? as f32,
    };
    for (field, x) in [
        ("hidden_size", v.hidden_size),
        ("intermediate_size", v.intermediate_size),
        ("num_attention_heads", v.num_heads),
        ("image_size", v.image_size),
        ("patch_size", v.patch_size),
        ("num_channels", v.num_channels),
    ] {
        positive(c, field, x, MAX_DIM)?;
    }
    positive(c, "num_hidden_layers", v.num_layers, MAX_LAYERS)?;
    // HF's patch conv (stride = kernel = patch, no padding) drops the last image_size % patch_size
    // rows and columns (SigLIP so400m: 384 px, patch 14, uses 378); the graph crops the same way.
    if v.image_size < v.patch_size {
        return Err(c.err(
            "image_size",
            format!(
                "{} is smaller than patch_size {}",
                v.image_size, v.patch_size
            ),
        ));
    }
    if v.num_heads == 0 || v.hidden_size % v.num_heads != 0 {
        return Err(c.err(
            "num_attention_heads",
            format!(
                "{} does not divide hidden_size {}",
                v.num_heads, v.hidden_size
            ),
        ));
    }
    if v.num_positions() > MAX_DIM {
        return Err(c.err(
            "image_size",
            format!(
                "{} with patch_size {} gives {} patches (at most {MAX_DIM} are supported)",
                v.image_size,
                v.patch_size,
                v.num_patches()
            ),
        ));
    }
    Ok(v)
}

/// A text config (`text_config`, or the top level of a flat config such as a transformers 4
/// Qwen2-VL one). `tie_top`: the top-level `tie_word_embeddings`, which the text config may override.
pub(crate) fn parse_text(c: &Cfg, tie_top: Option<bool>) -> Result<TextConfig> {
    let mt = c.str_or("model_type", "llama")?;
    let kind = match mt.as_str() {
        "llama" => TextKind::Llama,
        "mistral" => TextKind::Mistral,
        // The Qwen2-VL / Qwen2.5-VL decoders are Qwen2 with M-RoPE (`mrope_section`).
        "qwen2" | "qwen2_vl" | "qwen2_vl_text" | "qwen2_5_vl" | "qwen2_5_vl_text" => TextKind::Qwen2,
        other => {
            return Err(c.err("model_type", format!(
                "`{other}` is not supported (supported: llama, mistral, qwen2, qwen2_vl_text, qwen2_5_vl_text)"
            )))
        }
    };
    let act = c.str_or("hidden_act", "silu")?;
    if act != "silu" {
        return Err(c.err(
            "hidden_act",
            format!("`{act}` is not supported (supported: silu)"),
        ));
    }
    if c.opt_bool("mlp_bias")? == Some(true) {
        return Err(c.err("mlp_bias", "true is not supported (supported: false)"));
    }
    let hidden_size = positive(c, "hidden_size", c.usize_or("hidden_size", 4096)?, MAX_DIM)?;
    let num_heads = positive(
        c,
        "num_attention_heads",
        c.usize_or("num_attention_heads", 32)?,
        MAX_DIM,
    )?;
    let num_kv_heads = positive(
        c,
        "num_key_value_heads",
        c.usize_or("num_key_value_heads", num_heads)?,
        MAX_DIM,
    )?;
    if num_heads == 0 || num_kv_heads == 0 || num_heads % num_kv_heads != 0 {
        return Err(c.err(
            "num_key_value_heads",
            format!("{num_kv_heads} does not divide num_attention_heads {num_heads}"),
        ));
    }
    let head_dim = match c.opt_u64("head_dim")? {
        Some(d) => positive(c, "head_dim", d as usize, MAX_DIM)?,
        None => positive(c, "hidden_size", hidden_size / num_heads, MAX_DIM)?,
    };
    if head_dim.saturating_mul(num_heads) > MAX_DIM {
        return Err(c.err(
            "head_dim",
            format!("{head_dim} x {num_heads} heads exceeds {MAX_DIM}"),
        ));
    }
    let num_layers = positive(
        c,
        "num_hidden_layers",
        c.usize_or("num_hidden_layers", 32)?,
        MAX_LAYERS,
    )?;
    let (rope_theta, mrope_section) = rope_theta(c, &mt, head_dim)?;
    let qkv_bias = match kind {
        TextKind::Qwen2 => true,
        _ => c.opt_bool("attention_bias")?.unwrap_or(false),
    };
    let window = c.opt_u64("sliding_window")?.map(|w| w as usize);
    let layers = layer_attention(c, kind, num_layers, window)?;
    let tie_word_embeddings = c
        .opt_bool("tie_word_embeddings")?
        .or(tie_top)
        .unwrap_or(false);
    let eos_token_ids = c.id_list("eos_token_id")?;
    let bos_token_id = match c.opt_u64("bos_token_id")? {
        Some(b) => Some(u32::try_from(b).map_err(|_| {
            c.err(
                "bos_token_id",
                format!("{b} is not a valid token id (above u32)"),
            )
        })?),
        None => None,
    };
    Ok(TextConfig {
        kind,
        hidden_size,
        intermediate_size: positive(
            c,
            "intermediate_size",
            c.usize_or("intermediate_size", 11008)?,
            MAX_DIM,
        )?,
        num_heads,
        num_kv_heads,
        head_dim,
        num_layers,
        rms_norm_eps: c.f32_or("rms_norm_eps", 1e-6)? as f32,
        rope_theta,
        vocab_size: positive(c, "vocab_size", c.usize_or("vocab_size", 32000)?, MAX_DIM)?,
        max_position_embeddings: positive(
            c,
            "max_position_embeddings",
            c.usize_or("max_position_embeddings", 4096)?,
            MAX_DIM,
        )?,
        tie_word_embeddings,
        qkv_bias,
        layers,
        eos_token_ids,
        bos_token_id,
        mrope_section,
    })
}

/// `rope_theta` at the top level (transformers 4) or under `rope_parameters` / `rope_scaling`
/// (transformers 5); only the default (unscaled) rope type is supported, and M-RoPE: the Qwen2-VL
/// decoders' `mrope_section` (transformers 4 writes `rope_scaling: {"type": "mrope", ..}`,
/// transformers 5 `rope_parameters: {"rope_type": "default", "mrope_section": ..}`; a Qwen2-VL
/// decoder without one uses transformers' default `[16, 24, 24]`).
fn rope_theta(c: &Cfg, model_type: &str, head_dim: usize) -> Result<(f32, Option<[usize; 3]>)> {
    let mut theta = c.opt_f64("rope_theta")?;
    let mut section: Option<(String, &Value)> = None;
    for key in ["rope_parameters", "rope_scaling"] {
        match c.v.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                if let Some(t) = m.get("rope_type").or_else(|| m.get("type")) {
                    let t = t.as_str().unwrap_or("?");
                    if t != "default" && t != "mrope" {
                        return Err(c.err(
                            &format!("{key}.rope_type"),
                            format!("`{t}` is not supported (supported: default, mrope)"),
                        ));
                    }
                }
                if let Some(t) = m.get("rope_theta") {
                    theta =
                        Some(t.as_f64().ok_or_else(|| {
                            c.err(&format!("{key}.rope_theta"), "must be a number")
                        })?);
                }
                if let Some(s) = m.get("mrope_section").filter(|s| !s.is_null()) {
                    section = Some((format!("{key}.mrope_section"), s));
                }
            }
            Some(other) => return Err(c.err(key, format!("{other} must be an object"))),
        }
    }
    let vl = model_type.contains("_vl");
    let mrope = match section {
        Some((field, v)) => Some(mrope_section(c, &field, v, head_dim)?),
        None if vl => Some(mrope_section(
            c,
            "rope_parameters.mrope_section",
            &serde_json::json!([16, 24, 24]),
            head_dim,
        )?),
        None => None,
    };
    Ok((theta.unwrap_or(10000.0) as f32, mrope))
}

/// Three positive section sizes (pairs per axis) adding up to `head_dim / 2`.
fn mrope_section(c: &Cfg, field: &str, v: &Value, head_dim: usize) -> Result<[usize; 3]> {
    let list: Option<Vec<usize>> = v
        .as_array()
        .and_then(|a| a.iter().map(|x| x.as_u64().map(|x| x as usize)).collect());
    match list.as_deref() {
        Some(&[t, h, w]) if t > 0 && h > 0 && w > 0 && t + h + w == head_dim / 2 => Ok([t, h, w]),
        Some(&[t, h, w]) if t > 0 && h > 0 && w > 0 => Err(c.err(field, format!(
            "[{t}, {h}, {w}] adds up to {} frequency pairs, head_dim {head_dim} has {} (the default [16, 24, 24] fits head_dim 128)",
            t + h + w,
            head_dim / 2
        ))),
        _ => Err(c.err(field, format!("{v} must be three positive integers (temporal, height, width pairs)"))),
    }
}

fn layer_attention(
    c: &Cfg,
    kind: TextKind,
    n: usize,
    window: Option<usize>,
) -> Result<Vec<LayerAttention>> {
    let need_window = |field: &str| -> Result<usize> {
        match window {
            Some(w) if w > 0 => Ok(w),
            _ => Err(c.err(field, "sliding attention needs a positive `sliding_window`")),
        }
    };
    if let Some(Value::Array(types)) = c.v.get("layer_types") {
        if types.len() != n {
            return Err(c.err(
                "layer_types",
                format!("{} entries for {n} layers", types.len()),
            ));
        }
        return types
            .iter()
            .map(|t| match t.as_str() {
                Some("full_attention") => Ok(LayerAttention::Full),
                Some("sliding_attention") => {
                    Ok(LayerAttention::Sliding(need_window("layer_types")?))
                }
                other => Err(c.err(
                    "layer_types",
                    format!(
                        "{other:?} is not supported (supported: full_attention, sliding_attention)"
                    ),
                )),
            })
            .collect();
    }
    Ok(match kind {
        TextKind::Mistral => match window {
            Some(w) if w > 0 => vec![LayerAttention::Sliding(w); n],
            _ => vec![LayerAttention::Full; n],
        },
        TextKind::Qwen2 if c.opt_bool("use_sliding_window")? == Some(true) => {
            let w = need_window("sliding_window")?;
            let first = c.usize_or("max_window_layers", n)?;
            (0..n)
                .map(|i| {
                    if i >= first {
                        LayerAttention::Sliding(w)
                    } else {
                        LayerAttention::Full
                    }
                })
                .collect()
        }
        _ => vec![LayerAttention::Full; n],
    })
}

/// `x` when `1 <= x <= max`, else an error naming the field.
pub(crate) fn positive(c: &Cfg, field: &str, x: usize, max: usize) -> Result<usize> {
    if x == 0 || x > max {
        return Err(c.err(
            field,
            format!("{x} is out of range (supported: 1 ..= {max})"),
        ));
    }
    Ok(x)
}

/// A view of one JSON object with typed getters whose errors name the file and dotted field.
pub(crate) struct Cfg<'a> {
    pub(crate) v: &'a Value,
    pub(crate) file: &'a str,
    pub(crate) prefix: &'a str,
}

impl<'a> Cfg<'a> {
    pub(crate) fn err(&self, field: &str, msg: impl Into<String>) -> Error {
        Error::format(self.file, format!("{}{field}", self.prefix), msg)
    }
    pub(crate) fn sub(&self, key: &'static str) -> Result<Cfg<'a>> {
        match self.v.get(key) {
            Some(o @ Value::Object(_)) => Ok(Cfg {
                v: o,
                file: self.file,
                prefix: match key {
                    "vision_config" => "vision_config.",
                    _ => "text_config.",
                },
            }),
            _ => Err(self.err(key, "missing or not an object")),
        }
    }
    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        self.v.get(key).filter(|v| !v.is_null())
    }
    pub(crate) fn str_or(&self, key: &str, default: &str) -> Result<String> {
        match self.get(key) {
            None => Ok(default.to_string()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(o) => Err(self.err(key, format!("{o} must be a string"))),
        }
    }
    pub(crate) fn opt_u64(&self, key: &str) -> Result<Option<u64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.err(key, format!("{v} must be a non-negative integer"))),
        }
    }
    pub(crate) fn usize_or(&self, key: &str, default: usize) -> Result<usize> {
        Ok(self.opt_u64(key)?.map(|x| x as usize).unwrap_or(default))
    }
    pub(crate) fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.err(key, format!("{v} must be a number"))),
        }
    }
    pub(crate) fn f32_or(&self, key: &str, default: f64) -> Result<f64> {
        Ok(self.opt_f64(key)?.unwrap_or(default))
    }
    pub(crate) fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.err(key, format!("{v} must be true or false"))),
        }
    }
    /// An id or a list of ids (as `eos_token_id` may be).
    pub(crate) fn id_list(&self, key: &str) -> Result<Vec<u32>> {
        id_list(self.get(key))
            .ok_or_else(|| self.err(key, "must be an integer or a list of integers"))
    }
}

/// Parses `null`, an integer, or a list of integers.
pub fn id_list(v: Option<&Value>) -> Option<Vec<u32>> {
    match v {
        None | Some(Value::Null) => Some(vec![]),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|x| u32::try_from(x).ok())
            .map(|x| vec![x]),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| x.as_u64().and_then(|x| u32::try_from(x).ok()))
            .collect(),
        _ => None,
    }
}
