//! Data movement: cast, kv_append, slice, concat (all compared exactly).

use super::{dims_label, Ctx};
use crate::Case;
use foveate_core::{DType, HostTensor, KvAppendSpec, Op};

pub(crate) fn cast(ctx: &Ctx) -> Vec<Case> {
    let shape: &[usize] = if ctx.full() { &[9, 31] } else { &[3, 16] };
    DType::FLOATS
        .into_iter()
        .map(|to| {
            let label = dims_label(shape);
            let op = Op::Cast { to };
            let mut g = ctx.gen(&op, &label);
            let n: usize = shape.iter().product();
            // Magnitudes 1e-3..1e3 (normal in every dtype, finite in f16), plus values exactly
            // halfway between two bf16 / f16 neighbours: round-to-nearest-even sends 1+2^-8 down
            // and 1+3*2^-8 up, where truncation or round-half-up would differ.
            let mut v = g.log_uniform(n, -3.0, 3.0);
            let halfway = [1.0 + 2f32.powi(-8), 1.0 + 3.0 * 2f32.powi(-8), 1.0 + 2f32.powi(-11), 1.0 + 3.0 * 2f32.powi(-11), -(1.0 + 3.0 * 2f32.powi(-8))];
            v[..halfway.len()].copy_from_slice(&halfway);
            ctx.case(op, vec![HostTensor::from_f32(ctx.dtype, shape.to_vec(), &v)], label)
        })
        .collect()
}

pub(crate) fn kv_append(ctx: &Ctx) -> Vec<Case> {
    // (B, capacity, H, D, pos, len): mid-cache chunk, decode step filling the last row, a full
    // prefill, a first decode row.
    let shapes: &[(usize, usize, usize, usize, usize, usize)] = if ctx.full() {
        &[(2, 16, 2, 64, 5, 3), (1, 33, 4, 80, 32, 1), (1, 8, 1, 128, 0, 8), (3, 20, 7, 72, 0, 1)]
    } else {
        &[(1, 12, 2, 64, 4, 3), (1, 9, 1, 128, 8, 1), (2, 4, 1, 16, 0, 4)]
    };
    shapes
        .iter()
        .map(|&(b, cap, h, d, pos, len)| {
            let label = format!("b{b} cap{cap} h{h} d{d} pos{pos} len{len}");
            let op = Op::KvAppend(KvAppendSpec { capacity: cap, pos });
            let mut g = ctx.gen(&op, &label);
            let new = g.tensor(ctx.dtype, [b, len, h, d], -1.0, 1.0);
            let cache = g.tensor(ctx.dtype, [b, cap, h, d], 2.0, 3.0);
            let mut c = ctx.case(op, vec![new], label);
            c.init_out = Some(cache);
            c
        })
        .collect()
}

pub(crate) fn slice(ctx: &Ctx) -> Vec<Case> {
    let x: &[usize] = if ctx.full() { &[4, 10, 6, 8] } else { &[2, 5, 3, 4] };
    // (axis, start, len) within x
    let cuts: &[(usize, usize, usize)] =
        if ctx.full() { &[(0, 1, 2), (1, 3, 5), (2, 5, 1), (3, 2, 4)] } else { &[(0, 1, 1), (1, 2, 2), (3, 1, 2)] };
    cuts.iter()
        .map(|&(axis, start, len)| {
            let label = format!("{} {start}..{}", dims_label(x), start + len);
            let op = Op::Slice { axis, start, len };
            let mut g = ctx.gen(&op, &label);
            ctx.case(op, vec![g.tensor(ctx.dtype, x.to_vec(), -1.0, 1.0)], label)
        })
        .collect()
}

pub(crate) fn concat(ctx: &Ctx) -> Vec<Case> {
    let pairs: &[(&[usize], &[usize], usize)] = if ctx.full() {
        &[(&[3, 5, 8], &[3, 2, 8], 1), (&[2, 4, 7], &[2, 4, 9], 2), (&[1, 6, 4], &[3, 6, 4], 0)]
    } else {
        &[(&[2, 3, 4], &[2, 1, 4], 1), (&[2, 3], &[2, 5], 1), (&[1, 4], &[2, 4], 0)]
    };
    pairs
        .iter()
        .map(|&(a, b, axis)| {
            let label = format!("{} + {}", dims_label(a), dims_label(b));
            let op = Op::Concat { axis };
            let mut g = ctx.gen(&op, &label);
            let inputs = vec![g.tensor(ctx.dtype, a.to_vec(), -1.0, 1.0), g.tensor(ctx.dtype, b.to_vec(), -1.0, 1.0)];
            ctx.case(op, inputs, label)
        })
        .collect()
}
