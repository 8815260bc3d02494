//! End-to-end workloads on the graph executor: image encode (vision tower + projector), prefill
//! of a text prompt, and greedy decode, each timed with the backend synchronised at both ends.
//!
//! Weights come from a checkpoint directory or are random values of a builtin shape
//! ([`crate::shapes::Builtin`]); both go through the same architecture builders
//! (`foveate_models::arch`), from a `CheckpointSource` or a `RandomSource`, so both paths run the
//! same model code.

use crate::shapes::Builtin;
use crate::values;
use foveate_core::{Backend, DType, Error, Op, Result, Tensor};
use foveate_graph::{AttentionKind, Exec, KvCache, Positions, TextModel};
use foveate_models::arch::llama::Llama;
use foveate_models::arch::llava::{Llava, LlavaVision};
use foveate_models::vars::{CheckpointSource, RandomSource, TensorSource};
use foveate_models::{Checkpoint, LlavaConfig};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// A model ready to time. `vision` / `text` are None for a builtin that lacks the part.
pub struct E2eModel {
    pub name: String,
    pub cfg: LlavaConfig,
    pub ex: Exec,
    pub vision: Option<LlavaVision>,
    pub text: Option<Llama>,
    pub weight_bytes: usize,
    pixels: Option<Tensor>,
}

/// Timings of one prefill: the ms and the first generated token.
pub struct Prefill {
    pub ms: f64,
    pub cache: KvCache,
    pub next: u32,
}

/// Bytes the weights of a builtin take in `dtype` (to refuse what cannot fit before allocating).
pub fn builtin_weight_bytes(b: &Builtin, layers: Option<usize>, dtype: DType) -> usize {
    let mut n = 0usize;
    if let Some(v) = b.vision {
        let l = layers.unwrap_or(v.layers);
        n += l * (4 * v.hidden * v.hidden + 2 * v.hidden * v.mlp)
            + v.tokens() * v.hidden
            + v.hidden * 3 * v.patch * v.patch;
        let dt = b.text.map_or(896, |t| t.hidden);
        n += v.hidden * dt + dt * dt;
    }
    if let Some(t) = b.text {
        let l = layers.unwrap_or(t.layers);
        let (qd, kvd) = (t.q_heads * t.head_dim, t.kv_heads * t.head_dim);
        n += l * (2 * t.hidden * qd + 2 * t.hidden * kvd + 3 * t.hidden * t.intermediate);
        n += t.vocab * t.hidden * if t.tie { 1 } else { 2 };
    }
    n * dtype.size()
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
        let cfg = LlavaConfig::from_json(&b.config_json(layers), b.name)?;
        let ex = Exec::new(backend, dtype, attention);
        let mut src = RandomSource::new(ex.backend.as_ref(), dtype, 17);
        let vision = match b.vision {
            Some(_) => Some(LlavaVision::load(&mut src, &cfg, cfg.vision_layers_to_run())?),
            None => None,
        };
        let text = match b.text {
            Some(_) => Some(Llama::load(&mut src, &cfg.text)?),
            None => None,
        };
        let weight_bytes = src.bytes();
        ex.backend.synchronize()?;
        let mut m = E2eModel { name: b.name.to_string(), cfg, ex, vision, text, weight_bytes, pixels: None };
        m.upload_pixels()?;
        Ok(m)
    }

    /// A LLaVA checkpoint directory.
    pub fn load(
        dir: &Path,
        backend: Arc<dyn Backend>,
        dtype: DType,
        attention: AttentionKind,
    ) -> Result<Self> {
        let ck = Checkpoint::open(dir)?;
        let cfg = ck
            .config_as::<LlavaConfig>()
            .ok_or_else(|| Error::Msg(format!("{}: foveate bench times LLaVA checkpoints (model_type llava), not `{}`", dir.display(), ck.config.model_type())))?
            .clone();
        let ex = Exec::new(backend, dtype, attention);
        let mut src = CheckpointSource::new(&ck, ex.backend.as_ref(), dtype);
        let Llava { vision, text, .. } = Llava::load(&mut src, &cfg, cfg.vision_layers_to_run())?;
        let weight_bytes = src.bytes();
        ex.backend.synchronize()?;
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| dir.display().to_string());
        let mut m = E2eModel { name, cfg, ex, vision: Some(vision), text: Some(text), weight_bytes, pixels: None };
        m.upload_pixels()?;
        Ok(m)
    }

    fn upload_pixels(&mut self) -> Result<()> {
        if self.vision.is_some() {
            let v = &self.cfg.vision;
            let n = v.num_channels * v.image_size * v.image_size;
            self.pixels = Some(self.ex.upload_f32(
                &[1, v.num_channels, v.image_size, v.image_size],
                &values::uniform(n, 1.0, 5),
            )?);
        }
        Ok(())
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

    /// One image through the vision tower and projector; returns ms (pixels already on the device).
    pub fn encode(&self) -> Result<f64> {
        let vision = self
            .vision
            .as_ref()
            .ok_or_else(|| Error::Msg(format!("{} has no vision tower", self.name)))?;
        let px = self
            .pixels
            .as_ref()
            .expect("pixels uploaded with the vision weights");
        self.ex.backend.synchronize()?;
        let t0 = Instant::now();
        let f = vision.features(&self.ex, &self.cfg, px)?;
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

    /// Greedy next token from the last row of `h` (LM head on that row only, argmax on the device).
    fn next_token(&self, h: &Tensor) -> Result<u32> {
        let l = self.text()?.logits(&self.ex, h, 1)?;
        let id = self.ex.run(&Op::Argmax, &[&l])?;
        Ok(self.ex.backend.download(&id)?.to_u32()[0])
    }

    /// Prefill of `prompt` random text tokens into a cache of `prompt + extra` rows, up to and
    /// including the first generated token.
    pub fn prefill(&self, prompt: usize, extra: usize, seed: u64) -> Result<Prefill> {
        let w = self.text()?;
        let ids = values::ids(prompt, w.vocab_size(), seed);
        self.ex.backend.synchronize()?;
        let t0 = Instant::now();
        let mut cache = KvCache::new(&self.ex, w.kv_shape(), prompt + extra.max(1))?;
        let idt = self.ex.upload_u32(&[1, prompt], &ids)?;
        let x = w.embed(&self.ex, &idt)?;
        let h = w.forward(&self.ex, x, &Positions::linear(1, 0, prompt), &mut [(&mut cache, prompt)])?;
        let next = self.next_token(&h)?;
        drop(h);
        self.ex.backend.synchronize()?;
        Ok(Prefill {
            ms: t0.elapsed().as_secs_f64() * 1e3,
            cache,
            next,
        })
    }

    /// `steps` greedy decode steps after a prefill; returns ms for all of them.
    pub fn decode(&self, p: &mut Prefill, steps: usize) -> Result<f64> {
        let w = self.text()?;
        self.ex.backend.synchronize()?;
        let t0 = Instant::now();
        let mut tok = p.next;
        for _ in 0..steps {
            let idt = self.ex.upload_u32(&[1, 1], &[tok])?;
            let x = w.embed(&self.ex, &idt)?;
            let pos = Positions::linear(1, p.cache.len as u32, 1);
            let h = w.forward(&self.ex, x, &pos, &mut [(&mut p.cache, 1)])?;
            tok = self.next_token(&h)?;
        }
        self.ex.backend.synchronize()?;
        p.next = tok;
        Ok(t0.elapsed().as_secs_f64() * 1e3)
    }

    /// FLOPs of one image encode (tower layers run + patch embedding + projector).
    pub fn encode_flops(&self) -> f64 {
        let v = &self.cfg.vision;
        let t = v.num_positions();
        let layers = self.cfg.vision_layers_to_run() as f64;
        let (_, rows) = self.cfg.feature_rows();
        crate::flops::patch_embed(
            1,
            v.num_patches(),
            v.hidden_size,
            v.num_channels,
            v.patch_size,
        ) + layers * crate::flops::vit_layer(t, v.hidden_size, v.num_heads, v.intermediate_size)
            + crate::flops::mlp(
                rows,
                v.hidden_size,
                self.cfg.text.hidden_size,
                self.cfg.text.hidden_size,
            )
    }
}
