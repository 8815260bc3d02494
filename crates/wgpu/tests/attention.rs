//! Every attention variant against the f64 CPU oracle: masks, GQA, head dims 64..128, decode,
//! block-sparse layouts (including fully masked rows, which must be zeros).

mod common;
use common::*;
use foveate_core::{AttentionSpec, Backend, BlockLayout, DType, Mask, Op, OpKind};
use std::sync::Arc;

fn run_spec(be: &foveate_wgpu::WgpuBackend, r: &mut Rand, spec: AttentionSpec, must: &[&str], res: &mut Vec<Option<String>>) {
    let op = Op::Attention(spec.clone());
    for dt in dtypes(be) {
        let q = r.u(dt, &[spec.batch, spec.q_len, spec.q_heads, spec.head_dim]);
        let k = r.u(dt, &[spec.batch, spec.kv_capacity, spec.kv_heads, spec.head_dim]);
        let v = r.u(dt, &[spec.batch, spec.kv_capacity, spec.kv_heads, spec.head_dim]);
        let ins = [q, k, v];
        for info in be.variants(OpKind::Attention) {
            match be.supports(&op, dt, info.name) {
                Ok(()) => res.push(check(be, &op, &ins, info.name, None).map(|e| format!("{e} mask {}", spec.mask.name()))),
                Err(why) => {
                    if must.contains(&info.name) {
                        res.push(Some(format!("{} must support {} but says: {why}", info.name, op.label())));
                    }
                }
            }
        }
        res.push(check(be, &op, &ins, "", None));
    }
}

#[test]
fn prefill_masks_gqa_head_dims() {
    let Some(be) = backend("prefill_masks_gqa_head_dims") else { return };
    let mut r = Rand::new(10);
    let mut res = Vec::new();
    for mask in [Mask::None, Mask::Causal, Mask::SlidingWindow { window: 5 }] {
        run_spec(be, &mut r, AttentionSpec::new(1, 4, 2, 7, 13, 64, mask.clone()), &["naive", "flash"], &mut res);
    }
    // q_len > kv_len without a causal mask; odd head dims; kv capacity above kv_len.
    run_spec(be, &mut r, AttentionSpec::new(2, 2, 2, 9, 5, 72, Mask::None), &["naive", "flash"], &mut res);
    for d in [80, 96, 128] {
        let mut s = AttentionSpec::new(1, 3, 1, 18, 21, d, Mask::Causal);
        s.kv_capacity = 24;
        run_spec(be, &mut r, s, &["naive", "flash"], &mut res);
    }
    report("prefill_masks_gqa_head_dims", res);
}

#[test]
fn decode_split_kv() {
    let Some(be) = backend("decode_split_kv") else { return };
    let mut r = Rand::new(11);
    let mut res = Vec::new();
    let must = ["naive", "flash", "flash-decode"];
    for mask in [Mask::None, Mask::Causal, Mask::SlidingWindow { window: 9 }] {
        let mut s = AttentionSpec::new(2, 8, 2, 1, 37, 64, mask);
        s.kv_capacity = 40;
        run_spec(be, &mut r, s, &must, &mut res);
    }
    run_spec(be, &mut r, AttentionSpec::new(1, 4, 4, 1, 70, 128, Mask::Causal), &must, &mut res);
    run_spec(be, &mut r, AttentionSpec::new(1, 6, 1, 1, 3, 80, Mask::None), &must, &mut res);
    // flash-decode refuses q_len > 1 and says why.
    let op = Op::Attention(AttentionSpec::new(1, 2, 1, 2, 8, 64, Mask::Causal));
    let why = be.supports(&op, DType::F32, "flash-decode").unwrap_err();
    assert!(why.contains("q_len"), "{why}");
    report("decode_split_kv", res);
}

#[test]
fn block_sparse_layouts() {
    let Some(be) = backend("block_sparse_layouts") else { return };
    let mut r = Rand::new(12);
    let mut res = Vec::new();
    let must = ["naive", "flash", "block-sparse"];
    let sparse = |l: BlockLayout| Mask::BlockSparse(Arc::new(l));
    let (q, k) = (20, 20);
    run_spec(be, &mut r, AttentionSpec::new(1, 2, 1, q, k, 64, sparse(BlockLayout::sliding_window(8, q, k, 6))), &must, &mut res);
    let gl = BlockLayout::global_local(4, 12, 24, 1, 1, Mask::None);
    run_spec(be, &mut r, AttentionSpec::new(2, 2, 2, 12, 24, 64, sparse(gl)), &must, &mut res);
    let gl = BlockLayout::global_local(16, 32, 32, 1, 0, Mask::Causal);
    run_spec(be, &mut r, AttentionSpec::new(1, 2, 1, 32, 32, 128, sparse(gl)), &must, &mut res);
    // A custom table whose second query block keeps nothing: those rows must be zeros.
    let keep = vec![1, 0, 1, 0, 0, 0, 0, 1, 1];
    let l = BlockLayout::from_table(6, 5, 3, 3, keep, Mask::None).unwrap();
    run_spec(be, &mut r, AttentionSpec::new(1, 2, 1, 17, 13, 64, sparse(l)), &must, &mut res);
    // Decode through a block layout.
    let l = BlockLayout::sliding_window(8, 1, 30, 12);
    run_spec(be, &mut r, AttentionSpec::new(1, 4, 2, 1, 30, 64, sparse(l)), &["naive", "flash-decode", "block-sparse"], &mut res);
    // block-sparse refuses dense masks.
    let op = Op::Attention(AttentionSpec::new(1, 2, 1, 4, 8, 64, Mask::Causal));
    assert!(be.supports(&op, DType::F32, "block-sparse").is_err());
    report("block_sparse_layouts", res);
}
