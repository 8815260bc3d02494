//! The `f16-dot` Gemm: decode-shaped products (at most [`GEMV_M`] rows) on an f16 weight with
//! the activation rows rounded to f16 first, both sides widened in registers (F16C) and
//! multiplied in f32: what the GGUF runtimes do for an F16 weight (they convert the activations
//! to the weight's "dot type").
//!
//! Why: `tiled`'s row kernel reads the activations in f32 beside the f16 weight row. On a wide
//! row that is 19 KiB of activations for K = 4,864 (Qwen2-0.5B's MLP down projection), which no
//! longer stays in L1 beside the weights streaming past, so every row reads them again from L2;
//! in f16 they take half that and stay. Measured (`gemm_cpu ... weights`, 112 MiB of f16 weights,
//! 2 threads, four interleaved rounds): 4,864-wide rows 22-27 GiB/s in `tiled`, 22-36 (32-36 in
//! three of four) here; 896-wide rows 35-43 in `tiled`, 29-39 here. So the default picks it for
//! K >= [`MIN_K`] only ([`crate::variants`]).
//!
//! The price is the activations' rounding to f16 (11 significant bits, round to nearest even: up
//! to 2^-11 relative per element, values past 65,504 become infinite); the products of two f16
//! values are exact in f32, the sums f32. Each activation row is summed in one order whatever
//! the number of rows, so a request decodes alike alone or beside up to three others.

use super::gemm::{over_row_chunks, SendPtr, GEMV_M};
use half::{f16, slice::HalfFloatSliceExt};

pub(crate) const NAME: &str = "f16-dot";

/// The default takes this variant for f16 weights from this K up (rows whose f32 activations
/// pass 8 KiB; see the module doc for the measured crossing).
pub(crate) const MIN_K: usize = 2048;

/// Whether this CPU runs the kernel (AVX2 + FMA + F16C on the selected path).
pub(crate) fn available() -> bool {
    super::weight::simd_enabled()
}

/// `out[m, n] = sum_k f16(a[m, k]) · w[n, k]` for an f16 weight `w` (`[n, k]` as bits).
///
/// Panics unless [`available`], `1 <= m <= GEMV_M` and the slices hold their sizes.
pub(crate) fn gemv(a: &[f32], w: &[u16], m: usize, n: usize, k: usize, out: &mut [f32]) {
    assert!(available(), "f16dot::gemv on a CPU without AVX2/F16C");
    assert!((1..=GEMV_M).contains(&m) && a.len() >= m * k && w.len() >= n * k && out.len() >= m * n);
    let mut ah = vec![f16::ZERO; m * k];
    ah.convert_from_f32_slice(&a[..m * k]);
    let ah: &[u16] = bytemuck::cast_slice(&ah);
    let dst = SendPtr(out.as_mut_ptr());
    over_row_chunks(n, |rows| {
        for j in rows {
            let mut v = [0f32; GEMV_M];
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `available` (AVX2, FMA, F16C); j < n and `ah` holds m·k values.
            unsafe {
                match m {
                    1 => x86::row::<1>(w, j, k, ah, &mut v),
                    2 => x86::row::<2>(w, j, k, ah, &mut v),
                    3 => x86::row::<3>(w, j, k, ah, &mut v),
                    _ => x86::row::<4>(w, j, k, ah, &mut v),
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            unreachable!("`available` is false off x86-64");
            for (i, v) in v[..m].iter().enumerate() {
                // SAFETY: this task alone writes column j of the m output rows (m·n values).
                unsafe { *dst.get().add(i * n + j) = *v };
            }
        }
    });
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::GEMV_M;
    use half::f16;
    use std::arch::x86_64::*;

    /// Row `j` of `w` against the `M` f16 activation rows: per 32 elements, four 8-wide f32
    /// accumulators per activation row; then their sum and the tail of a K that is not a
    /// multiple of 32 element by element.
    ///
    /// # Safety
    /// AVX2, FMA and F16C; `j < n` rows of `k` in `w`; `a` holds `M·k` values.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn row<const M: usize>(w: &[u16], j: usize, k: usize, a: &[u16], out: &mut [f32; GEMV_M]) {
        let h = |p: *const u16| _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i));
        let wp = w.as_ptr().add(j * k);
        let ap = a.as_ptr();
        let mut acc = [[_mm256_setzero_ps(); 4]; M];
        let done = k / 32 * 32;
        for o in (0..done).step_by(32) {
            for c in 0..4 {
                let wv = h(wp.add(o + 8 * c));
                for (i, acc) in acc.iter_mut().enumerate() {
                    acc[c] = _mm256_fmadd_ps(wv, h(ap.add(i * k + o + 8 * c)), acc[c]);
                }
            }
        }
        for (i, acc) in acc.iter().enumerate() {
            let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
            let mut s = crate::fast::weight::x86::hsum(v);
            for p in done..k {
                let (x, y) = (f16::from_bits(a[i * k + p]), f16::from_bits(w[j * k + p]));
                s = x.to_f32().mul_add(y.to_f32(), s);
            }
            out[i] = s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fast::weight::tests::vals;

    /// Against f64 sums of the f16-rounded activations times the f16 weights (the variant's own
    /// math), every row count, K with and without a partial block; and a row's value has the
    /// same bits whatever the number of activation rows beside it.
    #[test]
    fn products_of_f16_rounded_activations() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX2/F16C path (the variant falls back to tiled)");
            return;
        }
        let n = 11;
        for k in [32usize, 37, 96, 4864] {
            let w: Vec<u16> = vals(n * k, k as u32).iter().map(|&x| f16::from_f32(x).to_bits()).collect();
            let a = vals(4 * k, 5);
            let mut alone = vec![0f32; n];
            gemv(&a[..k], &w, 1, n, k, &mut alone);
            for m in 1..=GEMV_M {
                let mut out = vec![f32::NAN; m * n];
                gemv(&a, &w, m, n, k, &mut out);
                for i in 0..m {
                    for j in 0..n {
                        let want: f64 = (0..k)
                            .map(|p| {
                                let x = f16::from_f32(a[i * k + p]).to_f64();
                                x * f16::from_bits(w[j * k + p]).to_f64()
                            })
                            .sum();
                        let got = out[i * n + j] as f64;
                        assert!((got - want).abs() <= 1e-5 * (1.0 + want.abs()), "k{k} m{m} ({i},{j}): {got} vs {want}");
                    }
                }
                assert_eq!(out[..n].iter().map(|v| v.to_bits()).collect::<Vec<_>>(), alone.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), "k{k} m{m}");
            }
        }
    }

    /// The rounding is the variant's: activations with more bits than f16 holds give another
    /// result than the f32-activation product (so the test above would catch a kernel that read
    /// the f32 activations).
    #[test]
    fn activations_are_rounded_to_f16() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX2/F16C path");
            return;
        }
        let k = 64;
        let w = vec![f16::ONE.to_bits(); k];
        let a = vec![1.0 + 2f32.powi(-13); k];
        let mut out = [0f32];
        gemv(&a, &w, 1, 1, k, &mut out);
        assert_eq!(out[0], k as f32, "1 + 2^-13 rounds to 1 in f16");
    }
}
