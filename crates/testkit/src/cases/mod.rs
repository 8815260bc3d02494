//! Case generation, one module per op group. Each generator returns the cases of one op family
//! for one dtype; the shapes depend on [`MatrixSize`].

mod attention;
mod linear;
mod movement;
mod pointwise;

use crate::{Case, Gen, MatrixOptions, MatrixSize};
use foveate_core::{DType, HostTensor, Op, OpKind};

/// What a generator needs: the size, the dtype and the seed.
pub(crate) struct Ctx {
    pub size: MatrixSize,
    pub dtype: DType,
    pub seed: u64,
}

impl Ctx {
    pub fn full(&self) -> bool {
        self.size == MatrixSize::Full
    }

    /// The generator of one case, seeded by the matrix seed and the case's identity.
    pub fn gen(&self, op: &Op, shape: &str) -> Gen {
        Gen::new(self.seed, &format!("{}|{}|{}", op.label(), self.dtype, shape))
    }

    pub fn case(&self, op: Op, inputs: Vec<HostTensor>, shape: impl Into<String>) -> Case {
        Case { op, inputs, dtype: self.dtype, shape: shape.into(), init_out: None }
    }
}

fn dims_label(d: &[usize]) -> String {
    d.iter().map(|x| x.to_string()).collect::<Vec<_>>().join("x")
}

/// The cases of the matrix, in op order then dtype order.
pub fn cases(opts: &MatrixOptions) -> Vec<Case> {
    let kinds: Vec<OpKind> = match &opts.ops {
        Some(k) => OpKind::ALL.into_iter().filter(|x| k.contains(x)).collect(),
        None => OpKind::ALL.to_vec(),
    };
    let mut out = Vec::new();
    for kind in kinds {
        for &dtype in &opts.dtypes {
            if !dtype.is_float() {
                continue;
            }
            let ctx = Ctx { size: opts.size, dtype, seed: opts.seed };
            out.extend(match kind {
                OpKind::Gemm => linear::gemm(&ctx),
                OpKind::GeluMlp => linear::gelu_mlp(&ctx),
                OpKind::PatchEmbed => linear::patch_embed(&ctx),
                OpKind::Attention => attention::attention(&ctx),
                OpKind::LayerNorm => pointwise::layer_norm(&ctx),
                OpKind::RmsNorm => pointwise::rms_norm(&ctx),
                OpKind::Rope => pointwise::rope(&ctx),
                OpKind::Embedding => pointwise::embedding(&ctx),
                OpKind::Add | OpKind::Mul | OpKind::SwiGlu => pointwise::binary(&ctx, kind),
                OpKind::Unary => pointwise::unary(&ctx),
                OpKind::Softmax => pointwise::softmax(&ctx),
                OpKind::Argmax => pointwise::argmax(&ctx),
                OpKind::Cast => movement::cast(&ctx),
                OpKind::KvAppend => movement::kv_append(&ctx),
                OpKind::Slice => movement::slice(&ctx),
                OpKind::Concat => movement::concat(&ctx),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use foveate_core::TensorDesc;

    #[test]
    fn every_case_is_well_formed_and_covers_every_op() {
        for size in [MatrixSize::Small, MatrixSize::Full] {
            let all = cases(&MatrixOptions::new(size));
            for kind in OpKind::ALL {
                for dt in DType::FLOATS {
                    assert!(all.iter().any(|c| c.op.kind() == kind && c.dtype == dt), "{size:?}: no {kind} {dt} case");
                }
            }
            for c in &all {
                let descs: Vec<&TensorDesc> = c.inputs.iter().map(|t| &t.desc).collect();
                let out = c.op.infer(&descs).unwrap_or_else(|e| panic!("{} {}: {e}", c.op.label(), c.shape));
                if let Some(init) = &c.init_out {
                    assert_eq!(init.desc, out, "{} {}", c.op.label(), c.shape);
                }
                for t in &c.inputs {
                    if t.dtype().is_float() {
                        // Only the softmax case named `-inf rows` feeds -inf on purpose.
                        let ok = |x: &f32| (x.is_finite() && *x != 0.0) || (c.shape.contains("-inf") && *x == f32::NEG_INFINITY);
                        assert!(t.to_f32().iter().all(ok), "{} {}: zero or non-finite input", c.op.label(), c.shape);
                    }
                }
            }
        }
    }

    #[test]
    fn generation_is_deterministic_and_filter_stable() {
        let mut o = MatrixOptions::new(MatrixSize::Small);
        let all = cases(&o);
        o.ops = Some(vec![OpKind::Softmax]);
        let some = cases(&o);
        let first = all.iter().find(|c| c.op.kind() == OpKind::Softmax).unwrap();
        assert_eq!(first.inputs, some[0].inputs);
        o.seed += 1;
        assert_ne!(cases(&o)[0].inputs, some[0].inputs);
    }

    #[test]
    fn small_shapes_are_small() {
        for c in cases(&MatrixOptions::new(MatrixSize::Small)) {
            if let Op::Attention(a) = &c.op {
                assert!(a.q_len <= 40 && a.kv_len <= 40, "{}", c.shape);
            }
            if let Op::Gemm(_) = &c.op {
                assert!(c.inputs[1].shape().dims().iter().all(|&d| d <= 48), "{}", c.shape);
            }
        }
    }
}
