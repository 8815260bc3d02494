//! One dispatch per op: picks the kernel (and its specialisation) and launches it.

use crate::backend::{dev, ptr, CudaBackend};
use crate::specs::{self, dtype_code, Family, ModuleSpec};
use cudarc::driver::{sys, CudaFunction, DeviceRepr, LaunchConfig, PushKernelArg};
use foveate_core::{
    registry::attention as av, Activation, AttentionSpec, BlockLayout, DType, HostTensor, Mask, Op, Result, Tensor,
    TensorDesc,
};

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct GemmArgs {
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

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct AttnArgs {
    q: u64,
    k: u64,
    v: u64,
    out: u64,
    tile_cls: u64,
    blk_cls: u64,
    batch: i32,
    q_heads: i32,
    kv_heads: i32,
    q_len: i32,
    kv_len: i32,
    kv_cap: i32,
    scale_log2: f32,
    window: i32,
    k_tiles: i32,
    block_q: i32,
    block_k: i32,
    k_blocks: i32,
    head_dim: i32,
}
unsafe impl DeviceRepr for AttnArgs {}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct DecodeArgs {
    q: u64,
    k: u64,
    v: u64,
    out: u64,
    part_o: u64,
    part_lse: u64,
    batch: i32,
    q_heads: i32,
    kv_heads: i32,
    kv_len: i32,
    kv_cap: i32,
    scale_log2: f32,
    key_start: i32,
    chunk: i32,
    splits: i32,
}
unsafe impl DeviceRepr for DecodeArgs {}

const LOG2E: f32 = std::f32::consts::LOG2_E;
const I32: usize = i32::MAX as usize;

fn act_suffix(a: Activation) -> &'static str {
    match a {
        Activation::None => "none",
        Activation::GeluErf => "gelu",
        Activation::GeluTanh => "gelu_tanh",
        Activation::QuickGelu => "quick_gelu",
        Activation::Silu => "silu",
    }
}
fn act_code(a: Activation) -> i32 {
    match a {
        Activation::None => 0,
        Activation::GeluErf => 1,
        Activation::GeluTanh => 2,
        Activation::QuickGelu => 3,
        Activation::Silu => 4,
    }
}

fn module(family: Family, file: &'static str, dt: DType, head_dim: Option<usize>) -> ModuleSpec {
    let mut d = vec![("DTYPE", dtype_code(dt).to_string())];
    if let Some(h) = head_dim {
        d.push(("HEAD_DIM", h.to_string()));
    }
    ModuleSpec::new(family, file, &d)
}

fn cfg(grid: (u32, u32, u32), block: u32, smem: u32) -> LaunchConfig {
    LaunchConfig { grid_dim: grid, block_dim: (block, 1, 1), shared_mem_bytes: smem }
}

fn grid1(be: &CudaBackend, n: u64) -> u32 {
    (n.div_ceil(256).max(1)).min(be.sms as u64 * 32) as u32
}

fn allow_smem(f: &CudaFunction, smem: u32) -> Result<()> {
    // Always raise the opt-in limit to what the launch asks (static + dynamic may pass 48 KiB
    // even when the dynamic part alone does not).
    if smem > 0 {
        f.set_attribute(sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, smem as i32)
            .map_err(|e| dev(format!("cannot raise dynamic shared memory to {smem} bytes: {e:?}")))?;
    }
    Ok(())
}

fn launch_struct<A: DeviceRepr>(be: &CudaBackend, f: &CudaFunction, c: LaunchConfig, args: &A) -> Result<()> {
    allow_smem(f, c.shared_mem_bytes)?;
    // SAFETY: `args` mirrors the kernel's parameter struct (#[repr(C)], same field order), and
    // every pointer in it was checked by Op::infer to cover the extents the kernel reads/writes.
    unsafe { be.stream.launch_builder(f).arg(args).launch(c) }.map(|_| ()).map_err(|e| dev(format!("launch: {e:?}")))
}

macro_rules! launch_args {
    ($be:expr, $f:expr, $cfg:expr, $($a:expr),+ $(,)?) => {{
        let f = &$f;
        let mut b = $be.stream.launch_builder(f);
        $( b.arg(&$a); )+
        // SAFETY: argument types and order follow the kernel signature; extents were validated.
        unsafe { b.launch($cfg) }.map(|_| ()).map_err(|e| dev(format!("launch: {e:?}")))
    }};
}

// ------------------------------------------------------------------ support matrix

fn attn_hd_ok(spec: &AttentionSpec, dtype: DType) -> std::result::Result<(), String> {
    let d = spec.head_dim;
    if d > 128 {
        return Err(format!("head_dim {d} > 128"));
    }
    if dtype != DType::F32 && d % 8 != 0 {
        return Err(format!("head_dim {d} is not a multiple of 8 (16-byte rows for cp.async)"));
    }
    Ok(())
}

fn attn_sizes_ok(a: &AttentionSpec) -> std::result::Result<(), String> {
    if a.batch * a.kv_capacity * a.kv_heads * a.head_dim > u32::MAX as usize * 16 || a.kv_capacity > I32 || a.q_len > I32 {
        return Err("attention extents exceed the kernels' 32-bit lengths".into());
    }
    Ok(())
}

pub(crate) fn supports(op: &Op, dtype: DType, variant: &str) -> std::result::Result<(), String> {
    if !dtype.is_float() && !matches!(op, Op::Cast { .. } | Op::Slice { .. } | Op::Concat { .. } | Op::KvAppend(_)) {
        return Err(format!("{dtype} is not a compute dtype"));
    }
    match op {
        Op::Attention(a) => {
            attn_sizes_ok(a)?;
            let sparse = matches!(a.mask, Mask::BlockSparse(_));
            match variant {
                "" => {
                    if a.head_dim > 256 {
                        return Err(format!("head_dim {} > 256", a.head_dim));
                    }
                    Ok(())
                }
                av::NAIVE => {
                    if a.head_dim > 256 {
                        Err(format!("naive: head_dim {} > 256", a.head_dim))
                    } else {
                        Ok(())
                    }
                }
                av::FLASH => {
                    if sparse {
                        return Err("flash takes none/causal/window masks; use block-sparse".into());
                    }
                    attn_hd_ok(a, dtype)
                }
                av::FLASH_DECODE => {
                    if a.q_len != 1 {
                        return Err(format!("flash-decode needs q_len = 1 (got {})", a.q_len));
                    }
                    if sparse {
                        return Err("flash-decode takes none/causal/window masks".into());
                    }
                    if a.head_dim > 128 {
                        return Err(format!("head_dim {} > 128", a.head_dim));
                    }
                    Ok(())
                }
                av::BLOCK_SPARSE => {
                    if !sparse {
                        return Err("block-sparse needs a BlockSparse mask".into());
                    }
                    attn_hd_ok(a, dtype)
                }
                other => Err(format!("unknown attention variant `{other}` (naive, flash, flash-decode, block-sparse)")),
            }
        }
        _ => {
            let known: &[&str] = match op {
                Op::Gemm(_) => &["", "tiled", "default"],
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

/// The kernel the empty variant runs.
fn pick_attention(a: &AttentionSpec, dtype: DType) -> &'static str {
    for v in [av::FLASH_DECODE, av::BLOCK_SPARSE, av::FLASH] {
        if supports(&Op::Attention(a.clone()), dtype, v).is_ok() {
            return v;
        }
    }
    av::NAIVE
}

// ------------------------------------------------------------------ dispatch

pub(crate) fn execute(be: &CudaBackend, op: &Op, ins: &[&Tensor], out: &Tensor, variant: &str) -> Result<()> {
    let dt = ins[0].dtype();
    match op {
        Op::Gemm(s) => {
            let w = ins[1].dims();
            let (n, k) = (w[0], w[1]);
            let m = ins[0].shape().rows();
            let mut i = 2;
            let bias = if s.bias { i += 1; ptr(ins[i - 1])? } else { 0 };
            let res = if s.residual { ptr(ins[i])? } else { 0 };
            gemm(be, dt, "gemm.cu", Family::Gemm, &format!("gemm_{}", act_suffix(s.act)), ptr(ins[0])?, ptr(ins[1])?, bias, res, ptr(out)?, m, n, k)
        }
        Op::GeluMlp(s) => {
            let x = ins[0];
            let (m, d) = (x.shape().rows(), x.shape().last());
            let hdim = ins[1].dims()[0];
            let odim = ins[3].dims()[0];
            let hidden = be.scratch(TensorDesc::new(dt, vec![m, hdim]))?;
            gemm(be, dt, "gelu_mlp.cu", Family::GeluMlp, &format!("mlp_up_{}", act_suffix(s.act)), ptr(x)?, ptr(ins[1])?, ptr(ins[2])?, 0, ptr(&hidden)?, m, hdim, d)?;
            let res = if s.residual { ptr(ins[5])? } else { 0 };
            gemm(be, dt, "gelu_mlp.cu", Family::GeluMlp, "mlp_down", ptr(&hidden)?, ptr(ins[3])?, ptr(ins[4])?, res, ptr(out)?, m, odim, hdim)?;
            // `hidden` is freed when it drops; the stream orders the free after the launch.
            be.stream.synchronize().map_err(|e| dev(format!("gelu_mlp: {e:?}")))
        }
        Op::PatchEmbed(s) => patch_embed(be, s, ins, out),
        Op::LayerNorm { eps } => row_kernel(be, dt, "layer_norm", ins, out, Some(*eps)),
        Op::RmsNorm { eps } => row_kernel(be, dt, "rms_norm", ins, out, Some(*eps)),
        Op::Softmax => row_kernel(be, dt, "softmax", ins, out, None),
        Op::Argmax => row_kernel(be, dt, "argmax", ins, out, None),
        Op::Rope(s) => {
            let d = ins[0].dims();
            let (tokens, heads, dim) = ((d[0] * d[1]) as u64, d[2] as u32, d[3] as u32);
            let rot = s.rotary_dim.unwrap_or(d[3]) as u32;
            let f = be.function(&module(Family::Rope, "rope.cu", dt, None), "rope")?;
            let n = tokens * heads as u64 * (rot / 2 + dim - rot) as u64;
            let (x, p, o) = (ptr(ins[0])?, ptr(ins[1])?, ptr(out)?);
            launch_args!(be, f, cfg((grid1(be, n), 1, 1), 256, 0), x, p, o, tokens, heads, dim, rot, s.theta)
        }
        Op::Embedding => {
            let t = ins[0].dims();
            let (vocab, dim) = (t[0] as u32, t[1] as u32);
            let n_ids = ins[1].numel() as u64;
            let f = be.function(&module(Family::Elementwise, "elementwise.cu", dt, None), "embedding")?;
            let (tb, ids, o) = (ptr(ins[0])?, ptr(ins[1])?, ptr(out)?);
            launch_args!(be, f, cfg((grid1(be, n_ids * dim as u64), 1, 1), 256, 0), tb, ids, o, n_ids, vocab, dim)
        }
        Op::Add | Op::Mul | Op::SwiGlu => {
            let name = match op {
                Op::Add => "ew_add",
                Op::Mul => "ew_mul",
                _ => "ew_swiglu",
            };
            let n = out.numel() as u64;
            let f = be.function(&module(Family::Elementwise, "elementwise.cu", dt, None), name)?;
            let (a, b, o) = (ptr(ins[0])?, ptr(ins[1])?, ptr(out)?);
            launch_args!(be, f, cfg((grid1(be, n), 1, 1), 256, 0), a, b, o, n)
        }
        Op::Unary(act) => {
            let n = out.numel() as u64;
            let f = be.function(&module(Family::Elementwise, "elementwise.cu", dt, None), "ew_unary")?;
            let (x, o, code) = (ptr(ins[0])?, ptr(out)?, act_code(*act));
            launch_args!(be, f, cfg((grid1(be, n), 1, 1), 256, 0), x, o, n, code)
        }
        Op::Cast { to } => {
            let n = out.numel() as u64;
            if dt == *to {
                return copy_rows(be, dt.size(), ins[0], out, 1, 1, n, 1, 0, 1, 0);
            }
            let f = be.function(&specs::cast_module(dt, *to), "cast")?;
            let (x, o) = (ptr(ins[0])?, ptr(out)?);
            launch_args!(be, f, cfg((grid1(be, n), 1, 1), 256, 0), x, o, n)
        }
        Op::KvAppend(s) => {
            let d = ins[0].dims();
            let (b, len, inner) = (d[0] as u64, d[1] as u64, (d[2] * d[3]) as u64);
            copy_rows(be, dt.size(), ins[0], out, b, len, inner, len, 0, s.capacity as u64, s.pos as u64)
        }
        Op::Slice { axis, start, len } => {
            let d = ins[0].dims();
            let outer: usize = d[..*axis].iter().product();
            let inner: usize = d[axis + 1..].iter().product();
            copy_rows(be, dt.size(), ins[0], out, outer as u64, *len as u64, inner as u64, d[*axis] as u64, *start as u64, *len as u64, 0)
        }
        Op::Concat { axis } => {
            let (a, b) = (ins[0].dims(), ins[1].dims());
            let outer: usize = a[..*axis].iter().product();
            let inner: usize = a[axis + 1..].iter().product();
            let total = (a[*axis] + b[*axis]) as u64;
            copy_rows(be, dt.size(), ins[0], out, outer as u64, a[*axis] as u64, inner as u64, a[*axis] as u64, 0, total, 0)?;
            copy_rows(be, dt.size(), ins[1], out, outer as u64, b[*axis] as u64, inner as u64, b[*axis] as u64, 0, total, a[*axis] as u64)
        }
        Op::Attention(a) => {
            let v = if variant.is_empty() { pick_attention(a, dt) } else { variant };
            match v {
                av::NAIVE => attention_naive(be, a, dt, ins, out),
                av::FLASH => attention_flash(be, a, dt, ins, out, None),
                av::BLOCK_SPARSE => match &a.mask {
                    Mask::BlockSparse(l) => attention_flash(be, a, dt, ins, out, Some(l)),
                    _ => Err(dev("block-sparse without a block-sparse mask")),
                },
                av::FLASH_DECODE => attention_decode(be, a, dt, ins, out),
                other => Err(dev(format!("unknown attention variant `{other}`"))),
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn gemm(be: &CudaBackend, dt: DType, file: &'static str, fam: Family, kernel: &str, a: u64, w: u64, bias: u64, res: u64, out: u64, m: usize, n: usize, k: usize) -> Result<()> {
    if m == 0 || n == 0 {
        return Ok(());
    }
    if m > I32 || n > I32 || k > I32 {
        return Err(dev(format!("{kernel}: M={m} N={n} K={k} exceed 32-bit")));
    }
    let f = be.function(&module(fam, file, dt, None), kernel)?;
    let tile = if dt == DType::F32 { 64 } else { 128 };
    let args = GemmArgs { a, w, bias, residual: res, out, m: m as i32, n: n as i32, k: k as i32, ..Default::default() };
    launch_struct(be, &f, cfg((n.div_ceil(tile) as u32, m.div_ceil(tile) as u32, 1), 256, 0), &args)
}

fn patch_embed(be: &CudaBackend, s: &foveate_core::PatchEmbedSpec, ins: &[&Tensor], out: &Tensor) -> Result<()> {
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
        let f = be.function(&module(Family::PatchEmbed, "patch_embed.cu", dt, None), "patch_embed")?;
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
        launch_struct(be, &f, cfg((e.div_ceil(tile) as u32, m.div_ceil(tile) as u32, 1), 256, 0), &args)?;
    }
    if s.cls {
        let f = be.function(&module(Family::PatchEmbed, "patch_embed.cu", dt, None), "patch_cls")?;
        let (bb, tt, ee) = (b as i32, tokens as i32, e as i32);
        launch_args!(be, f, cfg((grid1(be, (b * e) as u64), 1, 1), 256, 0), cls, pos, o, bb, tt, ee)?;
    }
    Ok(())
}

fn row_kernel(be: &CudaBackend, dt: DType, name: &str, ins: &[&Tensor], out: &Tensor, eps: Option<f32>) -> Result<()> {
    let rows = ins[0].shape().rows() as u32;
    let dim = ins[0].shape().last() as u32;
    if rows == 0 {
        return Ok(());
    }
    let threads = (dim.div_ceil(32) * 32).clamp(32, 256);
    let f = be.function(&module(Family::Norm, "norm.cu", dt, None), name)?;
    let c = cfg((rows, 1, 1), threads, 0);
    let x = ptr(ins[0])?;
    let o = ptr(out)?;
    match name {
        "layer_norm" => {
            let (g, b) = (ptr(ins[1])?, ptr(ins[2])?);
            let e = eps.unwrap_or(0.0);
            launch_args!(be, f, c, x, g, b, o, dim, e)
        }
        "rms_norm" => {
            let w = ptr(ins[1])?;
            let e = eps.unwrap_or(0.0);
            launch_args!(be, f, c, x, w, o, dim, e)
        }
        _ => launch_args!(be, f, c, x, o, dim),
    }
}

#[allow(clippy::too_many_arguments)]
fn copy_rows(be: &CudaBackend, esize: usize, src: &Tensor, dst: &Tensor, outer: u64, rows: u64, inner: u64, src_rows: u64, src_off: u64, dst_rows: u64, dst_off: u64) -> Result<()> {
    let n = outer * rows * inner;
    if n == 0 {
        return Ok(());
    }
    let name = if esize == 2 { "copy_rows_b2" } else { "copy_rows_b4" };
    let f = be.function(&module(Family::Elementwise, "elementwise.cu", DType::F32, None), name)?;
    let (s, d) = (ptr(src)?, ptr(dst)?);
    launch_args!(be, f, cfg((grid1(be, n), 1, 1), 256, 0), s, d, outer, rows, inner, src_rows, src_off, dst_rows, dst_off)
}

// ------------------------------------------------------------------ attention

fn mask_parts(m: &Mask) -> (&'static str, i32) {
    match m {
        Mask::None => ("none", 0),
        Mask::Causal => ("causal", 0),
        Mask::SlidingWindow { window } => ("window", (*window).min(I32) as i32),
        Mask::BlockSparse(l) => mask_parts(&l.base),
    }
}

fn attn_args(a: &AttentionSpec, ins: &[&Tensor], out: &Tensor) -> Result<AttnArgs> {
    let (_, window) = mask_parts(&a.mask);
    Ok(AttnArgs {
        q: ptr(ins[0])?,
        k: ptr(ins[1])?,
        v: ptr(ins[2])?,
        out: ptr(out)?,
        batch: a.batch as i32,
        q_heads: a.q_heads as i32,
        kv_heads: a.kv_heads as i32,
        q_len: a.q_len as i32,
        kv_len: a.kv_len as i32,
        kv_cap: a.kv_capacity as i32,
        scale_log2: a.scale * LOG2E,
        window,
        head_dim: a.head_dim as i32,
        ..Default::default()
    })
}

/// Layout classes aggregated to kernel tiles of `tq x tk` (the layout's own table when its blocks
/// are that size): Empty if every layout block the tile covers is Empty, Full if every one is
/// Full, else Partial. Only blocks meeting the in-range part (< q_len, < kv_len) count.
pub fn tile_classes(l: &BlockLayout, q_len: usize, kv_len: usize, tq: usize, tk: usize) -> (Vec<u32>, usize, usize) {
    let blk = l.class_table(q_len, kv_len);
    let (qt, kt) = (q_len.div_ceil(tq), kv_len.div_ceil(tk));
    let mut t = vec![0u32; qt * kt];
    for i in 0..qt {
        let (r0, r1) = (i * tq, ((i + 1) * tq).min(q_len) - 1);
        for j in 0..kt {
            let (c0, c1) = (j * tk, ((j + 1) * tk).min(kv_len) - 1);
            let (mut any, mut all_full) = (false, true);
            for qb in r0 / l.block_q..=r1 / l.block_q {
                for kb in c0 / l.block_k..=c1 / l.block_k {
                    match blk[qb * l.k_blocks + kb] {
                        0 => all_full = false,
                        1 => {
                            any = true;
                            all_full = false
                        }
                        _ => any = true,
                    }
                }
            }
            t[i * kt + j] = if !any { 0 } else if all_full { 2 } else { 1 };
        }
    }
    (t, qt, kt)
}

fn upload_u32(be: &CudaBackend, v: &[u32]) -> Result<Tensor> {
    use foveate_core::Backend;
    be.upload(&HostTensor::from_u32(vec![v.len()], v))
}

fn attention_naive(be: &CudaBackend, a: &AttentionSpec, dt: DType, ins: &[&Tensor], out: &Tensor) -> Result<()> {
    let mut args = attn_args(a, ins, out)?;
    let (base, _) = mask_parts(&a.mask);
    let mut keep = None;
    let name = if let Mask::BlockSparse(l) = &a.mask {
        let t = upload_u32(be, &l.class_table(a.q_len, a.kv_len))?;
        args.blk_cls = ptr(&t)?;
        args.block_q = l.block_q as i32;
        args.block_k = l.block_k as i32;
        args.k_blocks = l.k_blocks as i32;
        keep = Some(t);
        format!("naive_sparse_{base}")
    } else {
        format!("naive_{base}")
    };
    let f = be.function(&module(Family::AttentionNaive, "attention.cu", dt, None), &name)?;
    let rows = (a.batch * a.q_len * a.q_heads) as u64;
    launch_struct(be, &f, cfg((rows.div_ceil(4) as u32, 1, 1), 128, 0), &args)?;
    if keep.is_some() {
        be.stream.synchronize().map_err(|e| dev(format!("attention: {e:?}")))?;
    }
    Ok(())
}

fn attention_flash(be: &CudaBackend, a: &AttentionSpec, dt: DType, ins: &[&Tensor], out: &Tensor, sparse: Option<&BlockLayout>) -> Result<()> {
    let mut args = attn_args(a, ins, out)?;
    let (base, _) = mask_parts(&a.mask);
    let tc = dt != DType::F32;
    let (bq, bk, threads) = if tc { (64, 64, 128) } else { (8, 32, 256) };
    let mut tables = vec![];
    let (fam, file, name) = match sparse {
        Some(l) => {
            let (t, _, kt) = tile_classes(l, a.q_len, a.kv_len, bq, bk);
            let tt = upload_u32(be, &t)?;
            let lt = upload_u32(be, &l.class_table(a.q_len, a.kv_len))?;
            args.tile_cls = ptr(&tt)?;
            args.blk_cls = ptr(&lt)?;
            args.k_tiles = kt as i32;
            args.block_q = l.block_q as i32;
            args.block_k = l.block_k as i32;
            args.k_blocks = l.k_blocks as i32;
            tables.push(tt);
            tables.push(lt);
            (Family::BlockSparse, "sparse_attention.cu", format!("sparse_{base}"))
        }
        None => (Family::Flash, "attention.cu", format!("flash_{base}")),
    };
    let f = be.function(&module(fam, file, dt, Some(a.head_dim)), &name)?;
    let smem = if tc { specs::flash_tc_smem(a.head_dim) as u32 } else { 0 };
    let grid = (a.q_len.div_ceil(bq) as u32, a.q_heads as u32, a.batch as u32);
    launch_struct(be, &f, cfg(grid, threads, smem), &args)?;
    if !tables.is_empty() {
        be.stream.synchronize().map_err(|e| dev(format!("attention: {e:?}")))?;
    }
    Ok(())
}

fn attention_decode(be: &CudaBackend, a: &AttentionSpec, dt: DType, ins: &[&Tensor], out: &Tensor) -> Result<()> {
    let group = a.q_heads / a.kv_heads;
    let g = [1usize, 2, 4, 8].into_iter().find(|&g| g >= group.min(8)).unwrap_or(8);
    let chunks = group.div_ceil(g);
    let key_start = match a.mask {
        Mask::SlidingWindow { window } => a.kv_len.saturating_sub(window),
        _ => 0,
    };
    let keys = a.kv_len - key_start;
    const TK: usize = 128;
    let base_blocks = a.batch * a.kv_heads * chunks;
    let want = (2 * be.sms as usize).div_ceil(base_blocks.max(1)).max(1);
    let mut splits = want.min(keys.div_ceil(TK)).clamp(1, 64);
    let chunk = keys.div_ceil(splits).div_ceil(TK).max(1) * TK;
    splits = keys.div_ceil(chunk).max(1);
    let part = if splits > 1 {
        Some(be.scratch(TensorDesc::new(DType::F32, vec![a.batch * a.q_heads * splits * (a.head_dim + 1)]))?)
    } else {
        None
    };
    let (part_o, part_lse) = match &part {
        Some(p) => {
            let base = ptr(p)?;
            (base, base + (a.batch * a.q_heads * splits * a.head_dim * 4) as u64)
        }
        None => (0, 0),
    };
    let args = DecodeArgs {
        q: ptr(ins[0])?,
        k: ptr(ins[1])?,
        v: ptr(ins[2])?,
        out: ptr(out)?,
        part_o,
        part_lse,
        batch: a.batch as i32,
        q_heads: a.q_heads as i32,
        kv_heads: a.kv_heads as i32,
        kv_len: a.kv_len as i32,
        kv_cap: a.kv_capacity as i32,
        scale_log2: a.scale * LOG2E,
        key_start: key_start as i32,
        chunk: chunk as i32,
        splits: splits as i32,
    };
    let m = module(Family::Decode, "decode_attention.cu", dt, Some(a.head_dim));
    let f = be.function(&m, &format!("decode_g{g}"))?;
    let smem = specs::decode_smem(a.head_dim, dt == DType::F32, g) as u32;
    launch_struct(be, &f, cfg((splits as u32, (a.kv_heads * chunks) as u32, a.batch as u32), 128, smem), &args)?;
    if splits > 1 {
        let c = be.function(&m, "decode_combine")?;
        launch_struct(be, &c, cfg(((a.batch * a.q_heads) as u32, 1, 1), 128, 0), &args)?;
        be.stream.synchronize().map_err(|e| dev(format!("flash-decode: {e:?}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn tile_classes_match_the_layout_at_its_own_block_size() {
        let l = BlockLayout::sliding_window(8, 37, 37, 10);
        let (t, qt, kt) = tile_classes(&l, 37, 37, 8, 8);
        assert_eq!((qt, kt), (l.q_blocks, l.k_blocks));
        assert_eq!(t, l.class_table(37, 37));
    }

    #[test]
    fn aggregated_tiles_cover_every_visible_element() {
        // Every visible element must lie in a non-empty tile, and a Full tile must have every
        // in-range element visible: checked element by element against Mask::allows.
        let (q, k) = (70, 150);
        for l in [
            BlockLayout::sliding_window(16, q, k, 40),
            BlockLayout::global_local(8, q, k, 1, 2, Mask::Causal),
            BlockLayout::dense(32, q, k, Mask::None),
        ] {
            let m = Mask::BlockSparse(Arc::new(l.clone()));
            for (tq, tk) in [(64, 64), (8, 32)] {
                let (t, _, kt) = tile_classes(&l, q, k, tq, tk);
                let mut n_full = 0;
                for (idx, &c) in t.iter().enumerate() {
                    let (ti, tj) = (idx / kt, idx % kt);
                    let mut seen = 0;
                    let mut total = 0;
                    for i in ti * tq..((ti + 1) * tq).min(q) {
                        for j in tj * tk..((tj + 1) * tk).min(k) {
                            total += 1;
                            seen += m.allows(i, j, q, k) as usize;
                        }
                    }
                    match c {
                        0 => assert_eq!(seen, 0, "{} tile {ti},{tj} empty but sees {seen}", l.pattern),
                        2 => {
                            n_full += 1;
                            assert_eq!(seen, total, "{} tile {ti},{tj} full but sees {seen}/{total}", l.pattern)
                        }
                        _ => {}
                    }
                }
                if l.pattern == "dense" {
                    assert_eq!(n_full, t.len(), "a dense layout with no mask is all Full");
                }
            }
        }
    }

    #[test]
    fn support_matrix() {
        let a = AttentionSpec::new(1, 4, 2, 1, 9, 72, Mask::Causal);
        let op = Op::Attention(a.clone());
        assert!(supports(&op, DType::BF16, av::FLASH_DECODE).is_ok());
        assert!(supports(&op, DType::BF16, av::FLASH).is_ok());
        assert!(supports(&op, DType::BF16, av::BLOCK_SPARSE).is_err());
        assert_eq!(pick_attention(&a, DType::BF16), av::FLASH_DECODE);
        let b = AttentionSpec::new(1, 4, 2, 3, 9, 36, Mask::None);
        assert!(supports(&Op::Attention(b.clone()), DType::F16, av::FLASH).unwrap_err().contains("multiple of 8"));
        assert!(supports(&Op::Attention(b.clone()), DType::F32, av::FLASH).is_ok());
        assert_eq!(pick_attention(&b, DType::F16), av::NAIVE);
        assert!(supports(&Op::Attention(b), DType::F16, av::FLASH_DECODE).unwrap_err().contains("q_len"));
    }
}
