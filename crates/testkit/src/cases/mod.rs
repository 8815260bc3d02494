//! Case generation, one module per op group. Each generator returns the cases of one op family
//! for one dtype; the shapes depend on [`MatrixSize`].

mod attention;
mod linear;
mod movement;
mod pointwise;
mod scale;

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

/// The families `opts.ops` selects, in `OpKind::ALL` order, each with one generator context per
/// float dtype of `opts.dtypes`.
fn contexts(opts: &MatrixOptions) -> Vec<(OpKind, Ctx)> {
    let mut out = Vec::new();
    for kind in OpKind::ALL.into_iter().filter(|k| opts.ops.as_ref().is_none_or(|o| o.contains(k))) {
        for &dtype in opts.dtypes.iter().filter(|d| d.is_float()) {
            out.push((kind, Ctx { size: opts.size, dtype, seed: opts.seed }));
        }
    }
    out
}

/// The cases of the device-vs-device matrix ([`crate::run_naive_matrix`]): attention and GEMM at
/// GPU tile scale (see `cases/scale.rs`); other families selected by `opts.ops` have none.
pub fn scale_cases(opts: &MatrixOptions) -> Vec<Case> {
    let mut out = Vec::new();
    for (kind, ctx) in contexts(opts) {
        match kind {
            OpKind::Attention => out.extend(scale::attention(&ctx)),
            OpKind::Gemm => out.extend(scale::gemm(&ctx)),
            _ => {}
        }
    }
    out
}

/// The cases of the matrix, in op order then dtype order.
pub fn cases(opts: &MatrixOptions) -> Vec<Case> {
    let mut out = Vec::new();
    for (kind, ctx) in contexts(opts) {
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
    fn scale_cases_are_well_formed_and_reach_past_one_tile() {
        use foveate_core::{BlockClass, Mask};
        for size in [MatrixSize::Small, MatrixSize::Full] {
            let mut opts = MatrixOptions::new(size);
            opts.dtypes = vec![DType::F32];
            let all = scale_cases(&opts);
            let mut labels = std::collections::HashSet::new();
            let (mut q_lens, mut kv_lens, mut dims, mut mn) = (vec![], vec![], vec![], vec![]);
            let (mut empty, mut full, mut chunked, mut gqa2_decode) = (false, false, false, vec![]);
            for c in &all {
                let descs: Vec<&TensorDesc> = c.inputs.iter().map(|t| &t.desc).collect();
                c.op.infer(&descs).unwrap_or_else(|e| panic!("{} {}: {e}", c.op.label(), c.shape));
                assert!(labels.insert(format!("{} {}", c.op.label(), c.shape)), "duplicate {} {}", c.op.label(), c.shape);
                match &c.op {
                    Op::Attention(a) => {
                        q_lens.push(a.q_len);
                        kv_lens.push(a.kv_len);
                        dims.push(a.head_dim);
                        chunked |= a.q_len > 64 && a.q_len < a.kv_len && a.mask == Mask::Causal;
                        if a.q_len == 1 && a.group() == 2 {
                            gqa2_decode.push(a.head_dim);
                        }
                        if let Mask::BlockSparse(l) = &a.mask {
                            let t = (0..l.q_blocks).flat_map(|i| (0..l.k_blocks).map(move |j| (i, j)));
                            for (i, j) in t.filter(|_| l.block_q == 64) {
                                match l.classify(i, j, a.q_len, a.kv_len) {
                                    BlockClass::Empty => empty = true,
                                    BlockClass::Full => full = true,
                                    BlockClass::Partial => {}
                                }
                            }
                        }
                    }
                    Op::Gemm(_) => mn.push((c.inputs[0].shape().rows(), c.inputs[1].shape().dims()[0])),
                    _ => unreachable!(),
                }
            }
            let lens: &[usize] = if size == MatrixSize::Full { &[65, 127, 200, 1000, 4096] } else { &[65, 127, 200] };
            for l in lens {
                assert!(q_lens.contains(l) && kv_lens.contains(l), "{size:?}: no q/kv length {l}");
            }
            for d in [64, 72, 80, 96, 128] {
                assert!(dims.contains(&d), "{size:?}: no head dim {d}");
            }
            assert!(empty && full && chunked, "{size:?}: empty {empty} full {full} chunked {chunked}");
            assert!(gqa2_decode.contains(&72) && gqa2_decode.contains(&80), "{size:?}: {gqa2_decode:?}");
            for x in [129, 300, 4096] {
                assert!(mn.iter().any(|&(m, _)| m == x) && mn.iter().any(|&(_, n)| n == x), "{size:?}: no M and N = {x}");
            }
        }
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
