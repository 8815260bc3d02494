//! [`crate::quant::encode_into`] on AVX2: the same bits as the scalar groups
//! ([`crate::quant::encode_group`]), eight lanes at a time. A load quantising at 7B scale spent
//! most of its time in the scalar loop's libm `floorf` / `roundf` calls (the baseline x86-64
//! target has no rounding instruction); here they are `vroundps`.
//!
//! What keeps the bits equal:
//! * the largest magnitude is a lane max (exact; no NaN gets here), the int4 group's extreme the
//!   first element of that magnitude (what the scalar fold keeps on ties), `+0` for a zero group;
//! * the scale is the scalar code's own [`crate::quant::f16_scale`];
//! * `v · id` and `+ 8.5` are separate roundings, as in the scalar expression (no FMA);
//! * int8's `round` is half away from zero (Rust's `f32::round`, not `vroundps`' nearest-even):
//!   truncate, then step one away from zero where the dropped fraction is at least one half;
//! * a group with a NaN or an infinity goes to the scalar code.

use crate::quant::{encode_group, f16_scale, GROUP};
use half::f16;
use std::arch::x86_64::*;

/// Whether this CPU runs [`encode`].
pub(crate) fn available() -> bool {
    is_x86_feature_detected!("avx2")
}

/// As [`crate::quant::encode_into`] (its checks done by the caller).
///
/// # Safety
/// The CPU has AVX2; `values` holds whole groups, `quants` and `scales` their sizes.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn encode(int4: bool, values: &[f32], quants: &mut [u8], scales: &mut [u8]) {
    let abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
    let inf = _mm256_set1_ps(f32::INFINITY);
    let qg = if int4 { GROUP / 2 } else { GROUP };
    for (g, x) in values.chunks_exact(GROUP).enumerate() {
        let p = x.as_ptr();
        // SAFETY: a group is 32 values.
        let v = unsafe {
            [
                _mm256_loadu_ps(p),
                _mm256_loadu_ps(p.add(8)),
                _mm256_loadu_ps(p.add(16)),
                _mm256_loadu_ps(p.add(24)),
            ]
        };
        let a = [
            _mm256_and_ps(v[0], abs),
            _mm256_and_ps(v[1], abs),
            _mm256_and_ps(v[2], abs),
            _mm256_and_ps(v[3], abs),
        ];
        // |v| not below infinity (unordered included): a NaN or an infinity.
        let mut odd = 0;
        for &ak in &a {
            odd |= _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_NLT_UQ>(ak, inf));
        }
        let q = &mut quants[g * qg..(g + 1) * qg];
        let d = if odd != 0 {
            encode_group(int4, x, q)
        } else {
            let amax = hmax(_mm256_max_ps(_mm256_max_ps(a[0], a[1]), _mm256_max_ps(a[2], a[3])));
            // SAFETY: `q` holds the group's 16 or 32 bytes; AVX2 as for this function.
            unsafe {
                if int4 {
                    int4_group(&v, &a, amax, x, q)
                } else {
                    int8_group(&v, amax, q)
                }
            }
        };
        scales[2 * g..2 * g + 2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
    }
}

#[target_feature(enable = "avx2")]
fn hmax(v: __m256) -> f32 {
    let m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    _mm_cvtss_f32(_mm_max_ss(m, _mm_shuffle_ps::<1>(m, m)))
}

/// Four vectors of eight i32 (each in `0..=255` or `-128..=127`) as 32 bytes in element order.
#[target_feature(enable = "avx2")]
fn bytes_in_order(i: [__m256i; 4], signed: bool) -> __m256i {
    let ab = _mm256_packs_epi32(i[0], i[1]);
    let cd = _mm256_packs_epi32(i[2], i[3]);
    let b = if signed {
        _mm256_packs_epi16(ab, cd)
    } else {
        _mm256_packus_epi16(ab, cd)
    };
    // Per 128-bit lane the packs interleave four-element runs: restore the order.
    _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
}

/// Scalar: `d = f16(amax / 127)`, `q = round(v / d)` clamped to ±127.
///
/// # Safety
/// AVX2; `q` holds 32 bytes.
#[target_feature(enable = "avx2")]
unsafe fn int8_group(v: &[__m256; 4], amax: f32, q: &mut [u8]) -> f32 {
    let (d, id) = f16_scale(amax / 127.0);
    let idv = _mm256_set1_ps(id);
    let (half, one, sign) = (_mm256_set1_ps(0.5), _mm256_set1_ps(1.0), _mm256_set1_ps(-0.0));
    let (lo, hi) = (_mm256_set1_ps(-127.0), _mm256_set1_ps(127.0));
    let mut i = [_mm256_setzero_si256(); 4];
    for k in 0..4 {
        let p = _mm256_mul_ps(v[k], idv);
        let t = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(p);
        // The dropped fraction is exact; at least one half rounds away from zero.
        let frac = _mm256_andnot_ps(sign, _mm256_sub_ps(p, t));
        let up = _mm256_cmp_ps::<_CMP_GE_OQ>(frac, half);
        let step = _mm256_or_ps(_mm256_and_ps(p, sign), one);
        let r = _mm256_add_ps(t, _mm256_and_ps(up, step));
        i[k] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(r, lo), hi));
    }
    // SAFETY: `q` holds 32 bytes (the caller).
    unsafe { _mm256_storeu_si256(q.as_mut_ptr() as *mut __m256i, bytes_in_order(i, true)) };
    d
}

/// Scalar: `m` = the first element of the largest magnitude, `d = f16(m / -8)`, level
/// `floor(v / d + 8.5)` clamped to `0..=15`; byte `i` = level `i` | level `i + 16` << 4.
///
/// # Safety
/// AVX2; `q` holds 16 bytes.
#[target_feature(enable = "avx2")]
unsafe fn int4_group(v: &[__m256; 4], a: &[__m256; 4], amax: f32, x: &[f32], q: &mut [u8]) -> f32 {
    let m = if amax == 0.0 {
        0.0
    } else {
        let am = _mm256_set1_ps(amax);
        let mut hits = 0u32;
        for (k, &ak) in a.iter().enumerate() {
            hits |= (_mm256_movemask_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(ak, am)) as u32) << (8 * k);
        }
        x[hits.trailing_zeros() as usize]
    };
    let (d, id) = f16_scale(m / -8.0);
    let (idv, bias) = (_mm256_set1_ps(id), _mm256_set1_ps(8.5));
    let (lo, hi) = (_mm256_setzero_ps(), _mm256_set1_ps(15.0));
    let mut l = [_mm256_setzero_si256(); 4];
    for k in 0..4 {
        let f = _mm256_floor_ps(_mm256_add_ps(_mm256_mul_ps(v[k], idv), bias));
        l[k] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(f, lo), hi));
    }
    // Levels 16..32 into the high nibbles of levels 0..16 (as i32, before packing).
    let nib = [
        _mm256_or_si256(l[0], _mm256_slli_epi32::<4>(l[2])),
        _mm256_or_si256(l[1], _mm256_slli_epi32::<4>(l[3])),
        _mm256_setzero_si256(),
        _mm256_setzero_si256(),
    ];
    let b = bytes_in_order(nib, false);
    // SAFETY: `q` holds 16 bytes (the caller).
    unsafe { _mm_storeu_si128(q.as_mut_ptr() as *mut __m128i, _mm256_castsi256_si128(b)) };
    d
}
