//! Small vector kernels for attention: written once, compiled twice (baseline and AVX2+FMA,
//! picked at run time), so the binary runs anywhere and uses wide SIMD where it exists.

const LANES: usize = 16;

#[inline(always)]
fn fmadd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

#[inline(always)]
fn dot_body<const FMA: bool>(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; LANES];
    let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for l in 0..LANES {
            acc[l] = fmadd::<FMA>(x[l], y[l], acc[l]);
        }
    }
    let mut s = 0.0;
    for (x, y) in ar.iter().zip(br) {
        s = fmadd::<FMA>(*x, *y, s);
    }
    // Pairwise reduction of the lanes.
    let mut w = LANES;
    while w > 1 {
        w /= 2;
        for l in 0..w {
            acc[l] += acc[l + w];
        }
    }
    acc[0] + s
}

#[inline(always)]
fn axpy_body<const FMA: bool>(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y = fmadd::<FMA>(a, *x, *y);
    }
}

/// exp(x) for f32 by range reduction (x = n·ln2 + r, |r| <= ln2/2) and a degree-6 polynomial:
/// relative error about 2e-7, branch-free so it vectorises. Inputs below -87 give 2^-126-ish
/// (callers zero masked entries themselves).
#[inline(always)]
fn exp_approx<const FMA: bool>(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E).round_ties_even();
    let r = fmadd::<FMA>(-n, LN2_LO, fmadd::<FMA>(-n, LN2_HI, x));
    let mut p = 1.0 / 720.0;
    for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = fmadd::<FMA>(p, r, c);
    }
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// `y[i] = exp(y[i] - m)`; returns the sum.
#[inline(always)]
fn exp_sub_body<const FMA: bool>(y: &mut [f32], m: f32) -> f32 {
    let mut acc = [0f32; 8];
    let mut chunks = y.chunks_exact_mut(8);
    for c in &mut chunks {
        for l in 0..8 {
            c[l] = exp_approx::<FMA>(c[l] - m);
            acc[l] += c[l];
        }
    }
    let mut s = 0.0;
    for v in chunks.into_remainder() {
        *v = exp_approx::<FMA>(*v - m);
        s += *v;
    }
    acc.iter().sum::<f32>() + s
}

#[inline(always)]
fn silu_mul_body<const FMA: bool>(out: &mut [f32], g: &[f32], u: &[f32]) {
    for ((o, &g), &u) in out.iter_mut().zip(g).zip(u) {
        *o = g / (1.0 + exp_approx::<FMA>(-g)) * u;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    /// [`super::half_rows`] with F16C, eight values at a time.
    ///
    /// # Safety
    /// The CPU has AVX2 and F16C; the caller checked the extents.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn half_rows(
        src: *const u16,
        (start, step, rows, d): (usize, usize, usize, usize),
        bf16: bool,
        dst: *mut f32,
    ) {
        use std::arch::x86_64::*;
        for r in 0..rows {
            let (s, o) = (src.add(start + r * step), dst.add(r * d));
            let mut c = 0;
            while c + 8 <= d {
                let h = _mm_loadu_si128(s.add(c) as *const __m128i);
                let v = if bf16 {
                    _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
                } else {
                    _mm256_cvtph_ps(h)
                };
                _mm256_storeu_ps(o.add(c), v);
                c += 8;
            }
            for c in c..d {
                *o.add(c) = super::half_to_f32(*s.add(c), bf16);
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn silu_mul(out: &mut [f32], g: &[f32], u: &[f32]) {
        super::silu_mul_body::<true>(out, g, u)
    }
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn exp_sub(y: &mut [f32], m: f32) -> f32 {
        super::exp_sub_body::<true>(y, m)
    }
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        super::dot_body::<true>(a, b)
    }
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
        super::axpy_body::<true>(y, a, x)
    }
    #[target_feature(enable = "avx2")]
    pub unsafe fn scale(y: &mut [f32], a: f32) {
        y.iter_mut().for_each(|v| *v *= a)
    }
    pub fn available() -> bool {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
}

/// `sum a[i]·b[i]`.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if x86::available() {
        // SAFETY: the CPU has AVX2 and FMA (checked at run time).
        return unsafe { x86::dot(a, b) };
    }
    dot_body::<false>(a, b)
}

/// `y += a·x`.
#[inline]
pub fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if x86::available() {
        // SAFETY: as above.
        return unsafe { x86::axpy(y, a, x) };
    }
    axpy_body::<false>(y, a, x)
}

/// `y[i] = exp(y[i] - m)` (fast polynomial exp); returns the sum of the new values.
#[inline]
pub fn exp_sub(y: &mut [f32], m: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if x86::available() {
        // SAFETY: as above.
        return unsafe { x86::exp_sub(y, m) };
    }
    exp_sub_body::<false>(y, m)
}

/// `out[i] = silu(g[i]) · u[i]` with `silu(x) = x / (1 + exp(-x))` (fast polynomial exp), over
/// the shortest of the three.
#[inline]
pub fn silu_mul(out: &mut [f32], g: &[f32], u: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if x86::available() {
        // SAFETY: as above.
        return unsafe { x86::silu_mul(out, g, u) };
    }
    silu_mul_body::<false>(out, g, u)
}

fn half_to_f32(x: u16, bf16: bool) -> f32 {
    if bf16 {
        f32::from_bits((x as u32) << 16)
    } else {
        half::f16::from_bits(x).to_f32()
    }
}

/// `rows` rows of `d` 16-bit values (f16, or bf16 when `bf16`) as f32 into `dst` (`rows · d`): row
/// `r` starts at element `start + r · step` of `src`. One call for a KV head's rows (a row is a
/// few cache lines: a call per row cost more than converting it).
pub fn half_rows(
    src: &[u16],
    (start, step, rows, d): (usize, usize, usize, usize),
    bf16: bool,
    dst: &mut [f32],
) {
    if rows == 0 || d == 0 {
        return;
    }
    assert!(start + (rows - 1) * step + d <= src.len() && dst.len() >= rows * d);
    #[cfg(target_arch = "x86_64")]
    if super::isa::Isa::Avx2.supported() {
        // SAFETY: the CPU has AVX2, FMA and F16C; the extents are checked above.
        return unsafe {
            x86::half_rows(src.as_ptr(), (start, step, rows, d), bf16, dst.as_mut_ptr())
        };
    }
    for r in 0..rows {
        let row = &src[start + r * step..][..d];
        for (o, &x) in dst[r * d..(r + 1) * d].iter_mut().zip(row) {
            *o = half_to_f32(x, bf16);
        }
    }
}

/// `y *= a`.
#[inline]
pub fn scale(y: &mut [f32], a: f32) {
    #[cfg(target_arch = "x86_64")]
    if x86::available() {
        // SAFETY: as above.
        return unsafe { x86::scale(y, a) };
    }
    y.iter_mut().for_each(|v| *v *= a)
}

#[cfg(test)]
mod tests {
    #[test]
    fn dot_and_axpy_match_plain_loops() {
        for n in [0usize, 1, 7, 16, 33, 100] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let want: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            assert!((super::dot(&a, &b) as f64 - want).abs() < 1e-4, "n={n}");
            let mut y = b.clone();
            super::axpy(&mut y, 2.0, &a);
            for i in 0..n {
                assert!((y[i] - (b[i] + 2.0 * a[i])).abs() < 1e-6);
            }
        }
    }

    /// SiLU times the up value against f64 over the range a gate takes (and past exp's clamp):
    /// relative error within a few f32 ulps, both ends exact in the limit.
    #[test]
    fn silu_mul_matches_f64() {
        let g: Vec<f32> = (0..4001).map(|i| -100.0 + i as f32 * 0.05).collect();
        let u: Vec<f32> = (0..g.len()).map(|i| 1.0 + (i % 7) as f32 * 0.25).collect();
        let mut out = vec![f32::NAN; g.len()];
        super::silu_mul(&mut out, &g, &u);
        for ((&g, &u), &o) in g.iter().zip(&u).zip(&out) {
            let want = g as f64 / (1.0 + (-(g as f64)).exp()) * u as f64;
            let err = (o as f64 - want).abs();
            assert!(
                err <= 1e-6 * want.abs() + 1e-30,
                "g={g} u={u}: {o} vs {want}"
            );
        }
    }

    /// Strided f16 and bf16 rows, widths with and without a partial block of 8, as the scalar
    /// conversion gives them.
    #[test]
    fn half_rows_convert_strided_rows() {
        for d in [8usize, 12, 16, 3] {
            let (rows, step, start) = (5, 3 * d + 1, 2);
            let src: Vec<u16> = (0..start + rows * step + d)
                .map(|i| half::f16::from_f32(i as f32 * 0.37 - 7.0).to_bits())
                .collect();
            for bf16 in [false, true] {
                let mut dst = vec![f32::NAN; rows * d];
                super::half_rows(&src, (start, step, rows, d), bf16, &mut dst);
                for r in 0..rows {
                    for c in 0..d {
                        let want = super::half_to_f32(src[start + r * step + c], bf16);
                        assert_eq!(
                            dst[r * d + c].to_bits(),
                            want.to_bits(),
                            "d {d} bf16 {bf16}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn fast_exp_is_accurate() {
        let mut xs: Vec<f32> = (0..2001).map(|i| -80.0 + i as f32 * 0.0823).collect();
        xs.extend([0.0, -1e-8, 1e-8, -0.3465, 0.3466, 87.5]);
        let mut y = xs.clone();
        let sum = super::exp_sub(&mut y, 1.5);
        let mut want_sum = 0.0f64;
        for (x, got) in xs.iter().zip(&y) {
            let want = ((*x - 1.5) as f64).exp(); // of the f32 argument the kernel sees
            want_sum += want;
            assert!(
                ((*got as f64) - want).abs() <= 1e-6 * want,
                "exp({x} - 1.5): {got} vs {want}"
            );
        }
        assert!(((sum as f64) - want_sum).abs() <= 1e-5 * want_sum);
    }
}
