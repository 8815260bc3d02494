//! Row-wise and element-wise ops in f32, parallel over chunks of rows.

use super::maybe_par;
use crate::act::act_f32;
use foveate_core::{Activation, RopeSpec};
use rayon::prelude::*;

/// Elements per parallel task: small ops stay on one thread.
const GRAIN: usize = 1 << 15;

fn rows_per_task(d: usize) -> usize {
    (GRAIN / d.max(1)).max(1)
}

pub(crate) fn zip(a: &[f32], b: &[f32], out: &mut [f32], f: impl Fn(f32, f32) -> f32 + Sync) {
    maybe_par!(
        out.chunks_mut(GRAIN).enumerate(),
        out.par_chunks_mut(GRAIN).enumerate(),
        |(c, o): (usize, &mut [f32])| {
            let off = c * GRAIN;
            for ((o, x), y) in o.iter_mut().zip(&a[off..]).zip(&b[off..]) {
                *o = f(*x, *y);
            }
        }
    );
}

/// `out = silu(g) · u` element-wise (SwiGLU's gate), vectorised with the fast exp.
pub(crate) fn swiglu(g: &[f32], u: &[f32], out: &mut [f32]) {
    maybe_par!(
        out.chunks_mut(GRAIN).enumerate(),
        out.par_chunks_mut(GRAIN).enumerate(),
        |(c, o): (usize, &mut [f32])| {
            let off = c * GRAIN;
            super::simd::silu_mul(o, &g[off..], &u[off..]);
        }
    );
}

pub(crate) fn unary(act: Activation, x: &[f32], out: &mut [f32]) {
    maybe_par!(
        out.chunks_mut(GRAIN).enumerate(),
        out.par_chunks_mut(GRAIN).enumerate(),
        |(c, o): (usize, &mut [f32])| {
            for (o, x) in o.iter_mut().zip(&x[c * GRAIN..]) {
                *o = act_f32(act, *x);
            }
        }
    );
}

/// Applies `f(input_row, output_row)` to every row of width `d`, in parallel.
fn per_row(x: &[f32], d: usize, out: &mut [f32], f: impl Fn(&[f32], &mut [f32]) + Sync) {
    if d == 0 {
        return;
    }
    let rpt = rows_per_task(d);
    maybe_par!(
        out.chunks_mut(rpt * d).zip(x.chunks(rpt * d)),
        out.par_chunks_mut(rpt * d).zip(x.par_chunks(rpt * d)),
        |(o, x): (&mut [f32], &[f32])| {
            for (orow, xrow) in o.chunks_mut(d).zip(x.chunks(d)) {
                f(xrow, orow);
            }
        }
    );
}

pub(crate) fn layer_norm(x: &[f32], g: &[f32], b: &[f32], eps: f32, out: &mut [f32]) {
    let d = g.len();
    per_row(x, d, out, |row, o| {
        let mean = row.iter().sum::<f32>() / d as f32;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for i in 0..d {
            o[i] = (row[i] - mean) * inv * g[i] + b[i];
        }
    });
}

pub(crate) fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let d = w.len();
    per_row(x, d, out, |row, o| {
        let ms = row.iter().map(|v| v * v).sum::<f32>() / d as f32;
        let inv = 1.0 / (ms + eps).sqrt();
        for i in 0..d {
            o[i] = row[i] * inv * w[i];
        }
    });
}

pub(crate) fn softmax(x: &[f32], d: usize, out: &mut [f32]) {
    per_row(x, d, out, |row, o| {
        let mx = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for (o, &v) in o.iter_mut().zip(row) {
            *o = (v - mx).exp();
            sum += *o;
        }
        let inv = 1.0 / sum;
        o.iter_mut().for_each(|v| *v *= inv);
    });
}

pub(crate) fn argmax(x: &[f32], d: usize) -> Vec<u32> {
    // The first index of the largest value that is not NaN (0 when every value is NaN): the
    // maximum in lanes (a comparison with NaN is false, so NaN never wins), then its first place.
    let best = |row: &[f32]| {
        const L: usize = 16;
        let mut lanes = [f32::NEG_INFINITY; L];
        let chunks = row.chunks_exact(L);
        let tail = chunks.remainder();
        for c in chunks {
            for l in 0..L {
                lanes[l] = if c[l] > lanes[l] { c[l] } else { lanes[l] };
            }
        }
        let max = tail
            .iter()
            .chain(&lanes)
            .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
        row.iter().position(|&v| v == max).unwrap_or(0) as u32
    };
    if super::serial() {
        x.chunks(d).map(best).collect()
    } else {
        x.par_chunks(d).map(best).collect()
    }
}

/// x `[B, S, H, D]`, positions `[A, B, S]` (A = sections). Angles and their sin/cos are taken in
/// f64 once per token.
pub(crate) fn rope(spec: &RopeSpec, x: &[f32], pos: &[u32], dims: &[usize], out: &mut [f32]) {
    let (h, d) = (dims[2], dims[3]);
    let tokens = dims[0] * dims[1];
    let r = spec.rot(d);
    let half = r / 2;
    let pairs: Vec<(usize, f64)> = (0..half).map(|j| spec.pair(d, j)).collect();
    maybe_par!(
        out.chunks_mut(h * d).zip(x.chunks(h * d)).enumerate(),
        out.par_chunks_mut(h * d)
            .zip(x.par_chunks(h * d))
            .enumerate(),
        |(tok, (o, xt)): (usize, (&mut [f32], &[f32]))| {
            let cs: Vec<(f32, f32)> = pairs
                .iter()
                .map(|&(axis, f)| {
                    let (s, c) = (pos[axis * tokens + tok] as f64 * f).sin_cos();
                    (c as f32, s as f32)
                })
                .collect();
            for (orow, xrow) in o.chunks_mut(d).zip(xt.chunks(d)) {
                for (i, &(c, s)) in cs.iter().enumerate() {
                    let (a, b) = (xrow[i], xrow[i + half]);
                    orow[i] = a * c - b * s;
                    orow[i + half] = b * c + a * s;
                }
                orow[r..].copy_from_slice(&xrow[r..]);
            }
        }
    );
}

/// Rows `ids` of `table` (`[v, d]`, read in its stored format: only the looked-up rows are
/// converted); an id out of range gives a zero row.
pub(crate) fn embedding(
    table: &super::weight::Weight,
    v: usize,
    d: usize,
    ids: &[u32],
    out: &mut [f32],
) {
    if d == 0 {
        return;
    }
    maybe_par!(
        out.chunks_mut(d).zip(ids.iter()),
        out.par_chunks_mut(d).zip(ids.par_iter()),
        |(o, &id): (&mut [f32], &u32)| {
            let id = id as usize;
            if id < v {
                table.rows_f32(id, 1, d, o);
            } else {
                o.fill(0.0);
            }
        }
    );
}

#[cfg(test)]
mod tests {
    /// The first largest value that is not NaN, over rows that do and do not fill whole lanes:
    /// ties (the first wins, -0 ties 0), NaN anywhere (never chosen), all NaN (0), -inf only.
    #[test]
    fn argmax_takes_the_first_largest_non_nan() {
        let reference = |row: &[f32]| {
            let mut best: Option<(usize, f32)> = None;
            for (j, &v) in row.iter().enumerate() {
                if !v.is_nan() && best.is_none_or(|(_, b)| v > b) {
                    best = Some((j, v));
                }
            }
            best.map_or(0, |(j, _)| j as u32)
        };
        let mut rows: Vec<Vec<f32>> = vec![
            vec![f32::NAN, 1.0, 3.0, f32::NAN, 3.0],
            vec![f32::NAN; 19],
            vec![f32::NEG_INFINITY; 33],
            vec![-0.0, 0.0, -1.0],
            vec![2.0],
        ];
        let mut seed = 7u32;
        for d in [15, 16, 17, 64, 1000] {
            rows.push(
                (0..d)
                    .map(|i| {
                        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                        match seed >> 28 {
                            0 => f32::NAN,
                            1 => 5.0, // repeated maxima
                            _ => (seed >> 8) as f32 / (1u32 << 24) as f32 - (i % 3) as f32,
                        }
                    })
                    .collect(),
            );
        }
        for row in &rows {
            let got = super::argmax(row, row.len());
            assert_eq!(got, vec![reference(row)], "{row:?}");
        }
        // Several rows at once, each its own answer.
        let flat: Vec<f32> = [1.0, 9.0, 2.0, 7.0, f32::NAN, 7.0].to_vec();
        assert_eq!(super::argmax(&flat, 3), vec![1, 0]);
    }
}
