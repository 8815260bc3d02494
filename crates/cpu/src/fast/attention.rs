//! Attention on the CPU, three variants:
//! * `flash`: one task per (batch, head, query block); online softmax over key tiles, no S x S matrix.
//! * `naive`: one task per (batch, query row); a full score row per head, then softmax.
//! * `block-sparse`: like `flash`, but the schedule comes from the layout's tile classes: empty
//!   tiles are never visited and full tiles skip the element test. Other masks run dense.
//! * `flash-decode` (one query row, a base mask): one task per (batch, KV head) with every query
//!   head that shares it; two products over the whole visible key range.

use super::maybe_par;
use super::simd::{axpy, dot, exp_sub, scale};
use super::weight::Weight;
use foveate_core::{AttentionSpec, BlockClass, Mask};
use gemm::Parallelism;
use rayon::prelude::*;

const BQ: usize = 32;
const BK: usize = 64;

/// The contiguous key range `[lo, hi)` that a base mask (None, Causal, SlidingWindow) lets row `i` see.
fn row_range(mask: &Mask, i: usize, q_len: usize, kv_len: usize) -> (usize, usize) {
    match mask {
        Mask::Causal => (0, kv_len - q_len + i + 1),
        Mask::SlidingWindow { window } => {
            let end = kv_len - q_len + i + 1;
            (end - (*window).min(end), end)
        }
        _ => (0, kv_len),
    }
}

/// A key tile `[j0, j1)`; `check` applies the row's base-mask range inside it.
#[derive(Clone, Copy)]
struct Tile {
    j0: usize,
    j1: usize,
    check: bool,
}

/// A unit of work: query rows `[i0, i1)` of one (batch, head), and the key tiles it visits.
struct Task {
    b: usize,
    h: usize,
    i0: usize,
    i1: usize,
    tiles: Vec<Tile>,
}

fn dense_tiles(s: &AttentionSpec, base: &Mask, i0: usize, i1: usize) -> Vec<Tile> {
    let lo = row_range(base, i0, s.q_len, s.kv_len).0;
    let hi = row_range(base, i1 - 1, s.q_len, s.kv_len).1;
    let check = !matches!(base, Mask::None);
    (lo..hi)
        .step_by(BK)
        .map(|j0| Tile {
            j0,
            j1: (j0 + BK).min(hi),
            check,
        })
        .collect()
}

fn schedule(s: &AttentionSpec, use_classes: bool) -> Vec<Task> {
    let mut tasks = Vec::new();
    match &s.mask {
        Mask::BlockSparse(l) => {
            for qb in 0..s.q_len.div_ceil(l.block_q) {
                let (i0, i1) = (qb * l.block_q, ((qb + 1) * l.block_q).min(s.q_len));
                let mut tiles = Vec::new();
                for kb in 0..s.kv_len.div_ceil(l.block_k) {
                    let (j0, j1) = (kb * l.block_k, ((kb + 1) * l.block_k).min(s.kv_len));
                    if use_classes {
                        match l.classify(qb, kb, s.q_len, s.kv_len) {
                            BlockClass::Empty => {}
                            BlockClass::Partial => tiles.push(Tile {
                                j0,
                                j1,
                                check: true,
                            }),
                            BlockClass::Full => tiles.push(Tile {
                                j0,
                                j1,
                                check: false,
                            }),
                        }
                    } else if l.keeps(qb, kb) {
                        tiles.push(Tile {
                            j0,
                            j1,
                            check: !matches!(*l.base, Mask::None),
                        });
                    }
                }
                for b in 0..s.batch {
                    for h in 0..s.q_heads {
                        tasks.push(Task {
                            b,
                            h,
                            i0,
                            i1,
                            tiles: tiles.clone(),
                        });
                    }
                }
            }
        }
        base => {
            for i0 in (0..s.q_len).step_by(BQ) {
                let i1 = (i0 + BQ).min(s.q_len);
                let tiles = dense_tiles(s, base, i0, i1);
                for b in 0..s.batch {
                    for h in 0..s.q_heads {
                        tasks.push(Task {
                            b,
                            h,
                            i0,
                            i1,
                            tiles: tiles.clone(),
                        });
                    }
                }
            }
        }
    }
    tasks
}

/// `flash` (`use_classes = false`) and `block-sparse` (`use_classes = true`).
pub(crate) fn tiled(
    s: &AttentionSpec,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &mut [f32],
    use_classes: bool,
) {
    let d = s.head_dim;
    let base: &Mask = match &s.mask {
        Mask::BlockSparse(l) => &l.base,
        m => m,
    };
    // K and V are read where they are, `[batch, kv_capacity, kv_heads, D]`: one (batch, kv head)
    // is rows `0..kv_len` with stride `kv_heads · D` (the products take strides), no copy (a
    // head-major copy of both per call was a full read and write of the cache on every decode
    // step: 800 MB per token for LLaVA-1.5-7B at a depth of 256-512).
    let ld = s.kv_heads * d;
    let tasks = schedule(s, use_classes);
    let group = s.q_heads / s.kv_heads;
    let one = |t: &Task| {
        let kvh = (t.b * s.kv_capacity * s.kv_heads + t.h / group) * d;
        // Bounds-checked here: the products read only inside these slices.
        let end = match s.kv_len {
            0 => kvh,
            n => kvh + (n - 1) * ld + d,
        };
        let (kh, vh) = (&k[kvh..end], &v[kvh..end]);
        let rows = t.i1 - t.i0;
        let mut qs = vec![0f32; rows * d];
        for r in 0..rows {
            let src = &q[((t.b * s.q_len + t.i0 + r) * s.q_heads + t.h) * d..][..d];
            qs[r * d..(r + 1) * d]
                .iter_mut()
                .zip(src)
                .for_each(|(o, x)| *o = x * s.scale);
        }
        run_task(t, s, base, &qs, kh, vh, ld)
    };
    let results: Vec<Vec<f32>> = if super::serial() {
        tasks.iter().map(one).collect()
    } else {
        tasks.par_iter().map(one).collect()
    };
    for (t, acc) in tasks.iter().zip(results) {
        for r in 0..t.i1 - t.i0 {
            let dst = ((t.b * s.q_len + t.i0 + r) * s.q_heads + t.h) * d;
            out[dst..dst + d].copy_from_slice(&acc[r * d..(r + 1) * d]);
        }
    }
}

/// One task: pre-scaled queries `qs` `[rows, D]` against K and V of its KV head (`kv_len` rows of
/// `D`, row `j` at `j · ld`). Per tile, S = Q·Kᵀ and acc += P·V are single-threaded products of the
/// `gemm` crate; the online softmax keeps a running max `m` and sum `l` per row. Masked entries get
/// P = 0.
fn run_task(
    t: &Task,
    s: &AttentionSpec,
    base: &Mask,
    qs: &[f32],
    kh: &[f32],
    vh: &[f32],
    ld: usize,
) -> Vec<f32> {
    let d = s.head_dim;
    let rows = t.i1 - t.i0;
    let wmax = t.tiles.iter().map(|x| x.j1 - x.j0).max().unwrap_or(0);
    let mut sc = vec![0f32; rows * wmax];
    let mut acc = vec![0f32; rows * d];
    let mut m = vec![f32::NEG_INFINITY; rows];
    let mut l = vec![0f32; rows];
    for tile in &t.tiles {
        let w = tile.j1 - tile.j0;
        let sc = &mut sc[..rows * w];
        // SAFETY: sc is rows x w, qs rows x d, the K tile w rows of d at stride ld (rows j0..j1
        // of kh, which holds kv_len of them).
        unsafe {
            product(
                rows,
                w,
                d,
                sc.as_mut_ptr(),
                w as isize,
                false,
                qs.as_ptr(),
                d as isize,
                kh.as_ptr().add(tile.j0 * ld),
                ld as isize,
                1,
            );
        }
        for r in 0..rows {
            let row = &mut sc[r * w..(r + 1) * w];
            let (mut lo, mut hi) = (tile.j0, tile.j1);
            if tile.check {
                let (a, b) = row_range(base, t.i0 + r, s.q_len, s.kv_len);
                lo = lo.max(a);
                hi = hi.min(b);
            }
            if lo >= hi {
                row.fill(0.0);
                continue;
            }
            let (lo, hi) = (lo - tile.j0, hi - tile.j0);
            let mx = row[lo..hi]
                .iter()
                .cloned()
                .fold(f32::NEG_INFINITY, f32::max);
            if mx > m[r] {
                let f = (m[r] - mx).exp(); // 0 when m was -inf
                scale(&mut acc[r * d..(r + 1) * d], f);
                l[r] *= f;
                m[r] = mx;
            }
            l[r] += exp_sub(&mut row[lo..hi], m[r]);
            row[..lo].fill(0.0);
            row[hi..].fill(0.0);
        }
        // SAFETY: acc is rows x d, sc rows x w, the V tile w rows of d at stride ld.
        unsafe {
            product(
                rows,
                d,
                w,
                acc.as_mut_ptr(),
                d as isize,
                true,
                sc.as_ptr(),
                w as isize,
                vh.as_ptr().add(tile.j0 * ld),
                1,
                ld as isize,
            );
        }
    }
    for r in 0..rows {
        let inv = if l[r] > 0.0 { 1.0 / l[r] } else { 0.0 };
        scale(&mut acc[r * d..(r + 1) * d], inv);
    }
    acc
}

/// `flash-decode`: one query row (`q_len == 1`) under a base mask (None, Causal, SlidingWindow;
/// the caller checked). One task per (batch, KV head) takes the `q_heads / kv_heads` query heads
/// that share it (GQA): `S = Q·Kᵀ` for those rows in one gemm-crate product over the visible key
/// range (each K row read once for the group, where `flash` reads it once per query head), the
/// softmax per row, `O = P·V` in a second product, `O` scaled by `1 / sum`. A decode step of
/// Qwen2-0.5B (14 query heads over 2 KV heads, D = 64) at a depth of 256-288 spent 47 µs per
/// layer in `flash`: 14 tasks of five 64-key tiles, 140 small products; here it is 2 tasks of 2.
///
/// K and V are read in the cache's dtype: an f32 cache in place (row stride `kv_heads · D`), a
/// 16-bit one converted [`HALF_SPAN`] rows at a time into a buffer of the task (only the visible
/// rows of the task's KV head, never the whole cache), each span's products run on it.
pub(crate) fn decode(s: &AttentionSpec, q: &[f32], k: &Weight, v: &Weight, out: &mut [f32]) {
    let d = s.head_dim;
    let group = s.q_heads / s.kv_heads;
    let (lo, hi) = row_range(&s.mask, 0, 1, s.kv_len);
    let w = hi - lo;
    // Output rows `[batch, 1, q_heads, D]`: the group of KV head `kh` of batch `b` is the
    // contiguous `group · D` values of chunk `b · kv_heads + kh`.
    let task = |(bk, o): (usize, &mut [f32])| {
        let (b, kh) = (bk / s.kv_heads, bk % s.kv_heads);
        if w == 0 {
            o.fill(0.0); // every key masked: zeros, as `flash`
            return;
        }
        let qs: Vec<f32> = q[bk * group * d..(bk + 1) * group * d]
            .iter()
            .map(|x| x * s.scale)
            .collect();
        // Row `j` of this head: row `(b · kv_capacity + j) · kv_heads + kh` of `[.., D]` rows.
        let row0 = (b * s.kv_capacity + lo) * s.kv_heads + kh;
        // Keys in spans: the whole range of an f32 cache (read in place), `HALF_SPAN` rows of a
        // 16-bit one (converted into a buffer that stays in cache between its two reads).
        let span = if matches!(k, Weight::F32(_)) {
            w
        } else {
            HALF_SPAN
        };
        let mut buf = Vec::new();
        let mut sc = vec![0f32; group * w];
        for j0 in (0..w).step_by(span) {
            let n = span.min(w - j0);
            let (kt, kld) = head_rows(k, row0 + j0 * s.kv_heads, n, s.kv_heads, d, &mut buf);
            // SAFETY: sc is group x w (columns j0..j0 + n written), qs group x d, the K rows n
            // of d at stride kld inside kt.
            unsafe {
                product(
                    group,
                    n,
                    d,
                    sc.as_mut_ptr().add(j0),
                    w as isize,
                    false,
                    qs.as_ptr(),
                    d as isize,
                    kt.as_ptr(),
                    kld as isize,
                    1,
                );
            }
        }
        let mut sums = vec![0f32; group];
        for (row, sum) in sc.chunks_exact_mut(w).zip(&mut sums) {
            let mx = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            *sum = exp_sub(row, mx);
        }
        for j0 in (0..w).step_by(span) {
            let n = span.min(w - j0);
            let (vt, vld) = head_rows(v, row0 + j0 * s.kv_heads, n, s.kv_heads, d, &mut buf);
            // SAFETY: o is group x d (the first span writes it, later ones add), sc group x w
            // (columns j0..j0 + n read), the V rows n of d at stride vld inside vt.
            unsafe {
                product(
                    group,
                    d,
                    n,
                    o.as_mut_ptr(),
                    d as isize,
                    j0 > 0,
                    sc.as_ptr().add(j0),
                    w as isize,
                    vt.as_ptr(),
                    1,
                    vld as isize,
                );
            }
        }
        for (row, &sum) in o.chunks_exact_mut(d).zip(&sums) {
            scale(row, if sum > 0.0 { 1.0 / sum } else { 0.0 });
        }
    };
    maybe_par!(
        out.chunks_mut(group * d).enumerate(),
        out.par_chunks_mut(group * d).enumerate(),
        task
    );
}

/// Keys per span of a 16-bit cache's rows converted at a time in `decode` (64 KiB of f32 at
/// D = 64; a whole head's rows at once went through L2 twice at long contexts).
const HALF_SPAN: usize = 256;

/// `w` rows of one KV head, the first at row `row0` of `cache` read as `[.., D]` rows (a head's
/// rows are `heads` apart): `(slice, row stride)`, the f32 cache's own rows (bounds-checked
/// here: the products read only inside the slice) or the rows converted into `buf`.
fn head_rows<'a>(
    cache: &'a Weight,
    row0: usize,
    w: usize,
    heads: usize,
    d: usize,
    buf: &'a mut Vec<f32>,
) -> (&'a [f32], usize) {
    if let Weight::F32(c) = cache {
        return (&c[row0 * d..(row0 + (w - 1) * heads) * d + d], heads * d);
    }
    let (c, bf16) = match cache {
        Weight::F16(c) => (c, false),
        Weight::BF16(c) => (c, true),
        _ => unreachable!("a KV cache is f32, f16 or bf16"),
    };
    buf.resize(w * d, 0.0);
    // Extents checked there.
    super::simd::half_rows(c, (row0 * d, heads * d, w, d), bf16, buf);
    (buf, d)
}

/// `dst (+)= lhs · rhs` on this thread (the gemm crate): `dst` m x n with row stride `ldd` (added
/// to when `acc`, else overwritten), `lhs` m x k with row stride `ldl`, `rhs` k x n with element
/// `(p, j)` at `p · rs + j · cs`.
///
/// # Safety
/// Every pointer valid for its extent.
#[allow(clippy::too_many_arguments)]
unsafe fn product(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    ldd: isize,
    acc: bool,
    lhs: *const f32,
    ldl: isize,
    rhs: *const f32,
    cs: isize,
    rs: isize,
) {
    let alpha = if acc { 1.0 } else { 0.0 };
    // SAFETY: the caller's contract.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            ldd,
            acc,
            lhs,
            1,
            ldl,
            rhs,
            cs,
            rs,
            alpha,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        )
    }
}

/// `naive`: every (batch, query row) computes its full score row per head with `Mask::allows`.
pub(crate) fn naive(s: &AttentionSpec, q: &[f32], k: &[f32], v: &[f32], out: &mut [f32]) {
    let (hq, hkv, d) = (s.q_heads, s.kv_heads, s.head_dim);
    let group = hq / hkv;
    maybe_par!(
        out.chunks_mut(hq * d).enumerate(),
        out.par_chunks_mut(hq * d).enumerate(),
        |(bi, orow): (usize, &mut [f32])| {
            let (b, i) = (bi / s.q_len, bi % s.q_len);
            let mut scores = vec![0f32; s.kv_len];
            for h in 0..hq {
                let kh = h / group;
                let qr = &q[(bi * hq + h) * d..][..d];
                let o = &mut orow[h * d..(h + 1) * d];
                o.fill(0.0);
                let mut mx = f32::NEG_INFINITY;
                for (j, sc) in scores.iter_mut().enumerate() {
                    *sc = if s.mask.allows(i, j, s.q_len, s.kv_len) {
                        let kr = &k[((b * s.kv_capacity + j) * hkv + kh) * d..][..d];
                        dot(qr, kr) * s.scale
                    } else {
                        f32::NEG_INFINITY
                    };
                    mx = mx.max(*sc);
                }
                if mx == f32::NEG_INFINITY {
                    continue; // fully masked row: zeros
                }
                let mut sum = 0.0;
                for sc in scores.iter_mut() {
                    *sc = (*sc - mx).exp();
                    sum += *sc;
                }
                for (j, &p) in scores.iter().enumerate() {
                    if p != 0.0 {
                        axpy(
                            o,
                            p / sum,
                            &v[((b * s.kv_capacity + j) * hkv + kh) * d..][..d],
                        );
                    }
                }
            }
        }
    );
}
