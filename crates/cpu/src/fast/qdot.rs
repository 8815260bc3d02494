//! The `int8-dot` Gemm variant: for decode-shaped products (at most 4 rows) with an int8 or int4
//! weight, each activation row is quantised to int8 per group of 32 (`d = amax / 127`,
//! `q = round(x / d)`, scale kept in f32) and every group's dot product is an integer one
//! (AVX2 `vpmaddubsw` + `vpmaddwd`: 32 products summed exactly in i32), scaled by both groups'
//! scales and accumulated in f32. It reads 8.5 or 4.5 bits per weight and no f32 weight value at
//! all; the price is the activations' rounding (up to half an int8 step of each group's largest
//! magnitude), so its matrix tolerance is looser than `tiled`'s. Every other product (more rows,
//! float weights) runs exactly as `tiled`.

use super::weight::Weight;
use foveate_core::quant::GROUP;
use half::f16;

/// Variant name.
pub(crate) const NAME: &str = "int8-dot";

/// The `m` rows of `a` (`[m, k]`, `k` a multiple of 32) quantised per group: quants and scales.
pub(crate) fn quantise(a: &[f32], m: usize, k: usize) -> (Vec<i8>, Vec<f32>) {
    let mut q = vec![0i8; m * k];
    let mut d = vec![0f32; m * k / GROUP];
    for (g, (x, out)) in a[..m * k]
        .chunks_exact(GROUP)
        .zip(q.chunks_exact_mut(GROUP))
        .enumerate()
    {
        let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        let s = amax / 127.0;
        let inv = if s > 0.0 { 1.0 / s } else { 0.0 };
        for (o, v) in out.iter_mut().zip(x) {
            *o = (v * inv).round().clamp(-127.0, 127.0) as i8;
        }
        d[g] = s;
    }
    (q, d)
}

/// The quants of weight group `g` as signed levels (int8 `q`, int4 `q - 8`) and its scale.
fn weight_group(w: &Weight, g: usize, dst: &mut [i8; GROUP]) -> f32 {
    match *w {
        Weight::Int8 { quants, scales } => {
            dst.copy_from_slice(&quants[g * GROUP..(g + 1) * GROUP]);
            f16::from_bits(scales[g]).to_f32()
        }
        Weight::Int4 { quants, scales } => {
            let q = &quants[g * 16..(g + 1) * 16];
            for i in 0..16 {
                dst[i] = (q[i] & 15) as i8 - 8;
                dst[i + 16] = (q[i] >> 4) as i8 - 8;
            }
            f16::from_bits(scales[g]).to_f32()
        }
        _ => unreachable!("int8-dot reads quantised weights only"),
    }
}

/// For each weight row `j` in `rows`: `out[i·ldo + j] = sum_g dw_g · da_ig · (qw_g · qa_ig)`.
///
/// # Safety
/// As [`super::weight::dots`]: `out` valid for writes at `i·ldo + j`, owned by this call.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn dots(
    w: &Weight,
    qa: &[i8],
    da: &[f32],
    m: usize,
    k: usize,
    rows: std::ops::Range<usize>,
    out: *mut f32,
    ldo: usize,
    simd: bool,
) {
    assert!((1..=4).contains(&m) && qa.len() >= m * k && k / GROUP * GROUP == k);
    let groups = k / GROUP;
    let mut acc = [0f32; 4];
    for j in rows {
        #[cfg(target_arch = "x86_64")]
        if simd {
            // SAFETY: `simd` is only true where the CPU has AVX2, FMA and F16C.
            unsafe { x86::row(w, j, groups, qa, da, m, &mut acc) };
        } else {
            scalar_row(w, j, groups, qa, da, m, &mut acc);
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = simd;
            scalar_row(w, j, groups, qa, da, m, &mut acc);
        }
        for (i, v) in acc[..m].iter().enumerate() {
            // SAFETY: the caller owns element (i, j).
            unsafe { *out.add(i * ldo + j) = *v };
        }
    }
}

fn scalar_row(
    w: &Weight,
    j: usize,
    groups: usize,
    qa: &[i8],
    da: &[f32],
    m: usize,
    out: &mut [f32; 4],
) {
    let mut wq = [0i8; GROUP];
    *out = [0.0; 4];
    for b in 0..groups {
        let dw = weight_group(w, j * groups + b, &mut wq);
        for i in 0..m {
            let x = &qa[(i * groups + b) * GROUP..][..GROUP];
            let s: i32 = x.iter().zip(&wq).map(|(&a, &b)| a as i32 * b as i32).sum();
            out[i] = (s as f32).mul_add(dw * da[i * groups + b], out[i]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Weight, GROUP};
    use std::arch::x86_64::*;

    /// One weight group as 32 signed levels, and its scale.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn group(w: &Weight, g: usize) -> (__m256i, f32) {
        let (v, s) = match *w {
            Weight::Int8 { quants, scales } => (
                _mm256_loadu_si256(quants.as_ptr().add(g * GROUP) as *const __m256i),
                scales[g],
            ),
            Weight::Int4 { quants, scales } => {
                let bytes = _mm_loadu_si128(quants.as_ptr().add(g * 16) as *const __m128i);
                let mask = _mm_set1_epi8(0x0f);
                let lo = _mm_and_si128(bytes, mask);
                let hi = _mm_and_si128(_mm_srli_epi16::<4>(bytes), mask);
                (
                    _mm256_sub_epi8(_mm256_set_m128i(hi, lo), _mm256_set1_epi8(8)),
                    scales[g],
                )
            }
            _ => unreachable!("int8-dot reads quantised weights only"),
        };
        (v, _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(s as i32))))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
    }

    /// # Safety
    /// The CPU has AVX2, FMA and F16C; `qa` holds `m · groups · 32` quants.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn row(
        w: &Weight,
        j: usize,
        groups: usize,
        qa: &[i8],
        da: &[f32],
        m: usize,
        out: &mut [f32; 4],
    ) {
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_ps(); 4];
        for b in 0..groups {
            let (wq, dw) = group(w, j * groups + b);
            // |w| as unsigned bytes, and a with w's sign: vpmaddubsw multiplies u8 by i8.
            let wabs = _mm256_sign_epi8(wq, wq);
            for i in 0..m {
                let a =
                    _mm256_loadu_si256(qa.as_ptr().add((i * groups + b) * GROUP) as *const __m256i);
                let pairs = _mm256_maddubs_epi16(wabs, _mm256_sign_epi8(a, wq)); // |.| <= 2·127·127
                let sums = _mm256_madd_epi16(pairs, ones);
                let scale = _mm256_set1_ps(dw * da[i * groups + b]);
                acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), scale, acc[i]);
            }
        }
        for i in 0..m {
            out[i] = hsum(acc[i]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foveate_core::{DType, HostTensor};

    fn vals(n: usize, seed: u32) -> Vec<f32> {
        (0..n as u32)
            .map(|i| {
                ((i.wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32 / (1u32 << 24) as f32)
                    * 2.0
                    - 1.0
            })
            .collect()
    }

    /// Both kernels give exactly the integer dot products of the quantised operands (up to f32
    /// summation order), and those are within the activations' rounding of the float product.
    #[test]
    fn integer_dots_match_on_both_kernels() {
        let (n, k) = (9, 96);
        for dt in [DType::Int8, DType::Int4] {
            let host = HostTensor::from_f32(dt, [n, k], &vals(n * k, 1));
            let mut words = vec![0u32; host.bytes.len().div_ceil(4)];
            bytemuck::cast_slice_mut::<u32, u8>(&mut words)[..host.bytes.len()]
                .copy_from_slice(&host.bytes);
            let w = Weight::new(&words, &host.desc);
            let dec = host.to_f32();
            for m in 1..=4 {
                let a = vals(m * k, 7 + m as u32);
                let (qa, da) = quantise(&a, m, k);
                let kernels: &[bool] = if super::super::weight::simd_enabled() {
                    &[false, true]
                } else {
                    &[false]
                };
                for &simd in kernels {
                    let mut out = vec![f32::NAN; m * n];
                    // SAFETY: out is m x n and owned here.
                    unsafe { dots(&w, &qa, &da, m, k, 0..n, out.as_mut_ptr(), n, simd) };
                    for i in 0..m {
                        for j in 0..n {
                            let exact: f64 = (0..k)
                                .map(|p| {
                                    qa[i * k + p] as f64
                                        * da[i * k / 32 + p / 32] as f64
                                        * dec[j * k + p] as f64
                                })
                                .sum();
                            let float: f64 = (0..k)
                                .map(|p| a[i * k + p] as f64 * dec[j * k + p] as f64)
                                .sum();
                            // Each activation moved by at most half a step of its group.
                            let bound: f64 = (0..k)
                                .map(|p| {
                                    dec[j * k + p].abs() as f64
                                        * da[i * k / 32 + p / 32] as f64
                                        * 0.5
                                })
                                .sum();
                            let got = out[i * n + j] as f64;
                            assert!(
                                (got - exact).abs() <= 1e-5 * (1.0 + exact.abs()),
                                "{dt} m{m} simd {simd}: {got} vs {exact}"
                            );
                            assert!(
                                (got - float).abs() <= bound * 1.001 + 1e-5,
                                "{dt} m{m}: {got} vs float {float}, bound {bound}"
                            );
                        }
                    }
                }
            }
        }
    }
}
