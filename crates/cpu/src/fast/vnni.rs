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
//! `dw · da` (staged per segment of a row, as in the AVX2 kernel) into f32 accumulators: even
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
pub(crate) fn prepare(qa: &QuantRows, m: usize, k: usize, int4: bool) -> Acts {
    let groups = k / GROUP;
    let bg = block_groups(int4);
    let gp = groups.next_multiple_of(bg);
    let mut q = vec![0i8; m * gp * GROUP];
    let mut d = vec![0f32; m * gp];
    for i in 0..m {
        for g in 0..groups {
            let src = &qa.q[(i * groups + g) * GROUP..][..GROUP];
            d[i * gp + g] = qa.d[i * groups + g];
            let block = &mut q[(i * gp + g / bg * bg) * GROUP..][..bg * GROUP];
            if int4 {
                let at = (g % 4) * 16;
                block[at..at + 16].copy_from_slice(&src[..16]);
                block[64 + at..64 + at + 16].copy_from_slice(&src[16..]);
            } else {
                block[(g % 2) * GROUP..][..GROUP].copy_from_slice(src);
            }
        }
    }
    // Lane l of a block meets bytes 4l..4l+4 of the (int4: both halves of the) block.
    let offset = if int4 { 8 } else { 128 };
    let sum4 = |b: &[i8]| b.iter().map(|&v| v as i32).sum::<i32>();
    let lc = q
        .chunks_exact(bg * GROUP)
        .flat_map(|block| {
            (0..16).map(move |l| {
                let lo = sum4(&block[4 * l..4 * l + 4]);
                let hi = if int4 {
                    sum4(&block[64 + 4 * l..64 + 4 * l + 4])
                } else {
                    0
                };
                -offset * (lo + hi)
            })
        })
        .collect();
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
    super::qdot::with_staged(|staged| {
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
                    (1, true) => k.row::<1, true>(j, staged),
                    (1, false) => k.row::<1, false>(j, staged),
                    (2, true) => k.row::<2, true>(j, staged),
                    (2, false) => k.row::<2, false>(j, staged),
                    (3, true) => k.row::<3, true>(j, staged),
                    (3, false) => k.row::<3, false>(j, staged),
                    (_, true) => k.row::<4, true>(j, staged),
                    (_, false) => k.row::<4, false>(j, staged),
                }
            };
            for (i, v) in res[..m].iter().enumerate() {
                // SAFETY: the caller owns element (i, j).
                unsafe { *out.add(i * ldo + j) = *v };
            }
        }
    })
}

mod x86 {
    use super::super::qdot::{Staged, SEG};
    use super::{Acts, GROUP};
    use std::arch::x86_64::*;

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

    /// One block step: the block starting at group `g` (of the row) of activation rows `a[i]`
    /// (quants) and `lc[i]` (lane corrections) against the weight row starting at group `w0`,
    /// into accumulator `h` of each row; `valid` groups of the block exist; `sc[i]` holds the
    /// block's product scales at `s`.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    #[inline]
    unsafe fn block<const M: usize, const INT4: bool, const FULL: bool>(
        wq: *const u8,
        w0: usize,
        g: usize,
        valid: usize,
        a: &[*const i8; 4],
        lc: &[*const i32; 4],
        sc: &Staged,
        s: usize,
        acc: &mut [[__m512; 2]; M],
        h: usize,
    ) {
        let bg = if INT4 { 4 } else { 2 };
        let x = load_block::<FULL>(
            wq.add((w0 + g) * if INT4 { 16 } else { GROUP }),
            valid * 64 / bg,
        );
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
            let sp = sc[i].as_ptr().add(s);
            let s4 = if INT4 {
                _mm_loadu_ps(sp)
            } else {
                _mm_castpd_ps(_mm_load_sd(sp as *const f64))
            };
            let scale = _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(s4));
            acc[i][h] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), scale, acc[i][h]);
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
                lc[i] = self
                    .acts
                    .lc
                    .as_ptr()
                    .add(row * 16 / if INT4 { 4 } else { 2 });
            }
            let w0 = j * groups;
            let bg = if INT4 { 4 } else { 2 };
            // The next row starts where this one ends (past the last row: never dereferenced,
            // a prefetch does not fault).
            let gb = if INT4 { 16 } else { GROUP };
            let ahead = self.wq.wrapping_add((w0 + groups) * gb) as *const i8;
            let mut s0 = 0;
            while s0 < groups {
                let len = SEG.min(groups - s0);
                let padded = len.next_multiple_of(bg);
                for i in 0..M {
                    let da = self.acts.d.as_ptr().add((self.i0 + i) * gp + s0);
                    stage(self.scales.add(w0 + s0), da, &mut sc[i][..len]);
                    sc[i][len..padded].fill(0.0); // a row's padded groups
                }
                let full = len / bg;
                // Even blocks into accumulator 0, odd into 1, two blocks per iteration so the
                // index is a constant (the accumulators stay in registers).
                let mut b = 0;
                while b + 2 <= full {
                    let g = s0 + b * bg;
                    // The same 128 bytes of the next row as these two blocks read here: a row
                    // of a 896-wide weight is a stream too short for the hardware prefetcher.
                    _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(g * gb));
                    _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(g * gb + 64));
                    let s = b * bg;
                    block::<M, INT4, true>(self.wq, w0, g, bg, &a, &lc, sc, s, &mut acc, 0);
                    block::<M, INT4, true>(
                        self.wq,
                        w0,
                        g + bg,
                        bg,
                        &a,
                        &lc,
                        sc,
                        s + bg,
                        &mut acc,
                        1,
                    );
                    b += 2;
                }
                if b < full {
                    let g = s0 + b * bg;
                    block::<M, INT4, true>(self.wq, w0, g, bg, &a, &lc, sc, b * bg, &mut acc, 0);
                    b += 1;
                }
                if len % bg != 0 {
                    // A row's partial last block: only its `len % bg` groups are read.
                    let (g, v, s) = (s0 + b * bg, len % bg, b * bg);
                    if b % 2 == 0 {
                        block::<M, INT4, false>(self.wq, w0, g, v, &a, &lc, sc, s, &mut acc, 0);
                    } else {
                        block::<M, INT4, false>(self.wq, w0, g, v, &a, &lc, sc, s, &mut acc, 1);
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
