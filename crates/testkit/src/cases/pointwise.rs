//! Norms, RoPE, embedding, element-wise ops, softmax and argmax.

use super::{dims_label, Ctx};
use crate::Case;
use foveate_core::{Activation, HostTensor, Op, OpKind, RopeSpec};

pub(crate) fn layer_norm(ctx: &Ctx) -> Vec<Case> {
    let shapes: &[&[usize]] = if ctx.full() { &[&[3, 7, 96], &[2, 200], &[1, 1024]] } else { &[&[3, 40], &[2, 64]] };
    shapes
        .iter()
        .map(|&s| {
            let label = dims_label(s);
            let op = Op::LayerNorm { eps: 1e-5 };
            let mut g = ctx.gen(&op, &label);
            let d = *s.last().unwrap();
            // Offset mean (~2) so a one-pass variance that cancels badly shows up.
            let x = g.tensor(ctx.dtype, s.to_vec(), 1.0, 3.0);
            let inputs = vec![x, g.tensor(ctx.dtype, [d], 0.5, 1.5), g.tensor(ctx.dtype, [d], -0.5, 0.5)];
            ctx.case(op, inputs, label)
        })
        .collect()
}

pub(crate) fn rms_norm(ctx: &Ctx) -> Vec<Case> {
    let shapes: &[&[usize]] = if ctx.full() { &[&[4, 9, 160], &[1, 3, 1024]] } else { &[&[3, 40], &[1, 64]] };
    shapes
        .iter()
        .map(|&s| {
            let label = dims_label(s);
            let op = Op::RmsNorm { eps: 1e-6 };
            let mut g = ctx.gen(&op, &label);
            let d = *s.last().unwrap();
            let inputs = vec![g.tensor(ctx.dtype, s.to_vec(), -2.0, 2.0), g.tensor(ctx.dtype, [d], 0.5, 1.5)];
            ctx.case(op, inputs, label)
        })
        .collect()
}

pub(crate) fn rope(ctx: &Ctx) -> Vec<Case> {
    // (B, S, H, D, rotary_dim, theta)
    let shapes: &[(usize, usize, usize, usize, Option<usize>, f32)] = if ctx.full() {
        &[(2, 5, 3, 64, None, 10000.0), (1, 7, 2, 80, Some(40), 10000.0), (1, 4, 2, 128, None, 1_000_000.0)]
    } else {
        &[(1, 4, 2, 64, None, 10000.0), (1, 3, 1, 64, Some(32), 10000.0)]
    };
    let mut cases: Vec<Case> = shapes
        .iter()
        .map(|&(b, s, h, d, rot, theta)| {
            let label = format!("b{b} s{s} h{h} d{d}{}", rot.map(|r| format!(" rot{r}")).unwrap_or_default());
            let op = Op::Rope(RopeSpec::text(theta, rot));
            let mut g = ctx.gen(&op, &label);
            // Non-contiguous positions below 1000 (f32 angle error ~pos * 6e-8), out of order in batch 0.
            let mut pos = g.ids(b * s, 1000);
            g.shuffle(&mut pos[..s]);
            let inputs = vec![g.tensor(ctx.dtype, [b, s, h, d], -1.0, 1.0), HostTensor::from_u32([b, s], &pos)];
            ctx.case(op, inputs, label)
        })
        .collect();
    cases.extend(rope_sections(ctx));
    cases
}

/// Multi-axis RoPE: 2-section vision style (per-section frequencies) and 3-section M-RoPE
/// (global frequencies), with B > 1 and positions that differ on every axis, so a kernel reading
/// the wrong axis (or the wrong axis stride) fails.
fn rope_sections(ctx: &Ctx) -> Vec<Case> {
    // (B, S, H, D, rotary_dim, sections, per-section frequencies)
    type Shape = (usize, usize, usize, usize, Option<usize>, &'static [usize], bool);
    let shapes: &[Shape] = if ctx.full() {
        &[
            (2, 6, 2, 80, None, &[20, 20], true),
            (1, 9, 3, 128, None, &[16, 24, 24], false),
            (2, 5, 2, 96, Some(64), &[8, 12, 12], false),
        ]
    } else {
        &[
            (2, 3, 2, 32, None, &[8, 8], true),
            (2, 3, 1, 32, None, &[4, 6, 6], false),
            (1, 4, 1, 48, Some(32), &[4, 6, 6], false),
        ]
    };
    shapes
        .iter()
        .map(|&(b, s, h, d, rot, sections, per_section)| {
            let form = if per_section { "vision" } else { "mrope" };
            let secs = sections.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(",");
            let label =
                format!("b{b} s{s} h{h} d{d}{} {form}[{secs}]", rot.map(|r| format!(" rot{r}")).unwrap_or_default());
            let spec = if per_section { RopeSpec::vision } else { RopeSpec::mrope };
            let op = Op::Rope(spec(10000.0, rot, sections).expect("valid sections"));
            let mut g = ctx.gen(&op, &label);
            let a = sections.len();
            let pos = g.ids(a * b * s, 1000);
            let inputs = vec![g.tensor(ctx.dtype, [b, s, h, d], -1.0, 1.0), HostTensor::from_u32([a, b, s], &pos)];
            ctx.case(op, inputs, label)
        })
        .collect()
}

pub(crate) fn embedding(ctx: &Ctx) -> Vec<Case> {
    // (V, D, ids shape)
    let shapes: &[(usize, usize, &[usize])] =
        if ctx.full() { &[(50, 64, &[2, 9]), (300, 96, &[17])] } else { &[(20, 16, &[2, 5]), (9, 8, &[4])] };
    shapes
        .iter()
        .map(|&(v, d, ids_shape)| {
            let label = format!("v{v} d{d} ids{}", dims_label(ids_shape));
            let op = Op::Embedding;
            let mut g = ctx.gen(&op, &label);
            let n: usize = ids_shape.iter().product();
            let mut ids = g.ids(n, v as u32);
            // Out-of-range ids give zero rows: one just past the table, one huge.
            ids[1] = v as u32;
            let last = n - 1;
            ids[last] = 0xFFFF_FFF0;
            let inputs = vec![g.tensor(ctx.dtype, [v, d], -1.0, 1.0), HostTensor::from_u32(ids_shape.to_vec(), &ids)];
            ctx.case(op, inputs, label)
        })
        .collect()
}

pub(crate) fn binary(ctx: &Ctx, kind: OpKind) -> Vec<Case> {
    let shapes: &[&[usize]] = if ctx.full() { &[&[3, 17, 33], &[1, 1]] } else { &[&[5, 7], &[1]] };
    let op = match kind {
        OpKind::Add => Op::Add,
        OpKind::Mul => Op::Mul,
        _ => Op::SwiGlu,
    };
    shapes
        .iter()
        .map(|&s| {
            let label = dims_label(s);
            let mut g = ctx.gen(&op, &label);
            // SwiGLU's gate spans silu's whole interesting range.
            let ra = if kind == OpKind::SwiGlu { 6.0 } else { 2.0 };
            let inputs = vec![g.tensor(ctx.dtype, s.to_vec(), -ra, ra), g.tensor(ctx.dtype, s.to_vec(), -2.0, 2.0)];
            ctx.case(op.clone(), inputs, label)
        })
        .collect()
}

pub(crate) fn unary(ctx: &Ctx) -> Vec<Case> {
    let shape: &[usize] = if ctx.full() { &[7, 61] } else { &[3, 20] };
    Activation::ALL
        .into_iter()
        .map(|act| {
            let label = dims_label(shape);
            let op = Op::Unary(act);
            let mut g = ctx.gen(&op, &label);
            let n: usize = shape.iter().product();
            // Mostly [-6, 6]; every 8th element large (|x| up to 30) so an unclamped tanh or an
            // overflowing exp in a GELU/sigmoid produces NaN.
            let v: Vec<f32> =
                (0..n).map(|i| if i % 8 == 3 { g.uniform(-30.0, 30.0) } else { g.uniform(-6.0, 6.0) }).collect();
            ctx.case(op, vec![HostTensor::from_f32(ctx.dtype, shape.to_vec(), &v)], label)
        })
        .collect()
}

pub(crate) fn softmax(ctx: &Ctx) -> Vec<Case> {
    let shapes: &[&[usize]] = if ctx.full() { &[&[6, 37], &[3, 1000], &[2, 1]] } else { &[&[6, 13], &[2, 40]] };
    shapes
        .iter()
        .map(|&s| {
            let label = dims_label(s);
            let op = Op::Softmax;
            let mut g = ctx.gen(&op, &label);
            let d = *s.last().unwrap();
            let rows: usize = s[..s.len() - 1].iter().product();
            // Row 1 sits near +100 (exp overflows in f32 without the max subtraction), row 2 near
            // -100 (exp underflows to 0/0).
            let mut v = Vec::with_capacity(rows * d);
            for r in 0..rows {
                let shift = match r % 3 {
                    1 => 100.0,
                    2 => -100.0,
                    _ => 0.0,
                };
                for _ in 0..d {
                    v.push(shift + g.uniform(-4.0, 4.0));
                }
            }
            ctx.case(op, vec![HostTensor::from_f32(ctx.dtype, s.to_vec(), &v)], label)
        })
        .chain(std::iter::once(neg_inf_rows(ctx)))
        .collect()
}

/// Softmax rows that are entirely -inf (a fully masked row of scores): the oracle's rule is NaN
/// for the whole row (its max is -inf and (-inf) - (-inf) is NaN, as in torch.softmax); a row
/// with some -inf elements has exact zeros there. Rows: finite near +100 (exp overflows without
/// the max subtraction), all -inf, half -inf.
fn neg_inf_rows(ctx: &Ctx) -> Case {
    let (rows, d) = (3, 9);
    let label = format!("{rows}x{d} -inf rows");
    let op = Op::Softmax;
    let mut g = ctx.gen(&op, &label);
    let v: Vec<f32> = (0..rows * d)
        .map(|i| match (i / d, i % d) {
            (1, _) => f32::NEG_INFINITY,
            (2, j) if j % 2 == 0 => f32::NEG_INFINITY,
            (0, _) => 100.0 + g.uniform(-4.0, 4.0),
            _ => g.uniform(-4.0, 4.0),
        })
        .collect();
    ctx.case(op, vec![HostTensor::from_f32(ctx.dtype, [rows, d], &v)], label)
}

pub(crate) fn argmax(ctx: &Ctx) -> Vec<Case> {
    let shapes: &[&[usize]] = if ctx.full() { &[&[5, 37], &[2, 1000], &[3, 1]] } else { &[&[5, 13], &[1, 40]] };
    shapes
        .iter()
        .map(|&s| {
            let label = dims_label(s);
            let op = Op::Argmax;
            let mut g = ctx.gen(&op, &label);
            let d = *s.last().unwrap();
            let rows: usize = s[..s.len() - 1].iter().product();
            // Values in [-4, 4] with one maximum >= 5: no near-ties after rounding to bf16. The last
            // row (when D > 1) has an exact tie at 6.0, which must resolve to the first index.
            let mut v = g.values(rows * d, -4.0, 4.0);
            for r in 0..rows {
                let m = g.index(d);
                v[r * d + m] = 5.0 + g.uniform(0.0, 0.9);
                if r == rows - 1 && d > 1 {
                    let m2 = (m + 1 + g.index(d - 1)) % d;
                    v[r * d + m] = 6.0;
                    v[r * d + m2] = 6.0;
                }
            }
            ctx.case(op, vec![HostTensor::from_f32(ctx.dtype, s.to_vec(), &v)], label)
        })
        .collect()
}
