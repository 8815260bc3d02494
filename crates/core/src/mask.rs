//! Attention masks. Semantics (shared by every backend and the oracle):
//!
//! Query row `i` (0-based within the `q_len` queries) sits at absolute position
//! `q_pos = kv_len - q_len + i` (bottom-right aligned, as with a KV cache). Key `j` is visible when
//! * `None`: always;
//! * `Causal`: `j <= q_pos`;
//! * `SlidingWindow { window }`: `j <= q_pos && q_pos - j < window` (HF Mistral semantics);
//! * `BlockSparse(layout)`: the block `(i / block_q, j / block_k)` is kept in the layout **and**
//!   the layout's `base` mask (one of the three above) allows `(i, j)`.
//!
//! A query row that sees no key at all produces an output row of zeros.

use crate::{Error, Result};
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub enum Mask {
    None,
    Causal,
    SlidingWindow { window: usize },
    BlockSparse(Arc<BlockLayout>),
}

impl Mask {
    /// Is key `j` visible from query row `i`?
    pub fn allows(&self, i: usize, j: usize, q_len: usize, kv_len: usize) -> bool {
        match self {
            Mask::None => true,
            Mask::Causal | Mask::SlidingWindow { .. } => {
                let q_pos = kv_len - q_len + i;
                if j > q_pos {
                    return false;
                }
                match self {
                    Mask::SlidingWindow { window } => q_pos - j < *window,
                    _ => true,
                }
            }
            Mask::BlockSparse(l) => l.keeps(i / l.block_q, j / l.block_k) && l.base.allows(i, j, q_len, kv_len),
        }
    }

    pub fn name(&self) -> String {
        match self {
            Mask::None => "none".into(),
            Mask::Causal => "causal".into(),
            Mask::SlidingWindow { window } => format!("window{window}"),
            Mask::BlockSparse(l) => format!("sparse{}x{}:{}", l.block_q, l.block_k, l.pattern),
        }
    }

    pub fn is_causal_like(&self) -> bool {
        matches!(self, Mask::Causal | Mask::SlidingWindow { .. })
    }
}

/// How a (query block, key block) tile relates to the mask: kernels skip `Empty` tiles without
/// loading them and skip the per-element test on `Full` tiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockClass {
    Empty,
    Partial,
    Full,
}

/// A per-(query block, key block) keep table, built once per sequence shape and shared by all layers.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockLayout {
    pub block_q: usize,
    pub block_k: usize,
    pub q_blocks: usize,
    pub k_blocks: usize,
    /// Row-major `q_blocks x k_blocks`, 1 = kept.
    pub keep: Vec<u8>,
    /// Element mask applied inside kept blocks (`None`, `Causal` or `SlidingWindow`; never `BlockSparse`).
    pub base: Box<Mask>,
    /// Human-readable pattern name for reports.
    pub pattern: String,
}

impl BlockLayout {
    /// An arbitrary layout from a keep table.
    pub fn from_table(block_q: usize, block_k: usize, q_blocks: usize, k_blocks: usize, keep: Vec<u8>, base: Mask) -> Result<Self> {
        if block_q == 0 || block_k == 0 {
            return Err(Error::Msg("block layout: block sizes must be positive".into()));
        }
        if keep.len() != q_blocks * k_blocks {
            return Err(Error::Msg(format!(
                "block layout: keep table has {} entries, expected {q_blocks} x {k_blocks}",
                keep.len()
            )));
        }
        if matches!(base, Mask::BlockSparse(_)) {
            return Err(Error::Msg("block layout: base mask cannot itself be block-sparse".into()));
        }
        Ok(BlockLayout { block_q, block_k, q_blocks, k_blocks, keep, base: Box::new(base), pattern: "custom".into() })
    }

    /// Keeps every block; with `base` it is equivalent to `base` itself.
    pub fn dense(block: usize, q_len: usize, kv_len: usize, base: Mask) -> Self {
        let (qb, kb) = (q_len.div_ceil(block), kv_len.div_ceil(block));
        let mut l = Self::from_table(block, block, qb, kb, vec![1; qb * kb], base).expect("valid dense layout");
        l.pattern = "dense".into();
        l
    }

    /// Causal sliding window expressed as blocks: keeps the blocks that intersect the window,
    /// with the exact window as the element mask.
    pub fn sliding_window(block: usize, q_len: usize, kv_len: usize, window: usize) -> Self {
        let base = Mask::SlidingWindow { window };
        let mut l = Self::dense(block, q_len, kv_len, base.clone());
        for qb in 0..l.q_blocks {
            for kb in 0..l.k_blocks {
                let any = (qb * block..((qb + 1) * block).min(q_len))
                    .any(|i| (kb * block..((kb + 1) * block).min(kv_len)).any(|j| base.allows(i, j, q_len, kv_len)));
                l.keep[qb * l.k_blocks + kb] = any as u8;
            }
        }
        l.pattern = format!("window{window}");
        l
    }

    /// Longformer/BigBird-style: the first `global` key blocks and query blocks see everything,
    /// every query block sees `local` blocks on each side of its diagonal.
    pub fn global_local(block: usize, q_len: usize, kv_len: usize, global: usize, local: usize, base: Mask) -> Self {
        let mut l = Self::dense(block, q_len, kv_len, base);
        let shift = (kv_len.div_ceil(block)) as isize - (q_len.div_ceil(block)) as isize;
        for qb in 0..l.q_blocks {
            for kb in 0..l.k_blocks {
                let diag = qb as isize + shift;
                let near = (kb as isize - diag).unsigned_abs() <= local;
                let keep = kb < global || qb < global || near;
                l.keep[qb * l.k_blocks + kb] = keep as u8;
            }
        }
        l.pattern = format!("global{global}-local{local}");
        l
    }

    pub fn keeps(&self, qb: usize, kb: usize) -> bool {
        qb < self.q_blocks && kb < self.k_blocks && self.keep[qb * self.k_blocks + kb] != 0
    }

    /// Fraction of kept blocks.
    pub fn density(&self) -> f64 {
        self.keep.iter().filter(|&&k| k != 0).count() as f64 / self.keep.len().max(1) as f64
    }

    /// Classifies a tile of `block_q x block_k` elements for the given sequence shape.
    pub fn classify(&self, qb: usize, kb: usize, q_len: usize, kv_len: usize) -> BlockClass {
        if !self.keeps(qb, kb) {
            return BlockClass::Empty;
        }
        let rows = qb * self.block_q..((qb + 1) * self.block_q).min(q_len);
        let cols = kb * self.block_k..((kb + 1) * self.block_k).min(kv_len);
        let mut seen = 0usize;
        let mut total = 0usize;
        for i in rows {
            for j in cols.clone() {
                total += 1;
                seen += self.base.allows(i, j, q_len, kv_len) as usize;
            }
        }
        match seen {
            0 => BlockClass::Empty,
            s if s == total => BlockClass::Full,
            _ => BlockClass::Partial,
        }
    }

    /// Classification of every tile, row-major `q_blocks x k_blocks` (0 empty, 1 partial, 2 full):
    /// the table the GPU kernels read.
    pub fn class_table(&self, q_len: usize, kv_len: usize) -> Vec<u32> {
        let mut t = Vec::with_capacity(self.q_blocks * self.k_blocks);
        for qb in 0..self.q_blocks {
            for kb in 0..self.k_blocks {
                t.push(match self.classify(qb, kb, q_len, kv_len) {
                    BlockClass::Empty => 0,
                    BlockClass::Partial => 1,
                    BlockClass::Full => 2,
                });
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causal_is_bottom_right_aligned() {
        // 2 queries at the end of 5 keys: row 0 is position 3.
        let m = Mask::Causal;
        assert!(m.allows(0, 3, 2, 5));
        assert!(!m.allows(0, 4, 2, 5));
        assert!(m.allows(1, 4, 2, 5));
    }

    #[test]
    fn window_counts_self() {
        let m = Mask::SlidingWindow { window: 2 };
        assert!(m.allows(5, 5, 8, 8));
        assert!(m.allows(5, 4, 8, 8));
        assert!(!m.allows(5, 3, 8, 8));
    }

    #[test]
    fn sliding_window_layout_matches_element_mask() {
        let (q, k) = (37, 37);
        let l = BlockLayout::sliding_window(8, q, k, 10);
        let m = Mask::BlockSparse(Arc::new(l.clone()));
        let w = Mask::SlidingWindow { window: 10 };
        for i in 0..q {
            for j in 0..k {
                assert_eq!(m.allows(i, j, q, k), w.allows(i, j, q, k), "({i},{j})");
            }
        }
        assert!(l.density() < 0.6);
        assert_eq!(l.classify(4, 0, q, k), BlockClass::Empty);
        assert_eq!(l.classify(2, 2, q, k), BlockClass::Partial);
    }

    #[test]
    fn global_local_keeps_globals() {
        let l = BlockLayout::global_local(4, 32, 32, 1, 1, Mask::None);
        assert!(l.keeps(7, 0) && l.keeps(0, 7) && l.keeps(5, 4) && !l.keeps(5, 2));
    }
}
