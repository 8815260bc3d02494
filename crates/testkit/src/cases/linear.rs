//! GEMM (every activation x bias x residual, odd sizes), the fused GELU MLP and patch embedding.

use super::{dims_label, Ctx};
use crate::Case;
use foveate_core::{Activation, DType, GemmSpec, MlpSpec, Op, PatchEmbedSpec};

/// (leading dims of a, N, K); the label reads `m{M} n{N} k{K}`.
pub(super) type G = (&'static [usize], usize, usize);

/// Every epilogue on a tiled shape and on a skinny one (M <= 8: decode GEMV paths).
const EPILOGUE_SHAPES_FULL: &[G] = &[(&[17], 33, 65), (&[3], 33, 130)];
const EPILOGUE_SHAPES_SMALL: &[G] = &[(&[11], 12, 19), (&[5], 12, 19)];
const EXTRA_FULL: &[G] = &[(&[1], 1, 1), (&[2, 64], 96, 72), (&[1], 128, 256), (&[3, 5], 64, 48), (&[31], 7, 129)];
const EXTRA_SMALL: &[G] = &[(&[1], 1, 1), (&[2, 8], 24, 48), (&[1], 48, 32), (&[13], 7, 9)];

/// Weight-format cases (`w:` in the label): M = 1, 3, 4 (the in-register dot products), 5, 17,
/// 64 and 80 (f32 panels), K = 32, 64, 96 (quantised rows are whole groups of 32), N never a
/// multiple of 8. Small: K = 32 and N <= 48 only.
const WEIGHT_SHAPES_FULL: &[G] =
    &[(&[1], 37, 64), (&[3], 13, 96), (&[4], 45, 32), (&[5], 37, 96), (&[17], 21, 64), (&[64], 75, 32), (&[2, 40], 203, 96)];
const WEIGHT_SHAPES_SMALL: &[G] = &[(&[1], 13, 32), (&[4], 21, 32), (&[5], 13, 32)];

/// The weight formats a case of activation dtype `act` stores its weights in besides `act`
/// itself: every other format under f32, the quantised ones under f16/bf16.
pub(super) fn weight_formats(act: DType) -> &'static [DType] {
    match act {
        DType::F32 => &[DType::F16, DType::BF16, DType::Int8, DType::Int4],
        DType::F16 | DType::BF16 => &[DType::Int8, DType::Int4],
        _ => &[],
    }
}

pub(super) fn gemm_case(ctx: &Ctx, spec: GemmSpec, shape: G) -> Case {
    gemm_case_w(ctx, spec, shape, ctx.dtype)
}

/// A Gemm case whose weight is stored as `wdt` (the label says so when it is not the case dtype).
fn gemm_case_w(ctx: &Ctx, spec: GemmSpec, (lead, n, k): G, wdt: DType) -> Case {
    let m: usize = lead.iter().product();
    let mut label = format!("m{m} n{n} k{k}{}", if lead.len() > 1 { format!(" a{}", dims_label(lead)) } else { String::new() });
    if wdt != ctx.dtype {
        label.push_str(&format!(" w:{wdt}"));
    }
    let op = Op::Gemm(spec);
    let mut g = ctx.gen(&op, &label);
    let mut a_shape = lead.to_vec();
    a_shape.push(k);
    let mut o_shape = lead.to_vec();
    o_shape.push(n);
    let r = 2.0 / (k as f32).sqrt();
    let mut inputs = vec![g.tensor(ctx.dtype, a_shape, -1.0, 1.0), g.tensor(wdt, [n, k], -r, r)];
    if spec.bias {
        inputs.push(g.tensor(ctx.dtype, [n], -0.5, 0.5));
    }
    if spec.residual {
        inputs.push(g.tensor(ctx.dtype, o_shape, -1.0, 1.0));
    }
    ctx.case(op, inputs, label)
}

pub(crate) fn gemm(ctx: &Ctx) -> Vec<Case> {
    let (epi, extra) = if ctx.full() { (EPILOGUE_SHAPES_FULL, EXTRA_FULL) } else { (EPILOGUE_SHAPES_SMALL, EXTRA_SMALL) };
    let mut out = Vec::new();
    for &shape in epi {
        for act in Activation::ALL {
            for (bias, residual) in [(false, false), (true, false), (false, true), (true, true)] {
                out.push(gemm_case(ctx, GemmSpec { act, bias, residual }, shape));
            }
        }
    }
    for &s in extra {
        out.push(gemm_case(ctx, GemmSpec::plain(), s));
        out.push(gemm_case(ctx, GemmSpec { act: Activation::GeluErf, bias: true, residual: false }, s));
    }
    let weight_shapes = if ctx.full() { WEIGHT_SHAPES_FULL } else { WEIGHT_SHAPES_SMALL };
    for &wdt in weight_formats(ctx.dtype) {
        for (i, &s) in weight_shapes.iter().enumerate() {
            // Every other shape with a full epilogue (bias, activation, residual).
            let spec = if i % 2 == 0 { GemmSpec::plain() } else { GemmSpec { act: Activation::GeluTanh, bias: true, residual: true } };
            out.push(gemm_case_w(ctx, spec, s, wdt));
        }
    }
    out
}

/// (leading dims, D in, H hidden, O out)
type M = (&'static [usize], usize, usize, usize);

/// A GeluMlp case with its two weights stored as `w1` and `w2` (labelled when not the case dtype).
fn mlp_case(ctx: &Ctx, spec: MlpSpec, (lead, d, h, o): M, (w1, w2): (DType, DType)) -> Case {
    let mut label = format!("x{} d{d} h{h} o{o}", dims_label(lead));
    if (w1, w2) != (ctx.dtype, ctx.dtype) {
        label.push_str(&if w1 == w2 { format!(" w:{w1}") } else { format!(" w1:{w1} w2:{w2}") });
    }
    let op = Op::GeluMlp(spec);
    let mut g = ctx.gen(&op, &label);
    let mut x_shape = lead.to_vec();
    x_shape.push(d);
    let mut o_shape = lead.to_vec();
    o_shape.push(o);
    let (r1, r2) = (2.0 / (d as f32).sqrt(), 2.0 / (h as f32).sqrt());
    let mut inputs = vec![
        g.tensor(ctx.dtype, x_shape, -1.0, 1.0),
        g.tensor(w1, [h, d], -r1, r1),
        g.tensor(ctx.dtype, [h], -0.5, 0.5),
        g.tensor(w2, [o, h], -r2, r2),
        g.tensor(ctx.dtype, [o], -0.5, 0.5),
    ];
    if spec.residual {
        inputs.push(g.tensor(ctx.dtype, o_shape, -1.0, 1.0));
    }
    ctx.case(op, inputs, label)
}

pub(crate) fn gelu_mlp(ctx: &Ctx) -> Vec<Case> {
    let shapes: &[M] = if ctx.full() { &[(&[2, 5], 48, 96, 40), (&[7], 32, 64, 32)] } else { &[(&[3], 16, 24, 12), (&[2], 8, 20, 8)] };
    let same = (ctx.dtype, ctx.dtype);
    let mut out = Vec::new();
    for (si, &shape) in shapes.iter().enumerate() {
        for act in Activation::GELUS {
            for residual in [false, true] {
                // The second shape (out dim == in dim) only with the ViT-style residual.
                if si == 1 && !residual {
                    continue;
                }
                out.push(mlp_case(ctx, MlpSpec { act, residual }, shape, same));
            }
        }
    }
    // Weight formats: D and H multiples of 32; M = 1 and 4 (in-register dots), 5 and 18 (panels).
    let wshapes: &[M] = if ctx.full() {
        &[(&[1], 64, 96, 37), (&[4], 32, 64, 13), (&[5], 96, 32, 21), (&[2, 9], 64, 32, 64)]
    } else {
        &[(&[1], 32, 32, 12), (&[5], 32, 32, 12)]
    };
    for &wdt in weight_formats(ctx.dtype) {
        for (i, &shape) in wshapes.iter().enumerate() {
            let act = Activation::GELUS[i % Activation::GELUS.len()];
            out.push(mlp_case(ctx, MlpSpec { act, residual: shape.1 == shape.3 }, shape, (wdt, wdt)));
        }
    }
    // Two different weight formats in one op (and one of them the activations' own).
    if ctx.dtype == DType::F32 {
        let act = Activation::GELUS[0];
        for (i, pair) in [(DType::Int4, DType::BF16), (DType::F32, DType::Int8)].into_iter().enumerate() {
            out.push(mlp_case(ctx, MlpSpec { act, residual: false }, wshapes[i], pair));
        }
    }
    out
}

pub(crate) fn patch_embed(ctx: &Ctx) -> Vec<Case> {
    // (batch, channels, height, width, patch, embed, bias, cls, pos): CLIP-style (cls + pos, no
    // bias), SigLIP-style (bias + pos, no cls), and a bare conv; images are non-square.
    let shapes: &[(usize, usize, usize, usize, usize, usize, bool, bool, bool)] = if ctx.full() {
        &[
            (1, 3, 28, 42, 14, 48, false, true, true),
            (2, 3, 32, 48, 16, 40, true, false, true),
            (1, 3, 24, 16, 8, 24, true, false, false),
        ]
    } else {
        &[
            (1, 3, 8, 12, 4, 16, false, true, true),
            (2, 3, 10, 5, 5, 12, true, false, true),
            (1, 3, 8, 4, 4, 8, true, false, false),
        ]
    };
    shapes
        .iter()
        .map(|&(b, c, hi, wi, p, e, bias, cls, pos)| {
            let label = format!("b{b} c{c} {hi}x{wi} p{p} e{e}");
            let op = Op::PatchEmbed(PatchEmbedSpec { patch: p, bias, cls, pos });
            let mut g = ctx.gen(&op, &label);
            let t = (hi / p) * (wi / p) + cls as usize;
            let r = 2.0 / ((c * p * p) as f32).sqrt();
            let mut inputs = vec![g.tensor(ctx.dtype, [b, c, hi, wi], -1.0, 1.0), g.tensor(ctx.dtype, [e, c, p, p], -r, r)];
            if bias {
                inputs.push(g.tensor(ctx.dtype, [e], -0.5, 0.5));
            }
            if cls {
                inputs.push(g.tensor(ctx.dtype, [e], -1.0, 1.0));
            }
            if pos {
                inputs.push(g.tensor(ctx.dtype, [t, e], -0.5, 0.5));
            }
            ctx.case(op, inputs, label)
        })
        .collect()
}
