//! Model shapes: the real dimensions the kernels are benchmarked on, and the builtin model names
//! of `foveate bench --model` (random weights of that shape, written as the HF config they mirror
//! so the graph executor reads them through the same parser as a real checkpoint).

use serde_json::{json, Value};

/// A ViT encoder: `tokens = (image / patch)² + cls`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VitShape {
    pub name: &'static str,
    pub image: usize,
    pub patch: usize,
    pub cls: bool,
    pub heads: usize,
    pub head_dim: usize,
    pub hidden: usize,
    pub mlp: usize,
    pub layers: usize,
    /// HF `hidden_act`.
    pub act: &'static str,
    /// HF `model_type`.
    pub model_type: &'static str,
}

impl VitShape {
    pub fn tokens(&self) -> usize {
        (self.image / self.patch).pow(2) + self.cls as usize
    }
}

/// A decoder-only language model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DecoderShape {
    pub name: &'static str,
    pub hidden: usize,
    pub q_heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub intermediate: usize,
    pub layers: usize,
    pub vocab: usize,
    pub rope_theta: f64,
    pub rms_eps: f64,
    pub tie: bool,
    /// HF `model_type` (`qwen2` carries q/k/v biases).
    pub model_type: &'static str,
}

/// CLIP ViT-B/16 at 224: 197 tokens, 12 heads of 64, hidden 768, MLP 3072.
pub const VIT_B16: VitShape = VitShape {
    name: "vit-b16",
    image: 224,
    patch: 16,
    cls: true,
    heads: 12,
    head_dim: 64,
    hidden: 768,
    mlp: 3072,
    layers: 12,
    act: "quick_gelu",
    model_type: "clip_vision_model",
};
/// CLIP ViT-L/14 at 336 (LLaVA-1.5): 577 tokens, 16 heads of 64, hidden 1024, MLP 4096.
pub const VIT_L14_336: VitShape = VitShape {
    name: "vit-l14-336",
    image: 336,
    patch: 14,
    cls: true,
    heads: 16,
    head_dim: 64,
    hidden: 1024,
    mlp: 4096,
    layers: 24,
    act: "quick_gelu",
    model_type: "clip_vision_model",
};
/// SigLIP so400m/14 at 384 (llava-interleave-qwen-0.5b): 729 tokens, 16 heads of 72, hidden 1152.
/// The stride-14 conv only sees the first 27 x 14 = 378 pixels of a 384 image, and PatchEmbed takes
/// an image that is a multiple of the patch, so the shape uses 378: the same 729 tokens and FLOPs.
pub const SIGLIP_SO400M: VitShape = VitShape {
    name: "siglip-so400m",
    image: 378,
    patch: 14,
    cls: false,
    heads: 16,
    head_dim: 72,
    hidden: 1152,
    mlp: 4304,
    layers: 27,
    act: "gelu_pytorch_tanh",
    model_type: "siglip_vision_model",
};
/// Qwen2-0.5B: hidden 896, 14 query / 2 KV heads of 64, intermediate 4864, 24 layers.
pub const QWEN2_05B: DecoderShape = DecoderShape {
    name: "qwen2-0.5b",
    hidden: 896,
    q_heads: 14,
    kv_heads: 2,
    head_dim: 64,
    intermediate: 4864,
    layers: 24,
    vocab: 151936,
    rope_theta: 1_000_000.0,
    rms_eps: 1e-6,
    tie: true,
    model_type: "qwen2",
};
/// Llama-7B (Vicuna-7B in LLaVA-1.5): hidden 4096, 32 heads of 128, intermediate 11008, 32 layers.
pub const LLAMA_7B: DecoderShape = DecoderShape {
    name: "llama-7b",
    hidden: 4096,
    q_heads: 32,
    kv_heads: 32,
    head_dim: 128,
    intermediate: 11008,
    layers: 32,
    vocab: 32064,
    rope_theta: 10_000.0,
    rms_eps: 1e-5,
    tie: false,
    model_type: "llama",
};

/// A Qwen2-VL / Qwen2.5-VL vision tower and the image it is timed on (dynamic resolution: the
/// image size sets the patch count).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QwenVitShape {
    /// HF `model_type` of the whole model: `qwen2_vl` or `qwen2_5_vl`.
    pub model_type: &'static str,
    pub depth: usize,
    pub width: usize,
    pub heads: usize,
    /// MLP hidden size (Qwen2-VL: `embed_dim · mlp_ratio`).
    pub intermediate: usize,
    pub act: &'static str,
    /// Qwen2.5-VL's window side in pixels and full-attention layers (unused for Qwen2-VL).
    pub window: usize,
    pub full_layers: &'static [usize],
    /// The (height, width) in pixels of the timed image, a multiple of 28 on each side.
    pub image: (usize, usize),
}

impl QwenVitShape {
    /// Patch rows of the image (patch 14).
    pub fn patches(&self) -> usize {
        (self.image.0 / 14) * (self.image.1 / 14)
    }
}

/// Qwen2-VL's tower (Qwen2-VL-2B/7B-Instruct): 32 layers of 1280, 16 heads of 80, quick_gelu MLP
/// 5120, full attention; timed on a 448x448 image (1024 patches, 256 image tokens).
pub const QWEN2_VL_VIT: QwenVitShape = QwenVitShape {
    model_type: "qwen2_vl",
    depth: 32,
    width: 1280,
    heads: 16,
    intermediate: 5120,
    act: "quick_gelu",
    window: 0,
    full_layers: &[],
    image: (448, 448),
};
/// Qwen2.5-VL's tower (3B/7B-Instruct): 32 layers of 1280, 16 heads of 80, SwiGLU 3420, windows
/// of 112 px (8x8 patches) except layers 7, 15, 23, 31; the same 448x448 image (16 windows).
pub const QWEN2_5_VL_VIT: QwenVitShape = QwenVitShape {
    model_type: "qwen2_5_vl",
    intermediate: 3420,
    act: "silu",
    window: 112,
    full_layers: &[7, 15, 23, 31],
    ..QWEN2_VL_VIT
};
/// Qwen2-VL-2B's decoder: hidden 1536, 12 query / 2 KV heads of 128, intermediate 8960, 28 layers,
/// M-RoPE sections [16, 24, 24].
pub const QWEN2_VL_2B_TEXT: DecoderShape = DecoderShape {
    name: "qwen2-vl-2b",
    hidden: 1536,
    q_heads: 12,
    kv_heads: 2,
    head_dim: 128,
    intermediate: 8960,
    layers: 28,
    vocab: 151936,
    rope_theta: 1_000_000.0,
    rms_eps: 1e-6,
    tie: true,
    model_type: "qwen2_vl_text",
};
/// Qwen2.5-VL-3B's decoder: hidden 2048, 16 query / 2 KV heads of 128, intermediate 11008, 36 layers.
pub const QWEN2_5_VL_3B_TEXT: DecoderShape = DecoderShape {
    name: "qwen2.5-vl-3b",
    hidden: 2048,
    q_heads: 16,
    intermediate: 11008,
    layers: 36,
    model_type: "qwen2_5_vl_text",
    ..QWEN2_VL_2B_TEXT
};

pub const VITS: [VitShape; 2] = [VIT_B16, VIT_L14_336];
pub const DECODERS: [DecoderShape; 2] = [QWEN2_05B, LLAMA_7B];

/// FlashAttention-2's forward benchmark setup (Dao-AILab/flash-attention,
/// `benchmarks/benchmark_flash_attention.py`: `bs_seqlen_vals`, `headdim_vals = [64, 128]`,
/// `dim = 2048`, `nheads = dim // headdim`, causal and not, fp16): batch x seqlen = 16k tokens.
/// GPU-only bench shapes, so a GPU's first numbers compare with FA2's published table.
pub const FA2_BS_SEQLEN: [(usize, usize); 6] = [
    (32, 512),
    (16, 1024),
    (8, 2048),
    (4, 4096),
    (2, 8192),
    (1, 16384),
];
pub const FA2_HEAD_DIMS: [usize; 2] = [64, 128];
pub const FA2_DIM: usize = 2048;

/// (batch, seqlen, heads, head_dim, causal) of every FA2 benchmark point.
pub fn fa2_points() -> Vec<(usize, usize, usize, usize, bool)> {
    let mut v = vec![];
    for causal in [false, true] {
        for hd in FA2_HEAD_DIMS {
            for (b, s) in FA2_BS_SEQLEN {
                v.push((b, s, FA2_DIM / hd, hd, causal));
            }
        }
    }
    v
}

/// Square GEMM sizes (M = N = K) of the GPU-only bench shapes, timed against the cuBLAS baseline.
pub const GPU_GEMM_SIZES: [usize; 3] = [4096, 6144, 8192];

/// A builtin model for `foveate bench --model NAME`: which parts it has and their shapes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Builtin {
    pub name: &'static str,
    pub vision: Option<VitShape>,
    pub text: Option<DecoderShape>,
    /// HF `vision_feature_layer` and `vision_feature_select_strategy`.
    pub feature_layer: i64,
    pub strategy: &'static str,
    pub about: &'static str,
    /// A Qwen2-VL-family tower (then `vision` is None and the config is that family's).
    pub qwen: Option<QwenVitShape>,
}

pub const BUILTINS: [Builtin; 7] = [
    Builtin { name: "vit-b16", vision: Some(VIT_B16), text: None, feature_layer: -1, strategy: "default",
        about: "CLIP ViT-B/16 at 224, all 12 layers, + a GELU projector to 896 (image encode only)", qwen: None },
    Builtin { name: "vit-l14-336", vision: Some(VIT_L14_336), text: None, feature_layer: -2, strategy: "default",
        about: "CLIP ViT-L/14 at 336 as in LLaVA-1.5 (23 layers) + its projector to 4096 (image encode only)", qwen: None },
    Builtin { name: "qwen2-0.5b", vision: None, text: Some(QWEN2_05B), feature_layer: -1, strategy: "full",
        about: "the Qwen2-0.5B decoder alone (prefill and decode only)", qwen: None },
    Builtin { name: "llava-qwen2-0.5b", vision: Some(SIGLIP_SO400M), text: Some(QWEN2_05B), feature_layer: -1, strategy: "full",
        about: "llava-interleave-qwen-0.5b: SigLIP so400m/14-384 + Qwen2-0.5B", qwen: None },
    Builtin { name: "llava-1.5-7b", vision: Some(VIT_L14_336), text: Some(LLAMA_7B), feature_layer: -2, strategy: "default",
        about: "llava-1.5-7b: CLIP ViT-L/14-336 + Llama-7B (Vicuna)", qwen: None },
    Builtin { name: "qwen2-vl-2b", vision: None, text: Some(QWEN2_VL_2B_TEXT), feature_layer: -1, strategy: "full",
        about: "Qwen2-VL-2B: its 32-layer tower (full attention) on a 448x448 image (256 image tokens) + the 1.5B M-RoPE decoder", qwen: Some(QWEN2_VL_VIT) },
    Builtin { name: "qwen2.5-vl-3b", vision: None, text: Some(QWEN2_5_VL_3B_TEXT), feature_layer: -1, strategy: "full",
        about: "Qwen2.5-VL-3B: its 32-layer tower (window attention, block-sparse) on a 448x448 image + the 3B M-RoPE decoder", qwen: Some(QWEN2_5_VL_VIT) },
];

pub fn builtin(name: &str) -> Option<Builtin> {
    BUILTINS.iter().copied().find(|b| b.name == name)
}

pub fn builtin_names() -> Vec<&'static str> {
    BUILTINS.iter().map(|b| b.name).collect()
}

fn vision_json(v: &VitShape) -> Value {
    json!({
        "model_type": v.model_type, "hidden_size": v.hidden, "intermediate_size": v.mlp,
        "num_attention_heads": v.heads, "num_hidden_layers": v.layers, "image_size": v.image,
        "patch_size": v.patch, "num_channels": 3, "hidden_act": v.act, "layer_norm_eps": 1e-5,
    })
}

fn text_json(t: &DecoderShape) -> Value {
    json!({
        "model_type": t.model_type, "hidden_size": t.hidden, "intermediate_size": t.intermediate,
        "num_attention_heads": t.q_heads, "num_key_value_heads": t.kv_heads, "head_dim": t.head_dim,
        "num_hidden_layers": t.layers, "vocab_size": t.vocab, "rope_theta": t.rope_theta,
        "rms_norm_eps": t.rms_eps, "tie_word_embeddings": t.tie, "hidden_act": "silu",
        "max_position_embeddings": 32768, "eos_token_id": 2, "bos_token_id": 1,
    })
}

/// The `config.json` of a Qwen2-VL / Qwen2.5-VL model of these shapes (transformers 5 layout).
fn qwen_json(q: &QwenVitShape, t: &DecoderShape, layers: Option<usize>) -> Value {
    let mut text = text_json(t);
    text["rope_parameters"] = json!({"rope_type": "default", "rope_theta": t.rope_theta, "mrope_section": [16, 24, 24]});
    text["eos_token_id"] = json!(151645);
    text["bos_token_id"] = json!(151643);
    let depth = layers.map_or(q.depth, |n| n.max(1));
    if let Some(n) = layers {
        text["num_hidden_layers"] = json!(n.max(1));
    }
    let vision = if q.model_type == "qwen2_vl" {
        json!({"model_type": "qwen2_vl_vision", "depth": depth, "embed_dim": q.width, "hidden_size": t.hidden,
               "num_heads": q.heads, "mlp_ratio": q.intermediate / q.width, "hidden_act": q.act, "patch_size": 14,
               "spatial_merge_size": 2, "temporal_patch_size": 2, "in_channels": 3})
    } else {
        let full: Vec<usize> = q.full_layers.iter().copied().filter(|&l| l < depth).collect();
        json!({"model_type": "qwen2_5_vl_vision", "depth": depth, "hidden_size": q.width, "out_hidden_size": t.hidden,
               "num_heads": q.heads, "intermediate_size": q.intermediate, "hidden_act": q.act, "patch_size": 14,
               "spatial_merge_size": 2, "temporal_patch_size": 2, "in_channels": 3, "window_size": q.window,
               "fullatt_block_indexes": full})
    };
    // The real special-token ids, or the last ids of a vocabulary cut by `--vocab`.
    let id = |real: usize, from_end: usize| if t.vocab > 151656 { real } else { t.vocab.saturating_sub(from_end) };
    json!({
        "model_type": q.model_type, "text_config": text, "vision_config": vision, "tie_word_embeddings": t.tie,
        "image_token_id": id(151655, 2), "video_token_id": id(151656, 1), "vision_start_token_id": id(151652, 4),
        "vision_end_token_id": id(151653, 3),
    })
}

impl Builtin {
    /// The `config.json` of this shape: LLaVA, or the Qwen2-VL family's when it has a Qwen tower. A
    /// part a LLaVA builtin lacks gets a one-layer stand-in (the text hidden size sets the
    /// projector's output; the runner never builds its weights).
    pub fn config_json(&self, layers: Option<usize>) -> Value {
        if let (Some(q), Some(t)) = (&self.qwen, &self.text) {
            return qwen_json(q, t, layers);
        }
        let mut vision = vision_json(&self.vision.unwrap_or(VIT_B16));
        let mut text = text_json(&self.text.unwrap_or(DecoderShape {
            layers: 1,
            vocab: 16,
            ..QWEN2_05B
        }));
        if let Some(n) = layers {
            vision["num_hidden_layers"] = json!(n.max(1));
            text["num_hidden_layers"] = json!(n.max(1));
        }
        json!({
            "model_type": "llava", "vision_config": vision, "text_config": text,
            "vision_feature_layer": self.feature_layer, "vision_feature_select_strategy": self.strategy,
            "projector_hidden_act": "gelu", "image_token_index": 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn token_counts_match_the_models() {
        assert_eq!(VIT_B16.tokens(), 197);
        assert_eq!(VIT_L14_336.tokens(), 577);
        assert_eq!(SIGLIP_SO400M.tokens(), 729);
        assert_eq!(VIT_B16.heads * VIT_B16.head_dim, VIT_B16.hidden);
    }
    #[test]
    fn builtins_parse_as_their_family_configs() {
        for b in BUILTINS.iter().filter(|b| b.qwen.is_some()) {
            let v = b.config_json(None);
            let c = foveate_models::arch::qwen2_vl_config::QwenVlConfig::from_json(&v, b.name).unwrap();
            let (q, t) = (b.qwen.unwrap(), b.text.unwrap());
            assert_eq!((c.vision.depth, c.vision.width, c.vision.intermediate), (q.depth, q.width, q.intermediate), "{}", b.name);
            assert_eq!((c.text.num_heads, c.text.num_kv_heads, c.text.head_dim, c.text.mrope_section), (t.q_heads, t.kv_heads, t.head_dim, Some([16, 24, 24])));
            assert_eq!(q.patches() % 4, 0);
        }
        for b in BUILTINS.iter().filter(|b| b.qwen.is_none()) {
            let c = foveate_models::LlavaConfig::from_json(&b.config_json(None), b.name).unwrap();
            if let Some(v) = b.vision {
                assert_eq!(c.vision.num_positions(), v.tokens(), "{}", b.name);
            }
            if let Some(t) = b.text {
                assert_eq!(
                    (c.text.num_heads, c.text.num_kv_heads, c.text.head_dim),
                    (t.q_heads, t.kv_heads, t.head_dim)
                );
            }
        }
    }
}
