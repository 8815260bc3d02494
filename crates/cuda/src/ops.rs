//! One dispatch per op: picks the kernel (and its specialisation) and launches it. Attention is
//! in [`crate::attn`].

use crate::attn;
use crate::backend::{dev, ptr, CudaBackend, Enqueue, Kernel};
use crate::specs::{self, dtype_code, Family, ModuleSpec};
use cudarc::driver::{DeviceRepr, LaunchConfig, PushKernelArg};
use foveate_core::{registry::attention as av, Activation, DType, Mask, Op, Result, RopeFreqs, Tensor};

/// The GEMM variant for skinny M (decode): see `kernels/cuda/gemv.cuh`.
pub const GEMV: &str = "gemv";
/// Rows of A per GEMV block (a larger M takes more blocks along y).
const GEMV_ROWS: usize = 16;
/// `FOVEATE_CUDA_GEMV=1`: the default GEMM variant runs the GEMV kernel for M <= 16. Off by
/// default until the GEMV kernel has passed the matrix on a GPU.
pub const GEMV_ENV: &str = "FOVEATE_CUDA_GEMV";

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct GemmArgs {
    a: u64,
    w: u64,
    bias: u64,
    residual: u64,
    pos: u64,
    out: u64,
    m: i32,
    n: i32,
    k: i32,
    c: i32,
    h: i32,
    wd: i32,
    p: i32,
    gw: i32,
    patches: i32,
    cls: i32,
}
unsafe impl DeviceRepr for GemmArgs {}

pub(crate) const I32: usize = i32::MAX as usize;

/// Kernel-name suffix of an activation (must match the GEMM_KERNELS macro in gemm_core.cuh).
fn act_index(a: Activation) -> usize {
    match a {
        Activation::None => 0,
        Activation::GeluErf => 1,
        Activation::GeluTanh => 2,
        Activation::QuickGelu => 3,
        Activation::Silu => 4,
    }
}
const GEMM_KERNELS: [&str; 5] = [
    "gemm_none",
    "gemm_gelu",
    "gemm_gelu_tanh",
    "gemm_quick_gelu",
    "gemm_silu",
];
const GEMV_KERNELS: [&str; 5] = [
    "gemv_none",
    "gemv_gelu",
    "gemv_gelu_tanh",
    "gemv_quick_gelu",
    "gemv_silu",
];
const QGEMM_KERNELS: [&str; 5] = [
    "qgemm_none",
    "qgemm_gelu",
    "qgemm_gelu_tanh",
    "qgemm_quick_gelu",
    "qgemm_silu",
];
const QGEMV_KERNELS: [&str; 5] = [
    "qgemv_none",
    "qgemv_gelu",
    "qgemv_gelu_tanh",
    "qgemv_quick_gelu",
    "qgemv_silu",
];
const MLP_UP_KERNELS: [&str; 5] = [
    "mlp_up_none",
    "mlp_up_gelu",
    "mlp_up_gelu_tanh",
    "mlp_up_quick_gelu",
    "mlp_up_silu",
];

pub(crate) fn module(
    family: Family,
    file: &'static str,
    dt: DType,
    head_dim: Option<usize>,
) -> ModuleSpec {
    let mut d = vec![("DTYPE", dtype_code(dt).to_string())];
    if let Some(h) = head_dim {
        d.push(("HEAD_DIM", h.to_string()));
    }
    ModuleSpec::new(family, file, &d)
}

pub(crate) fn cfg(grid: (u32, u32, u32), block: u32, smem: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: grid,
        block_dim: (block, 1, 1),
        shared_mem_bytes: smem,
    }
}

fn grid1(be: &CudaBackend, n: u64) -> u32 {
    (n.div_ceil(256).max(1)).min(be.sms as u64 * 32) as u32
}

/// Launches `k` with one struct argument (the kernel's parameter struct).
pub(crate) fn launch_struct<A: DeviceRepr>(
    be: &CudaBackend,
    q: &Enqueue,
    k: &Kernel,
    c: LaunchConfig,
    args: &A,
) -> Result<()> {
    // SAFETY: `args` mirrors the kernel's parameter struct (#[repr(C)], same field order), and
    // every pointer in it was checked by Op::infer to cover the extents the kernel reads/writes.
    unsafe { be.stream.launch_builder(&k.f).arg(args).launch(c) }
        .map_err(|e| dev(format!("launch of `{}`: {e:?}", k.name)))?;
    be.launched(k.name, q)
}

macro_rules! launch_args {
    ($be:expr, $q:expr, $k:expr, $cfg:expr, $($a:expr),+ $(,)?) => {{
        let k = &$k;
        let mut b = $be.stream.launch_builder(&k.f);
        $( b.arg(&$a); )+
        // SAFETY: argument types and order follow the kernel signature; extents were validated.
        unsafe { b.launch($cfg) }.map_err(|e| dev(format!("launch of `{}`: {e:?}", k.name)))?;
        $be.launched(k.name, $q)
    }};
}

// ------------------------------------------------------------------ support matrix

pub(crate) fn supports(op: &Op, dtype: DType, variant: &str) -> std::result::Result<(), String> {
    if !dtype.is_float()
        && !matches!(
            op,
            Op::Cast { .. } | Op::Slice { .. } | Op::Concat { .. } | Op::KvAppend(_)
        )
    {
        return Err(format!("{dtype} is not a compute dtype"));
    }
    match op {
        Op::Attention(a) => attn::supports(a, dtype, variant),
        _ => {
            let known: &[&str] = match op {
                // The GEMV takes any M (row tiles of 16 along the grid's y); it is built for M <= 16.
                Op::Gemm(s) => {
                    if variant == crate::cublas::CUBLAS {
                        return crate::cublas::spec_ok(s);
                    }
                    &["", "tiled", "default", GEMV]
                }
                Op::GeluMlp(_) => &["", "two-gemm", "default"],
                Op::PatchEmbed(_) => &["", "implicit-gemm", "default"],
                _ => &["", "default"],
            };
            if known.contains(&variant) {
                Ok(())
            } else {
                Err(format!("unknown variant `{variant}` for {}", op.name()))
            }
        }
    }
}

/// Whether the default GEMM variant runs the GEMV kernel at `m` rows.
fn gemv_by_default(m: usize) -> bool {
    m <= GEMV_ROWS && std::env::var(GEMV_ENV).is_ok_and(|v| !v.is_empty() && v != "0")
}

// ------------------------------------------------------------------ dispatch

pub(crate) fn execute(
    be: &CudaBackend,
    q: &mut Enqueue,
    op: &Op,
    ins: &[&Tensor],
    out: &Tensor,
    variant: &str,
) -> Result<()> {
    let dt = ins[0].dtype();
    match op {
        Op::Gemm(s) => {
            let w = ins[1].dims();
            let (n, k) = (w[0], w[1]);
            let m = ins[0].shape().rows();
            let mut i = 2;
            let bias = if s.bias {
                i += 1;
                ptr(ins[i - 1])?
            } else {
                0
            };
            let res = if s.residual { ptr(ins[i])? } else { 0 };
            let g = GemmCall {
                a: ptr(ins[0])?,
                w: ptr(ins[1])?,
                bias,
                res,
                out: ptr(out)?,
                m,
                n,
                k,
            };
            let ai = act_index(s.act);
            let wq = ins[1].dtype();
            if wq.is_quant() {
                // Int8/int4 weights (quant_gemm.cu); rows of whole groups start 16-byte aligned.
                if !g.w.is_multiple_of(16) {
                    return Err(dev(format!("{wq} weights at {:#x}: not 16-byte aligned", g.w)));
                }
                if variant == crate::cublas::CUBLAS {
                    return Err(foveate_core::Error::unsupported(
                        "cuda",
                        format!("gemm variant `{variant}` reads float weights only, not {wq} (int8/int4 weights: `tiled` or `{GEMV}`)"),
                    ));
                }
                let spec = specs::quant_gemm_module(dt, wq);
                return if variant == GEMV
                    || ((variant.is_empty() || variant == "default") && gemv_by_default(m))
                {
                    gemv_in(be, q, dt, &spec, QGEMV_KERNELS[ai], &g)
                } else {
                    gemm_in(be, q, dt, &spec, QGEMM_KERNELS[ai], &g)
                };
            }
            if variant == crate::cublas::CUBLAS {
                let blas = be.blas().map_err(dev)?;
                crate::cublas::gemm(be, q, blas, dt, g.a, g.w, g.out, m, n, k)
            } else if variant == GEMV
                || ((variant.is_empty() || variant == "default") && gemv_by_default(m))
            {
                gemv(be, q, dt, GEMV_KERNELS[ai], &g)
            } else {
                gemm(be, q, dt, "gemm.cu", Family::Gemm, GEMM_KERNELS[ai], &g)
            }
        }
        Op::GeluMlp(s) => {
            let x = ins[0];
            let (m, d) = (x.shape().rows(), x.shape().last());
            let hdim = ins[1].dims()[0];
            let odim = ins[3].dims()[0];
            // The hidden activation: a scratch buffer kept across calls (the stream orders reuse).
            let hidden = be.scratch(q, "mlp_hidden", m * hdim * dt.size())?;
            // A stage whose weight is int8/int4 takes gelu_mlp.cu built with QBITS.
            let stage = |w: &Tensor| -> Result<ModuleSpec> {
                let wq = w.dtype();
                if !wq.is_quant() {
                    return Ok(module(Family::GeluMlp, "gelu_mlp.cu", dt, None));
                }
                if !ptr(w)?.is_multiple_of(16) {
                    return Err(dev(format!("{wq} weights of gelu_mlp: not 16-byte aligned")));
                }
                Ok(specs::quant_mlp_module(dt, wq))
            };
            let up = GemmCall {
                a: ptr(x)?,
                w: ptr(ins[1])?,
                bias: ptr(ins[2])?,
                res: 0,
                out: hidden,
                m,
                n: hdim,
                k: d,
            };
            gemm_in(be, q, dt, &stage(ins[1])?, MLP_UP_KERNELS[act_index(s.act)], &up)?;
            let res = if s.residual { ptr(ins[5])? } else { 0 };
            let down = GemmCall {
                a: hidden,
                w: ptr(ins[3])?,
                bias: ptr(ins[4])?,
                res,
                out: ptr(out)?,
                m,
                n: odim,
                k: hdim,
            };
            gemm_in(be, q, dt, &stage(ins[3])?, "mlp_down", &down)
        }
        Op::PatchEmbed(s) => patch_embed(be, q, s, ins, out),
        Op::LayerNorm { eps } => row_kernel(be, q, dt, "layer_norm", ins, out, Some(*eps)),
        Op::RmsNorm { eps } => row_kernel(be, q, dt, "rms_norm", ins, out, Some(*eps)),
        Op::Softmax => row_kernel(be, q, dt, "softmax", ins, out, None),
        Op::Argmax => row_kernel(be, q, dt, "argmax", ins, out, None),
        Op::Rope(s) => {
            let d = ins[0].dims();
            let (tokens, heads, dim) = ((d[0] * d[1]) as u64, d[2] as u32, d[3] as u32);
            let rot = s.rot(d[3]) as u32;
            let [s1, s2] = s.section_starts(d[3]).map(|v| v as u32);
            let per_section = (s.freqs == RopeFreqs::PerSection) as u32;
            let f = be.function(&module(Family::Rope, "rope.cu", dt, None), "rope", 0)?;
            let n = tokens * heads as u64 * (rot / 2 + dim - rot) as u64;
            let (x, p, o) = (ptr(ins[0])?, ptr(ins[1])?, ptr(out)?);
            launch_args!(
                be,
                q,
                f,
                cfg((grid1(be, n), 1, 1), 256, 0),
                x,
                p,
                o,
                tokens,
                heads,
                dim,
                rot,
                s.theta,
                s1,
                s2,
                per_section
            )
        }
        Op::Embedding => {
            let t = ins[0].dims();
            let (vocab, dim) = (t[0] as u32, t[1] as u32);
            let n_ids = ins[1].numel() as u64;
            let f = be.function(
                &module(Family::Elementwise, "elementwise.cu", dt, None),
                "embedding",
                0,
            )?;
            let (tb, ids, o) = (ptr(ins[0])?, ptr(ins[1])?, ptr(out)?);
            launch_args!(
                be,
                q,
                f,
                cfg((grid1(be, n_ids * dim as u64), 1, 1), 256, 0),
                tb,
                ids,
                o,
                n_ids,
                vocab,
                dim
            )
        }
        Op::Add | Op::Mul | Op::SwiGlu => {
            let name = match op {
                Op::Add => "ew_add",
                Op::Mul => "ew_mul",
                _ => "ew_swiglu",
            };
            let n = out.numel() as u64;
            let f = be.function(
                &module(Family::Elementwise, "elementwise.cu", dt, None),
                name,
                0,
            )?;
            let (a, b, o) = (ptr(ins[0])?, ptr(ins[1])?, ptr(out)?);
            launch_args!(be, q, f, cfg((grid1(be, n), 1, 1), 256, 0), a, b, o, n)
        }
        Op::Unary(act) => {
            let n = out.numel() as u64;
            let f = be.function(
                &module(Family::Elementwise, "elementwise.cu", dt, None),
                "ew_unary",
                0,
            )?;
            let (x, o, code) = (ptr(ins[0])?, ptr(out)?, act_index(*act) as i32);
            launch_args!(be, q, f, cfg((grid1(be, n), 1, 1), 256, 0), x, o, n, code)
        }
        Op::Cast { to } => {
            let n = out.numel() as u64;
            if dt == *to {
                return copy_rows(be, q, dt.size(), ins[0], out, [1, 1, n, 1, 0, 1, 0]);
            }
            let f = be.function(&specs::cast_module(dt, *to), "cast", 0)?;
            let (x, o) = (ptr(ins[0])?, ptr(out)?);
            launch_args!(be, q, f, cfg((grid1(be, n), 1, 1), 256, 0), x, o, n)
        }
        Op::KvAppend(s) => {
            let d = ins[0].dims();
            let (b, len, inner) = (d[0] as u64, d[1] as u64, (d[2] * d[3]) as u64);
            copy_rows(
                be,
                q,
                dt.size(),
                ins[0],
                out,
                [b, len, inner, len, 0, s.capacity as u64, s.pos as u64],
            )
        }
        Op::Slice { axis, start, len } => {
            let d = ins[0].dims();
            let outer: usize = d[..*axis].iter().product();
            let inner: usize = d[axis + 1..].iter().product();
            let g = [
                outer as u64,
                *len as u64,
                inner as u64,
                d[*axis] as u64,
                *start as u64,
                *len as u64,
                0,
            ];
            copy_rows(be, q, dt.size(), ins[0], out, g)
        }
        Op::Concat { axis } => {
            let (a, b) = (ins[0].dims(), ins[1].dims());
            let outer = a[..*axis].iter().product::<usize>() as u64;
            let inner = a[axis + 1..].iter().product::<usize>() as u64;
            let (la, lb) = (a[*axis] as u64, b[*axis] as u64);
            copy_rows(
                be,
                q,
                dt.size(),
                ins[0],
                out,
                [outer, la, inner, la, 0, la + lb, 0],
            )?;
            copy_rows(
                be,
                q,
                dt.size(),
                ins[1],
                out,
                [outer, lb, inner, lb, 0, la + lb, la],
            )
        }
        Op::Attention(a) => {
            let v = if variant.is_empty() { attn::pick(a, dt).map_err(dev)? } else { variant };
            match v {
                av::NAIVE => attn::naive(be, q, a, dt, ins, out),
                av::FLASH => attn::flash(be, q, a, dt, ins, out, None),
                av::BLOCK_SPARSE => match &a.mask {
                    Mask::BlockSparse(l) => attn::flash(be, q, a, dt, ins, out, Some(l)),
                    _ => Err(dev("block-sparse without a block-sparse mask")),
                },
                av::FLASH_DECODE => attn::decode(be, q, a, dt, ins, out, false),
                attn::FLASH_DECODE_V16 => attn::decode(be, q, a, dt, ins, out, true),
                other => Err(dev(format!("unknown attention variant `{other}`"))),
            }
        }
    }
}

/// One GEMM's pointers and extents: out[m, n] = epilogue(a[m, k] . w[n, k]).
pub(crate) struct GemmCall {
    a: u64,
    w: u64,
    bias: u64,
    res: u64,
    out: u64,
    m: usize,
    n: usize,
    k: usize,
}

impl GemmCall {
    fn args(&self, kernel: &str) -> Result<GemmArgs> {
        if self.m > I32 || self.n > I32 || self.k > I32 {
            return Err(dev(format!(
                "{kernel}: M={} N={} K={} exceed 32-bit",
                self.m, self.n, self.k
            )));
        }
        let (a, w, bias, residual, out) = (self.a, self.w, self.bias, self.res, self.out);
        Ok(GemmArgs {
            a,
            w,
            bias,
            residual,
            out,
            m: self.m as i32,
            n: self.n as i32,
            k: self.k as i32,
            ..Default::default()
        })
    }
}

fn gemm(
    be: &CudaBackend,
    q: &Enqueue,
    dt: DType,
    file: &'static str,
    fam: Family,
    kernel: &'static str,
    g: &GemmCall,
) -> Result<()> {
    gemm_in(be, q, dt, &module(fam, file, dt, None), kernel, g)
}

fn gemm_in(
    be: &CudaBackend,
    q: &Enqueue,
    dt: DType,
    spec: &ModuleSpec,
    kernel: &'static str,
    g: &GemmCall,
) -> Result<()> {
    if g.m == 0 || g.n == 0 {
        return Ok(());
    }
    let args = g.args(kernel)?;
    let f = be.function(spec, kernel, 0)?;
    let tile = if dt == DType::F32 { 64 } else { 128 };
    launch_struct(
        be,
        q,
        &f,
        cfg(
            (g.n.div_ceil(tile) as u32, g.m.div_ceil(tile) as u32, 1),
            256,
            0,
        ),
        &args,
    )
}

/// Warps per output column in the GEMV (a split of K inside the block): the fewest of 1, 2, 4, 8
/// that give at least two blocks per SM.
pub(crate) fn gemv_ksplit(n: usize, m: usize, sms: usize) -> usize {
    let row_tiles = m.div_ceil(GEMV_ROWS).max(1);
    [1usize, 2, 4, 8]
        .into_iter()
        .find(|&ks| n.div_ceil(8 / ks) * row_tiles >= 2 * sms)
        .unwrap_or(8)
}

fn gemv(
    be: &CudaBackend,
    q: &Enqueue,
    dt: DType,
    kernel: &'static str,
    g: &GemmCall,
) -> Result<()> {
    gemv_in(be, q, dt, &module(Family::Gemm, "gemm.cu", dt, None), kernel, g)
}

/// The GEMV launch of `kernel` in `spec` (gemv.cuh's `gemv_*` or quant_gemm.cu's `qgemv_*`).
fn gemv_in(
    be: &CudaBackend,
    q: &Enqueue,
    dt: DType,
    spec: &ModuleSpec,
    kernel: &'static str,
    g: &GemmCall,
) -> Result<()> {
    if g.m == 0 || g.n == 0 {
        return Ok(());
    }
    let args = g.args(kernel)?;
    let f = be.function(spec, kernel, 0)?;
    let ks = gemv_ksplit(g.n, g.m, be.sms as usize);
    // 16-byte loads need 16-byte aligned rows of A and W (allocations are 256-byte aligned).
    let vec_elems = 16 / dt.size();
    let vec =
        (g.k.is_multiple_of(vec_elems) && g.a.is_multiple_of(16) && g.w.is_multiple_of(16)) as i32;
    let grid = (
        g.n.div_ceil(8 / ks) as u32,
        g.m.div_ceil(GEMV_ROWS) as u32,
        1,
    );
    let ks = ks as i32;
    launch_args!(be, q, f, cfg(grid, 256, 0), args, ks, vec)
}

fn patch_embed(
    be: &CudaBackend,
    q: &Enqueue,
    s: &foveate_core::PatchEmbedSpec,
    ins: &[&Tensor],
    out: &Tensor,
) -> Result<()> {
    let dt = ins[0].dtype();
    let px = ins[0].dims();
    let (b, c, h, w) = (px[0], px[1], px[2], px[3]);
    let e = ins[1].dims()[0];
    let p = s.patch;
    let (gh, gw) = (h / p, w / p);
    let patches = gh * gw;
    let tokens = patches + s.cls as usize;
    let mut i = 2;
    let mut take = |present: bool| -> Result<u64> {
        if present {
            i += 1;
            ptr(ins[i - 1])
        } else {
            Ok(0)
        }
    };
    let bias = take(s.bias)?;
    let cls = take(s.cls)?;
    let pos = take(s.pos)?;
    let o = ptr(out)?;
    let m = b * patches;
    if m > 0 && e > 0 {
        let f = be.function(
            &module(Family::PatchEmbed, "patch_embed.cu", dt, None),
            "patch_embed",
            0,
        )?;
        let tile = if dt == DType::F32 { 64 } else { 128 };
        let args = GemmArgs {
            a: ptr(ins[0])?,
            w: ptr(ins[1])?,
            bias,
            residual: 0,
            pos,
            out: o,
            m: m as i32,
            n: e as i32,
            k: (c * p * p) as i32,
            c: c as i32,
            h: h as i32,
            wd: w as i32,
            p: p as i32,
            gw: gw as i32,
            patches: patches as i32,
            cls: s.cls as i32,
        };
        launch_struct(
            be,
            q,
            &f,
            cfg(
                (e.div_ceil(tile) as u32, m.div_ceil(tile) as u32, 1),
                256,
                0,
            ),
            &args,
        )?;
    }
    if s.cls {
        let f = be.function(
            &module(Family::PatchEmbed, "patch_embed.cu", dt, None),
            "patch_cls",
            0,
        )?;
        let (bb, tt, ee) = (b as i32, tokens as i32, e as i32);
        launch_args!(
            be,
            q,
            f,
            cfg((grid1(be, (b * e) as u64), 1, 1), 256, 0),
            cls,
            pos,
            o,
            bb,
            tt,
            ee
        )?;
    }
    Ok(())
}

fn row_kernel(
    be: &CudaBackend,
    q: &Enqueue,
    dt: DType,
    name: &'static str,
    ins: &[&Tensor],
    out: &Tensor,
    eps: Option<f32>,
) -> Result<()> {
    let rows = ins[0].shape().rows() as u32;
    let dim = ins[0].shape().last() as u32;
    if rows == 0 {
        return Ok(());
    }
    let threads = (dim.div_ceil(32) * 32).clamp(32, 256);
    let f = be.function(&module(Family::Norm, "norm.cu", dt, None), name, 0)?;
    let c = cfg((rows, 1, 1), threads, 0);
    let x = ptr(ins[0])?;
    let o = ptr(out)?;
    match name {
        "layer_norm" => {
            let (g, b) = (ptr(ins[1])?, ptr(ins[2])?);
            let e = eps.unwrap_or(0.0);
            launch_args!(be, q, f, c, x, g, b, o, dim, e)
        }
        "rms_norm" => {
            let w = ptr(ins[1])?;
            let e = eps.unwrap_or(0.0);
            launch_args!(be, q, f, c, x, w, o, dim, e)
        }
        _ => launch_args!(be, q, f, c, x, o, dim),
    }
}

/// `g` = [outer, rows, inner, src_rows, src_off, dst_rows, dst_off]: for o in 0..outer copy
/// `rows * inner` elements from src + (o * src_rows + src_off) * inner to dst + (o * dst_rows +
/// dst_off) * inner.
fn copy_rows(
    be: &CudaBackend,
    q: &Enqueue,
    esize: usize,
    src: &Tensor,
    dst: &Tensor,
    g: [u64; 7],
) -> Result<()> {
    let [outer, rows, inner, src_rows, src_off, dst_rows, dst_off] = g;
    let n = outer * rows * inner;
    if n == 0 {
        return Ok(());
    }
    let name = if esize == 2 {
        "copy_rows_b2"
    } else {
        "copy_rows_b4"
    };
    let f = be.function(
        &module(Family::Elementwise, "elementwise.cu", DType::F32, None),
        name,
        0,
    )?;
    let (s, d) = (ptr(src)?, ptr(dst)?);
    launch_args!(
        be,
        q,
        f,
        cfg((grid1(be, n), 1, 1), 256, 0),
        s,
        d,
        outer,
        rows,
        inner,
        src_rows,
        src_off,
        dst_rows,
        dst_off
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemv_split_fills_the_device() {
        // N = 896 on 132 SMs: 112 blocks of 8 columns is under 2 per SM; 4 warps per column give 448.
        assert_eq!(gemv_ksplit(896, 1, 132), 4);
        // A wide N needs no split.
        assert_eq!(gemv_ksplit(151_936, 1, 132), 1);
        // Tiny N: every warp of the block on one column.
        assert_eq!(gemv_ksplit(8, 1, 132), 8);
        // Each block covers 8 / ks columns: the grid covers N for every choice.
        for n in [1, 7, 8, 9, 300, 4096] {
            let ks = gemv_ksplit(n, 3, 132);
            assert!(n.div_ceil(8 / ks) * (8 / ks) >= n);
        }
    }

    #[test]
    fn gemm_variants_are_known() {
        let op = Op::Gemm(foveate_core::GemmSpec::plain());
        for v in ["", "tiled", GEMV, crate::cublas::CUBLAS] {
            assert!(supports(&op, DType::BF16, v).is_ok(), "{v}");
        }
        let biased = Op::Gemm(foveate_core::GemmSpec {
            bias: true,
            ..foveate_core::GemmSpec::plain()
        });
        assert!(supports(&biased, DType::BF16, crate::cublas::CUBLAS)
            .unwrap_err()
            .contains("plain GEMMs only"));
        assert!(supports(&op, DType::BF16, "split")
            .unwrap_err()
            .contains("unknown variant"));
    }
}
