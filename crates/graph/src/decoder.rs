//! Decoder (Llama / Mistral / Qwen2) with a KV cache: one forward over `len` new tokens at
//! positions `past..past+len`.

use crate::exec::Exec;
use crate::pool::Buf;
use crate::weights::TextWeights;
use foveate_core::{Activation, AttentionSpec, GemmSpec, Mask, Op, Result, RopeSpec, Tensor};
use foveate_models::{LayerAttention, TextConfig};

const PLAIN: GemmSpec = GemmSpec { act: Activation::None, bias: false, residual: false };
const BIAS: GemmSpec = GemmSpec { act: Activation::None, bias: true, residual: false };
const RES: GemmSpec = GemmSpec { act: Activation::None, bias: false, residual: true };

/// Per-layer K and V caches `[1, capacity, kv_heads, head_dim]` and the number of rows filled.
pub struct KvCache {
    pub k: Vec<Buf>,
    pub v: Vec<Buf>,
    pub capacity: usize,
    pub len: usize,
}

impl KvCache {
    pub fn new(ex: &Exec, cfg: &TextConfig, capacity: usize) -> Result<Self> {
        let desc = foveate_core::TensorDesc::new(ex.dtype, vec![1, capacity, cfg.num_kv_heads, cfg.head_dim]);
        let mut k = Vec::new();
        let mut v = Vec::new();
        for _ in 0..cfg.num_layers {
            k.push(ex.pool.alloc(&desc)?);
            v.push(ex.pool.alloc(&desc)?);
        }
        Ok(KvCache { k, v, capacity, len: 0 })
    }

    pub fn bytes(&self) -> usize {
        self.k.iter().chain(&self.v).map(|t| t.desc().size_bytes()).sum()
    }
}

fn proj(ex: &Exec, x: &Tensor, w: &(Tensor, Option<Tensor>)) -> Result<Buf> {
    match &w.1 {
        Some(b) => ex.run(&Op::Gemm(BIAS), &[x, &w.0, b]),
        None => ex.run(&Op::Gemm(PLAIN), &[x, &w.0]),
    }
}

/// Runs every decoder layer on `x` `[1, len, D]` (the embeddings of the new tokens), appending to
/// the cache; returns the final-normed hidden states `[1, len, D]`.
pub fn forward(ex: &Exec, cfg: &TextConfig, w: &TextWeights, mut x: Buf, cache: &mut KvCache) -> Result<Buf> {
    let len = x.dims()[1];
    let past = cache.len;
    let kv_len = past + len;
    if kv_len > cache.capacity {
        return Err(foveate_core::Error::Msg(format!("sequence of {kv_len} tokens exceeds the KV cache capacity {}", cache.capacity)));
    }
    let positions: Vec<u32> = (past..kv_len).map(|p| p as u32).collect();
    let pos = ex.upload_u32(&[1, len], &positions)?;
    let (hq, hkv, hd) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
    let rope = Op::Rope(RopeSpec { theta: cfg.rope_theta, rotary_dim: None });
    let eps = cfg.rms_norm_eps;
    for (li, l) in w.layers.iter().enumerate() {
        let h = ex.run(&Op::RmsNorm { eps }, &[&x, &l.in_norm])?;
        let q = proj(ex, &h, &l.q)?.into_shape([1, len, hq, hd])?;
        let q = ex.run(&rope, &[&q, &pos])?;
        let k = proj(ex, &h, &l.k)?.into_shape([1, len, hkv, hd])?;
        let k = ex.run(&rope, &[&k, &pos])?;
        let v = proj(ex, &h, &l.v)?.into_shape([1, len, hkv, hd])?;
        drop(h);
        ex.kv_append(&cache.k[li], &k, past)?;
        ex.kv_append(&cache.v[li], &v, past)?;
        drop((k, v));
        let mask = match cfg.layers[li] {
            LayerAttention::Full => Mask::Causal,
            LayerAttention::Sliding(window) => Mask::SlidingWindow { window },
        };
        let mut spec = AttentionSpec::new(1, hq, hkv, len, kv_len, hd, mask);
        spec.kv_capacity = cache.capacity;
        let a = ex.attention(spec, &q, &cache.k[li], &cache.v[li])?.into_shape([1, len, hq * hd])?;
        drop(q);
        x = ex.run(&Op::Gemm(RES), &[&a, &l.o, &x])?;
        drop(a);
        let h = ex.run(&Op::RmsNorm { eps }, &[&x, &l.post_norm])?;
        let g = ex.run(&Op::Gemm(PLAIN), &[&h, &l.gate])?;
        let u = ex.run(&Op::Gemm(PLAIN), &[&h, &l.up])?;
        drop(h);
        let s = ex.run(&Op::SwiGlu, &[&g, &u])?;
        drop((g, u));
        x = ex.run(&Op::Gemm(RES), &[&s, &l.down, &x])?;
    }
    cache.len = kv_len;
    ex.run(&Op::RmsNorm { eps }, &[&x, &w.norm])
}

/// Logits `[1, rows, V]` of the last `rows` positions of `h` `[1, len, D]`.
pub fn logits(ex: &Exec, w: &TextWeights, h: &Tensor, rows: usize) -> Result<Buf> {
    let len = h.dims()[1];
    if rows == len {
        return ex.run(&Op::Gemm(PLAIN), &[h, &w.lm_head]);
    }
    let last = ex.run(&Op::Slice { axis: 1, start: len - rows, len: rows }, &[h])?;
    ex.run(&Op::Gemm(PLAIN), &[&last, &w.lm_head])
}
