//! The oracle: every op written to be obviously right. Inputs are widened to f64, computed with
//! straightforward loops, and the caller rounds the result to the output dtype once at the end.

use crate::act::act_f64;
use crate::storage::Inputs;
use foveate_core::{AttentionSpec, GemmSpec, MlpSpec, Op, PatchEmbedSpec, RopeFreqs, RopeSpec};

/// Computes `op` (any op but the byte moves Slice/Concat/KvAppend) in f64.
pub(crate) fn compute(op: &Op, ins: &Inputs) -> Vec<f64> {
    match op {
        Op::Gemm(s) => gemm(s, ins),
        Op::Attention(s) => attention(s, &ins.f64(0), &ins.f64(1), &ins.f64(2)),
        Op::GeluMlp(s) => mlp(s, ins),
        Op::PatchEmbed(s) => patch_embed(s, ins),
        Op::LayerNorm { eps } => layer_norm(&ins.f64(0), &ins.f64(1), &ins.f64(2), *eps as f64),
        Op::RmsNorm { eps } => rms_norm(&ins.f64(0), &ins.f64(1), *eps as f64),
        Op::Rope(s) => rope(s, ins),
        Op::Embedding => embedding(ins),
        Op::Add => zip(ins, |a, b| a + b),
        Op::Mul => zip(ins, |a, b| a * b),
        Op::SwiGlu => zip(ins, |g, u| g / (1.0 + (-g).exp()) * u),
        Op::Unary(a) => ins.f64(0).into_iter().map(|x| act_f64(*a, x)).collect(),
        Op::Softmax => softmax(&ins.f64(0), ins.desc(0).shape.last()),
        Op::Argmax => argmax(&ins.f64(0), ins.desc(0).shape.last()),
        Op::Cast { .. } => ins.f64(0),
        Op::KvAppend(_) | Op::Slice { .. } | Op::Concat { .. } => {
            unreachable!("byte moves are done by the caller")
        }
    }
}

fn zip(ins: &Inputs, f: impl Fn(f64, f64) -> f64) -> Vec<f64> {
    ins.f64(0)
        .into_iter()
        .zip(ins.f64(1))
        .map(|(a, b)| f(a, b))
        .collect()
}

/// `y[m, n] = sum_k x[m, k] * w[n, k]` for x `[m, k]`, w `[n, k]`.
fn matmul_t(x: &[f64], w: &[f64], m: usize, n: usize, k: usize) -> Vec<f64> {
    let mut y = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0;
            for p in 0..k {
                acc += x[i * k + p] * w[j * k + p];
            }
            y[i * n + j] = acc;
        }
    }
    y
}

fn gemm(s: &GemmSpec, ins: &Inputs) -> Vec<f64> {
    let (a, w) = (ins.f64(0), ins.f64(1));
    let (n, k) = (ins.desc(1).shape.dims()[0], ins.desc(1).shape.dims()[1]);
    let m = ins.desc(0).shape.rows();
    let mut y = matmul_t(&a, &w, m, n, k);
    let mut next = 2;
    let bias = s.bias.then(|| {
        next += 1;
        ins.f64(2)
    });
    let res = s.residual.then(|| ins.f64(next));
    for i in 0..m {
        for j in 0..n {
            let mut v = y[i * n + j] + bias.as_ref().map_or(0.0, |b| b[j]);
            v = act_f64(s.act, v);
            y[i * n + j] = v + res.as_ref().map_or(0.0, |r| r[i * n + j]);
        }
    }
    y
}

pub(crate) fn attention(s: &AttentionSpec, q: &[f64], k: &[f64], v: &[f64]) -> Vec<f64> {
    let (hq, hkv, d) = (s.q_heads, s.kv_heads, s.head_dim);
    let group = hq / hkv;
    let mut out = vec![0.0; s.batch * s.q_len * hq * d];
    let mut scores = vec![0.0; s.kv_len];
    for b in 0..s.batch {
        for h in 0..hq {
            let kh = h / group;
            for i in 0..s.q_len {
                let qrow = &q[((b * s.q_len + i) * hq + h) * d..][..d];
                let mut max = f64::NEG_INFINITY;
                let mut any = false;
                for (j, sc) in scores.iter_mut().enumerate() {
                    if s.mask.allows(i, j, s.q_len, s.kv_len) {
                        let krow = &k[((b * s.kv_capacity + j) * hkv + kh) * d..][..d];
                        let dot: f64 = qrow.iter().zip(krow).map(|(a, b)| a * b).sum();
                        *sc = dot * s.scale as f64;
                        max = max.max(*sc);
                        any = true;
                    } else {
                        *sc = f64::NEG_INFINITY;
                    }
                }
                if !any {
                    continue; // fully masked row: zeros
                }
                let mut denom = 0.0;
                for sc in scores.iter_mut() {
                    *sc = if *sc == f64::NEG_INFINITY {
                        0.0
                    } else {
                        (*sc - max).exp()
                    };
                    denom += *sc;
                }
                let orow = &mut out[((b * s.q_len + i) * hq + h) * d..][..d];
                for (j, &p) in scores.iter().enumerate() {
                    if p == 0.0 {
                        continue;
                    }
                    let vrow = &v[((b * s.kv_capacity + j) * hkv + kh) * d..][..d];
                    for (o, &x) in orow.iter_mut().zip(vrow) {
                        *o += p / denom * x;
                    }
                }
            }
        }
    }
    out
}

fn mlp(s: &MlpSpec, ins: &Inputs) -> Vec<f64> {
    let (x, w1, b1, w2, b2) = (ins.f64(0), ins.f64(1), ins.f64(2), ins.f64(3), ins.f64(4));
    let d = ins.desc(0).shape.last();
    let m = ins.desc(0).shape.rows();
    let h = ins.desc(1).shape.dims()[0];
    let o = ins.desc(3).shape.dims()[0];
    let mut hid = matmul_t(&x, &w1, m, h, d);
    for (idx, v) in hid.iter_mut().enumerate() {
        *v = act_f64(s.act, *v + b1[idx % h]);
    }
    let mut y = matmul_t(&hid, &w2, m, o, h);
    let res = s.residual.then(|| ins.f64(5));
    for (idx, v) in y.iter_mut().enumerate() {
        *v += b2[idx % o] + res.as_ref().map_or(0.0, |r| r[idx]);
    }
    y
}

fn patch_embed(s: &PatchEmbedSpec, ins: &Inputs) -> Vec<f64> {
    let (px, w) = (ins.f64(0), ins.f64(1));
    let pd = ins.desc(0).shape.dims();
    let (bn, c, hi, wi) = (pd[0], pd[1], pd[2], pd[3]);
    let e = ins.desc(1).shape.dims()[0];
    let p = s.patch;
    let (gh, gw) = (hi / p, wi / p);
    let t = gh * gw + s.cls as usize;
    let mut next = 2;
    let mut take = |present: bool| {
        present.then(|| {
            next += 1;
            ins.f64(next - 1)
        })
    };
    let bias = take(s.bias);
    let cls = take(s.cls);
    let pos = take(s.pos);
    let mut out = vec![0.0; bn * t * e];
    for b in 0..bn {
        if let Some(cls) = &cls {
            out[b * t * e..b * t * e + e].copy_from_slice(cls);
        }
        for py in 0..gh {
            for pxi in 0..gw {
                let tok = py * gw + pxi + s.cls as usize;
                for ei in 0..e {
                    let mut acc = bias.as_ref().map_or(0.0, |bv| bv[ei]);
                    for ci in 0..c {
                        for ky in 0..p {
                            for kx in 0..p {
                                let pix = px[((b * c + ci) * hi + py * p + ky) * wi + pxi * p + kx];
                                acc += pix * w[((ei * c + ci) * p + ky) * p + kx];
                            }
                        }
                    }
                    out[(b * t + tok) * e + ei] = acc;
                }
            }
        }
        if let Some(pos) = &pos {
            for (o, pv) in out[b * t * e..(b + 1) * t * e].iter_mut().zip(pos) {
                *o += pv;
            }
        }
    }
    out
}

fn layer_norm(x: &[f64], g: &[f64], bt: &[f64], eps: f64) -> Vec<f64> {
    let d = g.len();
    let mut out = vec![0.0; x.len()];
    for (row, orow) in x.chunks(d).zip(out.chunks_mut(d)) {
        let mean = row.iter().sum::<f64>() / d as f64;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / d as f64;
        let inv = 1.0 / (var + eps).sqrt();
        for i in 0..d {
            orow[i] = (row[i] - mean) * inv * g[i] + bt[i];
        }
    }
    out
}

fn rms_norm(x: &[f64], w: &[f64], eps: f64) -> Vec<f64> {
    let d = w.len();
    let mut out = vec![0.0; x.len()];
    for (row, orow) in x.chunks(d).zip(out.chunks_mut(d)) {
        let ms = row.iter().map(|v| v * v).sum::<f64>() / d as f64;
        let inv = 1.0 / (ms + eps).sqrt();
        for i in 0..d {
            orow[i] = row[i] * inv * w[i];
        }
    }
    out
}

/// Written from the definition section by section (independent of `RopeSpec::pair`, which the
/// fast path and the GPU launches use).
fn rope(s: &RopeSpec, ins: &Inputs) -> Vec<f64> {
    let mut x = ins.f64(0);
    let pos = ins.u32(1);
    let dims = ins.desc(0).shape.dims();
    let (bn, sl, h, d) = (dims[0], dims[1], dims[2], dims[3]);
    let r = s.rotary_dim.unwrap_or(d);
    let half = r / 2;
    let tokens = bn * sl;
    let lens: Vec<usize> = if s.sections.iter().all(|&n| n == 0) {
        vec![half]
    } else {
        s.sections.iter().copied().take_while(|&n| n > 0).collect()
    };
    // (position axis, inverse frequency) of every pair.
    let mut pairs = Vec::with_capacity(half);
    for (axis, &len) in lens.iter().enumerate() {
        for local in 0..len {
            let (i, span) = match s.freqs {
                RopeFreqs::Global => (pairs.len(), r),
                RopeFreqs::PerSection => (local, 2 * len),
            };
            pairs.push((axis, (s.theta as f64).powf(-2.0 * i as f64 / span as f64)));
        }
    }
    for tok in 0..tokens {
        for hi in 0..h {
            let row = &mut x[(tok * h + hi) * d..][..d];
            for (i, &(axis, inv)) in pairs.iter().enumerate() {
                let angle = pos[axis * tokens + tok] as f64 * inv;
                let (sin, cos) = angle.sin_cos();
                let (a, bb) = (row[i], row[i + half]);
                row[i] = a * cos - bb * sin;
                row[i + half] = bb * cos + a * sin;
            }
        }
    }
    x
}

fn embedding(ins: &Inputs) -> Vec<f64> {
    let table = ins.f64(0);
    let (v, d) = (ins.desc(0).shape.dims()[0], ins.desc(0).shape.dims()[1]);
    let mut out = Vec::with_capacity(ins.desc(1).numel() * d);
    for &id in ins.u32(1) {
        let id = id as usize;
        if id < v {
            out.extend_from_slice(&table[id * d..(id + 1) * d]);
        } else {
            out.extend(std::iter::repeat_n(0.0, d));
        }
    }
    out
}

fn softmax(x: &[f64], d: usize) -> Vec<f64> {
    let mut out = vec![0.0; x.len()];
    for (row, orow) in x.chunks(d).zip(out.chunks_mut(d)) {
        let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let mut sum = 0.0;
        for (o, &v) in orow.iter_mut().zip(row) {
            *o = (v - max).exp();
            sum += *o;
        }
        orow.iter_mut().for_each(|o| *o /= sum);
    }
    out
}

fn argmax(x: &[f64], d: usize) -> Vec<f64> {
    x.chunks(d)
        .map(|row| {
            let mut best: Option<(usize, f64)> = None;
            for (j, &v) in row.iter().enumerate() {
                if v.is_nan() {
                    continue;
                }
                if best.is_none_or(|(_, b)| v > b) {
                    best = Some((j, v));
                }
            }
            best.map_or(0.0, |(j, _)| j as f64)
        })
        .collect()
}
