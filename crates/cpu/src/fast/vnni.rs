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
//! Layout of one pair of groups `g, g+1` in a register (the activations are reordered to match
//! when they are prepared, so the weights are read as stored):
//! * int8: bytes `0..32` group `g`, `32..64` group `g+1` (i32 lanes 0-7 and 8-15);
//! * int4: the 32 stored bytes of both groups in each 256-bit half, the low nibbles kept in the
//!   lower half and the high ones (shifted down by four) in the upper: bytes `0..16` elements
//!   `0..16` of `g`, `16..32` elements `0..16` of `g+1`, `32..48` elements `16..32` of `g`,
//!   `48..64` those of `g+1` (lanes 0-3 and 8-11 group `g`, 4-7 and 12-15 group `g+1`).
//!
//! Each lane's i32 is converted to f32 and multiplied by its group's product scale
//! `dw · da` (staged per segment of a row, as in the AVX2 kernel) into f32 accumulators: even
//! pairs into one, odd pairs into another, so an output element is summed in one order however
//! many activation rows (1 to 4) share its weight row's loads. One weight row at a time: tiles
//! of two or four weight rows sharing each activation load ran slower on Zen 4 (Qwen2-0.5B
//! decode, int4 50.7 vs 57.7 tok/s, int8 33.6 vs 46.4).

use super::qdot::QuantRows;
use super::weight::Weight;
use foveate_core::quant::GROUP;

/// Activation rows laid out for the VNNI kernels of one weight format.
pub(crate) struct Acts {
    /// Per row `gp · 32` quants (`gp`: groups rounded up to even, a padded group all zero), each
    /// pair of groups in the weight format's register order (see the module doc).
    q: Vec<i8>,
    /// Per row `gp` scales (0 for a padded group).
    d: Vec<f32>,
    /// Per row `gp · 8` i32 lanes: `-offset · (sum of the lane's four quants)`.
    lc: Vec<i32>,
    /// Groups per row, rounded up to even.
    gp: usize,
    int4: bool,
}

/// Lays out `qa`'s `m` rows (each `k` long) for weights in int4 (`int4`) or int8.
pub(crate) fn prepare(qa: &QuantRows, m: usize, k: usize, int4: bool) -> Acts {
    let groups = k / GROUP;
    let gp = groups.next_multiple_of(2);
    let mut q = vec![0i8; m * gp * GROUP];
    let mut d = vec![0f32; m * gp];
    for i in 0..m {
        for g in 0..groups {
            let src = &qa.q[(i * groups + g) * GROUP..][..GROUP];
            d[i * gp + g] = qa.d[i * groups + g];
            let pair = &mut q[(i * gp + g / 2 * 2) * GROUP..][..2 * GROUP];
            if int4 {
                let h = (g % 2) * 16;
                pair[h..h + 16].copy_from_slice(&src[..16]);
                pair[32 + h..32 + h + 16].copy_from_slice(&src[16..]);
            } else {
                pair[(g % 2) * GROUP..][..GROUP].copy_from_slice(src);
            }
        }
    }
    let offset = if int4 { 8 } else { 128 };
    let lc = q
        .chunks_exact(4)
        .map(|l| -offset * l.iter().map(|&v| v as i32).sum::<i32>())
        .collect();
    Acts {
        q,
        d,
        lc,
        gp,
        int4,
    }
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
    assert!((1..=4).contains(&m) && acts.gp == groups.next_multiple_of(2));
    assert!(acts.q.len() >= (i0 + m) * acts.gp * GROUP);
    let (wq, scales) = match *w {
        Weight::Int8 { quants, scales } if !acts.int4 => (quants.as_ptr() as *const u8, scales),
        Weight::Int4 { quants, scales } if acts.int4 => (quants.as_ptr(), scales),
        _ => panic!("vnni::dots: activations prepared for another weight format"),
    };
    assert!(scales.len() >= rows.end * groups);
    let mut staged: Box<x86::Staged> = Box::new([[0f32; x86::SEG]; 4]);
    let k = x86::Kernel {
        wq,
        scales: scales.as_ptr(),
        groups,
        acts,
        i0,
    };
    for j in rows {
        // SAFETY: the caller's contract; row j exists.
        let res = unsafe {
            match (m, acts.int4) {
                (1, true) => k.row::<1, true>(j, &mut staged),
                (1, false) => k.row::<1, false>(j, &mut staged),
                (2, true) => k.row::<2, true>(j, &mut staged),
                (2, false) => k.row::<2, false>(j, &mut staged),
                (3, true) => k.row::<3, true>(j, &mut staged),
                (3, false) => k.row::<3, false>(j, &mut staged),
                (_, true) => k.row::<4, true>(j, &mut staged),
                (_, false) => k.row::<4, false>(j, &mut staged),
            }
        };
        for (i, v) in res[..m].iter().enumerate() {
            // SAFETY: the caller owns element (i, j).
            unsafe { *out.add(i * ldo + j) = *v };
        }
    }
}

mod x86 {
    use super::{Acts, GROUP};
    use std::arch::x86_64::*;

    /// Groups whose product scales are staged at a time (even: pairs never straddle segments).
    pub(super) const SEG: usize = 512;
    /// Per activation row, the staged product scales of one segment of the weight row.
    pub(super) type Staged = [[f32; SEG]; 4];

    /// What every row of one `dots` call reads.
    pub(super) struct Kernel<'a> {
        pub wq: *const u8,
        pub scales: *const u16,
        pub groups: usize,
        pub acts: &'a Acts,
        pub i0: usize,
    }

    /// The unsigned weight operand of the pair at group `g` (of the whole weight); `full` is
    /// false for a row's odd last group (its partner's bytes are not read).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    #[inline]
    unsafe fn weight_pair<const INT4: bool>(wq: *const u8, g: usize, full: bool) -> __m512i {
        if INT4 {
            let p = wq.add(g * 16);
            let x = if full {
                _mm256_loadu_si256(p as *const __m256i)
            } else {
                _mm256_maskz_loadu_epi8(0xffff, p as *const i8)
            };
            let x = _mm512_broadcast_i64x4(x);
            let nib = _mm512_srlv_epi64(x, _mm512_set_epi64(4, 4, 4, 4, 0, 0, 0, 0));
            _mm512_and_si512(nib, _mm512_set1_epi8(0x0f))
        } else {
            let p = wq.add(g * GROUP);
            let x = if full {
                _mm512_loadu_si512(p as *const __m512i)
            } else {
                _mm512_maskz_loadu_epi8(0xffff_ffff, p as *const i8)
            };
            _mm512_xor_si512(x, _mm512_set1_epi8(0x80u8 as i8))
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    #[inline]
    unsafe fn stage(scales: *const u16, da: *const f32, dst: &mut [f32]) {
        let n = dst.len();
        let mut g = 0;
        // 256-bit stores: the kernel reads the scales back as single floats right away, and a
        // 512-bit store does not forward to those loads on Zen 4 (measured: half the speed).
        while g + 8 <= n {
            let dw = _mm256_cvtph_ps(_mm_loadu_si128(scales.add(g) as *const __m128i));
            let v = _mm256_mul_ps(dw, _mm256_loadu_ps(da.add(g)));
            _mm256_storeu_ps(dst.as_mut_ptr().add(g), v);
            g += 8;
        }
        while g < n {
            let dw = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(*scales.add(g) as i32)));
            dst[g] = dw * *da.add(g);
            g += 1;
        }
    }

    /// One pair step: pair `g` (group index within a row) of activation rows `a[i]` (quants)
    /// and `lc[i]` (lane corrections) against the weight row starting at group `w0`, into
    /// accumulator `h` of each row; `sc[i]` holds the pair's two product scales at `2p`.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    #[inline]
    unsafe fn pair<const M: usize, const INT4: bool, const FULL: bool>(
        wq: *const u8,
        w0: usize,
        g: usize,
        a: &[*const i8; 4],
        lc: &[*const i32; 4],
        sc: &Staged,
        p: usize,
        acc: &mut [[__m512; 2]; M],
        h: usize,
    ) {
        let hi: __mmask16 = if INT4 { 0xf0f0 } else { 0xff00 };
        let u = weight_pair::<INT4>(wq, w0 + g, FULL);
        for i in 0..M {
            let av = _mm512_loadu_si512(a[i].add(g * GROUP) as *const __m512i);
            let cv = _mm512_loadu_si512(lc[i].add(g * 8) as *const __m512i);
            let dot = _mm512_dpbusd_epi32(cv, u, av);
            let s = sc[i].as_ptr().add(2 * p);
            let s = _mm512_mask_broadcastss_ps(_mm512_set1_ps(*s), hi, _mm_load_ss(s.add(1)));
            acc[i][h] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), s, acc[i][h]);
        }
    }

    impl Kernel<'_> {
        /// Weight row `j` against activation rows `i0..i0 + M`: element `i` of the result.
        ///
        /// # Safety
        /// As [`super::dots`], with row `j` in the weight.
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
        pub(super) unsafe fn row<const M: usize, const INT4: bool>(
            &self,
            j: usize,
            sc: &mut Staged,
        ) -> [f32; 4] {
            let (groups, gp) = (self.groups, self.acts.gp);
            let mut acc = [[_mm512_setzero_ps(); 2]; M];
            let (mut a, mut lc) = ([std::ptr::null(); 4], [std::ptr::null(); 4]);
            for i in 0..M {
                let row = (self.i0 + i) * gp;
                a[i] = self.acts.q.as_ptr().add(row * GROUP);
                lc[i] = self.acts.lc.as_ptr().add(row * 8);
            }
            let w0 = j * groups;
            // The next row starts where this one ends (past the last row: never dereferenced,
            // a prefetch does not fault).
            // The next row starts where this one ends (past the last row: never dereferenced,
            // a prefetch does not fault).
            let gb = if INT4 { 16 } else { GROUP };
            let ahead = self.wq.wrapping_add((w0 + groups) * gb) as *const i8;
            let mut s0 = 0;
            while s0 < groups {
                let len = SEG.min(groups - s0);
                for i in 0..M {
                    let da = self.acts.d.as_ptr().add((self.i0 + i) * gp + s0);
                    stage(self.scales.add(w0 + s0), da, &mut sc[i][..len]);
                    if len < SEG {
                        sc[i][len] = 0.0; // an odd row's padded group
                    }
                }
                let full = len / 2;
                // Even pairs into accumulator 0, odd into 1, two pairs per iteration so the
                // index is a constant (the accumulators stay in registers).
                let mut p = 0;
                while p + 2 <= full {
                    let g = s0 + 2 * p;
                    // The same bytes of the next row as these two pairs read here (64 int4,
                    // 128 int8): a row of a 896-wide weight is a stream too short for the
                    // hardware prefetcher (Qwen2-0.5B decode, int4 35.6 -> 54.8 tok/s; int8
                    // 47.8 -> 49.6; two or more rows ahead was no better).
                    _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(g * gb));
                    if !INT4 {
                        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(g * gb + 64));
                    }
                    pair::<M, INT4, true>(self.wq, w0, g, &a, &lc, sc, p, &mut acc, 0);
                    pair::<M, INT4, true>(self.wq, w0, g + 2, &a, &lc, sc, p + 1, &mut acc, 1);
                    p += 2;
                }
                if p < full {
                    pair::<M, INT4, true>(self.wq, w0, s0 + 2 * p, &a, &lc, sc, p, &mut acc, 0);
                    p += 1;
                }
                if len % 2 == 1 {
                    // A row's odd last group: its pair's second half is not read.
                    let g = s0 + 2 * p;
                    if p % 2 == 0 {
                        pair::<M, INT4, false>(self.wq, w0, g, &a, &lc, sc, p, &mut acc, 0);
                    } else {
                        pair::<M, INT4, false>(self.wq, w0, g, &a, &lc, sc, p, &mut acc, 1);
                    }
                }
                s0 += len;
            }
            let mut res = [0f32; 4];
            for i in 0..M {
                res[i] = _mm512_reduce_add_ps(_mm512_add_ps(acc[i][0], acc[i][1]));
            }
            res
        }
    }
}
