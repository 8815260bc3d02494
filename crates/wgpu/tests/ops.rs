//! Every non-attention op against the f64 CPU oracle, in every dtype the adapter offers.

mod common;
use common::*;
use foveate_core::{Activation, DType, GemmSpec, HostTensor, KvAppendSpec, MlpSpec, Op, PatchEmbedSpec, RopeSpec};

#[test]
fn gemm_epilogues() {
    let Some(be) = backend("gemm_epilogues") else { return };
    let mut r = Rand::new(1);
    let mut res = Vec::new();
    for dt in dtypes(be) {
        let (m, k, n) = (37, 45, 29);
        let mut specs = vec![GemmSpec::plain(), GemmSpec { act: Activation::None, bias: true, residual: false }];
        for act in Activation::ALL {
            specs.push(GemmSpec { act, bias: true, residual: true });
        }
        specs.push(GemmSpec { act: Activation::GeluTanh, bias: false, residual: true });
        for spec in specs {
            let mut ins = vec![r.u(dt, &[m, k]), r.u(dt, &[n, k])];
            if spec.bias {
                ins.push(r.u(dt, &[n]));
            }
            if spec.residual {
                ins.push(r.u(dt, &[m, n]));
            }
            res.push(check(be, &Op::Gemm(spec), &ins, "", None));
        }
        // Rank-3 activations and a 1-row GEMM.
        let ins = vec![r.u(dt, &[2, 3, 33]), r.u(dt, &[65, 33])];
        res.push(check(be, &Op::Gemm(GemmSpec::plain()), &ins, "tiled", None));
        let ins = vec![r.u(dt, &[1, 7]), r.u(dt, &[3, 7])];
        res.push(check(be, &Op::Gemm(GemmSpec::plain()), &ins, "", None));
    }
    report("gemm_epilogues", res);
}

#[test]
fn gelu_mlp_all_variants() {
    let Some(be) = backend("gelu_mlp_all_variants") else { return };
    let mut r = Rand::new(2);
    let mut res = Vec::new();
    for dt in dtypes(be) {
        for act in Activation::GELUS {
            for residual in [false, true] {
                let (d, h, o) = (24, 40, 20);
                let mut ins = vec![r.u(dt, &[2, 9, d]), r.u(dt, &[h, d]), r.u(dt, &[h]), r.u(dt, &[o, h]), r.u(dt, &[o])];
                if residual {
                    ins.push(r.u(dt, &[2, 9, o]));
                }
                res.push(check(be, &Op::GeluMlp(MlpSpec { act, residual }), &ins, "", None));
            }
        }
    }
    report("gelu_mlp_all_variants", res);
}

#[test]
fn patch_embed_flags() {
    let Some(be) = backend("patch_embed_flags") else { return };
    let mut r = Rand::new(3);
    let mut res = Vec::new();
    for dt in dtypes(be) {
        for flags in 0..8u32 {
            let spec = PatchEmbedSpec { patch: 4, bias: flags & 1 != 0, cls: flags & 2 != 0, pos: flags & 4 != 0 };
            let (b, c, hi, wi, e) = (2, 3, 12, 8, 20);
            let t = (hi / 4) * (wi / 4) + spec.cls as usize;
            let mut ins = vec![r.u(dt, &[b, c, hi, wi]), r.u(dt, &[e, c, 4, 4])];
            if spec.bias {
                ins.push(r.u(dt, &[e]));
            }
            if spec.cls {
                ins.push(r.u(dt, &[e]));
            }
            if spec.pos {
                ins.push(r.u(dt, &[t, e]));
            }
            res.push(check(be, &Op::PatchEmbed(spec), &ins, "", None));
        }
    }
    report("patch_embed_flags", res);
}

#[test]
fn norms_softmax_argmax() {
    let Some(be) = backend("norms_softmax_argmax") else { return };
    let mut r = Rand::new(4);
    let mut res = Vec::new();
    for dt in dtypes(be) {
        for &(rows, d) in &[(5usize, 70usize), (1, 3), (3, 200)] {
            let x = r.t(dt, &[rows, d], -3.0, 3.0);
            res.push(check(be, &Op::LayerNorm { eps: 1e-5 }, &[x.clone(), r.u(dt, &[d]), r.u(dt, &[d])], "", None));
            res.push(check(be, &Op::RmsNorm { eps: 1e-6 }, &[x.clone(), r.u(dt, &[d])], "", None));
            res.push(check(be, &Op::Softmax, &[x.clone()], "", None));
            res.push(check(be, &Op::Argmax, &[x], "", None));
        }
        // Ties resolve to the first index; NaN is ignored.
        let tie = HostTensor::from_f32(dt, vec![2, 5], &[1.0, 3.0, 2.0, 3.0, 0.0, f32::NAN, -1.0, 4.0, f32::NAN, 4.0]);
        res.push(check(be, &Op::Argmax, &[tie], "", None));
    }
    report("norms_softmax_argmax", res);
}

#[test]
fn rope_embedding_elementwise() {
    let Some(be) = backend("rope_embedding_elementwise") else { return };
    let mut r = Rand::new(5);
    let mut res = Vec::new();
    for dt in dtypes(be) {
        for rotary_dim in [None, Some(8)] {
            let x = r.u(dt, &[2, 5, 3, 16]);
            let pos = r.ids(&[2, 5], 64);
            res.push(check(be, &Op::Rope(RopeSpec::text(10000.0, rotary_dim)), &[x, pos], "", None));
        }
        let ids = HostTensor::from_u32(vec![2, 4], &[0, 10, 3, 11, 7, 999, 1, 2]);
        res.push(check(be, &Op::Embedding, &[r.u(dt, &[11, 13]), ids], "", None));
        let (a, b) = (r.t(dt, &[3, 100], -4.0, 4.0), r.u(dt, &[3, 100]));
        for op in [Op::Add, Op::Mul, Op::SwiGlu] {
            res.push(check(be, &op, &[a.clone(), b.clone()], "", None));
        }
        let x = r.t(dt, &[300], -8.0, 8.0);
        for act in Activation::ALL {
            res.push(check(be, &Op::Unary(act), &[x.clone()], "", None));
        }
        // Large |x| must not give NaN through tanh.
        let big = HostTensor::from_f32(dt, vec![4], &[-60.0, -20.0, 20.0, 60.0]);
        res.push(check(be, &Op::Unary(Activation::GeluTanh), &[big], "", None));
        for to in dtypes(be) {
            res.push(check(be, &Op::Cast { to }, &[r.t(dt, &[5, 7], -100.0, 100.0)], "", None));
        }
    }
    report("rope_embedding_elementwise", res);
}

#[test]
fn copies_slice_concat_kv_append() {
    let Some(be) = backend("copies_slice_concat_kv_append") else { return };
    let mut r = Rand::new(6);
    let mut res = Vec::new();
    let mut dts = dtypes(be);
    dts.push(DType::U32);
    for dt in dts {
        let mk = |r: &mut Rand, s: &[usize]| if dt == DType::U32 { r.ids(s, 1000) } else { r.u(dt, s) };
        let x = mk(&mut r, &[3, 7, 5]);
        for (axis, start, len) in [(0, 1, 2), (1, 2, 4), (2, 0, 5), (2, 4, 1)] {
            res.push(check(be, &Op::Slice { axis, start, len }, &[x.clone()], "", None));
        }
        for axis in 0..3 {
            let mut s = vec![3, 7, 5];
            s[axis] = 2;
            res.push(check(be, &Op::Concat { axis }, &[x.clone(), mk(&mut r, &s)], "", None));
        }
        let new = mk(&mut r, &[2, 3, 2, 8]);
        let cache = mk(&mut r, &[2, 10, 2, 8]);
        res.push(check(be, &Op::KvAppend(KvAppendSpec { capacity: 10, pos: 4 }), &[new], "", Some(&cache)));
        let one = mk(&mut r, &[2, 1, 2, 8]);
        res.push(check(be, &Op::KvAppend(KvAppendSpec { capacity: 10, pos: 9 }), &[one], "", Some(&cache)));
    }
    report("copies_slice_concat_kv_append", res);
}

#[test]
fn unsupported_is_an_error_not_a_panic() {
    let Some(be) = backend("unsupported_is_an_error_not_a_panic") else { return };
    use foveate_core::Backend;
    let op = Op::Add;
    let why = be.supports(&op, DType::BF16, "").unwrap_err();
    assert!(why.contains("bf16"), "{why}");
    assert!(be.supports(&op, DType::F32, "no-such-variant").is_err());
    let bf = HostTensor::from_f32(DType::BF16, vec![2], &[1.0, 2.0]);
    let e = be.upload(&bf).unwrap_err().to_string();
    assert!(e.contains("bf16"), "{e}");
    // A shape mismatch is caught before any launch.
    let a = be.upload(&HostTensor::from_f32(DType::F32, vec![3], &[1.0; 3])).unwrap();
    let b = be.upload(&HostTensor::from_f32(DType::F32, vec![4], &[1.0; 4])).unwrap();
    let out = be.alloc(&foveate_core::TensorDesc::new(DType::F32, vec![3])).unwrap();
    assert!(be.execute(&op, &[&a, &b], &out, "").is_err());
}
