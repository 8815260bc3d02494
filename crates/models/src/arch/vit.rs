//! The ViT encoder CLIP and SigLIP share (pre-norm blocks: LayerNorm, attention with biased q/k/v/o
//! projections, LayerNorm, two-layer MLP), the patch embedding, and the [`VisionTower`] trait.

use super::layers::{LayerNorm, Linear, Mlp};
use crate::config::VisionConfig;
use crate::vars::{Role, Scope, TensorSource};
use foveate_core::{AttentionSpec, Mask, Op, PatchEmbedSpec, Result, Tensor};
use foveate_graph::{Buf, Exec};

/// A vision tower: pixels `[B, C, H, W]` to hidden states.
pub trait VisionTower: Send + Sync {
    /// The patch embeddings `[B, T, E]`: the input of the first encoder layer.
    fn embed(&self, ex: &Exec, pixels: &Tensor) -> Result<Buf>;
    /// The hidden states `[B, T, E]` after the last layer the model uses.
    fn forward(&self, ex: &Exec, pixels: &Tensor) -> Result<Buf>;
}

pub struct VitLayer {
    pub ln1: LayerNorm,
    pub ln2: LayerNorm,
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
    pub mlp: Mlp,
}

/// The encoder layers `0..layers` under `encoder.layers.N.` of `s`.
pub fn load_layers(
    s: &Scope,
    src: &mut dyn TensorSource,
    v: &VisionConfig,
    layers: usize,
) -> Result<Vec<VitLayer>> {
    let (d, i, eps) = (v.hidden_size, v.intermediate_size, v.layer_norm_eps);
    (0..layers)
        .map(|li| {
            let l = s.pp(format!("encoder.layers.{li}"));
            let a = l.pp("self_attn");
            let m = l.pp("mlp");
            Ok(VitLayer {
                ln1: LayerNorm::load(&l, src, "layer_norm1", d, eps)?,
                ln2: LayerNorm::load(&l, src, "layer_norm2", d, eps)?,
                q: Linear::load(&a, src, "q_proj", d, d, true)?,
                k: Linear::load(&a, src, "k_proj", d, d, true)?,
                v: Linear::load(&a, src, "v_proj", d, d, true)?,
                o: Linear::load(&a, src, "out_proj", d, d, true)?,
                mlp: Mlp {
                    fc1: Linear::load(&m, src, "fc1", i, d, true)?,
                    fc2: Linear::load(&m, src, "fc2", d, i, true)?,
                    act: v.act,
                },
            })
        })
        .collect()
}

/// Runs `layers` on `x` `[B, T, E]` (full attention).
pub fn encode(ex: &Exec, v: &VisionConfig, layers: &[VitLayer], mut x: Buf) -> Result<Buf> {
    let (b, t) = (x.dims()[0], x.dims()[1]);
    let (heads, hd) = (v.num_heads, v.head_dim());
    for l in layers {
        let h = l.ln1.forward(ex, &x)?;
        let q = l.q.forward(ex, &h)?.into_shape([b, t, heads, hd])?;
        let k = l.k.forward(ex, &h)?.into_shape([b, t, heads, hd])?;
        let vv = l.v.forward(ex, &h)?.into_shape([b, t, heads, hd])?;
        drop(h);
        let spec = AttentionSpec::new(b, heads, heads, t, t, hd, Mask::None);
        let a = ex
            .attention(spec, &q, &k, &vv)?
            .into_shape([b, t, heads * hd])?;
        drop((q, k, vv));
        x = l.o.forward_residual(ex, &a, &x)?;
        let h = l.ln2.forward(ex, &x)?;
        x = l.mlp.forward(ex, &h, Some(&x))?;
    }
    Ok(x)
}

/// The patch conv and the embeddings added to its rows.
pub struct PatchEmbedding {
    pub w: Tensor,
    pub b: Option<Tensor>,
    pub cls: Option<Tensor>,
    pub pos: Tensor,
    pub patch: usize,
}

impl PatchEmbedding {
    /// `embeddings.patch_embedding.weight` (+ `.bias`), `embeddings.class_embedding` when `cls`,
    /// `embeddings.position_embedding.weight`.
    pub fn load(
        s: &Scope,
        src: &mut dyn TensorSource,
        v: &VisionConfig,
        bias: bool,
        cls: bool,
    ) -> Result<PatchEmbedding> {
        let (d, p) = (v.hidden_size, v.patch_size);
        let e = s.pp("embeddings");
        let w = e.get(
            src,
            "patch_embedding.weight",
            &[d, v.num_channels, p, p],
            Role::Weight,
        )?;
        let b = if bias {
            Some(e.get(src, "patch_embedding.bias", &[d], Role::Bias)?)
        } else {
            None
        };
        let cls = if cls {
            Some(e.get(src, "class_embedding", &[d], Role::Class)?)
        } else {
            None
        };
        let pos = e.get(
            src,
            "position_embedding.weight",
            &[v.num_positions(), d],
            Role::Position,
        )?;
        Ok(PatchEmbedding {
            w,
            b,
            cls,
            pos,
            patch: p,
        })
    }

    /// Pixels `[B, C, H, W]` → `[B, T, E]` (CLS row first when there is one, position embedding
    /// added). Like HF's Conv2d (stride = kernel = patch, no padding), only the top-left
    /// `floor(H/P)·P x floor(W/P)·P` pixels are used: the rest are cropped off on the device first.
    pub fn forward(&self, ex: &Exec, pixels: &Tensor) -> Result<Buf> {
        let p = self.patch;
        let spec = PatchEmbedSpec {
            patch: p,
            bias: self.b.is_some(),
            cls: self.cls.is_some(),
            pos: true,
        };
        let (h, wd) = (pixels.dims()[2], pixels.dims()[3]);
        let mut cropped: Option<Buf> = None;
        for (axis, size) in [(2, h), (3, wd)] {
            if size % p != 0 {
                let src: &Tensor = cropped.as_deref().unwrap_or(pixels);
                cropped = Some(ex.run(
                    &Op::Slice {
                        axis,
                        start: 0,
                        len: size / p * p,
                    },
                    &[src],
                )?);
            }
        }
        let mut ins: Vec<&Tensor> = vec![cropped.as_deref().unwrap_or(pixels), &self.w];
        ins.extend(self.b.as_ref());
        ins.extend(self.cls.as_ref());
        ins.push(&self.pos);
        ex.run(&Op::PatchEmbed(spec), &ins)
    }
}
