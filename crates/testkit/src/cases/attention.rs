//! Attention cases: head dims 64/72/80/96/128, GQA ratios 1/4/7, q_len 1, kv_len 1, q_len < kv_len
//! (decode and chunked prefill), kv_capacity > kv_len, and every mask: none, causal, sliding window
//! smaller and larger than the sequence, block-sparse (window, global+local, an arbitrary layout
//! with an empty query-block row).

use super::Ctx;
use crate::Case;
use foveate_core::{AttentionSpec, BlockLayout, Mask, Op};
use std::sync::Arc;

#[derive(Clone, Copy)]
pub(super) enum M {
    None,
    Causal,
    Window(usize),
    /// Block-sparse sliding window: block, window.
    SparseWindow(usize, usize),
    /// Block-sparse global + local: block, global, local, causal base.
    GlobalLocal(usize, usize, usize, bool),
    /// An arbitrary layout (square blocks of this size) whose second query-block row keeps
    /// nothing; with base `None` every kept tile is Full.
    Custom(usize),
}

fn mask(m: M, q: usize, k: usize) -> Mask {
    match m {
        M::None => Mask::None,
        M::Causal => Mask::Causal,
        M::Window(w) => Mask::SlidingWindow { window: w },
        M::SparseWindow(b, w) => Mask::BlockSparse(Arc::new(BlockLayout::sliding_window(b, q, k, w))),
        M::GlobalLocal(b, g, l, causal) => {
            let base = if causal { Mask::Causal } else { Mask::None };
            Mask::BlockSparse(Arc::new(BlockLayout::global_local(b, q, k, g, l, base)))
        }
        M::Custom(b) => {
            let (qb, kb) = (q.div_ceil(b), k.div_ceil(b));
            // Scattered keep pattern; query-block row 1 is empty.
            let keep: Vec<u8> = (0..qb * kb).map(|i| if i / kb == 1 { 0 } else { ((i * 7 + 3) % 3 != 0) as u8 }).collect();
            let mut l = BlockLayout::from_table(b, b, qb, kb, keep, Mask::None).expect("valid layout");
            l.pattern = "custom-empty-row".into();
            Mask::BlockSparse(Arc::new(l))
        }
    }
}

/// (batch, q_heads, kv_heads, q_len, kv_len, kv_capacity, head_dim, mask)
pub(super) type Shape = (usize, usize, usize, usize, usize, usize, usize, M);

const FULL: &[Shape] = &[
    (1, 4, 4, 1, 1, 1, 64, M::None),
    (2, 7, 1, 1, 33, 33, 64, M::Causal),
    (1, 8, 2, 1, 77, 96, 128, M::Causal),
    (3, 7, 7, 1, 300, 300, 64, M::None),
    (1, 4, 1, 37, 37, 37, 80, M::Causal),
    (2, 2, 2, 17, 49, 64, 72, M::Causal),
    (1, 14, 2, 19, 19, 19, 96, M::None),
    (1, 3, 3, 50, 50, 50, 64, M::None),
    (2, 6, 3, 9, 9, 9, 128, M::Causal),
    (1, 4, 4, 40, 40, 40, 128, M::Window(9)),
    (1, 2, 1, 21, 21, 21, 64, M::Window(64)),
    (1, 4, 1, 1, 45, 64, 96, M::Window(16)),
    (1, 2, 2, 13, 30, 30, 80, M::Window(7)),
    (1, 2, 1, 37, 37, 37, 64, M::SparseWindow(8, 10)),
    (1, 7, 1, 1, 60, 64, 128, M::SparseWindow(16, 20)),
    (1, 4, 4, 48, 48, 48, 80, M::GlobalLocal(8, 1, 1, false)),
    (1, 2, 1, 40, 40, 40, 72, M::GlobalLocal(8, 1, 1, true)),
    (1, 2, 2, 22, 37, 37, 64, M::Custom(8)),
];

const SMALL: &[Shape] = &[
    (1, 2, 2, 1, 1, 1, 64, M::None),
    (1, 7, 1, 1, 19, 24, 64, M::Causal),
    (1, 4, 1, 11, 11, 11, 128, M::Causal),
    (1, 2, 2, 5, 23, 23, 64, M::Causal),
    (1, 1, 1, 1, 7, 7, 80, M::Causal),
    (1, 2, 1, 3, 9, 9, 96, M::None),
    (1, 1, 1, 6, 6, 8, 72, M::None),
    (1, 2, 2, 16, 16, 16, 64, M::None),
    (1, 2, 1, 20, 20, 20, 64, M::Window(5)),
    (1, 2, 1, 9, 9, 9, 128, M::Window(32)),
    (1, 2, 1, 20, 20, 20, 64, M::SparseWindow(8, 6)),
    (1, 2, 2, 24, 24, 24, 64, M::GlobalLocal(8, 1, 0, true)),
    (1, 2, 2, 14, 21, 21, 64, M::Custom(8)),
];

pub(crate) fn attention(ctx: &Ctx) -> Vec<Case> {
    let shapes = if ctx.full() { FULL } else { SMALL };
    shapes.iter().map(|&s| case(ctx, s)).collect()
}

/// One attention case of `shape`, with seeded random q, k, v.
pub(super) fn case(ctx: &Ctx, (b, hq, hkv, sq, sk, cap, d, m): Shape) -> Case {
    let mut spec = AttentionSpec::new(b, hq, hkv, sq, sk, d, mask(m, sq, sk));
    spec.kv_capacity = cap;
    let mut label = format!("b{b} hq{hq} hkv{hkv} sq{sq} sk{sk} d{d}");
    if cap != sk {
        label.push_str(&format!(" cap{cap}"));
    }
    let op = Op::Attention(spec);
    let mut g = ctx.gen(&op, &label);
    // q, k in [-2, 2] give scores of std ~1.3 after scaling: peaked enough that a mask
    // or GQA mapping error moves the output well beyond bf16 tolerance.
    let q = g.tensor(ctx.dtype, [b, sq, hq, d], -2.0, 2.0);
    let k = g.tensor(ctx.dtype, [b, cap, hkv, d], -2.0, 2.0);
    let v = g.tensor(ctx.dtype, [b, cap, hkv, d], -1.0, 1.0);
    ctx.case(op, vec![q, k, v], label)
}
