//! The variant registry of the two CPU backends and the `supports` rules.

use foveate_core::registry::attention;
use foveate_core::{DType, Mask, Op, OpKind, VariantInfo};

const FLOATS: [DType; 3] = DType::FLOATS;
const ANY: [DType; 4] = [DType::F32, DType::F16, DType::BF16, DType::U32];

/// Ops that only move or convert elements also take u32 tensors.
fn dtypes_of(op: OpKind) -> &'static [DType] {
    match op {
        OpKind::Cast | OpKind::Slice | OpKind::Concat | OpKind::KvAppend => &ANY,
        _ => &FLOATS,
    }
}

pub(crate) fn list(oracle: bool, op: OpKind) -> Vec<VariantInfo> {
    let dt = dtypes_of(op);
    if oracle {
        return vec![VariantInfo::new(
            op,
            "oracle",
            dt,
            "f64 loops, rounded to the output dtype once at the end",
        )];
    }
    match op {
        OpKind::Attention => vec![
            VariantInfo::new(op, attention::FLASH, dt, "rayon over (batch, head, 32-query block); per 64-key tile Q·Kᵀ and P·V on the gemm crate, online softmax, no S x S matrix"),
            VariantInfo::new(op, attention::NAIVE, dt, "rayon over (batch, query row); full score row per head, then softmax"),
            VariantInfo::new(op, attention::BLOCK_SPARSE, dt, "visits only non-empty tiles of a block layout (classify); no element test on full tiles; other masks as dense"),
            VariantInfo::new(op, attention::FLASH_DECODE, dt, "default for q_len = 1 (base masks): rayon over (batch, KV head); the GQA group's query heads in one Q·Kᵀ and one P·V product over the visible keys"),
        ],
        OpKind::Gemm => vec![
            VariantInfo::new(op, "tiled", dt, "gemm crate (packed, SIMD, rayon) with a fused bias/activation/residual epilogue; weights read in their stored format"),
            VariantInfo::new(op, "int8-dot", dt, "as tiled, except int8/int4 weights under at most 4 rows: activations quantised to int8 per group of 32, integer dot products (AVX2 maddubs); looser tolerance"),
            VariantInfo::new(op, crate::fast::F16_DOT, dt, "as tiled, except f16 weights under at most 4 rows: activations rounded to f16, both widened in registers (F16C), f32 sums; the default there from K = 2048 (a wide row's f32 activations leave L1); looser tolerance"),
            VariantInfo::new(op, crate::fast::BF16_DOT, dt, "as tiled, except bf16 weights (any rows) and f16/int8/int4 weights over 4 rows: weights (converted a panel at a time) and activations as bf16, AVX-512 BF16 dot products (vdpbf16ps) into f32; needs avx512bf16; looser tolerance"),
        ],
        OpKind::GeluMlp => vec![VariantInfo::new(op, "tiled", dt, "two gemm-crate products with fused bias/activation epilogues")],
        OpKind::PatchEmbed => vec![VariantInfo::new(op, "tiled", dt, "im2col + gemm crate, then bias, CLS row and position embedding")],
        _ => vec![VariantInfo::new(op, "rows", dt, "f32, rayon over rows")],
    }
}

/// The fast path's default Gemm by weight format: on an int8/int4 weight `int8-dot` for
/// decode-shaped products (at most 4 rows: activations quantised per group of 32, integer dot
/// products, what GGUF Q8_0/Q4_0 runtimes run); on a bf16 weight (prefill and decode), and on an
/// int8/int4 weight over more than 4 rows (prefill, batches), `bf16-dot` where the CPU has AVX-512
/// BF16 (else `tiled`, f32 activations); on an f16 weight `f16-dot` for decode-shaped products
/// with K >= 2048 (activations rounded to f16, as the GGUF runtimes do; narrower rows stream
/// as fast with f32 activations, see `fast::f16dot`). f32 weights keep `tiled`; every variant
/// stays available by name, and every other op and an explicit variant pass through.
pub(crate) fn default_for_weights<'a>(
    oracle: bool,
    op: &Op,
    inputs: &[&foveate_core::Tensor],
    variant: &'a str,
) -> &'a str {
    let weight = match op {
        Op::Gemm(_) => inputs.get(1).map(|w| w.dtype()),
        _ => None,
    };
    let bf16_dot = crate::fast::bf16_dot_available();
    // Rows of the product: the activation's elements over its last dimension (K).
    let rows = || {
        let a = inputs[0].desc();
        a.numel() / a.shape.last().max(1)
    };
    match weight {
        _ if !variant.is_empty() || oracle => variant,
        Some(d) if d.is_quant() && bf16_dot && rows() > crate::fast::GEMV_M => {
            crate::fast::BF16_DOT
        }
        Some(d) if d.is_quant() => "int8-dot",
        Some(DType::BF16) if bf16_dot => crate::fast::BF16_DOT,
        Some(DType::F16)
            if crate::fast::f16_dot_available()
                && rows() <= crate::fast::GEMV_M
                && inputs[0].desc().shape.last() >= crate::fast::F16_DOT_MIN_K =>
        {
            crate::fast::F16_DOT
        }
        _ => variant,
    }
}

/// Resolves `variant` ("" = default) for `op` on `dtype`; the error says why it cannot run.
pub(crate) fn resolve(
    oracle: bool,
    op: &Op,
    dtype: DType,
    variant: &str,
) -> Result<&'static str, String> {
    let kind = op.kind();
    if let (Op::Attention(a), "", false) = (op, variant, oracle) {
        return foveate_core::registry::pick_attention("", a, &|v| {
            resolve(oracle, op, dtype, v).map(|_| ())
        });
    }
    let vs = list(oracle, kind);
    let v = if variant.is_empty() {
        &vs[0]
    } else {
        vs.iter().find(|v| v.name == variant).ok_or_else(|| {
            let names: Vec<_> = vs.iter().map(|v| v.name).collect();
            format!(
                "{kind} variant `{variant}` on {} (registered: {})",
                if oracle { "cpu-oracle" } else { "cpu" },
                names.join(", ")
            )
        })?
    };
    if !v.dtypes.contains(&dtype) {
        return Err(format!(
            "{kind} `{}` on {dtype} inputs ({kind} takes {})",
            v.name,
            names(&v.dtypes)
        ));
    }
    if v.name == crate::fast::BF16_DOT {
        if let Some(why) = crate::fast::bf16_dot_unavailable() {
            return Err(why);
        }
    }
    if let Op::Attention(a) = op {
        if v.name == attention::FLASH_DECODE {
            if a.q_len != 1 {
                return Err(format!(
                    "flash-decode needs q_len = 1 (got {}); use flash",
                    a.q_len
                ));
            }
            if matches!(a.mask, Mask::BlockSparse(_)) {
                return Err("flash-decode takes a base mask (none, causal, sliding window), not a block layout; use block-sparse".into());
            }
        }
        if let Mask::BlockSparse(l) = &a.mask {
            if matches!(*l.base, Mask::BlockSparse(_)) {
                return Err(
                    "attention with a block layout whose base mask is itself block-sparse".into(),
                );
            }
        }
    }
    Ok(v.name)
}

fn names(d: &[DType]) -> String {
    d.iter().map(|d| d.name()).collect::<Vec<_>>().join(", ")
}
