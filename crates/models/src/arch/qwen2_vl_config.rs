//! `config.json` of `Qwen2VLForConditionalGeneration` (`model_type` `qwen2_vl`) and
//! `Qwen2_5_VLForConditionalGeneration` (`qwen2_5_vl`), as transformers 5 writes it (`text_config`
//! and `vision_config` nested) or as the hub checkpoints have it (transformers 4: the text fields
//! at the top level, `rope_scaling: {"type": "mrope", "mrope_section": ..}`). Field names and
//! defaults as transformers' `configuration_qwen2_vl.py` / `configuration_qwen2_5_vl.py`
//! (transformers 5.25.0). Every unsupported value is an error naming the file and the field.

use crate::config::{parse_text, positive, Cfg, TextConfig, MAX_DIM, MAX_LAYERS};
use foveate_core::{Activation, Error, Result};
use serde_json::Value;

/// Which of the two families.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QwenVlKind {
    /// Qwen2-VL: LayerNorm, GELU-family MLP, full attention in every layer, LayerNorm merger.
    V2,
    /// Qwen2.5-VL: RMSNorm, SwiGLU with biases, window attention except the listed layers, RMSNorm merger.
    V2_5,
}

#[derive(Clone, Debug, PartialEq)]
pub struct QwenVisionConfig {
    pub kind: QwenVlKind,
    pub depth: usize,
    /// The ViT width (`embed_dim` in Qwen2-VL, `hidden_size` in Qwen2.5-VL).
    pub width: usize,
    /// The merger's output width, the decoder's hidden size (`hidden_size` in Qwen2-VL,
    /// `out_hidden_size` in Qwen2.5-VL).
    pub out_dim: usize,
    pub num_heads: usize,
    /// MLP hidden size (`embed_dim · mlp_ratio` in Qwen2-VL, `intermediate_size` in Qwen2.5-VL).
    pub intermediate: usize,
    pub act: Activation,
    pub in_channels: usize,
    pub patch_size: usize,
    pub temporal_patch_size: usize,
    pub merge: usize,
    pub rope_theta: f32,
    /// Qwen2.5-VL: the window side in pixels (`window_size`).
    pub window_size: usize,
    /// Qwen2.5-VL: the layers with full attention (`fullatt_block_indexes`); the others attend
    /// within their window.
    pub full_attention_layers: Vec<usize>,
}

impl QwenVisionConfig {
    pub fn head_dim(&self) -> usize {
        self.width / self.num_heads
    }
    /// Values in one patch row: `C · T · P · P`.
    pub fn row_len(&self) -> usize {
        self.in_channels * self.temporal_patch_size * self.patch_size * self.patch_size
    }
    /// Patch rows per merged token.
    pub fn merge_unit(&self) -> usize {
        self.merge * self.merge
    }
    /// The window side in merged tokens (`window_size // merge // patch_size`).
    pub fn window_units(&self) -> usize {
        self.window_size / self.merge / self.patch_size
    }
    /// Does layer `li` attend within windows?
    pub fn windowed(&self, li: usize) -> bool {
        self.kind == QwenVlKind::V2_5 && !self.full_attention_layers.contains(&li)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct QwenVlConfig {
    pub kind: QwenVlKind,
    pub vision: QwenVisionConfig,
    pub text: TextConfig,
    pub image_token_id: u32,
    pub video_token_id: u32,
    pub vision_start_token_id: u32,
    pub vision_end_token_id: u32,
}

impl QwenVlConfig {
    pub fn from_json(v: &Value, file: &str) -> Result<Self> {
        let c = Cfg {
            v,
            file,
            prefix: "",
        };
        let mt = c.str_or("model_type", "")?;
        let kind = match mt.as_str() {
            "qwen2_vl" => QwenVlKind::V2,
            "qwen2_5_vl" => QwenVlKind::V2_5,
            other => {
                return Err(c.err(
                    "model_type",
                    format!("`{other}` is not supported here (supported: qwen2_vl, qwen2_5_vl)"),
                ))
            }
        };
        let tie_top = c.opt_bool("tie_word_embeddings")?;
        let text = match v.get("text_config") {
            Some(Value::Object(_)) => parse_text(&c.sub("text_config")?, tie_top)?,
            None | Some(Value::Null) => parse_text(&c, tie_top)?,
            Some(other) => return Err(c.err("text_config", format!("{other} must be an object"))),
        };
        let vision = parse_vision(&c.sub("vision_config")?, kind)?;
        if vision.out_dim != text.hidden_size {
            let field = match kind {
                QwenVlKind::V2 => "vision_config.hidden_size",
                QwenVlKind::V2_5 => "vision_config.out_hidden_size",
            };
            return Err(c.err(
                field,
                format!(
                    "{} (the merger's output) differs from the decoder's hidden_size {}",
                    vision.out_dim, text.hidden_size
                ),
            ));
        }
        let id = |key: &str, default: u32| -> Result<u32> {
            match c.opt_u64(key)? {
                Some(i) => u32::try_from(i)
                    .map_err(|_| c.err(key, format!("{i} is not a valid token id (above u32)"))),
                None => Ok(default),
            }
        };
        let cfg = QwenVlConfig {
            kind,
            vision,
            image_token_id: id("image_token_id", 151655)?,
            video_token_id: id("video_token_id", 151656)?,
            vision_start_token_id: id("vision_start_token_id", 151652)?,
            vision_end_token_id: id("vision_end_token_id", 151653)?,
            text,
        };
        for (key, t) in [
            ("image_token_id", cfg.image_token_id),
            ("vision_start_token_id", cfg.vision_start_token_id),
            ("vision_end_token_id", cfg.vision_end_token_id),
        ] {
            if t as usize >= cfg.text.vocab_size {
                return Err(c.err(
                    key,
                    format!(
                        "{t} is outside the vocabulary of {} tokens",
                        cfg.text.vocab_size
                    ),
                ));
            }
        }
        Ok(cfg)
    }
}

fn parse_vision(c: &Cfg, kind: QwenVlKind) -> Result<QwenVisionConfig> {
    let expect = match kind {
        QwenVlKind::V2 => "qwen2_vl_vision",
        QwenVlKind::V2_5 => "qwen2_5_vl_vision",
    };
    let mt = c.str_or("model_type", expect)?;
    if mt != expect {
        return Err(c.err(
            "model_type",
            format!("`{mt}` is not supported with this model_type (supported: {expect})"),
        ));
    }
    // transformers maps num_attention_heads -> num_heads and num_hidden_layers -> depth.
    let alias = |a: &str, b: &str, default: usize| -> Result<usize> {
        match c.opt_u64(a)? {
            Some(x) => Ok(x as usize),
            None => c.usize_or(b, default),
        }
    };
    let int_or_pair = |key: &str, default: usize| -> Result<usize> {
        match c.get(key) {
            None => Ok(default),
            Some(v) => match v.as_u64() {
                Some(x) => Ok(x as usize),
                None => Err(c.err(
                    key,
                    format!(
                        "{v} is not supported (supported: one integer, the same along every axis)"
                    ),
                )),
            },
        }
    };
    let depth = positive(
        c,
        "depth",
        alias("depth", "num_hidden_layers", 32)?,
        MAX_LAYERS,
    )?;
    let num_heads = positive(
        c,
        "num_heads",
        alias("num_heads", "num_attention_heads", 16)?,
        MAX_DIM,
    )?;
    let in_channels = positive(c, "in_channels", alias("in_channels", "in_chans", 3)?, 3)?;
    if in_channels != 3 {
        return Err(c.err(
            "in_channels",
            format!("{in_channels} is not supported (supported: 3, RGB)"),
        ));
    }
    let patch_size = positive(c, "patch_size", int_or_pair("patch_size", 14)?, 1024)?;
    let temporal_patch_size = positive(
        c,
        "temporal_patch_size",
        int_or_pair("temporal_patch_size", 2)?,
        64,
    )?;
    let merge = positive(
        c,
        "spatial_merge_size",
        c.usize_or("spatial_merge_size", 2)?,
        64,
    )?;
    // Qwen2-VL calls the ViT width `embed_dim` and the merger's output `hidden_size`; Qwen2.5-VL
    // calls them `hidden_size` and `out_hidden_size`.
    let (width_key, width_default, out_key, act_default) = match kind {
        QwenVlKind::V2 => ("embed_dim", 1280, "hidden_size", "quick_gelu"),
        QwenVlKind::V2_5 => ("hidden_size", 3584, "out_hidden_size", "silu"),
    };
    let width = positive(c, width_key, c.usize_or(width_key, width_default)?, MAX_DIM)?;
    let out_dim = positive(c, out_key, c.usize_or(out_key, 3584)?, MAX_DIM)?;
    if width % num_heads != 0 || (width / num_heads) % 4 != 0 {
        return Err(c.err("num_heads", format!(
            "{num_heads} heads of {width_key} {width}: the head dim must be a whole multiple of 4 (2-D rotary: a quarter per axis and half)"
        )));
    }
    let act_name = c.str_or("hidden_act", act_default)?;
    let act = Activation::from_hf(&act_name).ok_or_else(|| c.err("hidden_act", format!("`{act_name}` is not supported (supported: quick_gelu, gelu, gelu_pytorch_tanh, silu)")))?;
    let intermediate = match kind {
        QwenVlKind::V2 => {
            let ratio = c
                .get("mlp_ratio")
                .map_or(Some(4.0), |r| r.as_f64())
                .filter(|r| *r > 0.0);
            let ratio = ratio.ok_or_else(|| c.err("mlp_ratio", "must be a positive number"))?;
            (width as f64 * ratio) as usize // transformers: int(embed_dim * mlp_ratio)
        }
        QwenVlKind::V2_5 => {
            if act != Activation::Silu {
                return Err(c.err("hidden_act", format!("`{act_name}` is not supported (supported: silu: the Qwen2.5-VL MLP is SwiGLU)")));
            }
            c.usize_or("intermediate_size", 3420)?
        }
    };
    let intermediate = positive(c, "intermediate_size", intermediate, MAX_DIM)?;
    let mut rope_theta = 10000.0;
    if let Some(rp) = c.get("rope_parameters") {
        let o = rp
            .as_object()
            .ok_or_else(|| c.err("rope_parameters", format!("{rp} must be an object")))?;
        if let Some(t) = o.get("rope_type").filter(|t| !t.is_null()) {
            if t.as_str() != Some("axial") && t.as_str() != Some("default") {
                return Err(c.err(
                    "rope_parameters.rope_type",
                    format!("{t} is not supported (supported: axial)"),
                ));
            }
        }
        if let Some(t) = o.get("rope_theta").filter(|t| !t.is_null()) {
            rope_theta = t
                .as_f64()
                .filter(|t| *t > 0.0)
                .ok_or_else(|| c.err("rope_parameters.rope_theta", "must be a positive number"))?;
        }
    }
    let (window_size, full_attention_layers) = match kind {
        QwenVlKind::V2 => (0, (0..depth).collect()),
        QwenVlKind::V2_5 => {
            let window_size = positive(c, "window_size", c.usize_or("window_size", 112)?, MAX_DIM)?;
            if window_size % (patch_size * merge) != 0 {
                return Err(c.err(
                    "window_size",
                    format!(
                        "{window_size} is not a multiple of patch_size x spatial_merge_size = {}",
                        patch_size * merge
                    ),
                ));
            }
            let full: Vec<usize> = match c.get("fullatt_block_indexes") {
                None => vec![7, 15, 23, 31],
                Some(v) => v
                    .as_array()
                    .and_then(|a| {
                        a.iter()
                            .map(|x| x.as_u64().map(|x| x as usize))
                            .collect::<Option<Vec<_>>>()
                    })
                    .ok_or_else(|| {
                        c.err(
                            "fullatt_block_indexes",
                            format!("{v} must be a list of layer indexes"),
                        )
                    })?,
            };
            if let Some(bad) = full.iter().find(|&&l| l >= depth) {
                return Err(c.err(
                    "fullatt_block_indexes",
                    format!("layer {bad} is out of range for depth {depth}"),
                ));
            }
            (window_size, full)
        }
    };
    Ok(QwenVisionConfig {
        kind,
        depth,
        width,
        out_dim,
        num_heads,
        intermediate,
        act,
        in_channels,
        patch_size,
        temporal_patch_size,
        merge,
        rope_theta: rope_theta as f32,
        window_size,
        full_attention_layers,
    })
}

/// Error for a request the family cannot run: video.
pub fn video_unsupported(what: &str) -> Error {
    Error::Msg(format!(
        "{what}: video inputs are not supported (foveate runs Qwen2-VL / Qwen2.5-VL on images: one frame, \
         repeated over the temporal patch as transformers does; give an image file)"
    ))
}
