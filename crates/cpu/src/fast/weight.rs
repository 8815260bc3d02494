//! A weight `[N, K]` read in the format it is stored in, with no widened copy.
//!
//! * Decode-shaped products (a few activation rows, [`dots`]): each weight row is streamed once
//!   and turned into f32 in registers, 32 elements at a time (AVX2 + FMA + F16C: f16 through
//!   `vcvtph2ps`, bf16 as `u16 << 16`, int8 `i8 -> i32 -> f32` times the group's scale, int4 the
//!   two nibbles of a byte minus 8 times the scale), multiplied into the f32 activation rows and
//!   accumulated in f32. Without those CPU features, or with `FOVEATE_CPU_SCALAR=1` in the
//!   environment, a scalar loop does the same.
//! * Larger products convert a panel of rows to f32 ([`Weight::rows_f32`]) into a per-task
//!   buffer and multiply that block (see `gemm::matmul_w`).
//!
//! Quantised values are `q · d` (int8) and `(q - 8) · d` (int4) with `d` the group's f16 scale,
//! computed in f32: both products are exact (at most 7 + 11 significant bits), so every path reads
//! exactly the values `foveate_core::quant::decode` gives the oracle.

use foveate_core::quant::{quant_bytes, GROUP};
use foveate_core::{DType, TensorDesc};
use half::{bf16, f16};

/// A weight `[N, K]` (row-major) over its stored words.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Weight<'a> {
    F32(&'a [f32]),
    F16(&'a [u16]),
    BF16(&'a [u16]),
    /// Planar: `N·K` quants, then one f16 scale per group of 32 along K.
    Int8 {
        quants: &'a [i8],
        scales: &'a [u16],
    },
    /// Planar: 16 bytes per group (byte `i` = element `i` low nibble | element `i + 16` high
    /// nibble), then one f16 scale per group.
    Int4 {
        quants: &'a [u8],
        scales: &'a [u16],
    },
}

impl<'a> Weight<'a> {
    /// The weight stored in `words` under `desc` (any float or weight dtype; u32 is not a weight).
    pub(crate) fn new(words: &'a [u32], desc: &TensorDesc) -> Self {
        let n = desc.numel();
        let bytes = bytemuck::cast_slice::<u32, u8>(words);
        let halves = || &bytemuck::cast_slice::<u32, u16>(words)[..n];
        match desc.dtype {
            DType::F32 => Weight::F32(&bytemuck::cast_slice::<u32, f32>(words)[..n]),
            DType::F16 => Weight::F16(halves()),
            DType::BF16 => Weight::BF16(halves()),
            DType::Int8 | DType::Int4 => {
                // The scales start at an even byte offset (numel is a multiple of 32).
                let qb = quant_bytes(desc.dtype, n);
                let scales = bytemuck::cast_slice::<u8, u16>(&bytes[qb..qb + 2 * (n / GROUP)]);
                if desc.dtype == DType::Int8 {
                    Weight::Int8 {
                        quants: bytemuck::cast_slice::<u8, i8>(&bytes[..qb]),
                        scales,
                    }
                } else {
                    Weight::Int4 {
                        quants: &bytes[..qb],
                        scales,
                    }
                }
            }
            DType::U32 => unreachable!("a u32 tensor is never a weight (Op::infer refuses it)"),
        }
    }

    /// Rows `j0..j0 + rows` (each `k` long) as f32 into `dst[..rows·k]`.
    pub(crate) fn rows_f32(&self, j0: usize, rows: usize, k: usize, dst: &mut [f32]) {
        let (lo, hi) = (j0 * k, (j0 + rows) * k);
        let dst = &mut dst[..hi - lo];
        #[cfg(target_arch = "x86_64")]
        if simd_enabled() && !matches!(self, Weight::F32(_)) {
            // SAFETY: the CPU has AVX2, FMA and F16C; `dst` holds hi - lo values.
            let done = unsafe { x86::span_f32(self, lo, dst) };
            // Only float weights leave a partial block (quantised rows are whole groups).
            return self.rows_f32_scalar(lo + done, hi, &mut dst[done..]);
        }
        self.rows_f32_scalar(lo, hi, dst);
    }

    /// Flat elements `lo..hi` as f32, one at a time (quantised: `lo` a multiple of 32).
    fn rows_f32_scalar(&self, lo: usize, hi: usize, dst: &mut [f32]) {
        match *self {
            Weight::F32(_) | Weight::F16(_) | Weight::BF16(_) => {
                debug_assert_eq!(hi - lo, dst.len());
                self.float_span(lo, dst)
            }
            Weight::Int8 { quants, scales } => {
                for (g, out) in dst.chunks_exact_mut(GROUP).enumerate() {
                    let gi = lo / GROUP + g;
                    let d = f16::from_bits(scales[gi]).to_f32();
                    let q = &quants[gi * GROUP..(gi + 1) * GROUP];
                    out.iter_mut().zip(q).for_each(|(o, &q)| *o = q as f32 * d);
                }
            }
            Weight::Int4 { quants, scales } => {
                for (g, out) in dst.chunks_exact_mut(GROUP).enumerate() {
                    let gi = lo / GROUP + g;
                    let d = f16::from_bits(scales[gi]).to_f32();
                    let q = &quants[gi * 16..(gi + 1) * 16];
                    for i in 0..16 {
                        out[i] = ((q[i] & 15) as f32 - 8.0) * d;
                        out[i + 16] = ((q[i] >> 4) as f32 - 8.0) * d;
                    }
                }
            }
        }
    }
}

/// Whether the AVX2 kernels run: the path [`super::isa::selected`] chose is `avx2` or wider.
pub(crate) fn simd_enabled() -> bool {
    super::isa::selected() >= super::isa::Isa::Avx2
}

/// For each weight row `j` in `rows`: `out[i·ldo + j] = sum_p a[i·k + p] · w[j, p]` for the `m`
/// (1 to 4) rows of `a` (`[m, k]`, f32). `simd` picks the AVX2 kernels (the caller checked
/// [`simd_enabled`]; tests pass either).
///
/// # Safety
/// `out` must be valid for writes at `i·ldo + j` for every `i < m`, `j` in `rows`, and no other
/// thread may write those elements meanwhile.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn dots(
    w: &Weight,
    a: &[f32],
    m: usize,
    k: usize,
    rows: std::ops::Range<usize>,
    out: *mut f32,
    ldo: usize,
    simd: bool,
) {
    assert!((1..=4).contains(&m) && a.len() >= m * k);
    let mut buf = [0f32; 4];
    // bf16 under the AVX2 kernel: the activations in the order `bf16_block` widens the weights
    // in (see `bf16_order`), once per call instead of a widening shuffle per weight vector.
    let permuted;
    let a = if simd && matches!(w, Weight::BF16(_)) {
        permuted = bf16_order(a, m, k);
        &permuted[..]
    } else {
        a
    };
    for j in rows {
        #[cfg(target_arch = "x86_64")]
        if simd {
            // SAFETY: `simd` is only true where the CPU has AVX2, FMA and F16C.
            unsafe {
                match m {
                    1 => x86::row::<1>(w, j, k, a, &mut buf),
                    2 => x86::row::<2>(w, j, k, a, &mut buf),
                    3 => x86::row::<3>(w, j, k, a, &mut buf),
                    _ => x86::row::<4>(w, j, k, a, &mut buf),
                }
            }
        } else {
            scalar_row(w, j, k, a, m, &mut buf);
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = simd;
            scalar_row(w, j, k, a, m, &mut buf);
        }
        for (i, v) in buf[..m].iter().enumerate() {
            // SAFETY: the caller owns element (i, j).
            unsafe { *out.add(i * ldo + j) = *v };
        }
    }
}

/// `a` (`m` rows of `k`) with each whole block of 32 reordered as the AVX2 bf16 kernel reads its
/// weights: `vpunpck{l,h}wd` against zero widens 16 bf16 values to f32 as elements
/// `[0..4, 8..12]` and `[4..8, 12..16]` (per 128-bit lane), so each 16 activations are stored
/// in that order; a partial last block stays in place.
fn bf16_order(a: &[f32], m: usize, k: usize) -> Vec<f32> {
    let mut out = a[..m * k].to_vec();
    for i in 0..m {
        let row = &a[i * k..(i + 1) * k];
        let dst = &mut out[i * k..(i + 1) * k];
        for b in 0..k / GROUP {
            for h in 0..2 {
                let o = b * GROUP + h * 16;
                let src = &row[o..o + 16];
                let d = &mut dst[o..o + 16];
                d[0..4].copy_from_slice(&src[0..4]);
                d[4..8].copy_from_slice(&src[8..12]);
                d[8..12].copy_from_slice(&src[4..8]);
                d[12..16].copy_from_slice(&src[12..16]);
            }
        }
    }
    out
}

/// The scalar kernel: the row decoded 32 elements at a time onto the stack, 8 partial sums.
fn scalar_row(w: &Weight, j: usize, k: usize, a: &[f32], m: usize, out: &mut [f32; 4]) {
    let mut acc = [[0f32; 8]; 4];
    let mut blk = [0f32; GROUP];
    let mut p = 0;
    while p < k {
        let len = GROUP.min(k - p);
        if len == GROUP {
            // A whole block: for quantised weights, exactly one group (k is a multiple of 32).
            w.rows_f32_span(j, k, p, &mut blk);
        } else {
            w.rows_f32_span_short(j, k, p, &mut blk[..len]);
        }
        for i in 0..m {
            let ar = &a[i * k + p..i * k + p + len];
            for (l, (x, y)) in ar.iter().zip(&blk[..len]).enumerate() {
                acc[i][l % 8] += x * y;
            }
        }
        p += len;
    }
    for i in 0..m {
        out[i] = acc[i].iter().sum();
    }
}

impl Weight<'_> {
    /// Elements `p..p + 32` of row `j` as f32 (`p` a multiple of 32).
    fn rows_f32_span(&self, j: usize, k: usize, p: usize, dst: &mut [f32; GROUP]) {
        let lo = j * k + p;
        match *self {
            Weight::Int8 { quants, scales } => {
                let d = f16::from_bits(scales[lo / GROUP]).to_f32();
                dst.iter_mut()
                    .zip(&quants[lo..lo + GROUP])
                    .for_each(|(o, &q)| *o = q as f32 * d);
            }
            Weight::Int4 { quants, scales } => {
                let d = f16::from_bits(scales[lo / GROUP]).to_f32();
                let q = &quants[lo / 2..lo / 2 + 16];
                for i in 0..16 {
                    dst[i] = ((q[i] & 15) as f32 - 8.0) * d;
                    dst[i + 16] = ((q[i] >> 4) as f32 - 8.0) * d;
                }
            }
            _ => self.rows_f32_span_short(j, k, p, dst),
        }
    }

    /// Elements `p..p + dst.len()` of row `j` of a float weight as f32.
    fn rows_f32_span_short(&self, j: usize, k: usize, p: usize, dst: &mut [f32]) {
        self.float_span(j * k + p, dst)
    }

    /// Flat elements `lo..lo + dst.len()` of a float weight as f32.
    fn float_span(&self, lo: usize, dst: &mut [f32]) {
        let hi = lo + dst.len();
        match *self {
            Weight::F32(w) => dst.copy_from_slice(&w[lo..hi]),
            Weight::F16(w) => dst
                .iter_mut()
                .zip(&w[lo..hi])
                .for_each(|(d, &h)| *d = f16::from_bits(h).to_f32()),
            Weight::BF16(w) => dst
                .iter_mut()
                .zip(&w[lo..hi])
                .for_each(|(d, &h)| *d = bf16::from_bits(h).to_f32()),
            Weight::Int8 { .. } | Weight::Int4 { .. } => {
                unreachable!("quantised rows are whole groups")
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    use super::{Weight, GROUP};
    use std::arch::x86_64::*;

    type Block = [__m256; 4];

    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn scale(s: u16) -> __m256 {
        _mm256_set1_ps(_mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(s as i32))))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn f32_block(p: *const f32) -> Block {
        [
            _mm256_loadu_ps(p),
            _mm256_loadu_ps(p.add(8)),
            _mm256_loadu_ps(p.add(16)),
            _mm256_loadu_ps(p.add(24)),
        ]
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn f16_block(p: *const u16) -> Block {
        let h = |o: usize| _mm256_cvtph_ps(_mm_loadu_si128(p.add(o) as *const __m128i));
        [h(0), h(8), h(16), h(24)]
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn bf16_block(p: *const u16) -> Block {
        let h = |o: usize| {
            let x = _mm256_cvtepu16_epi32(_mm_loadu_si128(p.add(o) as *const __m128i));
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(x))
        };
        [h(0), h(8), h(16), h(24)]
    }

    /// 32 bf16 values widened by interleaving with zero (two loads, four unpacks): element order
    /// `[0..4, 8..12], [4..8, 12..16]` per 16, which the activations were put in (`bf16_order`).
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn bf16_block_unpacked(p: *const u16) -> Block {
        let z = _mm256_setzero_si256();
        let w0 = _mm256_loadu_si256(p as *const __m256i);
        let w1 = _mm256_loadu_si256(p.add(16) as *const __m256i);
        let f = _mm256_castsi256_ps;
        [
            f(_mm256_unpacklo_epi16(z, w0)),
            f(_mm256_unpackhi_epi16(z, w0)),
            f(_mm256_unpacklo_epi16(z, w1)),
            f(_mm256_unpackhi_epi16(z, w1)),
        ]
    }

    /// One group: 32 int8 quants times the scale.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn int8_block(q: *const i8, s: u16) -> Block {
        let d = scale(s);
        let h = |o: usize| {
            let x = _mm256_cvtepi8_epi32(_mm_loadl_epi64(q.add(o) as *const __m128i));
            _mm256_mul_ps(_mm256_cvtepi32_ps(x), d)
        };
        [h(0), h(8), h(16), h(24)]
    }

    /// One group: 16 bytes, elements 0..16 in the low nibbles and 16..32 in the high ones.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn int4_block(q: *const u8, s: u16) -> Block {
        let d = scale(s);
        let bytes = _mm_loadu_si128(q as *const __m128i);
        let mask = _mm_set1_epi8(0x0f);
        let lo = _mm_and_si128(bytes, mask);
        let hi = _mm_and_si128(_mm_srli_epi16::<4>(bytes), mask);
        let eight = _mm256_set1_ps(8.0);
        let h = |x: __m128i| {
            _mm256_mul_ps(
                _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(x)), eight),
                d,
            )
        };
        [
            h(lo),
            h(_mm_srli_si128::<8>(lo)),
            h(hi),
            h(_mm_srli_si128::<8>(hi)),
        ]
    }

    /// Flat elements `lo..` of `w` (not f32) as f32 into `dst`, whole blocks of 32 only (for
    /// quantised weights `lo` is a multiple of 32, so blocks are groups); returns how many.
    ///
    /// # Safety
    /// The CPU has AVX2, FMA and F16C; `lo + dst.len()` is within the weight.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn span_f32(w: &Weight, lo: usize, dst: &mut [f32]) -> usize {
        let blocks = dst.len() / GROUP;
        let d = dst.as_mut_ptr();
        macro_rules! run {
            ($decode:expr) => {
                for b in 0..blocks {
                    let v: Block = $decode(b);
                    for c in 0..4 {
                        _mm256_storeu_ps(d.add(b * GROUP + 8 * c), v[c]);
                    }
                }
            };
        }
        match *w {
            Weight::F32(_) => return 0,
            Weight::F16(s) => run!(|b: usize| f16_block(s.as_ptr().add(lo + b * GROUP))),
            Weight::BF16(s) => run!(|b: usize| bf16_block(s.as_ptr().add(lo + b * GROUP))),
            Weight::Int8 { quants, scales } => {
                let g0 = lo / GROUP;
                run!(|b: usize| int8_block(quants.as_ptr().add(lo + b * GROUP), scales[g0 + b]))
            }
            Weight::Int4 { quants, scales } => {
                let g0 = lo / GROUP;
                run!(|b: usize| int4_block(quants.as_ptr().add(lo / 2 + b * 16), scales[g0 + b]))
            }
        }
        blocks * GROUP
    }

    /// The sum of the 8 lanes of `v`.
    ///
    /// # Safety
    /// The CPU has AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    pub(in crate::fast) unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// `out[i] = a[i, ..] · w[j, ..]` for the `M` rows of `a`.
    ///
    /// # Safety
    /// The CPU has AVX2, FMA and F16C; `a` holds `M·k` values and `j < N`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn row<const M: usize>(
        w: &Weight,
        j: usize,
        k: usize,
        a: &[f32],
        out: &mut [f32; 4],
    ) {
        let blocks = k / GROUP;
        let ap = a.as_ptr();
        let mut acc = [[_mm256_setzero_ps(); 4]; M];
        // One loop per format, so each stays a tight loop with the decode inlined.
        macro_rules! run {
            ($decode:expr) => {
                for b in 0..blocks {
                    let wv: Block = $decode(b);
                    for i in 0..M {
                        let x = ap.add(i * k + b * GROUP);
                        for c in 0..4 {
                            acc[i][c] =
                                _mm256_fmadd_ps(wv[c], _mm256_loadu_ps(x.add(8 * c)), acc[i][c]);
                        }
                    }
                }
            };
        }
        let base = j * k;
        match *w {
            Weight::F32(s) => run!(|b: usize| f32_block(s.as_ptr().add(base + b * GROUP))),
            Weight::F16(s) => run!(|b: usize| f16_block(s.as_ptr().add(base + b * GROUP))),
            // `a` is in `bf16_order` here (the caller reordered it).
            Weight::BF16(s) => {
                run!(|b: usize| bf16_block_unpacked(s.as_ptr().add(base + b * GROUP)))
            }
            Weight::Int8 { quants, scales } => {
                let g0 = base / GROUP;
                run!(|b: usize| int8_block(quants.as_ptr().add(base + b * GROUP), scales[g0 + b]))
            }
            Weight::Int4 { quants, scales } => {
                let g0 = base / GROUP;
                run!(|b: usize| int4_block(quants.as_ptr().add(base / 2 + b * 16), scales[g0 + b]))
            }
        }
        let done = blocks * GROUP;
        let mut tail = [0f32; GROUP];
        if done < k {
            // Only float weights have a partial block (quantised rows are whole groups).
            w.rows_f32_span_short(j, k, done, &mut tail[..k - done]);
        }
        for i in 0..M {
            let v = _mm256_add_ps(
                _mm256_add_ps(acc[i][0], acc[i][1]),
                _mm256_add_ps(acc[i][2], acc[i][3]),
            );
            let mut s = hsum(v);
            for (x, y) in a[i * k + done..(i + 1) * k].iter().zip(&tail) {
                s = x.mul_add(*y, s);
            }
            out[i] = s;
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use foveate_core::HostTensor;

    /// Deterministic values in [-1, 1) (also the other kernels' tests' inputs).
    pub(in crate::fast) fn vals(n: usize, seed: u32) -> Vec<f32> {
        (0..n as u32)
            .map(|i| {
                ((i.wrapping_mul(2654435761)
                    .wrapping_add(seed.wrapping_mul(7919))
                    >> 8) as f32
                    / (1u32 << 24) as f32)
                    * 2.0
                    - 1.0
            })
            .collect()
    }

    fn words(h: &HostTensor) -> Vec<u32> {
        let mut w = vec![0u32; h.bytes.len().div_ceil(4)];
        bytemuck::cast_slice_mut::<u32, u8>(&mut w)[..h.bytes.len()].copy_from_slice(&h.bytes);
        w
    }

    /// Every format, every row count 1..=4, K with and without a partial block: both kernels
    /// give the f64 dot products of the decoded weights (`quant::decode`, the oracle's view).
    #[test]
    fn dots_match_the_decoded_weights_on_both_kernels() {
        let n = 13;
        for dt in DType::WEIGHTS {
            for k in [32usize, 64, 96, 37, 5] {
                if dt.is_quant() && k % 32 != 0 {
                    continue;
                }
                let host = HostTensor::from_f32(dt, [n, k], &vals(n * k, k as u32));
                let ws = words(&host);
                let w = Weight::new(&ws, &host.desc);
                let dec = host.to_f32();
                let mut panel = vec![0f32; n * k];
                w.rows_f32(0, n, k, &mut panel);
                assert_eq!(panel, dec, "{dt} k{k}: rows_f32 differs from quant::decode");
                for m in 1..=4 {
                    let a = vals(m * k, 99 + m as u32);
                    let kernels: &[bool] = if crate::fast::isa::Isa::Avx2.supported() {
                        &[false, true]
                    } else {
                        &[false]
                    };
                    for &simd in kernels {
                        let mut out = vec![f32::NAN; m * n];
                        // SAFETY: out is m x n and owned here.
                        unsafe { dots(&w, &a, m, k, 0..n, out.as_mut_ptr(), n, simd) };
                        for i in 0..m {
                            for j in 0..n {
                                let want: f64 = (0..k)
                                    .map(|p| a[i * k + p] as f64 * dec[j * k + p] as f64)
                                    .sum();
                                let got = out[i * n + j] as f64;
                                assert!(
                                    (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                                    "{dt} k{k} m{m} simd {simd} ({i},{j}): {got} vs {want}"
                                );
                            }
                        }
                    }
                }
            }
        }
        eprintln!(
            "simd kernels available: {}",
            crate::fast::isa::Isa::Avx2.supported()
        );
    }

    /// A swapped nibble order (element i+16 in the low nibble) changes the products: the test
    /// above would catch a decoder that read the nibbles the other way round.
    #[test]
    fn int4_nibble_order_matters() {
        let k = 32;
        let host = HostTensor::from_f32(DType::Int4, [1, k], &vals(k, 3));
        let mut swapped = host.clone();
        for b in &mut swapped.bytes[..16] {
            *b = b.rotate_left(4);
        }
        let a = vals(k, 5);
        let get = |h: &HostTensor| {
            let ws = words(h);
            let mut out = [0f32; 1];
            // SAFETY: out is 1 x 1.
            unsafe {
                dots(
                    &Weight::new(&ws, &h.desc),
                    &a,
                    1,
                    k,
                    0..1,
                    out.as_mut_ptr(),
                    1,
                    crate::fast::isa::Isa::Avx2.supported(),
                )
            };
            out[0]
        };
        assert!((get(&host) - get(&swapped)).abs() > 1e-3);
    }
}
