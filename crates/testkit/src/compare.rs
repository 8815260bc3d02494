//! Comparison of a backend's output with the oracle's.
//!
//! Two measures, both must hold:
//! * `rel_err = ||got - want||_2 / ||want||_2`, the normalised error of the whole tensor (robust to
//!   the odd element that rounds the other way);
//! * `max_abs_err = max_i |got_i - want_i|`, bounded by `abs * max(|want|_inf, 1e-30)`, so one
//!   badly wrong element (an unwritten row, one mask error) cannot hide in the norm of a large
//!   tensor.
//!
//! A NaN or infinity in `got` where `want` is finite fails outright (this is what catches a
//! poisoned output element that the backend never wrote, and a softmax that overflows).
//!
//! Tolerances, per storage dtype (u = unit roundoff):
//! * f32 (u = 6e-8): backends accumulate in f32 while the oracle uses f64; GEMM/attention
//!   reductions of a few hundred terms and library `exp`/`erf`/`tanh` cost ~1e-6 relative,
//!   so rel 2e-5, abs 1e-4 leaves a 10x margin and still catches any real bug (a wrong mask or
//!   activation costs >1e-2).
//! * f16 (u = 4.9e-4): the output is rounded once by each side (RMS ~0.6u each) and kernels may
//!   round one intermediate (e.g. attention probabilities, the MLP hidden layer) to f16:
//!   rel 1e-3 (~2u), abs 4e-3 (~8u, the worst element of a large tensor).
//! * bf16 (u = 3.9e-3): same reasoning, rel 1e-2 (~2.5u), abs 3.2e-2 (~8u).
//! * Exact: data movement (cast, slice, concat, kv_append, embedding) and argmax must match
//!   bit for bit (cast rounds to nearest even, which is deterministic).
//! RoPE in f32 is the one op whose f32 error is larger by construction: the angle `pos * freq`
//! carries an error of ~pos * u, so with positions up to ~1000 its f32 bound is rel/abs 5e-4.

use foveate_core::{DType, HostTensor, Op};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Tolerance {
    /// Bound on `||got - want||_2 / ||want||_2`.
    pub rel: f64,
    /// Bound on `max |got - want|`, as a fraction of `max |want|`.
    pub abs: f64,
    /// Exact comparison (bitwise equal values); `rel`/`abs` are then unused.
    pub exact: bool,
}

impl Tolerance {
    pub const EXACT: Tolerance = Tolerance { rel: 0.0, abs: 0.0, exact: true };

    /// The default tolerance for a float op computed in `dtype` (exact for u32).
    pub fn for_dtype(dtype: DType) -> Tolerance {
        match dtype {
            DType::F32 => Tolerance { rel: 2e-5, abs: 1e-4, exact: false },
            DType::F16 => Tolerance { rel: 1e-3, abs: 4e-3, exact: false },
            DType::BF16 => Tolerance { rel: 1e-2, abs: 3.2e-2, exact: false },
            DType::U32 => Tolerance::EXACT,
            // Weight formats: the op computes in its activations' dtype, on the dequantised values.
            DType::Int8 | DType::Int4 => Tolerance::for_dtype(DType::F32),
        }
    }

    /// The tolerance the matrix uses for `op` with inputs of `dtype` (see the module docs).
    pub fn for_op(op: &Op, dtype: DType) -> Tolerance {
        match op {
            Op::Cast { .. } | Op::Slice { .. } | Op::Concat { .. } | Op::KvAppend(_) | Op::Embedding | Op::Argmax => {
                Tolerance::EXACT
            }
            Op::Rope(_) if dtype == DType::F32 => Tolerance { rel: 5e-4, abs: 5e-4, exact: false },
            _ => Tolerance::for_dtype(dtype),
        }
    }

    /// The tolerance the matrix uses for `variant` of `op` on `inputs`: [`Tolerance::for_op`],
    /// except for the CPU's `int8-dot` Gemm on an int8/int4 weight, which rounds the activations
    /// to int8 per group of 32 (each moves by up to half a step of 1/127 of its group's largest
    /// magnitude: about 0.2 % RMS), and its `bf16-dot` Gemm on any weight not in f32, which rounds
    /// the activations (and f16/int8/int4 weights) to bf16 (up to 2^-9 relative each): bf16's
    /// bounds, or the dtype's own when looser; its `f16-dot` Gemm on an f16 weight rounds the
    /// activations to f16 (2^-11): f16's bounds, or the dtype's own when looser.
    pub fn for_variant(op: &Op, dtype: DType, variant: &str, inputs: &[&foveate_core::TensorDesc]) -> Tolerance {
        let t = Self::for_op(op, dtype);
        let weights = || op.weight_slots().iter().filter_map(|&i| inputs.get(i).map(|d| d.dtype));
        let quant_weight = weights().any(|d| d.is_quant());
        let rounded = (variant == "int8-dot" && quant_weight) || (variant == "bf16-dot" && weights().any(|d| d != DType::F32));
        if variant == "f16-dot" && weights().any(|d| d == DType::F16) {
            let h = Self::for_dtype(DType::F16);
            return Tolerance { rel: t.rel.max(h.rel), abs: t.abs.max(h.abs), exact: false };
        }
        if rounded {
            let b = Self::for_dtype(DType::BF16);
            return Tolerance { rel: t.rel.max(b.rel), abs: t.abs.max(b.abs), exact: false };
        }
        t
    }

    /// The bound between two kernels' outputs (the device-vs-device matrix): each is within
    /// [`Tolerance::for_op`] of the exact result, so they are within twice it of each other.
    pub fn between_kernels(op: &Op, dtype: DType) -> Tolerance {
        let t = Self::for_op(op, dtype);
        Tolerance { rel: 2.0 * t.rel, abs: 2.0 * t.abs, exact: t.exact }
    }
}

/// The outcome of one comparison.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    pub max_abs_err: f64,
    pub rel_err: f64,
    pub pass: bool,
    /// Why it failed: the worst element, or the first NaN, or a shape mismatch.
    pub reason: Option<String>,
}

/// Compares with the default tolerance of `dtype`: `(max_abs_err, rel_err, pass)`.
pub fn compare(got: &HostTensor, want: &HostTensor, dtype: DType) -> (f64, f64, bool) {
    let c = compare_with(got, want, Tolerance::for_dtype(dtype));
    (c.max_abs_err, c.rel_err, c.pass)
}

fn fail(max_abs_err: f64, rel_err: f64, reason: String) -> Comparison {
    Comparison { max_abs_err, rel_err, pass: false, reason: Some(reason) }
}

fn index_str(shape: &[usize], flat: usize) -> String {
    let mut idx = vec![0; shape.len()];
    let mut r = flat;
    for d in (0..shape.len()).rev() {
        if shape[d] > 0 {
            idx[d] = r % shape[d];
            r /= shape[d];
        }
    }
    format!("{idx:?}")
}

/// Compares `got` with `want` under `tol`.
pub fn compare_with(got: &HostTensor, want: &HostTensor, tol: Tolerance) -> Comparison {
    if got.desc != want.desc {
        return fail(f64::INFINITY, f64::INFINITY, format!("output is {}, expected {}", got.desc, want.desc));
    }
    let dims = want.shape().dims().to_vec();
    if want.dtype() == DType::U32 {
        let (g, w) = (got.to_u32(), want.to_u32());
        let mut max_abs = 0f64;
        let mut wrong = 0usize;
        let mut first = None;
        for (i, (&a, &b)) in g.iter().zip(&w).enumerate() {
            if a != b {
                wrong += 1;
                max_abs = max_abs.max((a as f64 - b as f64).abs());
                first.get_or_insert(i);
            }
        }
        let rel = wrong as f64 / w.len().max(1) as f64;
        return match first {
            None => Comparison { max_abs_err: 0.0, rel_err: 0.0, pass: true, reason: None },
            Some(i) => fail(max_abs, rel, format!(
                "{wrong} of {} values differ; first at {}: got {}, want {}",
                w.len(), index_str(&dims, i), g[i], w[i]
            )),
        };
    }
    let (g, w) = (got.to_f64(), want.to_f64());
    let mut diff2 = 0f64;
    let mut want2 = 0f64;
    let mut want_max = 0f64;
    let mut max_abs = 0f64;
    let mut worst = 0usize;
    let mut bad_class: Option<usize> = None;
    let mut inexact: Option<usize> = None;
    for i in 0..w.len() {
        let (a, b) = (g[i], w[i]);
        if !b.is_finite() {
            // The oracle itself produced a non-finite value: demand the same class.
            let same = (a.is_nan() && b.is_nan()) || a == b;
            if !same && bad_class.is_none() {
                bad_class = Some(i);
            }
            continue;
        }
        if !a.is_finite() {
            bad_class.get_or_insert(i);
            continue;
        }
        let d = (a - b).abs();
        diff2 += d * d;
        want2 += b * b;
        want_max = want_max.max(b.abs());
        if d > max_abs {
            max_abs = d;
            worst = i;
        }
        if a.to_bits() != b.to_bits() && !(a == 0.0 && b == 0.0) && inexact.is_none() {
            inexact = Some(i);
        }
    }
    if let Some(i) = bad_class {
        return fail(f64::INFINITY, f64::INFINITY, format!(
            "non-finite mismatch at {}: got {}, want {}",
            index_str(&dims, i), g[i], w[i]
        ));
    }
    let rel = if want2 > 0.0 { (diff2 / want2).sqrt() } else { diff2.sqrt() };
    if tol.exact {
        return match inexact {
            None => Comparison { max_abs_err: 0.0, rel_err: 0.0, pass: true, reason: None },
            Some(i) => fail(max_abs, rel, format!(
                "exact op differs at {}: got {}, want {} (worst at {}: |err| {max_abs:.3e})",
                index_str(&dims, i), g[i], w[i], index_str(&dims, worst)
            )),
        };
    }
    let abs_bound = tol.abs * want_max.max(1e-30);
    let pass = rel <= tol.rel && max_abs <= abs_bound;
    let reason = (!pass).then(|| format!(
        "rel_err {rel:.3e} (bound {:.1e}), max_abs_err {max_abs:.3e} (bound {abs_bound:.3e}) worst at {}: got {}, want {}",
        tol.rel, index_str(&dims, worst), g[worst], w[worst]
    ));
    Comparison { max_abs_err: max_abs, rel_err: rel, pass, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(dt: DType, v: &[f32]) -> HostTensor {
        HostTensor::from_f32(dt, [v.len()], v)
    }

    #[test]
    fn identical_passes_and_reports_zero() {
        let a = t(DType::F32, &[1.0, -2.0, 3.5]);
        assert_eq!(compare(&a, &a, DType::F32), (0.0, 0.0, true));
    }

    #[test]
    fn f32_is_tight_bf16_is_loose() {
        let want = t(DType::F32, &[1.0, 2.0, 3.0, 4.0]);
        let got = t(DType::F32, &[1.0, 2.0, 3.0, 4.001]);
        let (abs, rel, pass) = compare(&got, &want, DType::F32);
        assert!(!pass && (abs - 0.001).abs() < 1e-6 && rel > 1e-4, "{abs} {rel}");
        let (_, _, pass) = compare(&got, &want, DType::BF16);
        assert!(pass);
    }

    #[test]
    fn one_bad_element_fails_through_the_abs_bound() {
        // 1e4 elements, one off by 2% of the scale: the norm (2e-4 rel) hides it, the max does not.
        let want: Vec<f32> = (0..10_000).map(|i| 1.0 + (i % 7) as f32 * 0.1).collect();
        let mut got = want.clone();
        got[1234] += 0.035;
        let c = compare_with(&t(DType::F16, &got), &t(DType::F16, &want), Tolerance::for_dtype(DType::F16));
        assert!(c.rel_err < 1e-3, "{c:?}");
        assert!(!c.pass && c.reason.as_ref().unwrap().contains("[1234]"), "{c:?}");
    }

    #[test]
    fn nan_in_got_fails_even_when_tiny_tolerance_is_irrelevant() {
        let want = t(DType::BF16, &[1.0, 2.0]);
        let got = t(DType::BF16, &[1.0, f32::NAN]);
        let c = compare_with(&got, &want, Tolerance::for_dtype(DType::BF16));
        assert!(!c.pass && c.reason.unwrap().contains("non-finite"));
        let got = t(DType::F32, &[f32::INFINITY, 2.0]);
        assert!(!compare(&got, &t(DType::F32, &[1.0, 2.0]), DType::F32).2);
    }

    #[test]
    fn shape_and_dtype_mismatch_fail() {
        let a = t(DType::F32, &[1.0, 2.0]);
        let b = HostTensor::from_f32(DType::F32, [2, 1], &[1.0, 2.0]);
        assert!(!compare(&a, &b, DType::F32).2);
        assert!(!compare(&t(DType::F16, &[1.0, 2.0]), &a, DType::F32).2);
    }

    #[test]
    fn u32_is_exact() {
        let want = HostTensor::from_u32([3], &[1, 2, 3]);
        assert!(compare(&want, &want, DType::U32).2);
        let got = HostTensor::from_u32([3], &[1, 2, 4]);
        let (abs, rel, pass) = compare(&got, &want, DType::U32);
        assert!(!pass && abs == 1.0 && (rel - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn exact_tolerance_rejects_one_ulp() {
        let want = t(DType::BF16, &[1.0, 2.0]);
        let got = t(DType::BF16, &[1.0, 2.015625]);
        assert!(compare_with(&got, &want, Tolerance::for_dtype(DType::BF16)).pass);
        assert!(!compare_with(&got, &want, Tolerance::EXACT).pass);
    }

    #[test]
    fn zero_reference_uses_absolute_norm() {
        let z = t(DType::F32, &[0.0, 0.0]);
        assert!(compare(&z, &z, DType::F32).2);
        assert!(!compare(&t(DType::F32, &[0.0, 1e-3]), &z, DType::F32).2);
    }
}
