//! The FLOP and byte counts behind every throughput figure. Criterion benches set
//! `Throughput::Elements(flops)` (so "elements/s" reads FLOP/s) or `Throughput::Bytes`.

use foveate_core::{AttentionSpec, DType};

/// GEMM `[M, K] x [K, N]`: one multiply and one add per (m, n, k): 2·M·N·K.
pub fn gemm(m: usize, n: usize, k: usize) -> f64 {
    2.0 * (m * n * k) as f64
}

/// Attention: 4·B·H·Sq·Sk·D (Q·Kᵀ and P·V, 2 FLOPs each), half of it for a causal-like mask
/// (same as [`AttentionSpec::flops`]).
pub fn attention(spec: &AttentionSpec) -> f64 {
    spec.flops()
}

/// Block-sparse attention counts only the kept blocks: dense FLOPs x density.
pub fn attention_sparse(spec: &AttentionSpec, density: f64) -> f64 {
    4.0 * (spec.batch * spec.q_heads * spec.q_len * spec.kv_len * spec.head_dim) as f64 * density
}

/// Bytes of K and V a decode step reads: 2·B·Hkv·Sk·D·size (decode is memory bound).
pub fn attention_kv_bytes(spec: &AttentionSpec, dtype: DType) -> f64 {
    2.0 * (spec.batch * spec.kv_heads * spec.kv_len * spec.head_dim * dtype.size()) as f64
}

/// Two-layer MLP on M rows, D → H → O: 2·M·(D·H + H·O).
pub fn mlp(m: usize, d: usize, h: usize, o: usize) -> f64 {
    2.0 * m as f64 * (d * h + h * o) as f64
}

/// Patch embedding as a GEMM: 2·B·patches·E·(C·P·P).
pub fn patch_embed(b: usize, patches: usize, e: usize, c: usize, p: usize) -> f64 {
    gemm(b * patches, e, c * p * p)
}

/// One ViT layer on `t` tokens of width `d`, `h` heads, MLP width `m`: four D x D projections,
/// the MLP, and dense attention.
pub fn vit_layer(t: usize, d: usize, heads: usize, m: usize) -> f64 {
    4.0 * gemm(t, d, d) + mlp(t, d, m, d) + 4.0 * (heads * t * t * (d / heads)) as f64
}

/// One decoder layer on `len` new tokens after `past` cached ones (causal attention counted
/// exactly: query i sees past + i + 1 keys): q/o projections D x Hq·Dh, k/v D x Hkv·Dh,
/// SwiGLU MLP (3 GEMMs of D x I).
pub fn decoder_layer(
    len: usize,
    past: usize,
    d: usize,
    hq: usize,
    hkv: usize,
    hd: usize,
    inter: usize,
) -> f64 {
    let proj = 2.0 * gemm(len, hq * hd, d) + 2.0 * gemm(len, hkv * hd, d);
    let mlp = 3.0 * gemm(len, inter, d);
    let keys: usize = (0..len).map(|i| past + i + 1).sum();
    proj + mlp + 4.0 * (hq * keys * hd) as f64
}

/// Bytes moved by an elementwise op reading `inputs` tensors and writing one of `n` elements.
pub fn elementwise_bytes(n: usize, inputs: usize, dtype: DType) -> f64 {
    ((inputs + 1) * n * dtype.size()) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use foveate_core::Mask;
    #[test]
    fn formulas() {
        assert_eq!(gemm(2, 3, 4), 48.0);
        assert_eq!(mlp(1, 2, 3, 4), 2.0 * (6.0 + 12.0));
        let dense = AttentionSpec::new(1, 2, 2, 8, 8, 4, Mask::None);
        assert_eq!(attention(&dense), 4.0 * 2.0 * 64.0 * 4.0);
        let causal = AttentionSpec::new(1, 2, 2, 8, 8, 4, Mask::Causal);
        assert_eq!(attention(&causal), attention(&dense) / 2.0);
        assert_eq!(attention_sparse(&dense, 0.25), attention(&dense) / 4.0);
        assert_eq!(
            attention_kv_bytes(
                &AttentionSpec::new(1, 4, 2, 1, 10, 8, Mask::Causal),
                DType::F16
            ),
            2.0 * 2.0 * 10.0 * 8.0 * 2.0
        );
    }
}
