//! The Qwen2-VL / Qwen2.5-VL vision tower, as transformers' `Qwen2VisionTransformerPretrainedModel`
//! and `Qwen2_5_VisionTransformerPretrainedModel` (`modeling_qwen2_vl.py`, `modeling_qwen2_5_vl.py`,
//! transformers 5.25.0; the same computation as at commit 928b5565ecea2852ac5a41701c90589321548522):
//!
//! * patch embedding: the bias-free `Conv3d` (kernel = stride = `T x P x P`) over patch rows that
//!   already hold one patch each is one GEMM with the weight viewed as `[E, C·T·P·P]`;
//! * 2-D rotary embedding on q and k over the (row, column) patch ids ([`RopeSpec::vision`]:
//!   `head_dim/4` frequency pairs per axis);
//! * blocks: pre-norm attention (one fused `qkv` projection with bias, `proj`) and MLP. Qwen2-VL:
//!   LayerNorm (eps 1e-6) and a GELU-family MLP `fc1`/`fc2`; Qwen2.5-VL: RMSNorm (eps 1e-6) and a
//!   SwiGLU `gate_proj`/`up_proj`/`down_proj` with biases;
//! * attention: each image attends only to itself (`cu_seqlens`; one block-sparse layout over all
//!   images of a batch, [`segment_layout`]); Qwen2.5-VL's layers not in `fullatt_block_indexes`
//!   attend within windows: the patch rows are reordered window by window once, before the first
//!   layer (transformers' `permute_input_for_window_attn`, here on the host before the upload, the
//!   patch GEMM being row-wise), and the windows are a block-sparse layout of their own;
//! * the patch merger: norm (`ln_q`), `merge²` consecutive rows joined into one, `Linear`, exact
//!   GELU, `Linear` to the decoder's width; Qwen2.5-VL's merged rows are put back in image order
//!   with one row gather (`argsort(window_index)`).

use super::layers::{LayerNorm, Linear, Mlp, RmsNorm, SwiGlu};
use super::qwen2_vl_config::{QwenVisionConfig, QwenVlKind};
use super::qwen2_vl_window::{
    frame_bounds, inverse, segment_layout, vision_positions, window_order, window_rows, Grid,
};
use crate::model::PixelValues;
use crate::vars::{Role, Scope, TensorSource};
use foveate_core::{
    Activation, AttentionSpec, Error, GemmSpec, Mask, Op, Result, RopeSpec, Tensor,
};
use foveate_graph::{Buf, Exec};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The norm of a block or of the merger.
pub enum VisionNorm {
    Layer(LayerNorm),
    Rms(RmsNorm),
}

impl VisionNorm {
    fn load(
        kind: QwenVlKind,
        s: &Scope,
        src: &mut dyn TensorSource,
        name: &str,
        d: usize,
    ) -> Result<VisionNorm> {
        Ok(match kind {
            QwenVlKind::V2 => VisionNorm::Layer(LayerNorm::load(s, src, name, d, 1e-6)?),
            QwenVlKind::V2_5 => VisionNorm::Rms(RmsNorm::load(s, src, name, d, 1e-6)?),
        })
    }
    fn forward(&self, ex: &Exec, x: &Tensor) -> Result<Buf> {
        match self {
            VisionNorm::Layer(n) => n.forward(ex, x),
            VisionNorm::Rms(n) => n.forward(ex, x),
        }
    }
}

/// The feed-forward of a block.
pub enum VisionMlp {
    Gelu(Mlp),
    SwiGlu(SwiGlu),
}

pub struct VisionBlock {
    pub norm1: VisionNorm,
    pub norm2: VisionNorm,
    pub qkv: Linear,
    pub proj: Linear,
    pub mlp: VisionMlp,
}

/// Per set of image grids: the row order the tower runs in, its rotary positions and masks.
struct Plan {
    /// Processor row of each row the tower runs (window order), or None when in processor order.
    rows: Option<Vec<usize>>,
    /// Rotary positions `[2, 1, N]` (row ids, then column ids) in run order.
    pos: Vec<u32>,
    /// Each image (frame) to itself.
    full: Mask,
    /// Qwen2.5-VL's windows (the full mask for Qwen2-VL).
    window: Mask,
    /// Where each merged row went in run order (for the gather back to image order).
    unorder: Option<Vec<u32>>,
}

/// Plans kept per model (the shapes of recent requests).
const PLAN_CACHE: usize = 64;

pub struct QwenVision {
    pub cfg: QwenVisionConfig,
    /// The patch conv as a GEMM weight `[E, C·T·P·P]`.
    pub patch: Tensor,
    pub blocks: Vec<VisionBlock>,
    pub merger_norm: VisionNorm,
    pub merger: Mlp,
    plans: Mutex<HashMap<Vec<Grid>, Arc<Plan>>>,
}

impl QwenVision {
    /// The tower (`patch_embed`, `blocks.N`, `merger` under the vision part).
    pub fn load(
        src: &mut dyn TensorSource,
        s: &Scope,
        cfg: &QwenVisionConfig,
    ) -> Result<QwenVision> {
        let v = cfg;
        let (e, p, t) = (v.width, v.patch_size, v.temporal_patch_size);
        let patch = s
            .get(
                src,
                "patch_embed.proj.weight",
                &[e, v.in_channels, t, p, p],
                Role::Weight,
            )?
            .reshape([e, v.row_len()])?;
        let mut blocks = Vec::with_capacity(v.depth);
        for li in 0..v.depth {
            let b = s.pp(format!("blocks.{li}"));
            let a = b.pp("attn");
            let m = b.pp("mlp");
            let norm1 = VisionNorm::load(v.kind, &b, src, "norm1", e)?;
            let norm2 = VisionNorm::load(v.kind, &b, src, "norm2", e)?;
            let qkv = Linear::load(&a, src, "qkv", 3 * e, e, true)?;
            let proj = Linear::load(&a, src, "proj", e, e, true)?;
            let i = v.intermediate;
            let mlp = match v.kind {
                QwenVlKind::V2 => VisionMlp::Gelu(Mlp {
                    fc1: Linear::load(&m, src, "fc1", i, e, true)?,
                    fc2: Linear::load(&m, src, "fc2", e, i, true)?,
                    act: v.act,
                }),
                QwenVlKind::V2_5 => VisionMlp::SwiGlu(SwiGlu {
                    gate: Linear::load(&m, src, "gate_proj", i, e, true)?,
                    up: Linear::load(&m, src, "up_proj", i, e, true)?,
                    down: Linear::load(&m, src, "down_proj", e, i, true)?,
                }),
            };
            blocks.push(VisionBlock {
                norm1,
                norm2,
                qkv,
                proj,
                mlp,
            });
        }
        let mg = s.pp("merger");
        let merger_norm = VisionNorm::load(v.kind, &mg, src, "ln_q", e)?;
        let joined = e * v.merge_unit();
        let merger = Mlp {
            fc1: Linear::load(&mg, src, "mlp.0", joined, joined, true)?,
            fc2: Linear::load(&mg, src, "mlp.2", v.out_dim, joined, true)?,
            act: Activation::GeluErf,
        };
        Ok(QwenVision {
            cfg: cfg.clone(),
            patch,
            blocks,
            merger_norm,
            merger,
            plans: Mutex::new(HashMap::new()),
        })
    }

    /// The patch grid of preprocessed pixels (patch rows of a `height x width` image), checked
    /// against the tower's patch size, merge size and row width.
    pub fn grid(&self, px: &PixelValues) -> Result<Grid> {
        let v = &self.cfg;
        let f = v.patch_size * v.merge;
        let (gh, gw) = (px.height / v.patch_size, px.width / v.patch_size);
        if !px.height.is_multiple_of(f)
            || !px.width.is_multiple_of(f)
            || px.height == 0
            || px.width == 0
            || px.data.len() != gh * gw * v.row_len()
        {
            return Err(Error::Msg(format!(
                "pixel values of a {}x{} image ({} values) are not the patch rows this vision tower takes: sides multiples of \
                 patch_size x spatial_merge_size = {f}, {} values per patch (the Qwen2-VL image processor's output)",
                px.width,
                px.height,
                px.data.len(),
                v.row_len()
            )));
        }
        Ok(Grid { t: 1, h: gh, w: gw })
    }

    /// Merged image tokens of a grid.
    pub fn tokens(&self, g: Grid) -> usize {
        g.patches() / self.cfg.merge_unit()
    }

    fn plan(&self, grids: &[Grid]) -> Result<Arc<Plan>> {
        let mut cache = self.plans.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = cache.get(grids) {
            return Ok(p.clone());
        }
        let v = &self.cfg;
        let (hs, ws) = vision_positions(grids, v.merge);
        let full = segment_layout(&frame_bounds(grids))?;
        let plan = if v.kind == QwenVlKind::V2_5 {
            let (order, bounds) = window_order(grids, v.merge, v.window_units());
            let rows = window_rows(&order, v.merge);
            let pos = rows
                .iter()
                .map(|&r| hs[r])
                .chain(rows.iter().map(|&r| ws[r]))
                .collect();
            Plan {
                pos,
                full,
                window: segment_layout(&bounds)?,
                unorder: Some(inverse(&order)),
                rows: Some(rows),
            }
        } else {
            Plan {
                rows: None,
                pos: [hs, ws].concat(),
                window: full.clone(),
                full,
                unorder: None,
            }
        };
        if cache.len() >= PLAN_CACHE {
            cache.clear();
        }
        let plan = Arc::new(plan);
        cache.insert(grids.to_vec(), plan.clone());
        Ok(plan)
    }

    /// The patch embeddings `[1, N, E]` of the images' patch rows, in the order `rows` gives (processor order when None).
    fn embed_rows(
        &self,
        ex: &Exec,
        images: &[&PixelValues],
        rows: Option<&[usize]>,
    ) -> Result<Buf> {
        let k = self.cfg.row_len();
        let all: Vec<f32> = match images {
            [one] => one.data.clone(),
            _ => images.iter().flat_map(|p| p.data.iter().copied()).collect(),
        };
        let n = all.len() / k;
        let data = match rows {
            Some(rows) => rows
                .iter()
                .flat_map(|&r| all[r * k..(r + 1) * k].iter().copied())
                .collect(),
            None => all,
        };
        let x = ex.upload_f32(&[1, n, k], &data)?;
        ex.run(&Op::Gemm(GemmSpec::plain()), &[&x, &self.patch])
    }

    /// The patch embeddings `[1, N, E]` of one image (processor order): the first layer's input.
    pub fn embed(&self, ex: &Exec, px: &PixelValues) -> Result<Buf> {
        self.grid(px)?;
        self.embed_rows(ex, &[px], None)
    }

    /// The merged image features `[1, M, out_dim]` of all `images`, one image after another in
    /// processor order (`M` = patches / merge²): what replaces the image tokens.
    pub fn forward(&self, ex: &Exec, images: &[&PixelValues]) -> Result<Buf> {
        let v = &self.cfg;
        let grids = images
            .iter()
            .map(|p| self.grid(p))
            .collect::<Result<Vec<_>>>()?;
        let plan = self.plan(&grids)?;
        let mut x = self.embed_rows(ex, images, plan.rows.as_deref())?;
        let n = x.dims()[1];
        let (heads, hd) = (v.num_heads, v.head_dim());
        let pos = ex.upload_u32(&[2, 1, n], &plan.pos)?;
        let rope = Op::Rope(RopeSpec::vision(v.rope_theta, None, &[hd / 4, hd / 4])?);
        let third = |qkv: &Tensor, i: usize| -> Result<Buf> {
            ex.run(
                &Op::Slice {
                    axis: 2,
                    start: i,
                    len: 1,
                },
                &[qkv],
            )?
            .into_shape([1, n, heads, hd])
        };
        for (li, b) in self.blocks.iter().enumerate() {
            let h = b.norm1.forward(ex, &x)?;
            let qkv = b.qkv.forward(ex, &h)?.into_shape([1, n, 3, v.width])?;
            drop(h);
            let (q, k) = (third(&qkv, 0)?, third(&qkv, 1)?);
            let q = ex.run(&rope, &[&q, &pos])?;
            let k = ex.run(&rope, &[&k, &pos])?;
            let vv = third(&qkv, 2)?;
            drop(qkv);
            let mask = if v.windowed(li) {
                plan.window.clone()
            } else {
                plan.full.clone()
            };
            let spec = AttentionSpec::new(1, heads, heads, n, n, hd, mask);
            let a = ex
                .attention(spec, &q, &k, &vv)?
                .into_shape([1, n, v.width])?;
            drop((q, k, vv));
            x = b.proj.forward_residual(ex, &a, &x)?;
            drop(a);
            let h = b.norm2.forward(ex, &x)?;
            x = match &b.mlp {
                VisionMlp::Gelu(m) => m.forward(ex, &h, Some(&x))?,
                VisionMlp::SwiGlu(m) => m.forward_residual(ex, &h, &x)?,
            };
        }
        let m = n / v.merge_unit();
        let h = self
            .merger_norm
            .forward(ex, &x)?
            .into_shape([1, m, v.width * v.merge_unit()])?;
        drop(x);
        let merged = self.merger.forward(ex, &h, None)?;
        match &plan.unorder {
            None => Ok(merged),
            Some(unorder) => {
                let table = merged.into_shape([m, v.out_dim])?;
                let ids = ex.upload_u32(&[1, m], unorder)?;
                ex.run(&Op::Embedding, &[&table, &ids])
            }
        }
    }
}
