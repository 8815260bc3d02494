//! End-to-end workloads on the graph executor: image encode (vision tower + projector), prefill
//! of a text prompt, and greedy decode, each timed with the backend synchronised at both ends.
//!
//! Weights come from a checkpoint directory or are random values of a builtin shape
//! ([`crate::shapes::Builtin`]); both go through the same architecture builders
//! (`foveate_models::arch`), from a `CheckpointSource` or a `RandomSource`, so both paths run the
//! same model code. Two vision families: LLaVA (a CLIP / SigLIP tower and projector on a square
//! image) and Qwen2-VL / Qwen2.5-VL (the dynamic-resolution tower and merger on the builtin's image
//! size, 448x448 for a checkpoint); the text model is the Llama-family decoder either way (M-RoPE
//! for Qwen, text-only positions being the same on its three axes).

use crate::shapes::Builtin;
use crate::values;
use foveate_core::{Backend, DType, Error, Op, Result, Tensor};
use foveate_graph::{AttentionKind, Buf, Exec, KvCache, Positions, TextModel};
use foveate_models::arch::llama::Llama;
use foveate_models::arch::llava::{Llava, LlavaVision};
use foveate_models::arch::qwen2_vl::QwenVl;
use foveate_models::arch::qwen2_vl_config::{QwenVisionConfig, QwenVlConfig};
use foveate_models::arch::qwen2_vl_vision::QwenVision;
use foveate_models::arch::qwen2_vl_window::{frame_bounds, window_order, Grid};
use foveate_models::budget::{self, Dims, LoadPlan, Stored, TextDims};
use foveate_models::formats::{FormatBytes, Formats};
use foveate_models::model::{check_weight_formats, formats_for, resolve_formats};
use foveate_models::names::Part;
use foveate_models::vars::{CheckpointSource, RandomSource, Recorder, Scope, TensorSource};
use foveate_models::{Checkpoint, LlavaConfig, PixelValues};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// The image a Qwen2-VL checkpoint is timed on (height, width): 1024 patches, 256 image tokens.
pub const QWEN_IMAGE: (usize, usize) = (448, 448);

/// A vision tower, its image on the device (LLaVA) or on the host (Qwen: the patch rows are
/// reordered and uploaded by the tower, as in a request).
pub enum Vision {
    Llava {
        cfg: LlavaConfig,
        tower: LlavaVision,
        pixels: Tensor,
    },
    Qwen {
        tower: QwenVision,
        pixels: PixelValues,
    },
}

/// A model ready to time. `vision` / `text` are None for a builtin that lacks the part.
pub struct E2eModel {
    pub name: String,
    pub ex: Exec,
    pub vision: Option<Vision>,
    pub text: Option<Llama>,
    pub weight_bytes: usize,
    /// Weight bytes per stored format.
    pub weight_formats: FormatBytes,
}

/// Timings of one prefill of a batch of prompts: the ms, their caches and first generated tokens.
pub struct Prefill {
    pub ms: f64,
    pub caches: Vec<KvCache>,
    pub next: Vec<u32>,
}

/// Request `b` of a batched prefill with seed `s` has the prompt of the single prefill with seed
/// `s + b * SEED_STRIDE`.
pub const SEED_STRIDE: u64 = 7919;

/// Bytes the weights of a builtin take in `dtype` (to refuse what cannot fit before allocating).
pub fn builtin_weight_bytes(b: &Builtin, layers: Option<usize>, dtype: DType) -> usize {
    builtin_weight_formats(b, layers, Formats::uniform(dtype)).map_or(0, |f| f.total())
}

/// Bytes per stored format the weights of a builtin take under `formats` (the per-role policy of
/// `--weights`): its builders run over a [`Recorder`], so the count is the load's own.
pub fn builtin_weight_formats(
    b: &Builtin,
    layers: Option<usize>,
    formats: Formats,
) -> Result<FormatBytes> {
    let mut r = Recorder {
        entries: Vec::new(),
        formats: Some(formats),
        ..Default::default()
    };
    build_builtin(b, layers, &mut r)?;
    Ok(r.bytes_by_format())
}

/// The load plan of a builtin ([`foveate_models::budget`]): its builders run over a recorder,
/// every tensor random (generated as f32), the vision rows of its timed image.
pub fn builtin_plan(b: &Builtin, layers: Option<usize>) -> Result<LoadPlan> {
    let mut r = budget::recorder();
    let (built, text) = build_builtin(b, layers, &mut r)?;
    let (vision_rows, image_tokens) = match &built {
        Built::Llava(cfg, Some(_)) => (cfg.vision.num_positions(), cfg.feature_rows().1),
        Built::Llava(_, None) => (0, 0),
        Built::Qwen(tower, (h, w)) => {
            let rows = (h / tower.cfg.patch_size) * (w / tower.cfg.patch_size);
            (rows, rows / tower.cfg.merge_unit())
        }
    };
    Ok(LoadPlan {
        model: b.name.to_string(),
        entries: r.entries.into_iter().map(|e| (e, Stored::Random)).collect(),
        zeros: r.zeros,
        fused: r.fused,
        dims: Dims {
            text: text.map(|t| TextDims::of(&t.cfg)),
            vision_rows,
            image_tokens,
        },
        fixed_weights: None,
    })
}

/// A builtin's towers built from `src` (not yet given their inputs).
enum Built {
    Llava(LlavaConfig, Option<LlavaVision>),
    Qwen(QwenVision, (usize, usize)),
}

fn build_builtin(
    b: &Builtin,
    layers: Option<usize>,
    src: &mut dyn TensorSource,
) -> Result<(Built, Option<Llama>)> {
    if let Some(q) = b.qwen {
        let cfg = QwenVlConfig::from_json(&b.config_json(layers), b.name)?;
        let tower = QwenVision::load(src, &Scope::new(Part::Vision, ""), &cfg.vision)?;
        let text = Llama::load(src, &cfg.text)?;
        return Ok((Built::Qwen(tower, q.image), Some(text)));
    }
    let cfg = LlavaConfig::from_json(&b.config_json(layers), b.name)?;
    let vision = match b.vision {
        Some(_) => Some(LlavaVision::load(src, &cfg, cfg.vision_layers_to_run())?),
        None => None,
    };
    let text = match b.text {
        Some(_) => Some(Llama::load(src, &cfg.text)?),
        None => None,
    };
    Ok((Built::Llava(cfg, vision), text))
}

impl E2eModel {
    /// Random weights of a builtin shape; `layers` overrides the layer count of both towers.
    pub fn builtin(
        b: &Builtin,
        layers: Option<usize>,
        backend: Arc<dyn Backend>,
        dtype: DType,
        attention: AttentionKind,
    ) -> Result<Self> {
        Self::builtin_with(b, layers, backend, Formats::uniform(dtype), attention)
    }

    /// [`E2eModel::builtin`] with linear weights in the formats of `formats` (`--weights`).
    pub fn builtin_with(
        b: &Builtin,
        layers: Option<usize>,
        backend: Arc<dyn Backend>,
        formats: Formats,
        attention: AttentionKind,
    ) -> Result<Self> {
        check_weight_formats(backend.as_ref(), &formats)?;
        let ex = Exec::new(backend, formats.compute, attention).with_kv_dtype(formats.kv)?;
        let mut src =
            RandomSource::new(ex.backend.as_ref(), formats.compute, 17).with_formats(formats);
        let (built, text) = build_builtin(b, layers, &mut src)?;
        let vision = match built {
            Built::Qwen(tower, image) => Some(qwen_vision(tower, image)),
            Built::Llava(cfg, tower) => tower.map(|t| llava_vision(&ex, cfg, t)).transpose()?,
        };
        let (weight_bytes, weight_formats) = (src.bytes(), src.bytes_by_format());
        ex.backend.synchronize()?;
        Ok(E2eModel {
            name: b.name.to_string(),
            ex,
            vision,
            text,
            weight_bytes,
            weight_formats,
        })
    }

    /// A LLaVA or Qwen2-VL / Qwen2.5-VL checkpoint directory.
    pub fn load(
        dir: &Path,
        backend: Arc<dyn Backend>,
        dtype: DType,
        attention: AttentionKind,
    ) -> Result<Self> {
        Self::load_with(dir, backend, dtype, None, attention)
    }

    /// [`E2eModel::load`] with linear weights in `weights` (`--weights`; None: the compute dtype,
    /// or a quantised checkpoint's format).
    pub fn load_with(
        dir: &Path,
        backend: Arc<dyn Backend>,
        dtype: DType,
        weights: Option<DType>,
        attention: AttentionKind,
    ) -> Result<Self> {
        let ck = Checkpoint::open(dir)?;
        let formats = formats_for(backend.as_ref(), resolve_formats(&ck, dtype, weights)?);
        Self::load_checkpoint(ck, backend, formats, attention)
    }

    /// [`E2eModel::load_with`] of an opened checkpoint in `formats` (see `resolve_formats`).
    pub fn load_checkpoint(
        ck: Checkpoint,
        backend: Arc<dyn Backend>,
        formats: Formats,
        attention: AttentionKind,
    ) -> Result<Self> {
        let (dir, dtype) = (ck.dir.clone(), formats.compute);
        check_weight_formats(backend.as_ref(), &formats)?;
        let ex = Exec::new(backend, dtype, attention).with_kv_dtype(formats.kv)?;
        let mut src = CheckpointSource::new(&ck, ex.backend.as_ref(), dtype).with_formats(formats);
        let (vision, text) = if let Some(cfg) = ck.config_as::<LlavaConfig>() {
            let Llava { vision, text, .. } =
                Llava::load(&mut src, cfg, cfg.vision_layers_to_run())?;
            (llava_vision(&ex, cfg.clone(), vision)?, text)
        } else if let Some(cfg) = ck.config_as::<QwenVlConfig>() {
            let QwenVl { vision, text, .. } = QwenVl::load(&mut src, cfg)?;
            (qwen_vision(vision, QWEN_IMAGE), text)
        } else {
            return Err(Error::Msg(format!(
                "{}: foveate bench times LLaVA and Qwen2-VL checkpoints, not `{}`",
                dir.display(),
                ck.config.model_type()
            )));
        };
        let (weight_bytes, weight_formats) = (src.bytes(), src.bytes_by_format());
        ex.backend.synchronize()?;
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| dir.display().to_string());
        Ok(E2eModel {
            name,
            ex,
            vision: Some(vision),
            text: Some(text),
            weight_bytes,
            weight_formats,
        })
    }

    pub fn backend(&self) -> &dyn Backend {
        self.ex.backend.as_ref()
    }

    pub fn has_vision(&self) -> bool {
        self.vision.is_some()
    }
    pub fn has_text(&self) -> bool {
        self.text.is_some()
    }

    /// One image through the vision tower and projector (merger); returns ms (LLaVA: pixels
    /// already on the device; Qwen: the patch rows' upload included, as in a request).
    pub fn encode(&self) -> Result<f64> {
        let vision = self
            .vision
            .as_ref()
            .ok_or_else(|| Error::Msg(format!("{} has no vision tower", self.name)))?;
        self.ex.backend.synchronize()?;
        let t0 = Instant::now();
        let f = match vision {
            Vision::Llava { cfg, tower, pixels } => tower.features(&self.ex, cfg, pixels)?,
            Vision::Qwen { tower, pixels } => tower.forward(&self.ex, &[pixels])?,
        };
        self.ex.backend.synchronize()?;
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        drop(f);
        Ok(ms)
    }

    fn text(&self) -> Result<&Llama> {
        self.text
            .as_ref()
            .ok_or_else(|| Error::Msg(format!("{} has no language model", self.name)))
    }

    /// Greedy next tokens of a batch: the LM head on the last row of each of the `batch` runs of
    /// `per` rows of `h` (gathered on the device, as the runtime's batched prefill does), argmax on
    /// the device.
    fn next_tokens(&self, h: Buf, per: usize, batch: usize) -> Result<Vec<u32>> {
        let w = self.text()?;
        let l = if per == 1 || batch == 1 {
            w.logits(&self.ex, &h, batch)?
        } else {
            let d = h.dims()[2];
            let table = h.into_shape([per * batch, d])?;
            let last: Vec<u32> = (1..=batch).map(|b| (b * per - 1) as u32).collect();
            let rows = self.ex.upload_u32(&[1, batch], &last)?;
            let hl = self.ex.run(&Op::Embedding, &[&table, &rows])?;
            w.logits(&self.ex, &hl, batch)?
        };
        let id = self.ex.run(&Op::Argmax, &[&l])?;
        Ok(self.ex.backend.download(&id)?.to_u32())
    }

    /// Prefill of `prompt` random text tokens into a cache of `prompt + extra` rows, up to and
    /// including the first generated token.
    pub fn prefill(&self, prompt: usize, extra: usize, seed: u64) -> Result<Prefill> {
        self.prefill_batch(1, prompt, extra, seed)
    }

    /// Prefill of `batch` prompts of `prompt` random tokens each (request `b` has the prompt of
    /// seed `seed + b * SEED_STRIDE`) as one ragged forward (each
    /// with its own cache of `prompt + extra` rows and positions from 0), through their first
    /// generated tokens: what `eval --batch-size` does for a group of questions.
    pub fn prefill_batch(
        &self,
        batch: usize,
        prompt: usize,
        extra: usize,
        seed: u64,
    ) -> Result<Prefill> {
        let w = self.text()?;
        let batch = batch.max(1);
        let ids: Vec<u32> = (0..batch as u64)
            .flat_map(|b| values::ids(prompt, w.vocab_size(), seed + b * SEED_STRIDE))
            .collect();
        let one = Positions::linear(1, 0, prompt);
        let pos = Positions::concat(&vec![&one; batch])?;
        self.ex.backend.synchronize()?;
        let t0 = Instant::now();
        let mut caches = (0..batch)
            .map(|_| KvCache::new(&self.ex, w.kv_shape(), prompt + extra.max(1)))
            .collect::<Result<Vec<_>>>()?;
        let idt = self.ex.upload_u32(&[1, batch * prompt], &ids)?;
        let x = w.embed(&self.ex, &idt)?;
        let mut seqs: Vec<(&mut KvCache, usize)> = caches.iter_mut().map(|c| (c, prompt)).collect();
        let h = w.forward(&self.ex, x, &pos, &mut seqs)?;
        let next = self.next_tokens(h, prompt, batch)?;
        self.ex.backend.synchronize()?;
        Ok(Prefill {
            ms: t0.elapsed().as_secs_f64() * 1e3,
            caches,
            next,
        })
    }

    /// `steps` greedy decode steps of every sequence of a prefill, all sequences in one forward
    /// per step; returns ms for all of them.
    pub fn decode(&self, p: &mut Prefill, steps: usize) -> Result<f64> {
        let w = self.text()?;
        let batch = p.caches.len();
        self.ex.backend.synchronize()?;
        let t0 = Instant::now();
        let mut toks = p.next.clone();
        for _ in 0..steps {
            let idt = self.ex.upload_u32(&[1, batch], &toks)?;
            let x = w.embed(&self.ex, &idt)?;
            let each: Vec<Positions> = p
                .caches
                .iter()
                .map(|c| Positions::linear(1, c.len as u32, 1))
                .collect();
            let pos = Positions::concat(&each.iter().collect::<Vec<_>>())?;
            let mut seqs: Vec<(&mut KvCache, usize)> =
                p.caches.iter_mut().map(|c| (c, 1)).collect();
            let h = w.forward(&self.ex, x, &pos, &mut seqs)?;
            toks = self.next_tokens(h, 1, batch)?;
        }
        self.ex.backend.synchronize()?;
        p.next = toks;
        Ok(t0.elapsed().as_secs_f64() * 1e3)
    }

    /// FLOPs of one image encode (tower layers run + patch embedding + projector or merger;
    /// Qwen2.5-VL's windowed layers count only their windows' attention).
    pub fn encode_flops(&self) -> f64 {
        match &self.vision {
            None => 0.0,
            Some(Vision::Llava { cfg, .. }) => {
                let v = &cfg.vision;
                let t = v.num_positions();
                let layers = cfg.vision_layers_to_run() as f64;
                let (_, rows) = cfg.feature_rows();
                crate::flops::patch_embed(
                    1,
                    v.num_patches(),
                    v.hidden_size,
                    v.num_channels,
                    v.patch_size,
                ) + layers
                    * crate::flops::vit_layer(t, v.hidden_size, v.num_heads, v.intermediate_size)
                    + crate::flops::mlp(
                        rows,
                        v.hidden_size,
                        cfg.text.hidden_size,
                        cfg.text.hidden_size,
                    )
            }
            Some(Vision::Qwen { tower, pixels }) => qwen_encode_flops(&tower.cfg, pixels),
        }
    }
}

/// A LLaVA tower with its random square image uploaded.
fn llava_vision(ex: &Exec, cfg: LlavaConfig, tower: LlavaVision) -> Result<Vision> {
    let v = &cfg.vision;
    let n = v.num_channels * v.image_size * v.image_size;
    let pixels = ex.upload_f32(
        &[1, v.num_channels, v.image_size, v.image_size],
        &values::uniform(n, 1.0, 5),
    )?;
    Ok(Vision::Llava { cfg, tower, pixels })
}

/// A Qwen2-VL tower with random patch rows of a `(height, width)` image.
fn qwen_vision(tower: QwenVision, (height, width): (usize, usize)) -> Vision {
    let v = &tower.cfg;
    let n = (height / v.patch_size) * (width / v.patch_size) * v.row_len();
    let pixels = PixelValues {
        data: values::uniform(n, 1.0, 5),
        height,
        width,
    };
    Vision::Qwen { tower, pixels }
}

/// FLOPs of a Qwen2-VL / Qwen2.5-VL tower on one image: patch GEMM; per layer the qkv and output
/// projections, the MLP (2 GEMMs, or 3 for SwiGLU) and attention within each segment (the image,
/// or a window); the merger MLP.
pub fn qwen_encode_flops(v: &QwenVisionConfig, px: &PixelValues) -> f64 {
    use crate::flops::gemm;
    let grid = [Grid {
        t: 1,
        h: px.height / v.patch_size,
        w: px.width / v.patch_size,
    }];
    let n = grid[0].patches();
    let (e, i) = (v.width, v.intermediate);
    let pairs = |b: &[usize]| {
        b.windows(2)
            .map(|w| ((w[1] - w[0]) * (w[1] - w[0])) as f64)
            .sum::<f64>()
    };
    let full = pairs(&frame_bounds(&grid));
    let window = pairs(&window_order(&grid, v.merge, v.window_units().max(1)).1);
    let ffn = if v.kind == foveate_models::arch::qwen2_vl_config::QwenVlKind::V2 {
        2.0
    } else {
        3.0
    };
    let layers: f64 = (0..v.depth)
        .map(|li| {
            let keys = if v.windowed(li) { window } else { full };
            gemm(n, 3 * e, e) + gemm(n, e, e) + ffn * gemm(n, i, e) + 4.0 * keys * e as f64
        })
        .sum();
    let m = n / v.merge_unit();
    gemm(n, e, v.row_len())
        + layers
        + crate::flops::mlp(m, e * v.merge_unit(), e * v.merge_unit(), v.out_dim)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The batched bench path (one ragged prefill, one decode forward for all) must produce each
    /// request's tokens of a run on its own, or its tokens/s measure something else.
    #[test]
    fn batched_prefill_and_decode_give_the_single_runs_tokens() {
        let mut b = crate::shapes::builtin("qwen2-0.5b").expect("builtin");
        if let Some(t) = b.text.as_mut() {
            t.vocab = 512;
        }
        let backend: Arc<dyn Backend> = Arc::new(foveate_cpu::CpuBackend::fast());
        let m = E2eModel::builtin(&b, Some(1), backend, DType::F32, AttentionKind::Flash)
            .expect("model");
        let (prompt, steps, seed) = (7, 3, 5);
        let mut batched = m
            .prefill_batch(3, prompt, steps, seed)
            .expect("batched prefill");
        let first = batched.next.clone();
        // Distinct requests (so a mix-up of rows between requests cannot pass unseen).
        assert!(
            first.iter().any(|&t| t != first[0]),
            "the three prompts give one token: {first:?}"
        );
        m.decode(&mut batched, steps).expect("batched decode");
        for r in 0..3u64 {
            let mut one = m
                .prefill(prompt, steps, seed + r * SEED_STRIDE)
                .expect("prefill");
            assert_eq!(one.next[0], first[r as usize], "first token of request {r}");
            m.decode(&mut one, steps).expect("decode");
            assert_eq!(
                one.next[0], batched.next[r as usize],
                "token after {steps} decode steps, request {r}"
            );
        }
    }
}
