//! What the wgpu backend runs: the variant registry and `supports`.

use crate::attention;
use crate::WgpuBackend;
use foveate_core::registry::attention as names;
use foveate_core::{DType, Op, OpKind, VariantInfo};

/// Why bf16 is not offered.
pub const BF16_REASON: &str = "bf16 is not supported by the wgpu backend: WGSL has no bf16 type and no \
sub-word stores, so every kernel would need packed two-element writes; use f16 (shader-f16) or f32";

/// Name of the single variant of a non-attention family.
pub fn single_variant(op: OpKind) -> (&'static str, &'static str) {
    match op {
        OpKind::Gemm => ("tiled", "32x32 tiles, K slices of 16 in workgroup memory; M <= 8 (decode): one workgroup per output column, w read once; bias/activation/residual epilogue; weights also int8/int4 (groups of 32, dequantised in the tile load / per u32 word in the decode GEMV)"),
        OpKind::GeluMlp => ("fused", "two tiled GEMMs: bias+activation epilogue, then bias+residual epilogue; hidden kept in f32; weights also int8/int4 (dequantised in the tile load)"),
        OpKind::PatchEmbed => ("implicit-im2col", "tiled GEMM gathering patches in the tile load; bias, CLS row and position embedding fused"),
        OpKind::LayerNorm | OpKind::RmsNorm | OpKind::Softmax | OpKind::Argmax => ("row", "one workgroup per row, f32 statistics"),
        _ => ("wgsl", "one invocation per output element"),
    }
}

/// Whether the kernels read `op`'s weights as stored although some are in another format than
/// the activations: Gemm and GeluMlp whose weights are each either in the activations' dtype or
/// int8/int4 (gemm.wgsl / gelu_mlp.wgsl `WQ`, quant.wgsl). Other mixed weights (f16 under f32)
/// are refused by `refuse_mixed_weights`.
pub(crate) fn reads_weights(op: &Op, inputs: &[&foveate_core::Tensor]) -> bool {
    let Some(act) = inputs.first().map(|t| t.dtype()) else { return false };
    let slots = op.weight_slots();
    !slots.is_empty()
        && slots.iter().all(|&i| inputs.get(i).is_some_and(|w| w.dtype() == act || w.dtype().is_quant()))
}

impl WgpuBackend {
    pub(crate) fn float_dtypes(&self) -> Vec<DType> {
        if self.gpu.f16 { vec![DType::F32, DType::F16] } else { vec![DType::F32] }
    }

    pub(crate) fn variant_list(&self, op: OpKind) -> Vec<VariantInfo> {
        let dts = self.float_dtypes();
        if op == OpKind::Attention {
            return vec![
                VariantInfo::new(op, names::FLASH, &dts, "default for q_len > 1: Q tile per workgroup, K/V tiles in workgroup memory, online softmax; masked tiles skipped"),
                VariantInfo::new(op, names::NAIVE, &dts, "reference: one workgroup per query row, scores in a scratch buffer"),
                VariantInfo::new(op, names::FLASH_DECODE, &dts, "default for q_len = 1: KV split across workgroups + combine pass; GQA group heads share each K/V tile"),
                VariantInfo::new(op, names::BLOCK_SPARSE, &dts, "block-sparse masks only: class table per tile; empty tiles never loaded, full tiles skip the element mask"),
            ];
        }
        let (name, note) = single_variant(op);
        let mut dts = dts;
        if matches!(op, OpKind::Slice | OpKind::Concat | OpKind::KvAppend | OpKind::Cast) {
            dts.push(DType::U32);
        }
        vec![VariantInfo::new(op, name, &dts, note)]
    }

    /// The attention variant that runs `variant` ("" = the default, by the one policy in
    /// `registry::pick_attention`), checked against this adapter.
    pub(crate) fn attention_variant(&self, spec: &foveate_core::AttentionSpec, variant: &str) -> Result<&'static str, String> {
        let fits = |v: &'static str| attention::plan(self, spec, v).map(|_| ());
        if variant.is_empty() {
            return foveate_core::registry::pick_attention("", spec, &fits);
        }
        match names::ALL.into_iter().find(|&n| n == variant) {
            Some(v) => fits(v).map(|()| v),
            None => Err(format!("unknown attention variant `{variant}` (wgpu has {})", names::ALL.join(", "))),
        }
    }

    pub(crate) fn check_dtype(&self, dt: DType) -> Result<(), String> {
        match dt {
            DType::BF16 => Err(BF16_REASON.into()),
            DType::F16 if !self.gpu.f16 => {
                Err(format!("f16 needs the shader-f16 feature, which adapter {} lacks", self.gpu.info.name))
            }
            _ => Ok(()),
        }
    }

    pub(crate) fn supports_impl(&self, op: &Op, dtype: DType, variant: &str) -> Result<(), String> {
        self.check_dtype(dtype)?;
        if let Op::Cast { to } = op {
            self.check_dtype(*to)?;
        }
        let copy_like = matches!(op, Op::Slice { .. } | Op::Concat { .. } | Op::KvAppend(_) | Op::Cast { .. });
        if dtype == DType::U32 && !copy_like {
            return Err(format!("{} computes on float tensors only", op.name()));
        }
        if let Op::Attention(spec) = op {
            return self.attention_variant(spec, variant).map(|_| ());
        }
        let (name, _) = single_variant(op.kind());
        if !variant.is_empty() && variant != name {
            return Err(format!("unknown variant `{variant}` for {} (wgpu has `{name}`)", op.name()));
        }
        Ok(())
    }
}
