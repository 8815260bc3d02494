//! The `bf16-dot` Gemm: bf16 weights against activations rounded to bf16, multiplied with
//! AVX-512 BF16's `vdpbf16ps` (32 bf16 products per instruction, summed in pairs into 16 f32
//! lanes): [`matmul`] for products of more than [`super::gemm::GEMV_M`] rows (prefill, batches),
//! [`gemv`] for decode-shaped ones on a bf16 weight (one load and one `vdpbf16ps` per 32 weights
//! and activation row: LLaVA-1.5-7B-shaped bf16 decode 13.0-14.0 -> 16.0-18.9 tok/s over the
//! widening AVX2 row kernel, measured with 4 layers).
//!
//! Against `tiled` on a bf16 weight, which converts each panel of weight rows to f32 and runs the
//! f32 GEMM, this does each multiply-add in half an instruction and reads the weights as stored;
//! the price is the activations' rounding to bf16 (8 significant bits, round to nearest even:
//! up to 2^-9 relative per element), the same as the GGUF runtimes' bf16 path. The products are
//! exact in f32; the sums are f32.
//!
//! Other weight formats (f16, int8, int4) are converted to bf16 a panel of rows at a time (one
//! more rounding: 2^-9 relative, small against int8/int4's own steps), so quantised prefill runs
//! at the bf16 kernel's speed.
//!
//! Layout: both operands run along K (a weight row and an activation row are each contiguous),
//! so the weights need no packing. A register tile is 4 weight rows x 4 activation rows: per 32
//! elements of K, 4 + 4 loads and 16 `vdpbf16ps` into 16 accumulators, which a shuffle tree
//! reduces to the 16 dot products at the end of K. Edges clamp the row index (a tile past the last
//! row recomputes the last row and does not store it), and a K that is not a multiple of 32 ends
//! with a masked weight load against zero-padded activations.

use super::gemm::{over_row_chunks, SendPtr};
use super::maybe_par;
use super::weight::Weight;
use rayon::prelude::*;
use std::sync::OnceLock;

pub(crate) const NAME: &str = "bf16-dot";

/// Register tile: weight rows x activation rows.
const TR: usize = 4;
const TC: usize = 4;
/// Activation rows per pass over a task's weight rows: a block of `MB · K` bf16 values stays in
/// the core's L2 while each weight tile is multiplied by all of it.
const BLOCK_BYTES: usize = 384 << 10;

/// Whether this CPU runs the kernel: the AVX-512 path is selected (so `FOVEATE_CPU_ISA` can turn
/// it off) and the CPU has AVX-512 BF16.
pub(crate) fn available() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            super::isa::selected() >= super::isa::Isa::Avx512
                && std::arch::is_x86_feature_detected!("avx512bf16")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

/// Why the kernel cannot run here (for `supports`), or `None` when it can.
pub(crate) fn unavailable_reason() -> Option<String> {
    (!available()).then(|| {
        format!(
            "`{NAME}` needs AVX-512 BF16 on the avx512 kernel path (this process runs `{}`{})",
            super::isa::selected().name(),
            if super::isa::Isa::Avx512.supported() {
                ", and the CPU lacks avx512bf16"
            } else {
                ""
            }
        )
    })
}

thread_local! {
    /// Per-thread panel of weight rows converted to f32 and then to bf16 (weights not stored as
    /// bf16).
    static PANEL: std::cell::RefCell<(Vec<f32>, Vec<u16>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// The `m` rows of `a` (each `k` long) rounded to bf16, each padded with zeros to `kp` (a multiple
/// of 32), and `kp`.
fn round_rows(a: &[f32], m: usize, k: usize) -> (Vec<u16>, usize) {
    let kp = k.next_multiple_of(32);
    let mut abf = vec![0u16; m * kp];
    for (src, dst) in a.chunks(k).zip(abf.chunks_mut(kp)).take(m) {
        // SAFETY: the callers checked `available`.
        unsafe { x86::round_row(src, &mut dst[..k]) };
    }
    (abf, kp)
}

/// Decode-shaped (`m` <= 4): each bf16 weight row streamed once against the `m` activation rows
/// rounded to bf16; parallel over chunks of weight rows. A row's result is the same whatever `m`
/// is (each activation row is summed in one order).
///
/// Panics unless [`available`], `m` is 1 to 4 and the slices hold `m·k`, `n·k` and `m·n` values.
pub(crate) fn gemv(a: &[f32], w: &[u16], m: usize, n: usize, k: usize, out: &mut [f32]) {
    assert!(available(), "bf16dot::gemv on a CPU without the kernel");
    assert!((1..=4).contains(&m) && a.len() >= m * k && w.len() >= n * k && out.len() >= m * n);
    let (abf, kp) = round_rows(a, m, k);
    let dst = SendPtr(out.as_mut_ptr());
    let abf = &abf;
    over_row_chunks(n, |rows| {
        // SAFETY: `available`; this task alone writes columns `rows` of `out` (m·n values,
        // checked above).
        unsafe {
            match m {
                1 => x86::rows::<1>(w, k, abf, kp, rows, dst.get(), n),
                2 => x86::rows::<2>(w, k, abf, kp, rows, dst.get(), n),
                3 => x86::rows::<3>(w, k, abf, kp, rows, dst.get(), n),
                _ => x86::rows::<4>(w, k, abf, kp, rows, dst.get(), n),
            }
        }
    });
}

/// `out[m, n] = sum_k bf16(a[m, k]) · bf16(w[n, k])`: a bf16 weight as stored, any other one
/// converted a panel of rows at a time (f16, int8 and int4 dequantised, then rounded to bf16).
///
/// Panics unless [`available`] and the slices hold `m·k` and `m·n` values.
pub(crate) fn matmul(a: &[f32], w: &Weight, m: usize, n: usize, k: usize, out: &mut [f32]) {
    assert!(available(), "bf16dot::matmul on a CPU without the kernel");
    assert!(a.len() >= m * k && out.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    let (abf, kp) = round_rows(a, m, k);
    let threads = rayon::current_num_threads();
    // Weight rows per panel: a panel of bf16 rows stays in L2 while all the activations pass it.
    let panel = (BLOCK_BYTES / 2 / (2 * k.max(1))).clamp(TR, 64) / TR * TR;
    // Whole panels per task, a few tasks per thread.
    let chunk = n.div_ceil(threads * 4).next_multiple_of(panel).max(panel);
    let mb = (BLOCK_BYTES / (2 * kp)).max(TC) / TC * TC;
    let dst = SendPtr(out.as_mut_ptr());
    let abf = &abf;
    let body = |j0: usize, rows: usize, wp: &[u16]| {
        for i0 in (0..m).step_by(mb) {
            let i1 = (i0 + mb).min(m);
            for j in (0..rows).step_by(TR) {
                for i in (i0..i1).step_by(TC) {
                    // SAFETY: `available`; the tile's rows are clamped into range; this task
                    // alone writes columns j0..j0 + rows of `out`.
                    unsafe { x86::tile(wp, abf, rows, m, k, kp, j, i, dst.get().add(j0), n) };
                }
            }
        }
    };
    maybe_par!(
        (0..n.div_ceil(chunk)),
        (0..n.div_ceil(chunk)).into_par_iter(),
        |c: usize| {
            for j0 in (c * chunk..((c + 1) * chunk).min(n)).step_by(panel) {
                let rows = panel.min(n - j0);
                match w {
                    Weight::BF16(wb) => body(j0, rows, &wb[j0 * k..(j0 + rows) * k]),
                    _ => PANEL.with(|p| {
                        let (f, b) = &mut *p.borrow_mut();
                        f.resize(rows * k, 0.0);
                        b.resize(rows * k, 0);
                        w.rows_f32(j0, rows, k, f);
                        // SAFETY: `available`.
                        unsafe { x86::round_row(f, b) };
                        body(j0, rows, b)
                    }),
                }
            }
        }
    );
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::lanes::x86 as lanes;
    use super::{TC, TR};
    use std::arch::x86_64::*;

    /// 32 bf16 values loaded as integers, as the bf16 vector type (the same 512 bits).
    #[inline]
    fn bh(v: __m512i) -> __m512bh {
        // SAFETY: both are plain 512-bit vectors.
        unsafe { std::mem::transmute::<__m512i, __m512bh>(v) }
    }

    /// `dst[i] = bf16(src[i])`, rounded to nearest even.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    pub(super) unsafe fn round_row(src: &[f32], dst: &mut [u16]) {
        let n = src.len().min(dst.len());
        let mut i = 0;
        while i + 16 <= n {
            let v = _mm512_cvtneps_pbh(_mm512_loadu_ps(src.as_ptr().add(i)));
            _mm256_storeu_si256(
                dst.as_mut_ptr().add(i) as *mut __m256i,
                std::mem::transmute::<__m256bh, __m256i>(v),
            );
            i += 16;
        }
        if i < n {
            let mask = (1u16 << (n - i)) - 1;
            let v = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(mask, src.as_ptr().add(i)));
            _mm256_mask_storeu_epi16(
                dst.as_mut_ptr().add(i) as *mut i16,
                mask,
                std::mem::transmute::<__m256bh, __m256i>(v),
            );
        }
    }

    /// One bf16 weight row `w` (`k` long) against the `M` rows of `abf` (each `kp` long, zero
    /// past `k`): two accumulators per activation row, 64 elements a step.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    #[inline]
    unsafe fn row<const M: usize>(w: &[u16], abf: &[u16], kp: usize) -> [__m512; M] {
        let k = w.len();
        let (wp, ap) = (w.as_ptr(), abf.as_ptr());
        let mut acc = [[_mm512_setzero_ps(); 2]; M];
        let full = k / 32 * 32;
        let mut kk = 0;
        while kk + 64 <= full {
            let w0 = bh(_mm512_loadu_si512(wp.add(kk) as *const _));
            let w1 = bh(_mm512_loadu_si512(wp.add(kk + 32) as *const _));
            for i in 0..M {
                let a = ap.add(i * kp + kk);
                acc[i][0] = _mm512_dpbf16_ps(acc[i][0], w0, bh(_mm512_loadu_si512(a as *const _)));
                acc[i][1] =
                    _mm512_dpbf16_ps(acc[i][1], w1, bh(_mm512_loadu_si512(a.add(32) as *const _)));
            }
            kk += 64;
        }
        if kk < k {
            // One more block, the last one masked to the row (the activations are zero past k).
            let valid = (k - kk).min(32);
            let w0 = bh(_mm512_maskz_loadu_epi16(
                u32::MAX >> (32 - valid),
                wp.add(kk) as *const i16,
            ));
            for i in 0..M {
                let a = bh(_mm512_loadu_si512(ap.add(i * kp + kk) as *const _));
                acc[i][0] = _mm512_dpbf16_ps(acc[i][0], w0, a);
            }
            kk += 32;
            if kk < k {
                let w1 = bh(_mm512_maskz_loadu_epi16(
                    u32::MAX >> (32 - (k - kk)),
                    wp.add(kk) as *const i16,
                ));
                for i in 0..M {
                    let a = bh(_mm512_loadu_si512(ap.add(i * kp + kk) as *const _));
                    acc[i][1] = _mm512_dpbf16_ps(acc[i][1], w1, a);
                }
            }
        }
        acc.map(|[a0, a1]| _mm512_add_ps(a0, a1))
    }

    /// Weight rows `rows` of `w` (each `k` long) against the `M` rows of `abf` (as [`row`]), into
    /// `out[i · ldo + j]`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn rows<const M: usize>(
        w: &[u16],
        k: usize,
        abf: &[u16],
        kp: usize,
        rows: std::ops::Range<usize>,
        out: *mut f32,
        ldo: usize,
    ) {
        lanes::store_row_sums::<M>(rows, out, ldo, |j| {
            row::<M>(&w[j * k..(j + 1) * k], abf, kp)
        });
    }

    /// The 4 x 4 tile: weight rows `j..j + 4` (clamped to `n`) against activation rows `i..i + 4`
    /// (clamped to `m`), stored at `out[i' · ldo + j']` for the rows in range.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    pub(super) unsafe fn tile(
        w: &[u16],
        abf: &[u16],
        n: usize,
        m: usize,
        k: usize,
        kp: usize,
        j: usize,
        i: usize,
        out: *mut f32,
        ldo: usize,
    ) {
        let wr: [*const u16; TR] = std::array::from_fn(|r| w.as_ptr().add((j + r).min(n - 1) * k));
        let ar: [*const u16; TC] =
            std::array::from_fn(|c| abf.as_ptr().add((i + c).min(m - 1) * kp));
        let mut acc = [_mm512_setzero_ps(); 16];
        let full = k / 32 * 32;
        let mut kk = 0;
        while kk < full {
            let wv: [__m512bh; TR] =
                std::array::from_fn(|r| bh(_mm512_loadu_si512(wr[r].add(kk) as *const _)));
            for c in 0..TC {
                let av: __m512bh = bh(_mm512_loadu_si512(ar[c].add(kk) as *const _));
                for r in 0..TR {
                    acc[r * TC + c] = _mm512_dpbf16_ps(acc[r * TC + c], wv[r], av);
                }
            }
            kk += 32;
        }
        if kk < k {
            let mask = u32::MAX >> (32 - (k - kk));
            let wv: [__m512bh; TR] = std::array::from_fn(|r| {
                bh(_mm512_maskz_loadu_epi16(mask, wr[r].add(kk) as *const i16))
            });
            for c in 0..TC {
                // Zero past k (the rows are padded to kp).
                let av: __m512bh = bh(_mm512_loadu_si512(ar[c].add(kk) as *const _));
                for r in 0..TR {
                    acc[r * TC + c] = _mm512_dpbf16_ps(acc[r * TC + c], wv[r], av);
                }
            }
        }
        let mut sums = [0f32; 16];
        _mm512_storeu_ps(sums.as_mut_ptr(), lanes::sum_lanes(&acc));
        for r in 0..TR.min(n - j) {
            for c in 0..TC.min(m - i) {
                *out.add((i + c) * ldo + j + r) = sums[r * TC + c];
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod x86 {
    pub(super) unsafe fn round_row(_: &[f32], _: &mut [u16]) {
        unreachable!("bf16dot runs on x86_64 only")
    }
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn rows<const M: usize>(
        _: &[u16],
        _: usize,
        _: &[u16],
        _: usize,
        _: std::ops::Range<usize>,
        _: *mut f32,
        _: usize,
    ) {
        unreachable!("bf16dot runs on x86_64 only")
    }
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn tile(
        _: &[u16],
        _: &[u16],
        _: usize,
        _: usize,
        _: usize,
        _: usize,
        _: usize,
        _: usize,
        _: *mut f32,
        _: usize,
    ) {
        unreachable!("bf16dot runs on x86_64 only")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::bf16;

    /// `m·k` activations and an `n x k` bf16 weight, uniform in [-0.5, 0.5).
    fn operands(seed: u32, m: usize, n: usize, k: usize) -> (Vec<f32>, Vec<u16>) {
        let mut seed = seed;
        let mut rnd = move || {
            seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
            (seed >> 8) as f32 / (1 << 24) as f32 - 0.5
        };
        let a = (0..m * k).map(|_| rnd()).collect();
        let w = (0..n * k)
            .map(|_| bf16::from_f32(rnd()).to_bits())
            .collect();
        (a, w)
    }

    /// `out` (`m x n`) against f64 sums of the same bf16-rounded operands: only the f32
    /// summation may differ.
    fn check(a: &[f32], w: &[u16], m: usize, n: usize, k: usize, out: &[f32]) {
        for i in 0..m {
            for j in 0..n {
                let want: f64 = (0..k)
                    .map(|t| {
                        bf16::from_f32(a[i * k + t]).to_f64()
                            * bf16::from_bits(w[j * k + t]).to_f64()
                    })
                    .sum();
                let got = out[i * n + j] as f64;
                assert!(
                    (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                    "m{m} n{n} k{k} ({i}, {j}): {got} vs {want}"
                );
            }
        }
    }

    /// The decode kernel at ragged K, and a row's bits the same whatever `m` is.
    #[test]
    fn gemv_matches_the_rounded_operands_and_does_not_depend_on_m() {
        if !available() {
            eprintln!("skipped: {}", unavailable_reason().unwrap_or_default());
            return;
        }
        let shapes = [
            (5, 32),
            (9, 33),
            (6, 64),
            (7, 65),
            (3, 100),
            (4, 96),
            (2, 1),
            (3, 127),
        ];
        for (s, &(n, k)) in shapes.iter().enumerate() {
            let (a, w) = operands(11 + s as u32, 4, n, k);
            let mut first = vec![0f32; n];
            for m in 1..=4 {
                let mut out = vec![f32::NAN; m * n];
                gemv(&a, &w, m, n, k, &mut out);
                check(&a, &w, m, n, k, &out);
                if m == 1 {
                    first.copy_from_slice(&out);
                }
                assert_eq!(
                    first,
                    out[..n],
                    "n{n} k{k}: row 0 at m = {m} differs from m = 1"
                );
            }
        }
    }

    /// The prefill kernel at edge shapes (partial tiles, K not a multiple of 32).
    #[test]
    fn matches_the_rounded_operands_at_edge_shapes() {
        if !available() {
            eprintln!("skipped: {}", unavailable_reason().unwrap_or_default());
            return;
        }
        let shapes = [
            (5, 4, 32),
            (7, 9, 33),
            (13, 6, 100),
            (16, 17, 256),
            (4, 1, 1),
            (6, 5, 31),
        ];
        for (s, &(m, n, k)) in shapes.iter().enumerate() {
            let (a, w) = operands(7 + s as u32, m, n, k);
            let mut out = vec![f32::NAN; m * n];
            matmul(&a, &Weight::BF16(&w), m, n, k, &mut out);
            check(&a, &w, m, n, k, &out);
        }
    }
}
