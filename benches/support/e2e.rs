//! End-to-end workloads on the graph executor: image encode (vision tower + projector), prefill
//! of a text prompt, and greedy decode, each timed with the backend synchronised at both ends.
//!
//! Weights come from a checkpoint directory (`foveate_graph::weights::load`) or are random values
//! of a builtin shape ([`crate::shapes::Builtin`]), built tensor by tensor on the device in the
//! same structs the loader fills, so both paths run the same executor code.

use crate::shapes::Builtin;
use crate::values::{self, Rng};
use foveate_core::{Backend, DType, Error, Op, Result, Tensor};
use foveate_graph::decoder::{self, KvCache};
use foveate_graph::weights::{
    ProjectorWeights, TextLayer, TextWeights, VisionLayer, VisionWeights,
};
use foveate_graph::{vision, AttentionKind, Exec};
use foveate_models::{Checkpoint, LlavaConfig, VisionKind};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// A model ready to time. `vision` / `text` are None for a builtin that lacks the part.
pub struct E2eModel {
    pub name: String,
    pub cfg: LlavaConfig,
    pub ex: Exec,
    pub vision: Option<(VisionWeights, ProjectorWeights)>,
    pub text: Option<TextWeights>,
    pub weight_bytes: usize,
    pixels: Option<Tensor>,
}

/// Timings of one prefill: the ms and the first generated token.
pub struct Prefill {
    pub ms: f64,
    pub cache: KvCache,
    pub next: u32,
}

struct RandWeights<'a> {
    b: &'a dyn Backend,
    dtype: DType,
    rng: Rng,
    bytes: usize,
}

impl RandWeights<'_> {
    /// Uniform in ±scale; projections use 1/sqrt(fan_in) so activations stay O(1) through the layers.
    fn t(&mut self, shape: &[usize], scale: f32) -> Result<Tensor> {
        self.bytes += shape.iter().product::<usize>() * self.dtype.size();
        values::tensor(
            self.b,
            self.dtype,
            shape.to_vec(),
            scale,
            self.rng.next_u64(),
        )
    }
    fn w(&mut self, rows: usize, cols: usize) -> Result<Tensor> {
        self.t(&[rows, cols], 1.0 / (cols as f32).sqrt())
    }
    fn ones(&mut self, n: usize) -> Result<Tensor> {
        self.bytes += n * self.dtype.size();
        self.b
            .upload(&foveate_core::HostTensor::filled(self.dtype, vec![n], 1.0))
    }
    fn pair(&mut self, rows: usize, cols: usize) -> Result<(Tensor, Tensor)> {
        Ok((self.w(rows, cols)?, self.t(&[rows], 0.02)?))
    }
    fn norm(&mut self, d: usize) -> Result<(Tensor, Tensor)> {
        Ok((self.ones(d)?, self.t(&[d], 0.02)?))
    }
}

fn random_vision(
    r: &mut RandWeights,
    cfg: &LlavaConfig,
) -> Result<(VisionWeights, ProjectorWeights)> {
    let v = &cfg.vision;
    let (d, i) = (v.hidden_size, v.intermediate_size);
    let clip = v.kind == VisionKind::Clip;
    let patch_w = r.t(
        &[d, v.num_channels, v.patch_size, v.patch_size],
        1.0 / ((v.num_channels * v.patch_size * v.patch_size) as f32).sqrt(),
    )?;
    let patch_b = if clip { None } else { Some(r.t(&[d], 0.02)?) };
    let cls = if clip { Some(r.t(&[d], 0.5)?) } else { None };
    let pos = r.t(&[v.num_positions(), d], 0.1)?;
    let pre_ln = if clip { Some(r.norm(d)?) } else { None };
    let mut layers = Vec::new();
    for _ in 0..cfg.vision_layers_to_run() {
        layers.push(VisionLayer {
            ln1: r.norm(d)?,
            ln2: r.norm(d)?,
            q: r.pair(d, d)?,
            k: r.pair(d, d)?,
            v: r.pair(d, d)?,
            o: r.pair(d, d)?,
            fc1: r.pair(i, d)?,
            fc2: r.pair(d, i)?,
        });
    }
    let dt = cfg.text.hidden_size;
    let (w1, b1) = r.pair(dt, d)?;
    let (w2, b2) = r.pair(dt, dt)?;
    Ok((
        VisionWeights {
            patch_w,
            patch_b,
            cls,
            pos,
            pre_ln,
            layers,
        },
        ProjectorWeights { w1, b1, w2, b2 },
    ))
}

fn random_text(r: &mut RandWeights, cfg: &LlavaConfig) -> Result<TextWeights> {
    let t = &cfg.text;
    let (d, qd, kvd, ti) = (
        t.hidden_size,
        t.num_heads * t.head_dim,
        t.num_kv_heads * t.head_dim,
        t.intermediate_size,
    );
    let embed = r.t(&[t.vocab_size, d], 1.0)?;
    let mut layers = Vec::new();
    for _ in 0..t.num_layers {
        let proj = |r: &mut RandWeights, rows: usize| -> Result<(Tensor, Option<Tensor>)> {
            Ok((
                r.w(rows, d)?,
                if t.qkv_bias {
                    Some(r.t(&[rows], 0.02)?)
                } else {
                    None
                },
            ))
        };
        let q = proj(r, qd)?;
        let k = proj(r, kvd)?;
        let v = proj(r, kvd)?;
        layers.push(TextLayer {
            in_norm: r.ones(d)?,
            q,
            k,
            v,
            o: r.w(d, qd)?,
            post_norm: r.ones(d)?,
            gate: r.w(ti, d)?,
            up: r.w(ti, d)?,
            down: r.w(d, ti)?,
        });
    }
    let norm = r.ones(d)?;
    let lm_head = if t.tie_word_embeddings {
        embed.clone()
    } else {
        r.w(t.vocab_size, d)?
    };
    Ok(TextWeights {
        embed,
        layers,
        norm,
        lm_head,
    })
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
        let mut r = RandWeights {
            b: ex.backend.as_ref(),
            dtype,
            rng: Rng::new(17),
            bytes: 0,
        };
        let vision = if b.vision.is_some() {
            Some(random_vision(&mut r, &cfg)?)
        } else {
            None
        };
        let text = if b.text.is_some() {
            Some(random_text(&mut r, &cfg)?)
        } else {
            None
        };
        let weight_bytes = r.bytes;
        ex.backend.synchronize()?;
        let mut m = E2eModel {
            name: b.name.to_string(),
            cfg,
            ex,
            vision,
            text,
            weight_bytes,
            pixels: None,
        };
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
        let ex = Exec::new(backend, dtype, attention);
        let w = foveate_graph::weights::load(&ck, ex.backend.as_ref(), dtype)?;
        ex.backend.synchronize()?;
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| dir.display().to_string());
        let mut m = E2eModel {
            name,
            cfg: ck.config.clone(),
            ex,
            vision: Some((w.vision, w.projector)),
            text: Some(w.text),
            weight_bytes: w.bytes,
            pixels: None,
        };
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
        let (vw, pw) = self
            .vision
            .as_ref()
            .ok_or_else(|| Error::Msg(format!("{} has no vision tower", self.name)))?;
        let px = self
            .pixels
            .as_ref()
            .expect("pixels uploaded with the vision weights");
        self.ex.backend.synchronize()?;
        let t0 = Instant::now();
        let f = vision::image_features(&self.ex, &self.cfg, vw, pw, px)?;
        self.ex.backend.synchronize()?;
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        drop(f);
        Ok(ms)
    }

    fn text(&self) -> Result<&TextWeights> {
        self.text
            .as_ref()
            .ok_or_else(|| Error::Msg(format!("{} has no language model", self.name)))
    }

    /// Greedy next token from the last row of `h` (LM head on that row only, argmax on the device).
    fn next_token(&self, h: &Tensor) -> Result<u32> {
        let l = decoder::logits(&self.ex, self.text()?, h, 1)?;
        let id = self.ex.run(&Op::Argmax, &[&l])?;
        Ok(self.ex.backend.download(&id)?.to_u32()[0])
    }

    /// Prefill of `prompt` random text tokens into a cache of `prompt + extra` rows, up to and
    /// including the first generated token.
    pub fn prefill(&self, prompt: usize, extra: usize, seed: u64) -> Result<Prefill> {
        let w = self.text()?;
        let t = &self.cfg.text;
        let ids = values::ids(prompt, t.vocab_size, seed);
        self.ex.backend.synchronize()?;
        let t0 = Instant::now();
        let mut cache = KvCache::new(&self.ex, t, prompt + extra.max(1))?;
        let idt = self.ex.upload_u32(&[1, prompt], &ids)?;
        let x = self.ex.run(&Op::Embedding, &[&w.embed, &idt])?;
        let h = decoder::forward(&self.ex, t, w, x, &mut cache)?;
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
        let t = &self.cfg.text;
        self.ex.backend.synchronize()?;
        let t0 = Instant::now();
        let mut tok = p.next;
        for _ in 0..steps {
            let idt = self.ex.upload_u32(&[1, 1], &[tok])?;
            let x = self.ex.run(&Op::Embedding, &[&w.embed, &idt])?;
            let h = decoder::forward(&self.ex, t, w, x, &mut p.cache)?;
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
