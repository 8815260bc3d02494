//! The fast path: f32 compute (f16/bf16 converted on the fly), rayon, the `gemm` crate.
//!
//! Small ops run on the calling thread: handing a parallel iterator to rayon from outside its pool
//! wakes a worker and puts the caller to sleep until it is done, which for an op of a few thousand
//! elements costs more than the op (a tiny model's decode step is hundreds of such ops). The backend
//! marks an op below [`SERIAL_WORK`] as serial ([`serially`]) and every parallel loop here then runs
//! as a plain loop ([`maybe_par!`]).

mod actquant;
mod attention;
mod bf16dot;
mod f16dot;
mod gemm;
pub(crate) mod isa;
mod lanes;
mod qdot;
mod rows;
mod simd;
#[cfg(target_arch = "x86_64")]
mod vnni;
mod weight;

use crate::storage::{store_f64, with_out_f32, Inputs};
use std::cell::Cell;
use weight::Weight;

pub(crate) use bf16dot::NAME as BF16_DOT;
pub(crate) use f16dot::{MIN_K as F16_DOT_MIN_K, NAME as F16_DOT};
pub(crate) use gemm::GEMV_M;

/// Whether the `bf16-dot` Gemm runs on this CPU (AVX-512 BF16 on the selected avx512 path).
pub(crate) fn bf16_dot_available() -> bool {
    bf16dot::available()
}

/// Whether the `f16-dot` Gemm's kernel runs on this CPU (AVX2 + F16C selected); elsewhere the
/// variant runs as `tiled`.
pub fn f16_dot_available() -> bool {
    f16dot::available()
}

/// Why the `bf16-dot` Gemm cannot run in this process (no AVX-512 BF16, or a lower kernel path
/// chosen), or `None` when it runs.
pub fn bf16_dot_unavailable() -> Option<String> {
    bf16dot::unavailable_reason()
}

/// Ops with less work than this (multiply-adds, or elements moved) run on the calling thread.
pub(crate) const SERIAL_WORK: usize = 1 << 16;

thread_local! {
    static SERIAL: Cell<bool> = const { Cell::new(false) };
}

/// Whether the op running on this thread runs serially.
pub(crate) fn serial() -> bool {
    SERIAL.with(Cell::get)
}

/// Runs `f` with every parallel loop of the fast path as a plain loop on this thread.
pub(crate) fn serially<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            SERIAL.with(|s| s.set(self.0));
        }
    }
    let _reset = Reset(SERIAL.with(|s| s.replace(true)));
    f()
}

/// `maybe_par!(seq_iter, par_iter, body)`: `seq_iter.for_each(body)` when the current op is
/// serial, else `par_iter.for_each(body)` (the same chain on rayon's parallel iterators).
macro_rules! maybe_par {
    ($seq:expr, $par:expr, $f:expr) => {
        if $crate::fast::serial() {
            $seq.for_each($f)
        } else {
            $par.for_each($f)
        }
    };
}
pub(crate) use maybe_par;

/// The work of `op` with output `out`, in multiply-adds (products, attention) or elements.
pub(crate) fn work(op: &Op, ins: &Inputs, out: &TensorDesc) -> usize {
    let n = out.numel();
    let dims = |i: usize| ins.desc(i).shape.dims();
    match op {
        Op::Gemm(_) => n.saturating_mul(dims(1)[1]),
        // rows · (D·H + H·O)
        Op::GeluMlp(_) => {
            (n / dims(3)[0].max(1)).saturating_mul(dims(1)[0] * (dims(1)[1] + dims(3)[0]))
        }
        Op::PatchEmbed(_) => n.saturating_mul(dims(1)[1..].iter().product()),
        Op::Attention(a) => (a.flops() / 2.0) as usize,
        _ => n + ins.desc(0).numel(),
    }
}
use foveate_core::registry::attention as names;
use foveate_core::{DType, Op, TensorDesc};

/// Runs `op` into `out` (the caller has validated the launch and resolved `variant`).
pub(crate) fn execute(
    op: &Op,
    ins: &Inputs,
    out: &mut [u32],
    out_desc: &TensorDesc,
    variant: &str,
) {
    match op {
        Op::Argmax => {
            let idx = rows::argmax(&ins.f32(0), ins.desc(0).shape.last());
            out[..idx.len()].copy_from_slice(&idx);
        }
        Op::Cast { to } if ins.desc(0).dtype == DType::F32 && matches!(to, DType::F16 | DType::BF16) => {
            // f32 to 16-bit in one rounding (F16C where the CPU has it): the bits the f64 path
            // gives, since an f32 value is exact in f64 (what `--kv-dtype` casts each new row by).
            use half::slice::HalfFloatSliceExt;
            let src = ins.f32(0);
            let dst = &mut bytemuck::cast_slice_mut::<u32, u16>(out)[..src.len()];
            match to {
                DType::F16 => bytemuck::cast_slice_mut::<u16, half::f16>(dst).convert_from_f32_slice(&src),
                _ => bytemuck::cast_slice_mut::<u16, half::bf16>(dst).convert_from_f32_slice(&src),
            }
        }
        Op::Cast { .. } => {
            // Through f64: one rounding from any source dtype, exactly as the oracle.
            let vals = ins.f64(0);
            store_f64(out, out_desc.dtype, &vals);
        }
        _ => with_out_f32(out, out_desc, |o| compute(op, ins, o, variant)),
    }
    debug_assert!(out_desc.dtype != DType::U32 || matches!(op, Op::Argmax | Op::Cast { .. }));
}

/// Float-output ops, written into an f32 buffer.
fn compute(op: &Op, ins: &Inputs, o: &mut [f32], variant: &str) {
    let opt = |present: bool, i: usize| present.then(|| ins.f32(i));
    match op {
        Op::Gemm(s) => {
            let (n, k) = (ins.desc(1).shape.dims()[0], ins.desc(1).shape.dims()[1]);
            let bias = opt(s.bias, 2);
            let res = opt(s.residual, 2 + s.bias as usize);
            let w = Weight::new(ins.words(1), ins.desc(1));
            gemm::gemm_op(
                s,
                &ins.f32(0),
                &w,
                bias.as_deref(),
                res.as_deref(),
                n,
                k,
                o,
                variant,
            );
        }
        Op::GeluMlp(s) => {
            let res = opt(s.residual, 5);
            let d = ins.desc(0).shape.last();
            gemm::mlp_op(
                s,
                &ins.f32(0),
                &Weight::new(ins.words(1), ins.desc(1)),
                &ins.f32(2),
                &Weight::new(ins.words(3), ins.desc(3)),
                &ins.f32(4),
                res.as_deref(),
                d,
                o,
            );
        }
        Op::PatchEmbed(s) => {
            let pd = ins.desc(0).shape.dims();
            let g = gemm::PatchGeom {
                batch: pd[0],
                chans: pd[1],
                height: pd[2],
                width: pd[3],
                embed: ins.desc(1).shape.dims()[0],
            };
            let bias = opt(s.bias, 2);
            let cls = opt(s.cls, 2 + s.bias as usize);
            let pos = opt(s.pos, 2 + s.bias as usize + s.cls as usize);
            gemm::patch_embed_op(
                s,
                &g,
                &ins.f32(0),
                &ins.f32(1),
                bias.as_deref(),
                cls.as_deref(),
                pos.as_deref(),
                o,
            );
        }
        Op::Attention(s) if variant == names::FLASH_DECODE => {
            // The cache in its own dtype: a 16-bit one is converted only where a task reads it.
            let (k, v) = (
                Weight::new(ins.words(1), ins.desc(1)),
                Weight::new(ins.words(2), ins.desc(2)),
            );
            attention::decode(s, &ins.f32(0), &k, &v, o)
        }
        Op::Attention(s) => {
            let (q, k, v) = (ins.f32(0), ins.f32(1), ins.f32(2));
            match variant {
                names::NAIVE => attention::naive(s, &q, &k, &v, o),
                names::BLOCK_SPARSE => attention::tiled(s, &q, &k, &v, o, true),
                _ => attention::tiled(s, &q, &k, &v, o, false),
            }
        }
        Op::LayerNorm { eps } => rows::layer_norm(&ins.f32(0), &ins.f32(1), &ins.f32(2), *eps, o),
        Op::RmsNorm { eps } => rows::rms_norm(&ins.f32(0), &ins.f32(1), *eps, o),
        Op::Rope(s) => rows::rope(s, &ins.f32(0), ins.u32(1), ins.desc(0).shape.dims(), o),
        Op::Embedding => {
            let (v, d) = (ins.desc(0).shape.dims()[0], ins.desc(0).shape.dims()[1]);
            rows::embedding(&Weight::new(ins.words(0), ins.desc(0)), v, d, ins.u32(1), o);
        }
        Op::Add => rows::zip(&ins.f32(0), &ins.f32(1), o, |a, b| a + b),
        Op::Mul => rows::zip(&ins.f32(0), &ins.f32(1), o, |a, b| a * b),
        Op::SwiGlu => rows::swiglu(&ins.f32(0), &ins.f32(1), o),
        Op::Unary(a) => rows::unary(*a, &ins.f32(0), o),
        Op::Softmax => rows::softmax(&ins.f32(0), ins.desc(0).shape.last(), o),
        Op::Argmax | Op::Cast { .. } | Op::KvAppend(_) | Op::Slice { .. } | Op::Concat { .. } => {
            unreachable!("handled by the caller")
        }
    }
}
