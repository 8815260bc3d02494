//! The device-vs-device matrix's cases: attention and GEMM at the sizes where GPU kernels tile
//! (more than one 64-row query tile, more than one KV tile, block offsets past 128), which the
//! oracle matrix is too small to reach. Lengths 65, 127, 200, 1000, 4096 (one past a tile, one
//! short of two, odd, long, very long), every head dim 64/72/80/96/128, chunked prefill (q shorter
//! than kv: causal with an offset), sliding windows that cross tile edges, block-sparse layouts of
//! 64x64 tiles with Empty and Full tiles, decode with GQA group 2 at head dims 72/80, and GEMMs
//! with M, N in {129, 300, 4096}.
//!
//! `Small` runs on the CPU backend in CI in seconds (q/kv up to 200 for prefill, 4096 for
//! decode); `Full` is for a real GPU (the GPU kit runs it).

use super::attention::{self, Shape, M};
use super::linear::{gemm_case, G};
use super::Ctx;
use crate::Case;
use foveate_core::{Activation, GemmSpec};

/// The prefill lengths of the full set.
const LENGTHS: [usize; 5] = [65, 127, 200, 1000, 4096];
const HEAD_DIMS: [usize; 5] = [64, 72, 80, 96, 128];

#[rustfmt::skip]
fn full_attention() -> Vec<Shape> {
    let mut v = Vec::new();
    for (i, &l) in LENGTHS.iter().enumerate() {
        // Causal prefill at every head dim, GQA group 2.
        for &d in &HEAD_DIMS {
            v.push((1, 4, 2, l, l, l, d, M::Causal));
        }
        // Unmasked, batch 2, one head dim per length.
        v.push((2, 2, 2, l, l, l, HEAD_DIMS[i], M::None));
        // Decode, GQA group 2, head dims 72 and 80, capacity past the length.
        v.push((1, 4, 2, 1, l, l + 3, 72, M::Causal));
        v.push((1, 8, 4, 1, l, l, 80, M::None));
    }
    v.extend([
        // Chunked prefill: a chunk of queries at the end of a longer cache.
        (1, 4, 2, 65, 1000, 1000, 80, M::Causal),
        (1, 4, 2, 127, 4096, 4096, 72, M::Causal),
        (1, 2, 1, 200, 1000, 1024, 96, M::Causal),
        (2, 4, 4, 65, 127, 127, 128, M::Causal),
        (1, 4, 2, 1000, 4096, 4096, 64, M::Causal),
        // Sliding windows crossing tile edges.
        (1, 4, 2, 1000, 1000, 1000, 64, M::Window(65)),
        (1, 2, 1, 200, 200, 200, 80, M::Window(127)),
        (1, 2, 2, 127, 4096, 4096, 128, M::Window(200)),
        (1, 4, 2, 1, 1000, 1000, 72, M::Window(63)),
        (3, 8, 4, 1, 1000, 1000, 128, M::None),
        // Block-sparse on 64x64 tiles: Empty and Full tiles (base None), Partial diagonals.
        (1, 4, 2, 1000, 1000, 1000, 64, M::Custom(64)),
        (1, 2, 1, 127, 1000, 1000, 96, M::Custom(64)),
        (1, 2, 1, 4096, 4096, 4096, 128, M::GlobalLocal(64, 1, 2, true)),
        (1, 4, 4, 200, 200, 200, 80, M::SparseWindow(64, 100)),
        (1, 4, 2, 1, 4096, 4096, 72, M::SparseWindow(64, 1000)),
    ]);
    v
}

#[rustfmt::skip]
const SMALL_ATTENTION: &[Shape] = &[
    // Prefill over more than one query and KV tile, every head dim.
    (1, 4, 2, 65, 65, 65, 64, M::Causal),
    (1, 4, 2, 65, 65, 65, 96, M::Causal),
    (1, 4, 2, 127, 127, 127, 72, M::Causal),
    (1, 2, 1, 127, 127, 127, 128, M::Causal),
    (1, 2, 1, 200, 200, 200, 80, M::Causal),
    (2, 2, 2, 127, 127, 127, 64, M::None),
    (1, 2, 1, 65, 200, 200, 128, M::None),
    // Chunked prefill.
    (1, 4, 2, 65, 200, 200, 80, M::Causal),
    (1, 2, 1, 127, 1000, 1000, 64, M::Causal),
    // Windows crossing tiles.
    (1, 2, 1, 200, 200, 200, 72, M::Window(65)),
    (1, 2, 2, 65, 1000, 1000, 96, M::Window(127)),
    // Decode, GQA group 2 at head dims 72 and 80.
    (1, 4, 2, 1, 65, 67, 72, M::Causal),
    (1, 4, 2, 1, 1000, 1000, 80, M::Causal),
    (1, 8, 4, 1, 4096, 4096, 72, M::None),
    (2, 4, 2, 1, 200, 256, 80, M::Window(63)),
    // Block-sparse, 64x64 tiles.
    (1, 2, 1, 200, 200, 200, 64, M::Custom(64)),
    (1, 2, 2, 200, 200, 200, 80, M::GlobalLocal(64, 1, 1, true)),
    (1, 2, 1, 127, 200, 200, 128, M::SparseWindow(64, 65)),
    (1, 4, 2, 1, 1000, 1000, 72, M::SparseWindow(64, 200)),
];

pub(crate) fn attention(ctx: &Ctx) -> Vec<Case> {
    let shapes = if ctx.full() {
        full_attention()
    } else {
        SMALL_ATTENTION.to_vec()
    };
    shapes
        .into_iter()
        .map(|s| attention::case(ctx, s))
        .collect()
}

#[rustfmt::skip]
const FULL_GEMM: &[G] = &[
    (&[129], 129, 64),
    (&[129], 300, 129),
    (&[129], 4096, 72),
    (&[300], 129, 72),
    (&[300], 300, 64),
    (&[300], 4096, 129),
    (&[4096], 129, 129),
    (&[4096], 300, 72),
    (&[4096], 4096, 64),
    // Skinny M (decode GEMV paths) with N past a block.
    (&[1], 4096, 129),
    (&[3], 300, 256),
    (&[8], 4096, 64),
];

#[rustfmt::skip]
const SMALL_GEMM: &[G] = &[
    (&[129], 129, 64),
    (&[129], 300, 40),
    (&[300], 129, 72),
    (&[300], 300, 33),
    (&[4096], 129, 16),
    (&[129], 4096, 16),
    (&[1], 300, 65),
    (&[5], 4096, 24),
];

/// The epilogues cycled over the GEMM shapes.
#[rustfmt::skip]
const EPILOGUES: [GemmSpec; 4] = [
    GemmSpec { act: Activation::None, bias: false, residual: false },
    GemmSpec { act: Activation::GeluErf, bias: true, residual: false },
    GemmSpec { act: Activation::None, bias: true, residual: true },
    GemmSpec { act: Activation::Silu, bias: false, residual: true },
];

pub(crate) fn gemm(ctx: &Ctx) -> Vec<Case> {
    let shapes = if ctx.full() { FULL_GEMM } else { SMALL_GEMM };
    shapes
        .iter()
        .enumerate()
        .map(|(i, &s)| gemm_case(ctx, EPILOGUES[i % EPILOGUES.len()], s))
        .collect()
}
