//! The `int8-dot` kernels on AVX-512 VNNI ([`super::isa::Isa::Avx512`]): the same integer dot
//! products as the AVX2 kernels in [`super::qdot`] (the activations quantised to int8 per group
//! of 32 there), two groups per 512-bit register and `vpdpbusd` (64 unsigned-by-signed byte
//! products, four per i32 lane, added to the lane) in place of `maddubs` + `madd`.
//!
//! `vpdpbusd` wants one operand unsigned. The weights are made unsigned by an offset (int4: its
//! stored nibbles `0..=15` are `level + 8`; int8: `w ^ 0x80` is `w + 128`), and the offset's share
//! `offset · (sum of the lane's four activations)` is taken off in the integer accumulator before
//! the first product: each lane starts at `-offset · sum` (computed once per call, when the
//! activations are laid out), so every group's product is exactly `sum(qw · qa)` in i32, with no
//! f32 correction left to cancel.
//!
//! The weights are read as stored, 64 bytes (a block) at a time, and the activations are laid
//! out to match when they are prepared:
//! * int8: a block is groups `g, g+1`: bytes `0..32` group `g`, `32..64` group `g+1` (i32 lanes
//!   0-7 and 8-15); one `vpdpbusd` per block.
//! * int4: a block is groups `g..g+4` (16 stored bytes each). Their low nibbles are elements
//!   `0..16` of each group, the high nibbles elements `16..32`: two `vpdpbusd` per block, one with
//!   the low nibbles against the activations `[g 0..16, g+1 0..16, g+2 0..16, g+3 0..16]`, one
//!   with the high nibbles against elements `16..32` likewise, into the same i32 lanes (lanes 0-3
//!   group `g`, 4-7 `g+1`, 8-11 `g+2`, 12-15 `g+3`): one convert and one FMA per four groups.
//!
//! Each lane's i32 is converted to f32 and multiplied by its group's product scale
//! `dw · da` (the block's 2 or 4 f16 weight scales converted and multiplied by the activation
//! scales in the block step, then spread over the lanes by one permute; staging them per row as
//! the AVX2 kernel does cost a third of the time on 896-wide int4 rows) into f32 accumulators: even
//! blocks into one, odd blocks into another, so an output element is summed in one order however
//! many activation rows (1 to 4) share its weight row's loads. One weight row at a time: tiles
//! of two or four weight rows sharing each activation load ran slower on Zen 4 (Qwen2-0.5B
//! decode, int4 50.7 vs 57.7 tok/s, int8 33.6 vs 46.4).

use super::qdot::QuantRows;
use super::weight::Weight;
use foveate_core::quant::GROUP;

/// Groups per 64-byte weight block: 4 for int4, 2 for int8.
fn block_groups(int4: bool) -> usize {
    if int4 {
        4
    } else {
        2
    }
}

/// Activation rows laid out for the VNNI kernels of one weight format.
pub(crate) struct Acts {
    /// Per row `gp · 32` quants (`gp`: groups rounded up to whole blocks, a padded group all
    /// zero), each block in the weight format's register order (see the module doc).
    q: Vec<i8>,
    /// Per row `gp` scales (0 for a padded group).
    d: Vec<f32>,
    /// Per row and block 16 i32 lanes: `-offset · (sum of the activations that meet the lane's
    /// weight bytes)`.
    lc: Vec<i32>,
    /// Groups per row, rounded up to whole blocks.
    gp: usize,
    int4: bool,
}

/// Lays out `qa`'s `m` rows (each `k` long) for weights in int4 (`int4`) or int8.
///
/// Only called on the [`super::isa::Isa::Avx512`] path (the lane corrections use `vpdpbusd`).
pub(crate) fn prepare(qa: &QuantRows, m: usize, k: usize, int4: bool) -> Acts {
    let groups = k / GROUP;
    let bg = block_groups(int4);
    let gp = groups.next_multiple_of(bg);
    let mut q = vec![0i8; m * gp * GROUP];
    let mut d = vec![0f32; m * gp];
    for i in 0..m {
        let src = &qa.q[i * groups * GROUP..(i + 1) * groups * GROUP];
        let dst = &mut q[i * gp * GROUP..(i + 1) * gp * GROUP];
        d[i * gp..i * gp + groups].copy_from_slice(&qa.d[i * groups..(i + 1) * groups]);
        if !int4 {
            // Groups g, g + 1 side by side: the row as it is (a padded group stays zero).
            dst[..src.len()].copy_from_slice(src);
            continue;
        }
        for (g, src) in src.chunks_exact(GROUP).enumerate() {
            let block = &mut dst[g / 4 * 128..][..128];
            let at = (g % 4) * 16;
            block[at..at + 16].copy_from_slice(&src[..16]);
            block[64 + at..64 + at + 16].copy_from_slice(&src[16..]);
        }
    }
    let mut lc = vec![0i32; q.len() / (bg * GROUP) * 16];
    // SAFETY: this layout is only prepared on the avx512 path (the caller's `isa`); lc holds 16
    // lanes per block of q.
    unsafe { x86::lane_corrections(&q, int4, &mut lc) };
    Acts { q, d, lc, gp, int4 }
}

/// For each weight row `j` in `rows`: `out[i·ldo + j]` for the activation rows `i0..i0 + m`
/// (1 to 4) of `acts` (`out` row `i` is activation row `i0 + i`).
///
/// # Safety
/// The CPU runs [`super::isa::Isa::Avx512`]; `out` valid for writes at `i·ldo + j`, owned by this
/// call; `w` is the int8/int4 weight `acts` was prepared for, with rows of `k`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn dots(
    w: &Weight,
    acts: &Acts,
    i0: usize,
    m: usize,
    k: usize,
    rows: std::ops::Range<usize>,
    out: *mut f32,
    ldo: usize,
) {
    let groups = k / GROUP;
    assert!((1..=4).contains(&m) && acts.gp == groups.next_multiple_of(block_groups(acts.int4)));
    assert!(acts.q.len() >= (i0 + m) * acts.gp * GROUP);
    let (wq, scales) = match *w {
        Weight::Int8 { quants, scales } if !acts.int4 => (quants.as_ptr() as *const u8, scales),
        Weight::Int4 { quants, scales } if acts.int4 => (quants.as_ptr(), scales),
        _ => panic!("vnni::dots: activations prepared for another weight format"),
    };
    assert!(scales.len() >= rows.end * groups);
    let k = x86::Kernel {
        wq,
        scales: scales.as_ptr(),
        groups,
        acts,
        i0,
    };
    // SAFETY: the caller's contract; the rows exist.
    unsafe {
        match (m, acts.int4) {
            (1, true) => k.rows::<1, true>(rows, out, ldo),
            (1, false) => k.rows::<1, false>(rows, out, ldo),
            (2, true) => k.rows::<2, true>(rows, out, ldo),
            (2, false) => k.rows::<2, false>(rows, out, ldo),
            (3, true) => k.rows::<3, true>(rows, out, ldo),
            (3, false) => k.rows::<3, false>(rows, out, ldo),
            (_, true) => k.rows::<4, true>(rows, out, ldo),
            (_, false) => k.rows::<4, false>(rows, out, ldo),
        }
    }
}

mod x86 {
    use super::super::lanes::x86 as lanes;
    use super::{Acts, GROUP};
    use std::arch::x86_64::*;

    /// How far ahead of the blocks being read the kernel prefetches, in weight bytes. Without it
    /// a thread streams int8/int4 weights from DRAM at 15-16 GB/s where float weights stream at
    /// 25-28 (its instructions per byte are several times a float kernel's, so fewer misses are
    /// in flight). Measured on Zen 4 (2 cores, `gemm_cpu` 1x131072x896 and Qwen2-0.5B decode,
    /// interleaved): the next row's bytes (448 ahead for int4, 896 for int8: the earlier choice)
    /// 14.7 / 15.5 GB/s on one thread, 2 KiB 16.8 / 20.2, 4 KiB 16.6 / 19.5; decode on one
    /// thread int4 35.4-37.7 -> 36.9-39.4 tok/s, int8 24.0-28.6 -> 29.4-31.0, on two int8
    /// 40.1-42.2 -> 43.8-45.3, int4 level.
    const PREFETCH: usize = 2048;

    /// For each 64-byte block of `q` (int4: each 128-byte pair of halves), 16 i32 lanes:
    /// `-offset · (sum of the four activations lane l meets)` (offset 8 for int4, 128 for int8).
    ///
    /// # Safety
    /// The CPU runs the avx512 path; `lc` holds 16 lanes per block.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub(super) unsafe fn lane_corrections(q: &[i8], int4: bool, lc: &mut [i32]) {
        let (bytes, offset) = if int4 { (128, 8) } else { (64, 128) };
        assert_eq!(lc.len(), q.len() / bytes * 16);
        let (ones, neg) = (_mm512_set1_epi8(1), _mm512_set1_epi32(-offset));
        for (b, out) in q.chunks_exact(bytes).zip(lc.chunks_exact_mut(16)) {
            // Each lane: 1 · four signed bytes, summed exactly.
            let lo = _mm512_loadu_si512(b.as_ptr() as *const __m512i);
            let mut sum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, lo);
            if int4 {
                let hi = _mm512_loadu_si512(b.as_ptr().add(64) as *const __m512i);
                sum = _mm512_dpbusd_epi32(sum, ones, hi);
            }
            _mm512_storeu_si512(
                out.as_mut_ptr() as *mut __m512i,
                _mm512_mullo_epi32(sum, neg),
            );
        }
    }

    /// What every row of one `dots` call reads.
    pub(super) struct Kernel<'a> {
        pub wq: *const u8,
        pub scales: *const u16,
        pub groups: usize,
        pub acts: &'a Acts,
        pub i0: usize,
    }

    /// The 64 weight bytes of the block starting at byte `at`, of which the first `valid` are
    /// read (the rest zero: a row's last, partial block).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    #[inline]
    unsafe fn load_block<const FULL: bool>(p: *const u8, valid: usize) -> __m512i {
        if FULL {
            _mm512_loadu_si512(p as *const __m512i)
        } else {
            _mm512_maskz_loadu_epi8(u64::MAX >> (64 - valid), p as *const i8)
        }
    }

    /// The weight scales of a block's `bg` groups (4 for int4, 2 for int8) as f32 in the low
    /// lanes, of which the first `valid` are read (the rest zero).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    #[inline]
    unsafe fn weight_scales<const INT4: bool, const FULL: bool>(
        p: *const u16,
        valid: usize,
    ) -> __m128 {
        let h = if !FULL {
            _mm_maskz_loadu_epi16((1u8 << valid) - 1, p as *const i16)
        } else if INT4 {
            _mm_loadl_epi64(p as *const __m128i)
        } else {
            _mm_cvtsi32_si128((p as *const i32).read_unaligned())
        };
        _mm_cvtph_ps(h)
    }

    /// One block step: the block starting at group `g` (of the row) of activation rows `a[i]`
    /// (quants), `lc[i]` (lane corrections) and `da[i]` (scales) against the weight row starting
    /// at group `w0`, into accumulator `h` of each row; `valid` groups of the block exist.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    #[inline]
    unsafe fn block<const M: usize, const INT4: bool, const FULL: bool>(
        wq: *const u8,
        scales: *const u16,
        w0: usize,
        g: usize,
        valid: usize,
        a: &[*const i8; 4],
        lc: &[*const i32; 4],
        da: &[*const f32; 4],
        acc: &mut [[__m512; 2]; M],
        h: usize,
    ) {
        let bg = if INT4 { 4 } else { 2 };
        let x = load_block::<FULL>(
            wq.add((w0 + g) * if INT4 { 16 } else { GROUP }),
            valid * 64 / bg,
        );
        let dw = weight_scales::<INT4, FULL>(scales.add(w0 + g), valid);
        // Lane l of the i32 result belongs to group l / (16 / bg) of the block.
        let idx = if INT4 {
            _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0)
        } else {
            _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0)
        };
        let nib = _mm512_set1_epi8(0x0f);
        let (u0, u1) = if INT4 {
            (
                _mm512_and_si512(x, nib),
                _mm512_and_si512(_mm512_srli_epi16::<4>(x), nib),
            )
        } else {
            (_mm512_xor_si512(x, _mm512_set1_epi8(0x80u8 as i8)), x)
        };
        for i in 0..M {
            let act = a[i].add(g * GROUP);
            let c = _mm512_loadu_si512(lc[i].add(g / bg * 16) as *const __m512i);
            let mut dot = _mm512_dpbusd_epi32(c, u0, _mm512_loadu_si512(act as *const __m512i));
            if INT4 {
                let hi = _mm512_loadu_si512(act.add(64) as *const __m512i);
                dot = _mm512_dpbusd_epi32(dot, u1, hi);
            }
            // The activation scales of a padded group are 0 (`prepare`), the weight scales of
            // groups past the row's end not read.
            let d = if INT4 {
                _mm_loadu_ps(da[i].add(g))
            } else {
                _mm_castpd_ps(_mm_load_sd(da[i].add(g) as *const f64))
            };
            let s4 = _mm_mul_ps(dw, d);
            let scale = _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(s4));
            acc[i][h] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), scale, acc[i][h]);
        }
    }

    impl Kernel<'_> {
        /// Weight rows `rows` against activation rows `i0..i0 + M` into `out[i · ldo + j]`.
        ///
        /// # Safety
        /// As [`super::dots`].
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
        pub(super) unsafe fn rows<const M: usize, const INT4: bool>(
            &self,
            rows: std::ops::Range<usize>,
            out: *mut f32,
            ldo: usize,
        ) {
            lanes::store_row_sums::<M>(rows, out, ldo, |j| self.row::<M, INT4>(j));
        }

        /// Weight row `j` against activation rows `i0..i0 + M`: element `i` holds lanes whose sum
        /// is row `i`'s result.
        ///
        /// # Safety
        /// As [`super::dots`], with row `j` in the weight.
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
        #[inline]
        unsafe fn row<const M: usize, const INT4: bool>(&self, j: usize) -> [__m512; M] {
            let (groups, gp) = (self.groups, self.acts.gp);
            let mut acc = [[_mm512_setzero_ps(); 2]; M];
            let (mut a, mut lc, mut da) = (
                [std::ptr::null(); 4],
                [std::ptr::null(); 4],
                [std::ptr::null(); 4],
            );
            for i in 0..M {
                let row = (self.i0 + i) * gp;
                a[i] = self.acts.q.as_ptr().add(row * GROUP);
                lc[i] = self
                    .acts
                    .lc
                    .as_ptr()
                    .add(row * 16 / if INT4 { 4 } else { 2 });
                da[i] = self.acts.d.as_ptr().add(row);
            }
            let (wq, sc) = (self.wq, self.scales);
            let w0 = j * groups;
            let bg = if INT4 { 4 } else { 2 };
            // Software prefetch PREFETCH bytes ahead in the weight stream (rows are contiguous;
            // past the weight's end never dereferenced, a prefetch does not fault).
            let gb = if INT4 { 16 } else { GROUP };
            let ahead = wq.wrapping_add(w0 * gb + PREFETCH) as *const i8;
            let full = groups / bg;
            // Even blocks into accumulator 0, odd into 1, two blocks per iteration so the
            // index is a constant (the accumulators stay in registers).
            let mut b = 0;
            while b + 2 <= full {
                let g = b * bg;
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(g * gb));
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(g * gb + 64));
                block::<M, INT4, true>(wq, sc, w0, g, bg, &a, &lc, &da, &mut acc, 0);
                block::<M, INT4, true>(wq, sc, w0, g + bg, bg, &a, &lc, &da, &mut acc, 1);
                b += 2;
            }
            if b < full {
                block::<M, INT4, true>(wq, sc, w0, b * bg, bg, &a, &lc, &da, &mut acc, 0);
                b += 1;
            }
            if groups % bg != 0 {
                // A row's partial last block: only its `groups % bg` groups are read.
                let (g, v) = (b * bg, groups % bg);
                if b % 2 == 0 {
                    block::<M, INT4, false>(wq, sc, w0, g, v, &a, &lc, &da, &mut acc, 0);
                } else {
                    block::<M, INT4, false>(wq, sc, w0, g, v, &a, &lc, &da, &mut acc, 1);
                }
            }
            acc.map(|[a0, a1]| _mm512_add_ps(a0, a1))
        }
    }
}
