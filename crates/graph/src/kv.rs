//! The KV cache of one sequence: per layer, K and V `[1, capacity, kv_heads, head_dim]` (in
//! `Exec::kv_dtype`) from the pool, and the number of rows filled. Capacities are rounded up to
//! [`CAPACITY_STEP`] tokens so requests of nearby lengths reuse the same pooled buffers.

use crate::exec::Exec;
use crate::pool::Buf;
use foveate_core::{Result, TensorDesc};

/// KV capacities are multiples of this many tokens.
pub const CAPACITY_STEP: usize = 64;

/// The shape of one layer's K (and V) cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvShape {
    pub layers: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

pub struct KvCache {
    pub k: Vec<Buf>,
    pub v: Vec<Buf>,
    /// Rows allocated per layer (>= what was asked for).
    pub capacity: usize,
    /// Rows filled.
    pub len: usize,
}

impl KvCache {
    /// A cache for at least `tokens` rows.
    pub fn new(ex: &Exec, shape: KvShape, tokens: usize) -> Result<Self> {
        let capacity = tokens.max(1).div_ceil(CAPACITY_STEP) * CAPACITY_STEP;
        let desc = TensorDesc::new(ex.kv_dtype, vec![1, capacity, shape.kv_heads, shape.head_dim]);
        let mut k = Vec::with_capacity(shape.layers);
        let mut v = Vec::with_capacity(shape.layers);
        for _ in 0..shape.layers {
            k.push(ex.pool.alloc(&desc)?);
            v.push(ex.pool.alloc(&desc)?);
        }
        Ok(KvCache { k, v, capacity, len: 0 })
    }

    pub fn bytes(&self) -> usize {
        self.k.iter().chain(&self.v).map(|t| t.desc().size_bytes()).sum()
    }
}
