//! Decoder (Llama / Mistral / Qwen2) with a KV cache: one forward over `len` new tokens at
//! positions `past..past+len`, or over a ragged batch of several sequences' new tokens (batched
//! decode: the GEMMs run once over every sequence's rows, attention per sequence).

use crate::exec::Exec;
use crate::pool::Buf;
use crate::weights::TextWeights;
use foveate_core::{Activation, AttentionSpec, Error, GemmSpec, Mask, Op, Result, RopeSpec, Tensor, TensorDesc};
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
pub fn forward(ex: &Exec, cfg: &TextConfig, w: &TextWeights, x: Buf, cache: &mut KvCache) -> Result<Buf> {
    let len = x.dims()[1];
    forward_ragged(ex, cfg, w, x, &mut [(cache, len)])
}

/// A ragged batch: `x` `[1, Σ len_i, D]` holds the new tokens of several sequences one after the
/// other, `seqs[i]` is sequence i's cache and its number of new rows. Every GEMM, norm and RoPE
/// runs once over all rows; attention runs per sequence over that sequence's own cache (a batch-1
/// launch each), and its output rows are written back in place. Returns the final-normed hidden
/// states `[1, Σ len_i, D]`, in the order of `x`.
pub fn forward_ragged(ex: &Exec, cfg: &TextConfig, w: &TextWeights, mut x: Buf, seqs: &mut [(&mut KvCache, usize)]) -> Result<Buf> {
    let total = x.dims()[1];
    if seqs.is_empty() || seqs.iter().map(|s| s.1).sum::<usize>() != total || seqs.iter().any(|s| s.1 == 0) {
        let lens: Vec<usize> = seqs.iter().map(|s| s.1).collect();
        return Err(Error::Msg(format!("ragged batch: row counts {lens:?} must be positive and add up to the {total} rows of x")));
    }
    let mut positions = Vec::with_capacity(total);
    for (i, (cache, len)) in seqs.iter().enumerate() {
        let kv_len = cache.len + len;
        if kv_len > cache.capacity {
            let who = if seqs.len() > 1 { format!("sequence {i}: ") } else { String::new() };
            return Err(Error::Msg(format!("{who}sequence of {kv_len} tokens exceeds the KV cache capacity {}", cache.capacity)));
        }
        positions.extend((cache.len..kv_len).map(|p| p as u32));
    }
    let pos = ex.upload_u32(&[1, total], &positions)?;
    let (hq, hkv, hd) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
    let rope = Op::Rope(RopeSpec { theta: cfg.rope_theta, rotary_dim: None });
    let eps = cfg.rms_norm_eps;
    for (li, l) in w.layers.iter().enumerate() {
        let h = ex.run(&Op::RmsNorm { eps }, &[&x, &l.in_norm])?;
        let q = proj(ex, &h, &l.q)?.into_shape([1, total, hq, hd])?;
        let q = ex.run(&rope, &[&q, &pos])?;
        let k = proj(ex, &h, &l.k)?.into_shape([1, total, hkv, hd])?;
        let k = ex.run(&rope, &[&k, &pos])?;
        let v = proj(ex, &h, &l.v)?.into_shape([1, total, hkv, hd])?;
        drop(h);
        let mask = match cfg.layers[li] {
            LayerAttention::Full => Mask::Causal,
            LayerAttention::Sliding(window) => Mask::SlidingWindow { window },
        };
        let a = if let [(cache, len)] = seqs {
            attend(ex, cfg, li, &mask, cache, &q, &k, &v)?.into_shape([1, *len, hq * hd])?
        } else {
            let out = ex.pool.alloc(&TensorDesc::new(ex.dtype, vec![1, total, hq, hd]))?;
            let mut start = 0;
            for (cache, len) in seqs.iter() {
                let rows = |t: &Tensor| ex.run(&Op::Slice { axis: 1, start, len: *len }, &[t]);
                let (qi, ki, vi) = (rows(&q)?, rows(&k)?, rows(&v)?);
                let ai = attend(ex, cfg, li, &mask, cache, &qi, &ki, &vi)?;
                // KvAppend as a row scatter: rows start..start+len of `out`.
                ex.kv_append(&out, &ai, start)?;
                start += len;
            }
            out.into_shape([1, total, hq * hd])?
        };
        drop((q, k, v));
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
    for (cache, len) in seqs.iter_mut() {
        cache.len += *len;
    }
    ex.run(&Op::RmsNorm { eps }, &[&x, &w.norm])
}

/// Appends one sequence's new k, v `[1, len, Hkv, D]` to layer `li` of its cache (at rows
/// `cache.len..`) and attends q `[1, len, Hq, D]` over the cache; returns `[1, len, Hq, D]`.
#[allow(clippy::too_many_arguments)]
fn attend(ex: &Exec, cfg: &TextConfig, li: usize, mask: &Mask, cache: &KvCache, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Buf> {
    let (len, past) = (q.dims()[1], cache.len);
    ex.kv_append(&cache.k[li], k, past)?;
    ex.kv_append(&cache.v[li], v, past)?;
    let mut spec = AttentionSpec::new(1, cfg.num_heads, cfg.num_kv_heads, len, past + len, cfg.head_dim, mask.clone());
    spec.kv_capacity = cache.capacity;
    ex.attention(spec, q, &cache.k[li], &cache.v[li])
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
