//! Horizontal sums of AVX-512 accumulators, sixteen at a time: a decode-shaped kernel ends each
//! weight row with one vector of partial sums per activation row, and summing sixteen rows'
//! vectors together (45 shuffles and adds) costs a fifth of sixteen single reductions
//! (`_mm512_reduce_add_ps`, about 15 dependent operations each), which on a 896-wide row was
//! a tenth of the row's time. Each sum is taken in one fixed order of its own vector's lanes,
//! whatever the other fifteen hold, so a row's result does not depend on where it falls in a
//! group of sixteen.

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use std::arch::x86_64::*;

    /// Lane `t` of the result is the sum of the 16 lanes of `v[t]`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(crate) unsafe fn sum_lanes(v: &[__m512; 16]) -> __m512 {
        // 512 -> 256 bits: u[i] lanes 0-7 fold v[i], 8-15 fold v[i + 8].
        let mut u = [_mm512_setzero_ps(); 8];
        for i in 0..8 {
            let lo = _mm512_shuffle_f32x4::<0b01_00_01_00>(v[i], v[i + 8]);
            let hi = _mm512_shuffle_f32x4::<0b11_10_11_10>(v[i], v[i + 8]);
            u[i] = _mm512_add_ps(lo, hi);
        }
        // 256 -> 128: s[i]'s 128-bit quarters fold v[i], v[i + 8], v[i + 4], v[i + 12].
        let mut s = [_mm512_setzero_ps(); 4];
        for i in 0..4 {
            let lo = _mm512_shuffle_f32x4::<0b10_00_10_00>(u[i], u[i + 4]);
            let hi = _mm512_shuffle_f32x4::<0b11_01_11_01>(u[i], u[i + 4]);
            s[i] = _mm512_add_ps(lo, hi);
        }
        // 128 -> 64: t[i] quarter q holds two floats of s[i]'s quarter q, then two of s[i + 2]'s.
        let mut t = [_mm512_setzero_ps(); 2];
        for i in 0..2 {
            let a = _mm512_castps_pd(s[i]);
            let b = _mm512_castps_pd(s[i + 2]);
            let lo = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
            let hi = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
            t[i] = _mm512_add_ps(lo, hi);
        }
        // 64 -> 32: quarter q, element e is the whole sum of s[[0, 2, 1, 3][e]]'s quarter q.
        let r = _mm512_add_ps(
            _mm512_shuffle_ps::<0b10_00_10_00>(t[0], t[1]),
            _mm512_shuffle_ps::<0b11_01_11_01>(t[0], t[1]),
        );
        // Lane 4q + e holds v[[0, 2, 1, 3][e] + [0, 8, 4, 12][q]]: gather each v[t]'s lane.
        let idx = _mm512_setr_epi32(0, 2, 1, 3, 8, 10, 9, 11, 4, 6, 5, 7, 12, 14, 13, 15);
        _mm512_permutexvar_ps(idx, r)
    }

    /// For each weight row `j` of `rows`: `row(j)` gives its accumulators for the `M` activation
    /// rows; their lane sums are stored at `out[i · ldo + j]`, sixteen rows at a time.
    ///
    /// # Safety
    /// The CPU has AVX-512F; `out` is valid for writes at `i · ldo + j` for `i < M`, `j` in `rows`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(crate) unsafe fn store_row_sums<const M: usize>(
        rows: std::ops::Range<usize>,
        out: *mut f32,
        ldo: usize,
        mut row: impl FnMut(usize) -> [__m512; M],
    ) {
        let mut j = rows.start;
        while j < rows.end {
            let r = 16.min(rows.end - j);
            // Each vector written once, in the layout the sums read (no zeroing pass: a ragged
            // group's missing rows are zero).
            let mut v = [[std::mem::MaybeUninit::<__m512>::uninit(); 16]; M];
            for t in 0..16 {
                let acc = if t < r {
                    row(j + t)
                } else {
                    [_mm512_setzero_ps(); M]
                };
                for i in 0..M {
                    v[i][t].write(acc[i]);
                }
            }
            let mask = ((1u32 << r) - 1) as u16;
            for (i, vi) in v.iter().enumerate() {
                // SAFETY: all 16 written above.
                let vi =
                    &*(vi as *const [std::mem::MaybeUninit<__m512>; 16] as *const [__m512; 16]);
                _mm512_mask_storeu_ps(out.add(i * ldo + j), mask, sum_lanes(vi));
            }
            j += r;
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn sum_lanes_sums_each_vector() {
            if !std::arch::is_x86_feature_detected!("avx512f") {
                eprintln!("skipped: this CPU has no AVX-512");
                return;
            }
            let vals: Vec<[f32; 16]> = (0..16)
                .map(|v| std::array::from_fn(|l| (v * 100 + l * l) as f32))
                .collect();
            let got = unsafe {
                let v: [__m512; 16] = std::array::from_fn(|i| _mm512_loadu_ps(vals[i].as_ptr()));
                let mut out = [0f32; 16];
                _mm512_storeu_ps(out.as_mut_ptr(), sum_lanes(&v));
                out
            };
            for (t, g) in got.iter().enumerate() {
                assert_eq!(*g, vals[t].iter().sum::<f32>(), "lane {t}");
            }
        }

        #[test]
        fn row_sums_land_on_their_rows() {
            if !std::arch::is_x86_feature_detected!("avx512f") {
                eprintln!("skipped: this CPU has no AVX-512");
                return;
            }
            // 37 rows (two full groups of 16 and a ragged one) from row 3, two activation rows.
            const M: usize = 2;
            let (m, ldo, rows) = (M, 50, 3..40);
            let mut out = vec![f32::NAN; m * ldo];
            let val = |i: usize, j: usize, l: usize| (i * 1000 + j * 16 + l) as f32;
            unsafe {
                store_row_sums::<M>(rows.clone(), out.as_mut_ptr(), ldo, |j| {
                    std::array::from_fn(|i| {
                        let lanes: [f32; 16] = std::array::from_fn(|l| val(i, j, l));
                        _mm512_loadu_ps(lanes.as_ptr())
                    })
                });
            }
            for i in 0..m {
                for j in 0..ldo {
                    let want = rows
                        .contains(&j)
                        .then(|| (0..16).map(|l| val(i, j, l)).sum::<f32>());
                    match want {
                        Some(w) => assert_eq!(out[i * ldo + j], w, "row {j} of activation {i}"),
                        None => assert!(out[i * ldo + j].is_nan(), "wrote outside the rows at {j}"),
                    }
                }
            }
        }
    }
}
