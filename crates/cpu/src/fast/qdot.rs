//! The `int8-dot` Gemm variant: for decode-shaped products (at most 4 rows) with an int8 or int4
//! weight, each activation row is quantised to int8 per group of 32 (`d = amax / 127`,
//! `q = round(x / d)`, scale kept in f32: [`super::actquant`]) and every group's dot product is an
//! integer one (AVX2 `vpmaddubsw` + `vpmaddwd`: 32 products summed exactly in i32), scaled by
//! both groups' scales and accumulated in f32. It reads 8.5 or 4.5 bits per weight and no f32 weight value at
//! all; the price is the activations' rounding (up to half an int8 step of each group's largest
//! magnitude), so its matrix tolerance is looser than `tiled`'s. Every other product (more rows,
//! float weights) runs exactly as `tiled`.
//!
//! The AVX2 row kernel stages each weight row's product scales `dw_g · da_g` once (f16 scales
//! converted eight at a time), then per group: int8 weights go through the sign trick (`|w|` as
//! the unsigned operand, `a` with `w`'s sign); int4 weights are used as their unsigned nibbles
//! `0..=15` directly and the `-8` comes off once per row as `sum_g dw_g · 8 · da_g · sum(qa_g)`
//! (the activation sums are computed when the row is quantised), so a group costs one load, the
//! nibble split, `maddubs`, `madd`, a convert and an FMA.
//!
//! On the `avx512` path ([`super::isa`]) the same quants run through the VNNI kernels
//! ([`super::vnni`]); [`prepare`] and [`run`] pick the kernel for the path.

use super::isa::Isa;
use super::weight::Weight;
use foveate_core::quant::GROUP;
use half::f16;

/// Variant name.
pub(crate) const NAME: &str = "int8-dot";

/// The `m` rows of `a` (`[m, k]`, `k` a multiple of 32) quantised per group.
pub(crate) struct QuantRows {
    /// `m·k` quants.
    pub q: Vec<i8>,
    /// One scale per group (`amax / 127`, f32).
    pub d: Vec<f32>,
    /// Per group `8 · d · sum(q)`: what an int4 row read as unsigned nibbles `0..=15` (level
    /// `nibble - 8`) takes off each group's product (`sum((u - 8)·q) = sum(u·q) - 8·sum(q)`).
    pub c8: Vec<f32>,
}

/// Activation rows `i0..i0 + m` of a [`QuantRows`] (what the kernels read).
#[derive(Clone, Copy)]
pub(crate) struct Rows<'a> {
    pub q: &'a [i8],
    pub d: &'a [f32],
    pub c8: &'a [f32],
}

impl QuantRows {
    /// Rows `i0..i0 + m` (each `k` long).
    pub(crate) fn rows(&self, i0: usize, m: usize, k: usize) -> Rows<'_> {
        let (g0, g1) = (i0 * k / GROUP, (i0 + m) * k / GROUP);
        Rows {
            q: &self.q[i0 * k..(i0 + m) * k],
            d: &self.d[g0..g1],
            c8: &self.c8[g0..g1],
        }
    }
}

/// The activations of one product, quantised and laid out for the kernel of `isa`.
pub(crate) enum Prepared {
    /// The AVX2 and scalar kernels read [`QuantRows`] as they are.
    Rows(QuantRows),
    #[cfg(target_arch = "x86_64")]
    Vnni(super::vnni::Acts),
}

/// Quantises `a` (`[m, k]`) for products with `w` (int8 or int4) on `isa`.
pub(crate) fn prepare(a: &[f32], m: usize, k: usize, w: &Weight, isa: Isa) -> Prepared {
    let qa = super::actquant::quantise(a, m, k, isa);
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 {
        let int4 = matches!(w, Weight::Int4 { .. });
        return Prepared::Vnni(super::vnni::prepare(&qa, m, k, int4));
    }
    let _ = (w, isa);
    Prepared::Rows(qa)
}

/// [`dots`] for activation rows `i0..i0 + m` of `p` on the kernel it was prepared for
/// (`isa` as given to [`prepare`]).
///
/// # Safety
/// As [`dots`]; `isa` runs on this CPU.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn run(
    w: &Weight,
    p: &Prepared,
    i0: usize,
    m: usize,
    k: usize,
    rows: std::ops::Range<usize>,
    out: *mut f32,
    ldo: usize,
    isa: Isa,
) {
    match p {
        // SAFETY: the caller's contract.
        Prepared::Rows(qa) => unsafe {
            dots(
                w,
                &qa.rows(i0, m, k),
                m,
                k,
                rows,
                out,
                ldo,
                isa >= Isa::Avx2,
            )
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Vnni` is only prepared for `Isa::Avx512`, which the caller checked.
        Prepared::Vnni(acts) => unsafe { super::vnni::dots(w, acts, i0, m, k, rows, out, ldo) },
    }
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
    qa: &Rows,
    m: usize,
    k: usize,
    rows: std::ops::Range<usize>,
    out: *mut f32,
    ldo: usize,
    simd: bool,
) {
    assert!((1..=4).contains(&m) && qa.q.len() >= m * k && k / GROUP * GROUP == k);
    let groups = k / GROUP;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the caller's contract.
    return with_staged(|staged| unsafe {
        dots_with(w, qa, m, groups, rows, out, ldo, simd, staged)
    });
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = simd;
        for j in rows {
            let mut acc = [0f32; 4];
            scalar_row(w, j, groups, qa, m, &mut acc);
            for (i, v) in acc[..m].iter().enumerate() {
                // SAFETY: the caller owns element (i, j).
                unsafe { *out.add(i * ldo + j) = *v };
            }
        }
    }
}

/// Groups whose product scales are staged at a time (a row of 16K elements; a multiple of 4).
#[cfg(target_arch = "x86_64")]
const SEG: usize = 512;

/// Per activation row, the staged product scales of one segment of a weight row.
#[cfg(target_arch = "x86_64")]
type Staged = [[f32; SEG]; 4];

/// Runs `f` with this thread's staging buffer (8 KiB, reused: a decode step makes thousands of
/// row-range calls, and allocating and zeroing it in each showed in the profile).
#[cfg(target_arch = "x86_64")]
fn with_staged<R>(f: impl FnOnce(&mut Staged) -> R) -> R {
    thread_local! {
        static STAGED: std::cell::RefCell<Box<Staged>> =
            std::cell::RefCell::new(Box::new([[0f32; SEG]; 4]));
    }
    STAGED.with_borrow_mut(|s| f(s))
}

/// [`dots`] with a staging buffer.
///
/// # Safety
/// As [`dots`].
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
unsafe fn dots_with(
    w: &Weight,
    qa: &Rows,
    m: usize,
    groups: usize,
    rows: std::ops::Range<usize>,
    out: *mut f32,
    ldo: usize,
    simd: bool,
    staged: &mut Staged,
) {
    let mut acc = [0f32; 4];
    let mut j = rows.start;
    // One activation row against an int4 weight: four weight rows at a time (one activation
    // load for four products, four independent accumulators; measured 2.5x on Qwen2-0.5B's
    // 4864 x 896 projections). Int8 rows stay one at a time: four 32-byte streams ran slower.
    if simd && m == 1 && matches!(w, Weight::Int4 { .. }) {
        while j + 4 <= rows.end {
            // SAFETY: `simd` is only true where the CPU has AVX2, FMA and F16C.
            unsafe { x86::rows4(w, j, groups, qa, &mut acc, staged) };
            for (r, v) in acc.iter().enumerate() {
                // SAFETY: the caller owns elements (0, j..j + 4).
                unsafe { *out.add(j + r) = *v };
            }
            j += 4;
        }
    }
    for j in j..rows.end {
        if simd {
            // SAFETY: `simd` is only true where the CPU has AVX2, FMA and F16C.
            unsafe {
                match m {
                    1 => x86::row::<1>(w, j, groups, qa, &mut acc, staged),
                    2 => x86::row::<2>(w, j, groups, qa, &mut acc, staged),
                    3 => x86::row::<3>(w, j, groups, qa, &mut acc, staged),
                    _ => x86::row::<4>(w, j, groups, qa, &mut acc, staged),
                }
            };
        } else {
            scalar_row(w, j, groups, qa, m, &mut acc);
        }
        for (i, v) in acc[..m].iter().enumerate() {
            // SAFETY: the caller owns element (i, j).
            unsafe { *out.add(i * ldo + j) = *v };
        }
    }
}

fn scalar_row(w: &Weight, j: usize, groups: usize, qa: &Rows, m: usize, out: &mut [f32; 4]) {
    let mut wq = [0i8; GROUP];
    *out = [0.0; 4];
    for b in 0..groups {
        let dw = weight_group(w, j * groups + b, &mut wq);
        for i in 0..m {
            let x = &qa.q[(i * groups + b) * GROUP..][..GROUP];
            let s: i32 = x.iter().zip(&wq).map(|(&a, &b)| a as i32 * b as i32).sum();
            out[i] = (s as f32).mul_add(dw * qa.d[i * groups + b], out[i]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Rows, Staged, Weight, GROUP, SEG};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
    }

    /// `dst[g] = f16(scales[g]) · da[g]` for the `dst.len()` groups (each group's product scale);
    /// returns the int4 correction `sum_g f16(scales[g]) · c8[g]`.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn stage(scales: *const u16, da: *const f32, c8: *const f32, dst: &mut [f32]) -> f32 {
        let n = dst.len();
        let mut corr = _mm256_setzero_ps();
        let mut g = 0;
        while g + 8 <= n {
            let dw = _mm256_cvtph_ps(_mm_loadu_si128(scales.add(g) as *const __m128i));
            _mm256_storeu_ps(
                dst.as_mut_ptr().add(g),
                _mm256_mul_ps(dw, _mm256_loadu_ps(da.add(g))),
            );
            corr = _mm256_fmadd_ps(dw, _mm256_loadu_ps(c8.add(g)), corr);
            g += 8;
        }
        let mut c = hsum(corr);
        while g < n {
            let dw = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(*scales.add(g) as i32)));
            dst[g] = dw * *da.add(g);
            c += dw * *c8.add(g);
            g += 1;
        }
        c
    }

    /// Signed-by-unsigned group products `sum(u · a)` as 8 i32 lanes (the caller supplies the
    /// unsigned operand `u` and the matching signed `a`).
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn group_dot(u: __m256i, a: __m256i) -> __m256 {
        // u8 x i8 pairs: |u·a + u·a| <= 2·127·127 (int8 |w|) or 2·15·127 (int4), no saturation.
        _mm256_cvtepi32_ps(_mm256_madd_epi16(
            _mm256_maddubs_epi16(u, a),
            _mm256_set1_epi16(1),
        ))
    }

    /// The unsigned operand of weight group `g` and the signs to put on the activations: int4 as
    /// its nibbles `0..=15` (activations as they are), int8 as `|w|` (activations take w's sign).
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn weight_operand<const INT4: bool>(wq: *const u8, g: usize) -> (__m256i, __m256i) {
        if INT4 {
            let x = _mm_loadu_si128(wq.add(g * 16) as *const __m128i);
            let u = _mm256_and_si256(
                _mm256_set_m128i(_mm_srli_epi16::<4>(x), x),
                _mm256_set1_epi8(0x0f),
            );
            (u, u)
        } else {
            let w = _mm256_loadu_si256(wq.add(g * GROUP) as *const __m256i);
            (_mm256_sign_epi8(w, w), w)
        }
    }

    /// Activation group at `a` as the signed operand for [`weight_operand`]'s `u`.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn act_operand<const INT4: bool>(a: *const i8, sign: __m256i) -> __m256i {
        let av = _mm256_loadu_si256(a as *const __m256i);
        if INT4 {
            av
        } else {
            _mm256_sign_epi8(av, sign)
        }
    }

    /// One weight group `g` against activation group `a` (row `i` at `a + i·groups·32`) of the M
    /// rows, into accumulator `h` of each row; `b` indexes the staged scales.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn step<const M: usize, const INT4: bool>(
        wq: *const u8,
        g: usize,
        a: *const i8,
        groups: usize,
        sc: *const [f32; SEG],
        b: usize,
        acc: &mut [[__m256; 2]; 4],
        h: usize,
    ) {
        let (u, sign) = weight_operand::<INT4>(wq, g);
        for i in 0..M {
            let av = act_operand::<INT4>(a.add(i * groups * GROUP), sign);
            let s = _mm256_broadcast_ss(&(*sc.add(i))[b]);
            acc[i][h] = _mm256_fmadd_ps(group_dot(u, av), s, acc[i][h]);
        }
    }

    /// `acc[i] += sum_g sc[i][g] · dot(w_g, a_ig)` over one segment of `len` groups starting at
    /// weight group `wg` and activation group `s0`, two groups per step into two accumulators per
    /// row (the FMA chains overlap); each weight group is loaded once for the M rows.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn segment<const M: usize, const INT4: bool>(
        wq: *const u8,
        wg: usize,
        qa: *const i8,
        groups: usize,
        s0: usize,
        len: usize,
        sc: &Staged,
        acc: &mut [[__m256; 2]; 4],
    ) {
        let sc = sc[..M].as_ptr();
        let mut b = 0;
        while b + 2 <= len {
            step::<M, INT4>(wq, wg + b, qa.add((s0 + b) * GROUP), groups, sc, b, acc, 0);
            step::<M, INT4>(
                wq,
                wg + b + 1,
                qa.add((s0 + b + 1) * GROUP),
                groups,
                sc,
                b + 1,
                acc,
                1,
            );
            b += 2;
        }
        if b < len {
            step::<M, INT4>(wq, wg + b, qa.add((s0 + b) * GROUP), groups, sc, b, acc, 0);
        }
    }

    /// One activation row (`M = 1`) against int4 weight rows `j0..j0 + 4`: `out[r]` for each.
    ///
    /// # Safety
    /// The CPU has AVX2, FMA and F16C; `qa` holds `groups · 32` quants; `j0 + 4 <= N`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn rows4(
        w: &Weight,
        j0: usize,
        groups: usize,
        qa: &Rows,
        out: &mut [f32; 4],
        sc: &mut Staged,
    ) {
        let Weight::Int4 { quants, scales } = *w else {
            unreachable!("rows4 reads int4 weights only")
        };
        let wq = quants.as_ptr();
        let mut acc = [[_mm256_setzero_ps(); 2]; 4];
        let mut corr = [0f32; 4];
        let mut s0 = 0;
        while s0 < groups {
            let len = SEG.min(groups - s0);
            for r in 0..4 {
                corr[r] += stage(
                    scales.as_ptr().add((j0 + r) * groups + s0),
                    qa.d.as_ptr().add(s0),
                    qa.c8.as_ptr().add(s0),
                    &mut sc[r][..len],
                );
            }
            let a = qa.q.as_ptr().add(s0 * GROUP);
            quad(
                wq,
                scales.as_ptr(),
                j0 * groups + s0,
                groups,
                a,
                len,
                sc,
                &mut acc,
            );
            s0 += len;
        }
        for r in 0..4 {
            out[r] = hsum(_mm256_add_ps(acc[r][0], acc[r][1])) - corr[r];
        }
    }

    /// The group loop of [`rows4`]: weight group `g + b` of row `r` is group `g + r·groups + b`.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn quad(
        wq: *const u8,
        scales: *const u16,
        g: usize,
        groups: usize,
        a: *const i8,
        len: usize,
        sc: &Staged,
        acc: &mut [[__m256; 2]; 4],
    ) {
        // Four rows of 16-byte groups are four short interleaved streams (448 bytes each on a
        // 896-wide weight), too short for the hardware prefetcher to pick up: fetch the next four
        // rows' quants ahead, one 64-byte line per group step (4 rows x 16 bytes = 64 bytes), and
        // their scales over the first steps. Prefetches do not fault, so addresses past the end
        // of the weight are harmless (wrapping arithmetic, never dereferenced).
        let next_q = wq.wrapping_add((g + 4 * groups) * 16);
        let next_s = (scales as *const u8).wrapping_add((g + 4 * groups) * 2);
        let step = |b: usize, acc: &mut [[__m256; 2]; 4], h: usize| {
            _mm_prefetch::<_MM_HINT_T0>(next_q.wrapping_add(b * 64) as *const i8);
            if b * 64 < 8 * len {
                _mm_prefetch::<_MM_HINT_T0>(next_s.wrapping_add(b * 64) as *const i8);
            }
            let av = _mm256_loadu_si256(a.add(b * GROUP) as *const __m256i);
            for r in 0..4 {
                let (u, _) = weight_operand::<true>(wq, g + r * groups + b);
                let s = _mm256_broadcast_ss(&sc[r][b]);
                acc[r][h] = _mm256_fmadd_ps(group_dot(u, av), s, acc[r][h]);
            }
        };
        // Even groups into accumulator 0, odd into 1 (the order `segment` sums in, so a row's
        // result is the same bits whichever kernel and batch size computed it), two groups per
        // iteration so the accumulator index is a constant and the eight stay in registers (an
        // index `b % 2` kept them on the stack: a store-to-load round trip on every FMA chain).
        let mut b = 0;
        while b + 2 <= len {
            step(b, acc, 0);
            step(b + 1, acc, 1);
            b += 2;
        }
        if b < len {
            step(b, acc, 0);
        }
    }

    /// # Safety
    /// The CPU has AVX2, FMA and F16C; `qa` holds `M · groups · 32` quants.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn row<const M: usize>(
        w: &Weight,
        j: usize,
        groups: usize,
        qa: &Rows,
        out: &mut [f32; 4],
        sc: &mut Staged,
    ) {
        let mut acc = [[_mm256_setzero_ps(); 2]; 4];
        let mut corr = [0f32; 4];
        let (scales, wq, int4) = match *w {
            Weight::Int8 { quants, scales } => (scales, quants.as_ptr() as *const u8, false),
            Weight::Int4 { quants, scales } => (scales, quants.as_ptr(), true),
            _ => unreachable!("int8-dot reads quantised weights only"),
        };
        let g0 = j * groups;
        let mut s0 = 0;
        while s0 < groups {
            let len = SEG.min(groups - s0);
            for i in 0..M {
                let ag = i * groups + s0;
                corr[i] += stage(
                    scales.as_ptr().add(g0 + s0),
                    qa.d.as_ptr().add(ag),
                    qa.c8.as_ptr().add(ag),
                    &mut sc[i][..len],
                );
            }
            let q = qa.q.as_ptr();
            if int4 {
                segment::<M, true>(wq, g0 + s0, q, groups, s0, len, sc, &mut acc);
            } else {
                segment::<M, false>(wq, g0 + s0, q, groups, s0, len, sc, &mut acc);
            }
            s0 += len;
        }
        for i in 0..M {
            let c = if int4 { corr[i] } else { 0.0 };
            out[i] = hsum(_mm256_add_ps(acc[i][0], acc[i][1])) - c;
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

    fn weight(dt: DType, n: usize, k: usize, seed: u32) -> (HostTensor, Vec<u32>) {
        let host = HostTensor::from_f32(dt, [n, k], &vals(n * k, seed));
        let mut words = vec![0u32; host.bytes.len().div_ceil(4)];
        bytemuck::cast_slice_mut::<u32, u8>(&mut words)[..host.bytes.len()]
            .copy_from_slice(&host.bytes);
        (host, words)
    }

    /// A row's result is the same bits whether it was computed alone, with three other rows, or
    /// by a tile of several weight rows (n = 9: tiles of four or two and rows on their own), on
    /// every kernel path this CPU runs, so a request's output does not depend on the batch it
    /// ran in. k has an odd number of groups (33: the VNNI kernels' padded pair).
    #[test]
    fn results_do_not_depend_on_the_row_count() {
        let (n, k) = (9, 32 * 33);
        for isa in crate::fast::isa::runnable() {
            for dt in [DType::Int8, DType::Int4] {
                let (host, words) = weight(dt, n, k, 4);
                let w = Weight::new(&words, &host.desc);
                let m = 4;
                let a = vals(m * k, 77);
                let p = prepare(&a, m, k, &w, isa);
                let mut all = vec![0f32; m * n];
                // SAFETY: all is m x n; isa runs here.
                unsafe { run(&w, &p, 0, m, k, 0..n, all.as_mut_ptr(), n, isa) };
                for rows in 1..=3 {
                    for i0 in 0..=m - rows {
                        let mut some = vec![0f32; rows * n];
                        // SAFETY: some is rows x n.
                        unsafe { run(&w, &p, i0, rows, k, 0..n, some.as_mut_ptr(), n, isa) };
                        for i in 0..rows {
                            for j in 0..n {
                                let (x, y) = (some[i * n + j], all[(i0 + i) * n + j]);
                                assert_eq!(
                                    x.to_bits(),
                                    y.to_bits(),
                                    "{} {dt} rows {i0}+{rows}, ({i},{j}): {x} vs {y}",
                                    isa.name()
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// Every kernel path gives exactly the integer dot products of the quantised operands (up to
    /// f32 summation order), and those are within the activations' rounding of the float
    /// product; k = 96 (three groups: an odd pair) and 1024 + 64 (over the staging segment).
    #[test]
    fn integer_dots_match_on_every_kernel() {
        let n = 9;
        let paths = crate::fast::isa::runnable();
        eprintln!("kernel paths run: {paths:?}");
        for k in [96, 32 * 34 * 16 + 64] {
            for dt in [DType::Int8, DType::Int4] {
                let (host, words) = weight(dt, n, k, 1);
                let w = Weight::new(&words, &host.desc);
                let dec = host.to_f32();
                for m in 1..=4 {
                    let a = vals(m * k, 7 + m as u32);
                    let qa = super::super::actquant::quantise(&a, m, k, Isa::Scalar);
                    let da = &qa.d;
                    for &isa in &paths {
                        let p = prepare(&a, m, k, &w, isa);
                        let mut out = vec![f32::NAN; m * n];
                        // SAFETY: out is m x n and owned here; isa runs here.
                        unsafe { run(&w, &p, 0, m, k, 0..n, out.as_mut_ptr(), n, isa) };
                        for i in 0..m {
                            for j in 0..n {
                                let exact: f64 = (0..k)
                                    .map(|p| {
                                        qa.q[i * k + p] as f64
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
                                let scale: f64 = (0..k)
                                    .map(|p| (a[i * k + p] * dec[j * k + p]).abs() as f64)
                                    .sum();
                                assert!(
                                    (got - exact).abs() <= 1e-5 * (1.0 + scale),
                                    "{} {dt} k{k} m{m}: {got} vs {exact}",
                                    isa.name()
                                );
                                assert!(
                                    (got - float).abs() <= bound * 1.001 + 1e-5 * (1.0 + scale),
                                    "{dt} m{m}: {got} vs float {float}, bound {bound}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
