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
    let best = |row: &[f32]| {
        let mut best: Option<(usize, f32)> = None;
        for (j, &v) in row.iter().enumerate() {
            if !v.is_nan() && best.is_none_or(|(_, b)| v > b) {
                best = Some((j, v));
            }
        }
        best.map_or(0, |(j, _)| j as u32)
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
