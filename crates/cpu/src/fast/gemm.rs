//! Matrix products on the `gemm` crate with fused epilogues: Gemm, GeluMlp, PatchEmbed.

use super::maybe_par;
use super::qdot;
use super::weight::{dots, simd_enabled, Weight};
use crate::act::act_f32;
use foveate_core::{Activation, GemmSpec, MlpSpec, PatchEmbedSpec};
use gemm::Parallelism;
use rayon::prelude::*;

/// Below this many output rows the product is split over N (weight rows) across threads, each
/// thread running a single-threaded product: decode-shaped GEMMs have no row parallelism.
const SMALL_M: usize = 16;
/// Up to this many rows, a dot product per output element (GEMV-like) beats packing.
pub(crate) const GEMV_M: usize = 4;
/// Products of at most this many multiply-adds run on one thread (threading costs more).
const SMALL_WORK: usize = 1 << 18;
/// Weight rows converted to f32 at a time by a product of more than [`GEMV_M`] rows whose weight
/// is not f32 (the per-task buffer holds `PANEL · K` floats).
const PANEL: usize = 64;

/// An output pointer that parallel tasks writing disjoint parts of it may share.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub(crate) *mut f32);
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// The pointer (a method, so closures capture the whole `Send` wrapper).
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}

/// `out[m, n] = sum_k a[m, k] · w[n, k]` (a `[m, k]`, w `[n, k]`, out `[m, n]`, all row-major).
pub(crate) fn matmul_t(a: &[f32], w: &[f32], m: usize, n: usize, k: usize, out: &mut [f32]) {
    assert!(a.len() >= m * k && w.len() >= n * k && out.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        out[..m * n].fill(0.0);
        return;
    }
    let threads = rayon::current_num_threads();
    if m <= GEMV_M {
        gemv(a, &Weight::F32(w), m, n, k, out);
    } else if m * n * k <= SMALL_WORK || super::serial() {
        // SAFETY: sizes checked above.
        unsafe {
            product(
                a.as_ptr(),
                w.as_ptr(),
                out.as_mut_ptr(),
                m,
                n,
                k,
                n,
                Parallelism::None,
            )
        }
    } else if m < SMALL_M && threads > 1 && n >= 64 {
        // Split the weight rows (output columns) across threads.
        let chunk = n.div_ceil(threads * 4).max(16);
        let dst = SendPtr(out.as_mut_ptr());
        maybe_par!(
            (0..n.div_ceil(chunk)),
            (0..n.div_ceil(chunk)).into_par_iter(),
            |c: usize| {
                let n0 = c * chunk;
                let nc = chunk.min(n - n0);
                // SAFETY: each task writes the disjoint column range n0..n0+nc of every output row;
                // all pointers stay within the slices checked above.
                unsafe {
                    product(
                        a.as_ptr(),
                        w.as_ptr().add(n0 * k),
                        dst.get().add(n0),
                        m,
                        nc,
                        k,
                        n,
                        Parallelism::None,
                    )
                }
            }
        );
    } else {
        // SAFETY: sizes checked above.
        unsafe {
            product(
                a.as_ptr(),
                w.as_ptr(),
                out.as_mut_ptr(),
                m,
                n,
                k,
                n,
                Parallelism::Rayon(0),
            )
        }
    }
}

/// Runs `f` on chunks of `n` weight rows (a few chunks per thread), in parallel unless the op is
/// serial: how every decode-shaped product here splits its work.
pub(crate) fn over_row_chunks(n: usize, f: impl Fn(std::ops::Range<usize>) + Sync + Send) {
    let chunk = n.div_ceil(rayon::current_num_threads() * 8).max(8);
    maybe_par!(
        (0..n.div_ceil(chunk)),
        (0..n.div_ceil(chunk)).into_par_iter(),
        |c: usize| f(c * chunk..((c + 1) * chunk).min(n))
    );
}

/// Decode-shaped: stream each weight row once, in its stored format, and dot it with the few
/// rows of `a`; parallel over chunks of weight rows.
fn gemv(a: &[f32], w: &Weight, m: usize, n: usize, k: usize, out: &mut [f32]) {
    let dst = SendPtr(out.as_mut_ptr());
    let simd = simd_enabled();
    over_row_chunks(n, |rows| {
        // SAFETY: this task alone writes columns `rows` of the m rows of `out` (checked by the
        // caller to hold m·n values).
        unsafe { dots(w, a, m, k, rows, dst.get(), n, simd) };
    });
}

thread_local! {
    /// Per-thread buffer for weight panels converted to f32.
    static PANEL_BUF: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `out[m, n] = sum_k a[m, k] · w[n, k]` with `w` in any weight format: f32 as [`matmul_t`];
/// otherwise decode-shaped products read the stored rows directly ([`dots`]) and larger ones
/// convert [`PANEL`] rows at a time to f32 and multiply that block (no f32 copy of the whole
/// weight), in parallel over the panels.
pub(crate) fn matmul_w(a: &[f32], w: &Weight, m: usize, n: usize, k: usize, out: &mut [f32]) {
    if let Weight::F32(w) = w {
        return matmul_t(a, w, m, n, k, out);
    }
    assert!(a.len() >= m * k && out.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        out[..m * n].fill(0.0);
        return;
    }
    let threads = rayon::current_num_threads();
    if m <= GEMV_M {
        return gemv(a, w, m, n, k, out);
    }
    let panel = if threads > 1 {
        n.div_ceil(threads * 2).clamp(8, PANEL)
    } else {
        PANEL
    };
    let dst = SendPtr(out.as_mut_ptr());
    let body = |c: usize| {
        let n0 = c * panel;
        let nc = panel.min(n - n0);
        PANEL_BUF.with(|buf| {
            let mut buf = buf.borrow_mut();
            if buf.len() < nc * k {
                buf.resize(nc * k, 0.0);
            }
            w.rows_f32(n0, nc, k, &mut buf);
            // SAFETY: the task writes the disjoint column range n0..n0+nc of every output row;
            // `buf` holds nc·k values and `a` m·k (checked above).
            unsafe {
                product(
                    a.as_ptr(),
                    buf.as_ptr(),
                    dst.get().add(n0),
                    m,
                    nc,
                    k,
                    n,
                    Parallelism::None,
                )
            }
        });
    };
    if m * n * k <= SMALL_WORK {
        (0..n.div_ceil(panel)).for_each(body);
    } else {
        maybe_par!(
            (0..n.div_ceil(panel)),
            (0..n.div_ceil(panel)).into_par_iter(),
            body
        );
    }
}

/// dst (row stride `ldd`) = a · wᵀ for an `m x nc` block.
#[allow(clippy::too_many_arguments)]
unsafe fn product(
    a: *const f32,
    w: *const f32,
    dst: *mut f32,
    m: usize,
    nc: usize,
    k: usize,
    ldd: usize,
    par: Parallelism,
) {
    gemm::gemm(
        m,
        nc,
        k,
        dst,
        1,
        ldd as isize,
        false,
        a,
        1,
        k as isize,
        // rhs = wᵀ: element (k, n) at w[n·K + k]: column stride K, row stride 1.
        w,
        k as isize,
        1,
        0.0,
        1.0,
        false,
        false,
        false,
        par,
    );
}

/// Rows of `out` (`n` wide) in parallel chunks of about `target` elements.
fn rows_per_task(n: usize) -> usize {
    (16384 / n.max(1)).max(1)
}

/// In place: `y = act(y + bias) + residual`, row by row, in parallel.
pub(crate) fn epilogue(
    out: &mut [f32],
    n: usize,
    bias: Option<&[f32]>,
    act: Activation,
    residual: Option<&[f32]>,
) {
    if bias.is_none() && residual.is_none() && act == Activation::None {
        return;
    }
    let rpt = rows_per_task(n);
    maybe_par!(
        out.chunks_mut(rpt * n).enumerate(),
        out.par_chunks_mut(rpt * n).enumerate(),
        |(c, chunk): (usize, &mut [f32])| {
            for (r, row) in chunk.chunks_mut(n).enumerate() {
                if let Some(b) = bias {
                    row.iter_mut().zip(b).for_each(|(y, b)| *y += b);
                }
                if act != Activation::None {
                    row.iter_mut().for_each(|y| *y = act_f32(act, *y));
                }
                if let Some(res) = residual {
                    let off = (c * rpt + r) * n;
                    row.iter_mut()
                        .zip(&res[off..off + n])
                        .for_each(|(y, r)| *y += r);
                }
            }
        }
    );
}

/// The `int8-dot` variant's decode-shaped product (`m` <= 4): `a` quantised per group of 32,
/// integer dot products with the int8/int4 weight rows ([`qdot::dots`]), parallel over chunks of
/// weight rows. A row's result is the same bits whatever `m` is (the kernels sum each activation
/// row in one order), so a request decodes alike alone or beside up to three others.
fn gemv_int8(a: &[f32], w: &Weight, m: usize, n: usize, k: usize, out: &mut [f32]) {
    let isa = super::isa::selected();
    let qa = qdot::prepare(a, m, k, w, isa);
    let dst = SendPtr(out.as_mut_ptr());
    over_row_chunks(n, |rows| {
        // SAFETY: as in `gemv`: this task alone writes columns `rows` of the m output rows;
        // `isa` is the path this CPU runs.
        unsafe { qdot::run(w, &qa, 0, m, k, rows, dst.get(), n, isa) };
    });
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_op(
    spec: &GemmSpec,
    a: &[f32],
    w: &Weight,
    bias: Option<&[f32]>,
    res: Option<&[f32]>,
    n: usize,
    k: usize,
    out: &mut [f32],
    variant: &str,
) {
    let m = out.len() / n.max(1);
    let quantised = matches!(w, Weight::Int8 { .. } | Weight::Int4 { .. });
    match w {
        _ if variant == qdot::NAME && quantised && (1..=GEMV_M).contains(&m) && n > 0 => {
            gemv_int8(a, w, m, n, k, out)
        }
        _ if variant == super::bf16dot::NAME && m > GEMV_M && !matches!(w, Weight::F32(_)) => {
            super::bf16dot::matmul(a, w, m, n, k, out)
        }
        Weight::F16(wh)
            if variant == super::f16dot::NAME
                && (1..=GEMV_M).contains(&m)
                && n > 0
                && super::f16dot::available() =>
        {
            super::f16dot::gemv(a, wh, m, n, k, out)
        }
        Weight::BF16(wb) if variant == super::bf16dot::NAME && m > 0 => {
            super::bf16dot::gemv(a, wb, m, n, k, out)
        }
        _ => matmul_w(a, w, m, n, k, out),
    }
    epilogue(out, n, bias, spec.act, res);
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn mlp_op(
    spec: &MlpSpec,
    x: &[f32],
    w1: &Weight,
    b1: &[f32],
    w2: &Weight,
    b2: &[f32],
    res: Option<&[f32]>,
    d: usize,
    out: &mut [f32],
) {
    let (h, o) = (b1.len(), b2.len());
    let m = out.len() / o.max(1);
    let mut hid = vec![0f32; m * h];
    matmul_w(x, w1, m, h, d, &mut hid);
    epilogue(&mut hid, h, Some(b1), spec.act, None);
    matmul_w(&hid, w2, m, o, h, out);
    epilogue(out, o, Some(b2), Activation::None, res);
}

/// Image and weight geometry for the patch embedding.
pub(crate) struct PatchGeom {
    pub batch: usize,
    pub chans: usize,
    pub height: usize,
    pub width: usize,
    pub embed: usize,
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn patch_embed_op(
    spec: &PatchEmbedSpec,
    g: &PatchGeom,
    px: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    cls: Option<&[f32]>,
    pos: Option<&[f32]>,
    out: &mut [f32],
) {
    let p = spec.patch;
    let (gh, gw) = (g.height / p, g.width / p);
    let np = gh * gw;
    let kk = g.chans * p * p;
    let e = g.embed;
    // im2col: one row per patch, columns in the weight's (c, ky, kx) order.
    let mut cols = vec![0f32; g.batch * np * kk];
    maybe_par!(
        cols.chunks_mut(kk).enumerate(),
        cols.par_chunks_mut(kk).enumerate(),
        |(row, dst): (usize, &mut [f32])| {
            let (b, patch) = (row / np, row % np);
            let (py, pxi) = (patch / gw, patch % gw);
            for c in 0..g.chans {
                for ky in 0..p {
                    let src = ((b * g.chans + c) * g.height + py * p + ky) * g.width + pxi * p;
                    dst[(c * p + ky) * p..][..p].copy_from_slice(&px[src..src + p]);
                }
            }
        }
    );
    let t = np + spec.cls as usize;
    if !spec.cls {
        matmul_t(&cols, w, g.batch * np, e, kk, out);
        epilogue(out, e, bias, Activation::None, None);
    } else {
        let mut y = vec![0f32; g.batch * np * e];
        matmul_t(&cols, w, g.batch * np, e, kk, &mut y);
        maybe_par!(
            out.chunks_mut(t * e).enumerate(),
            out.par_chunks_mut(t * e).enumerate(),
            |(b, ob): (usize, &mut [f32])| {
                ob[..e].copy_from_slice(cls.expect("cls input"));
                ob[e..].copy_from_slice(&y[b * np * e..(b + 1) * np * e]);
                if let Some(bias) = bias {
                    for row in ob[e..].chunks_mut(e) {
                        row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
                    }
                }
            }
        );
    }
    if let Some(pos) = pos {
        maybe_par!(
            out.chunks_mut(t * e),
            out.par_chunks_mut(t * e),
            |ob: &mut [f32]| ob.iter_mut().zip(pos).for_each(|(v, p)| *v += p)
        );
    }
}
