//! Vision tower (CLIP / SigLIP encoder up to the feature layer) and the projector.

use crate::exec::Exec;
use crate::pool::Buf;
use crate::weights::{ProjectorWeights, VisionWeights};
use foveate_core::{Activation, AttentionSpec, GemmSpec, Mask, MlpSpec, Op, PatchEmbedSpec, Result, Tensor};
use foveate_models::config::VisionKind;
use foveate_models::LlavaConfig;

const BIAS: GemmSpec = GemmSpec { act: Activation::None, bias: true, residual: false };
const BIAS_RES: GemmSpec = GemmSpec { act: Activation::None, bias: true, residual: true };

/// `act(x w1ᵀ + b1) w2ᵀ + b2 (+ residual)`: one fused op for a GELU, two GEMMs otherwise.
#[allow(clippy::too_many_arguments)]
pub fn mlp(
    ex: &Exec,
    act: Activation,
    x: &Tensor,
    w1: &Tensor,
    b1: &Tensor,
    w2: &Tensor,
    b2: &Tensor,
    residual: Option<&Tensor>,
) -> Result<Buf> {
    if Activation::GELUS.contains(&act) {
        let spec = MlpSpec { act, residual: residual.is_some() };
        let mut ins = vec![x, w1, b1, w2, b2];
        ins.extend(residual);
        return ex.run(&Op::GeluMlp(spec), &ins);
    }
    let h = ex.run(&Op::Gemm(GemmSpec { act, bias: true, residual: false }), &[x, w1, b1])?;
    match residual {
        Some(r) => ex.run(&Op::Gemm(BIAS_RES), &[&h, w2, b2, r]),
        None => ex.run(&Op::Gemm(BIAS), &[&h, w2, b2]),
    }
}

/// Patch embedding of pixels `[B, C, H, W]` → `[B, T, E]` (CLS row first for CLIP, position
/// embedding added). Like HF's Conv2d (stride = kernel = patch, no padding), only the top-left
/// `floor(H/P)·P x floor(W/P)·P` pixels are used: the rest are cropped off on the device first.
pub fn patch_embed(ex: &Exec, cfg: &LlavaConfig, w: &VisionWeights, pixels: &Tensor) -> Result<Buf> {
    let v = &cfg.vision;
    let p = v.patch_size;
    let clip = v.kind == VisionKind::Clip;
    let spec = PatchEmbedSpec { patch: p, bias: !clip, cls: clip, pos: true };
    let (h, wd) = (pixels.dims()[2], pixels.dims()[3]);
    let mut cropped: Option<Buf> = None;
    for (axis, size) in [(2, h), (3, wd)] {
        if size % p != 0 {
            let src: &Tensor = cropped.as_deref().unwrap_or(pixels);
            cropped = Some(ex.run(&Op::Slice { axis, start: 0, len: size / p * p }, &[src])?);
        }
    }
    let mut ins: Vec<&Tensor> = vec![cropped.as_deref().unwrap_or(pixels), &w.patch_w];
    ins.extend(w.patch_b.as_ref());
    ins.extend(w.cls.as_ref());
    ins.push(&w.pos);
    ex.run(&Op::PatchEmbed(spec), &ins)
}

/// pixels `[B, C, H, W]` → projected image features `[B, N, D_text]`.
pub fn image_features(ex: &Exec, cfg: &LlavaConfig, w: &VisionWeights, p: &ProjectorWeights, pixels: &Tensor) -> Result<Buf> {
    let v = &cfg.vision;
    let b = pixels.dims()[0];
    let mut x = patch_embed(ex, cfg, w, pixels)?;
    let eps = v.layer_norm_eps;
    if let Some((g, bb)) = &w.pre_ln {
        x = ex.run(&Op::LayerNorm { eps }, &[&x, g, bb])?;
    }
    let t = v.num_positions();
    let (heads, hd) = (v.num_heads, v.head_dim());
    for l in &w.layers {
        let h = ex.run(&Op::LayerNorm { eps }, &[&x, &l.ln1.0, &l.ln1.1])?;
        let q = ex.run(&Op::Gemm(BIAS), &[&h, &l.q.0, &l.q.1])?.into_shape([b, t, heads, hd])?;
        let k = ex.run(&Op::Gemm(BIAS), &[&h, &l.k.0, &l.k.1])?.into_shape([b, t, heads, hd])?;
        let vv = ex.run(&Op::Gemm(BIAS), &[&h, &l.v.0, &l.v.1])?.into_shape([b, t, heads, hd])?;
        drop(h);
        let spec = AttentionSpec::new(b, heads, heads, t, t, hd, Mask::None);
        let a = ex.attention(spec, &q, &k, &vv)?.into_shape([b, t, heads * hd])?;
        drop((q, k, vv));
        x = ex.run(&Op::Gemm(BIAS_RES), &[&a, &l.o.0, &l.o.1, &x])?;
        let h = ex.run(&Op::LayerNorm { eps }, &[&x, &l.ln2.0, &l.ln2.1])?;
        x = mlp(ex, v.act, &h, &l.fc1.0, &l.fc1.1, &l.fc2.0, &l.fc2.1, Some(&x))?;
    }
    let (start, len) = cfg.feature_rows();
    let feats = if start == 0 && len == t { x } else { ex.run(&Op::Slice { axis: 1, start, len }, &[&x])? };
    mlp(ex, cfg.projector_act, &feats, &p.w1, &p.b1, &p.w2, &p.b2, None)
}
