//! Activation rows quantised to int8 per group of 32 for the `int8-dot` kernels: `d = amax / 127`,
//! `q = round(x / d)` (half away from zero, as `f32::round`), clamped to `±127`, with the group's
//! `8 · d · sum(q)` for int4 weights read as unsigned nibbles.
//!
//! Every decode-shaped product with an int8/int4 weight quantises its activations first, on the
//! calling thread, before the weight rows are split across threads, so this runs once per product
//! and per token: with `f32::round` (a libm call per element on the baseline target) it cost
//! 3.0 µs for a 896-wide row and 16 µs for a 4,864-wide one on Zen 4, a sixth of an int4
//! Qwen2-0.5B decode step's small products. The AVX2 path does a group in a few vector
//! instructions with the same bits: the maximum of the magnitudes is exact in any order, the
//! scale and its reciprocal are the same scalar operations, `x · inv` is one IEEE product, and
//! rounding is truncation plus a step away from zero where the dropped fraction is at least a
//! half (the fraction `y - trunc(y)` of an f32 is exact). A group with a non-finite value, or
//! whose reciprocal overflows, takes the scalar path, so the edge cases are the scalar ones.

use super::isa::Isa;
use super::qdot::QuantRows;
use foveate_core::quant::GROUP;

/// The `m` rows of `a` (`[m, k]`, `k` a multiple of 32) quantised per group, on the widest path
/// `isa` allows (the same bits on every path).
pub(crate) fn quantise(a: &[f32], m: usize, k: usize, isa: Isa) -> QuantRows {
    let mut q = vec![0i8; m * k];
    let mut d = vec![0f32; m * k / GROUP];
    let mut c8 = vec![0f32; m * k / GROUP];
    for (g, (x, out)) in a[..m * k]
        .chunks_exact(GROUP)
        .zip(q.chunks_exact_mut(GROUP))
        .enumerate()
    {
        let x: &[f32; GROUP] = x.try_into().expect("group of 32");
        let out: &mut [i8; GROUP] = out.try_into().expect("group of 32");
        #[cfg(target_arch = "x86_64")]
        let done = if isa >= Isa::Avx2 {
            // SAFETY: the CPU runs AVX2 (the selected path is at least `Avx2`).
            unsafe { x86::group(x, out) }
        } else {
            None
        };
        #[cfg(not(target_arch = "x86_64"))]
        let done = {
            let _ = isa;
            None
        };
        let (s, sum) = done.unwrap_or_else(|| group(x, out));
        d[g] = s;
        c8[g] = 8.0 * s * sum as f32;
    }
    QuantRows { q, d, c8 }
}

/// One group on the scalar path: its scale and the sum of its quants.
fn group(x: &[f32; GROUP], out: &mut [i8; GROUP]) -> (f32, i32) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let s = amax / 127.0;
    let inv = if s > 0.0 { 1.0 / s } else { 0.0 };
    let mut sum = 0i32;
    for (o, v) in out.iter_mut().zip(x) {
        *o = (v * inv).round().clamp(-127.0, 127.0) as i8;
        sum += *o as i32;
    }
    (s, sum)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::GROUP;
    use std::arch::x86_64::*;

    /// One group with AVX2: its scale and quant sum, or `None` (nothing written) when a value is
    /// not finite or the scale's reciprocal overflows (the scalar path's edge cases).
    ///
    /// # Safety
    /// The CPU runs AVX2.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn group(x: &[f32; GROUP], out: &mut [i8; GROUP]) -> Option<(f32, i32)> {
        let v: [__m256; 4] = std::array::from_fn(|i| _mm256_loadu_ps(x.as_ptr().add(8 * i)));
        let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
        let a = v.map(|v| _mm256_and_ps(v, abs_mask));
        // A lane that is not below infinity is inf or NaN.
        let inf = _mm256_set1_ps(f32::INFINITY);
        let bad = a.iter().fold(0, |m, &a| {
            m | _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_NLT_UQ>(a, inf))
        });
        if bad != 0 {
            return None;
        }
        let m = _mm256_max_ps(_mm256_max_ps(a[0], a[1]), _mm256_max_ps(a[2], a[3]));
        let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let amax = _mm_cvtss_f32(_mm_max_ss(m, _mm_shuffle_ps::<1>(m, m)));
        let s = amax / 127.0;
        let inv = if s > 0.0 { 1.0 / s } else { 0.0 };
        if !inv.is_finite() {
            return None;
        }
        let (vinv, half, one) = (
            _mm256_set1_ps(inv),
            _mm256_set1_ps(0.5),
            _mm256_set1_ps(1.0),
        );
        let (lo, hi) = (_mm256_set1_ps(-127.0), _mm256_set1_ps(127.0));
        let sign = _mm256_castsi256_ps(_mm256_set1_epi32(i32::MIN));
        let q = v.map(|v| {
            let y = _mm256_mul_ps(v, vinv);
            let t = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(y);
            let frac = _mm256_and_ps(_mm256_sub_ps(y, t), abs_mask);
            // ±1 (the sign of y) where the dropped fraction is at least a half.
            let up = _mm256_and_ps(
                _mm256_cmp_ps::<_CMP_GE_OQ>(frac, half),
                _mm256_or_ps(one, _mm256_and_ps(y, sign)),
            );
            let r = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(t, up), lo), hi);
            _mm256_cvttps_epi32(r)
        });
        let sum = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        let sum = _mm_add_epi32(
            _mm256_castsi256_si128(sum),
            _mm256_extracti128_si256::<1>(sum),
        );
        let sum = _mm_add_epi32(sum, _mm_unpackhi_epi64(sum, sum));
        let sum = _mm_cvtsi128_si32(_mm_add_epi32(sum, _mm_shuffle_epi32::<1>(sum)));
        // Packing works per 128-bit half: dwords come out as a0 b0 c0 d0 | a1 b1 c1 d1.
        let bytes = _mm256_packs_epi16(
            _mm256_packs_epi32(q[0], q[1]),
            _mm256_packs_epi32(q[2], q[3]),
        );
        let bytes = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, bytes);
        Some((s, sum))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values at and around every rounding boundary of a group's scale (halves, just below and
    /// above them, both signs), zeros, an all-zero group, tiny and huge magnitudes, and the
    /// non-finite cases: every path gives the scalar path's bits.
    #[test]
    fn every_path_quantises_as_the_scalar_path() {
        let mut rows: Vec<[f32; GROUP]> = Vec::new();
        // amax 127 makes the scale 1: x is its own scaled value.
        let mut halves = [0f32; GROUP];
        for (i, h) in halves.iter_mut().enumerate() {
            let base = (i as f32 - 16.0) + 0.5;
            *h = match i % 4 {
                0 => base,
                1 => f32::from_bits(base.to_bits() - 1),
                2 => f32::from_bits(base.to_bits() + 1),
                _ => -base,
            };
        }
        halves[31] = 127.0;
        rows.push(halves);
        rows.push([0.0; GROUP]);
        let mut seed = 12345u32;
        for scale in [1e-30f32, 1e-3, 1.0, 3.7, 1e30] {
            rows.push(std::array::from_fn(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                ((seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * scale
            }));
        }
        let mut special = [0.25f32; GROUP];
        special[3] = f32::NAN;
        rows.push(special);
        special[3] = f32::INFINITY;
        rows.push(special);
        special[3] = -0.0;
        special[5] = 1e-44; // a denormal amax: the reciprocal overflows
        rows.push(std::array::from_fn(|i| if i == 5 { 1e-44 } else { 0.0 }));
        rows.push(special);
        let a: Vec<f32> = rows.iter().flatten().copied().collect();
        let (m, k) = (rows.len(), GROUP);
        let want = quantise(&a, m, k, Isa::Scalar);
        for isa in crate::fast::isa::runnable() {
            let got = quantise(&a, m, k, isa);
            assert_eq!(got.q, want.q, "{} quants", isa.name());
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got.d), bits(&want.d), "{} scales", isa.name());
            assert_eq!(bits(&got.c8), bits(&want.c8), "{} sums", isa.name());
        }
        // The boundary row on the scalar path: halves go away from zero.
        assert_eq!(&want.q[..4], &[-16, -14, -14, 13]);
    }
}
