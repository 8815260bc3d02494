//! Hand-computed examples for every op on the oracle (and, where cheap, the fast path too).
#![allow(clippy::cloned_ref_to_slice_refs)]

use foveate_core::*;
use foveate_cpu::CpuBackend;
use std::sync::Arc;

fn t(dt: DType, shape: &[usize], v: &[f32]) -> HostTensor {
    HostTensor::from_f32(dt, shape.to_vec(), v)
}

fn run_on(b: &CpuBackend, op: &Op, inputs: &[HostTensor]) -> HostTensor {
    let ts: Vec<Tensor> = inputs.iter().map(|h| b.upload(h).unwrap()).collect();
    let refs: Vec<&Tensor> = ts.iter().collect();
    let out = run(b, op, &refs, "").unwrap();
    b.download(&out).unwrap()
}

/// Runs on the oracle and on the fast backend, checks both against `want` within `tol`.
fn check(op: &Op, inputs: &[HostTensor], want: &[f64], tol: f64) {
    for b in [CpuBackend::oracle(), CpuBackend::fast()] {
        let got = run_on(&b, op, inputs).to_f64();
        assert_eq!(got.len(), want.len(), "{} {}: length", b.name(), op.label());
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= tol,
                "{} {}: element {i}: got {g}, want {w}",
                b.name(),
                op.label()
            );
        }
    }
}

const F: DType = DType::F32;

#[test]
fn softmax_of_1_2_3() {
    let e = [1f64.exp(), 2f64.exp(), 3f64.exp()];
    let s: f64 = e.iter().sum();
    check(
        &Op::Softmax,
        &[t(F, &[1, 3], &[1.0, 2.0, 3.0])],
        &[e[0] / s, e[1] / s, e[2] / s],
        1e-7,
    );
    // Large values must not overflow (max-subtracted).
    check(
        &Op::Softmax,
        &[t(F, &[2], &[1000.0, 1000.0])],
        &[0.5, 0.5],
        1e-7,
    );
}

#[test]
fn gemm_2x2_bias_gelu_erf_not_tanh() {
    // a·wᵀ + bias = [[-1, 2.5], [-0.5, -1]]
    let a = t(F, &[2, 2], &[1.0, 2.0, -1.0, 0.5]);
    let w = t(F, &[2, 2], &[0.5, -1.0, 1.0, 1.0]);
    let bias = t(F, &[2], &[0.5, -0.5]);
    let erf_vals = [
        -0.15865525393145707,
        2.4844758366855597,
        -0.15426876936299344,
        -0.15865525393145707,
    ];
    let tanh_vals = [
        -0.15880800939172324,
        2.484915733910001,
        -0.15428599017485606,
        -0.15880800939172324,
    ];
    let op = |act| {
        Op::Gemm(GemmSpec {
            act,
            bias: true,
            residual: false,
        })
    };
    check(
        &op(Activation::GeluErf),
        &[a.clone(), w.clone(), bias.clone()],
        &erf_vals,
        2e-7,
    );
    check(
        &op(Activation::GeluTanh),
        &[a.clone(), w.clone(), bias.clone()],
        &tanh_vals,
        2e-7,
    );
    check(
        &op(Activation::None),
        &[a.clone(), w.clone(), bias.clone()],
        &[-1.0, 2.5, -0.5, -1.0],
        0.0,
    );
    // Residual is added after the activation.
    let res = t(F, &[2, 2], &[10.0, 20.0, 30.0, 40.0]);
    let op = Op::Gemm(GemmSpec {
        act: Activation::GeluErf,
        bias: true,
        residual: true,
    });
    let want: Vec<f64> = erf_vals
        .iter()
        .zip([10.0, 20.0, 30.0, 40.0])
        .map(|(a, b)| a + b)
        .collect();
    check(&op, &[a, w, bias, res], &want, 4e-6);
}

#[test]
fn unary_activations_known_values() {
    let x = t(F, &[2], &[1.0, 2.0]);
    check(
        &Op::Unary(Activation::GeluErf),
        &[x.clone()],
        &[0.8413447460685429, 1.9544997361036416],
        2e-7,
    );
    check(
        &Op::Unary(Activation::GeluTanh),
        &[x.clone()],
        &[0.8411919906082768, 1.954597694087775],
        2e-7,
    );
    let qg = |v: f64| v / (1.0 + (-1.702 * v).exp());
    check(
        &Op::Unary(Activation::QuickGelu),
        &[x.clone()],
        &[qg(1.0), qg(2.0)],
        2e-7,
    );
    check(
        &Op::Unary(Activation::Silu),
        &[x.clone()],
        &[0.7310585786300049, 1.7615941559557646],
        2e-7,
    );
    check(&Op::Unary(Activation::None), &[x], &[1.0, 2.0], 0.0);
}

#[test]
fn rope_rotates_by_known_angles() {
    // D = 4, pos = 2, theta = 10000: angle_0 = 2, angle_1 = 2 * 10000^(-1/2) = 0.02.
    let x = t(F, &[1, 1, 1, 4], &[1.0, 2.0, 3.0, 4.0]);
    let pos = HostTensor::from_u32([1, 1], &[2]);
    let (a0, a1) = (2f64, 0.02f64);
    let want = [
        1.0 * a0.cos() - 3.0 * a0.sin(),
        2.0 * a1.cos() - 4.0 * a1.sin(),
        3.0 * a0.cos() + 1.0 * a0.sin(),
        4.0 * a1.cos() + 2.0 * a1.sin(),
    ];
    check(
        &Op::Rope(RopeSpec::text(10000.0, None)),
        &[x.clone(), pos.clone()],
        &want,
        1e-6,
    );
    // rotary_dim = 2: only dims 0 and 1 rotate (angle 2), dims 2.. pass through.
    let want = [
        1.0 * a0.cos() - 2.0 * a0.sin(),
        2.0 * a0.cos() + 1.0 * a0.sin(),
        3.0,
        4.0,
    ];
    check(
        &Op::Rope(RopeSpec::text(10000.0, Some(2))),
        &[x, pos],
        &want,
        1e-6,
    );
}

/// x `[1, 1, 1, 8]` = 1..8 rotated pair by pair by `angles` (pair j: dims j and j + 4).
fn rotated_1_to_8(angles: [f64; 4]) -> Vec<f64> {
    let x: Vec<f64> = (1..=8).map(f64::from).collect();
    let mut out = x.clone();
    for (j, a) in angles.iter().enumerate() {
        out[j] = x[j] * a.cos() - x[j + 4] * a.sin();
        out[j + 4] = x[j + 4] * a.cos() + x[j] * a.sin();
    }
    out
}

#[test]
fn multi_axis_rope_rotates_by_known_angles() {
    // transformers' Qwen2-VL (modeling_qwen2_vl.py at 928b5565ecea2852ac5a41701c90589321548522).
    let x = t(F, &[1, 1, 1, 8], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
    let (t_, h, w) = (1f64, 2f64, 3f64);
    // M-RoPE, mrope_section [1, 1, 2], theta 100: pair j takes axis t, h, w, w and keeps the
    // global frequency 100^(-2j/8).
    let pos = HostTensor::from_u32([3, 1, 1], &[1, 2, 3]);
    let f = |j: f64| 100f64.powf(-2.0 * j / 8.0);
    let want = rotated_1_to_8([t_ * f(0.0), h * f(1.0), w * f(2.0), w * f(3.0)]);
    check(
        &Op::Rope(RopeSpec::mrope(100.0, None, &[1, 1, 2]).unwrap()),
        &[x.clone(), pos],
        &want,
        1e-5,
    );
    // Vision, sections [2, 2] over (h, w): VisionRotaryEmbedding(D/2 = 4) has inv 100^(-2i/4),
    // i < 2, for each axis: the w section starts again at frequency 1.
    let pos = HostTensor::from_u32([2, 1, 1], &[2, 3]);
    let g = |i: f64| 100f64.powf(-2.0 * i / 4.0);
    let want = rotated_1_to_8([h * g(0.0), h * g(1.0), w * g(0.0), w * g(1.0)]);
    check(
        &Op::Rope(RopeSpec::vision(100.0, None, &[2, 2]).unwrap()),
        &[x, pos],
        &want,
        1e-5,
    );
}

fn attn(mask: Mask, hq: usize, hkv: usize, sq: usize, skv: usize, d: usize) -> AttentionSpec {
    AttentionSpec::new(1, hq, hkv, sq, skv, d, mask)
}

fn check_attention_all_variants(
    spec: &AttentionSpec,
    q: &HostTensor,
    k: &HostTensor,
    v: &HostTensor,
    want: &[f64],
) {
    let op = Op::Attention(spec.clone());
    check(&op, &[q.clone(), k.clone(), v.clone()], want, 1e-6);
    let fast = CpuBackend::fast();
    for name in ["naive", "flash", "block-sparse"] {
        let ts: Vec<Tensor> = [q, k, v].iter().map(|h| fast.upload(h).unwrap()).collect();
        let out = run(&fast, &op, &[&ts[0], &ts[1], &ts[2]], name).unwrap();
        let got = fast.download(&out).unwrap().to_f64();
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() < 1e-6,
                "{name} {}: element {i}: got {g}, want {w}",
                op.label()
            );
        }
    }
}

#[test]
fn causal_attention_two_tokens_one_hot_values() {
    // Equal scores; row 0 sees key 0 only, row 1 sees both.
    let q = t(F, &[1, 2, 1, 2], &[0.0; 4]);
    let k = q.clone();
    let v = t(F, &[1, 2, 1, 2], &[1.0, 0.0, 0.0, 1.0]);
    check_attention_all_variants(
        &attn(Mask::Causal, 1, 1, 2, 2, 2),
        &q,
        &k,
        &v,
        &[1.0, 0.0, 0.5, 0.5],
    );
    // No mask: both rows average.
    check_attention_all_variants(
        &attn(Mask::None, 1, 1, 2, 2, 2),
        &q,
        &k,
        &v,
        &[0.5, 0.5, 0.5, 0.5],
    );
}

#[test]
fn attention_scores_weight_values() {
    // D = 1, scale 1: scores [0, ln 3] -> weights [1/4, 3/4].
    let mut spec = attn(Mask::None, 1, 1, 1, 2, 1);
    spec.scale = 1.0;
    let q = t(F, &[1, 1, 1, 1], &[3f32.ln()]);
    let k = t(F, &[1, 2, 1, 1], &[0.0, 1.0]);
    let v = t(F, &[1, 2, 1, 1], &[4.0, 8.0]);
    check_attention_all_variants(&spec, &q, &k, &v, &[0.25 * 4.0 + 0.75 * 8.0]);
}

#[test]
fn sliding_window_and_gqa_and_capacity() {
    // 3 tokens, window 2: row 2 sees keys 1 and 2; two query heads share one KV head.
    // kv_capacity 4: the 4th row (value 100) must be ignored.
    let mut spec = attn(Mask::SlidingWindow { window: 2 }, 2, 1, 3, 3, 3);
    spec.kv_capacity = 4;
    let q = t(F, &[1, 3, 2, 3], &[0.0; 18]);
    let k = t(F, &[1, 4, 1, 3], &[0.0; 12]);
    let v = t(
        F,
        &[1, 4, 1, 3],
        &[
            1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 100.0, 100.0, 100.0,
        ],
    );
    let rows = [[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.0, 0.5, 0.5]];
    let want: Vec<f64> = rows
        .iter()
        .flat_map(|r| r.iter().chain(r.iter()).cloned())
        .collect();
    check_attention_all_variants(&spec, &q, &k, &v, &want);
}

#[test]
fn block_sparse_empty_row_is_zero() {
    // 2x2 blocks of 1: query row 0 keeps no block -> zeros; row 1 keeps key block 0 only.
    let l = BlockLayout::from_table(1, 1, 2, 2, vec![0, 0, 1, 0], Mask::None).unwrap();
    let spec = attn(Mask::BlockSparse(Arc::new(l)), 1, 1, 2, 2, 2);
    let q = t(F, &[1, 2, 1, 2], &[0.0; 4]);
    let v = t(F, &[1, 2, 1, 2], &[3.0, 4.0, 5.0, 6.0]);
    check_attention_all_variants(&spec, &q, &q.clone(), &v, &[0.0, 0.0, 3.0, 4.0]);
}

#[test]
fn layer_norm_and_rms_norm() {
    let x = t(F, &[1, 4], &[1.0, 2.0, 3.0, 4.0]);
    let g = t(F, &[4], &[1.0, 1.0, 2.0, 1.0]);
    let b = t(F, &[4], &[0.0, 0.0, 0.0, 0.5]);
    let inv = 1.0 / (1.25f64 + 1e-5).sqrt();
    let want = [-1.5 * inv, -0.5 * inv, 2.0 * 0.5 * inv, 1.5 * inv + 0.5];
    check(&Op::LayerNorm { eps: 1e-5 }, &[x, g, b], &want, 1e-6);
    let x = t(F, &[2], &[3.0, 4.0]);
    let w = t(F, &[2], &[1.0, 2.0]);
    let r = 1.0 / (12.5f64 + 1e-6).sqrt();
    check(
        &Op::RmsNorm { eps: 1e-6 },
        &[x, w],
        &[3.0 * r, 8.0 * r],
        1e-6,
    );
}

#[test]
fn embedding_out_of_range_is_zero() {
    let table = t(F, &[2, 2], &[1.0, 2.0, 3.0, 4.0]);
    let ids = HostTensor::from_u32([3], &[1, 7, 0]);
    check(
        &Op::Embedding,
        &[table, ids],
        &[3.0, 4.0, 0.0, 0.0, 1.0, 2.0],
        0.0,
    );
}

#[test]
fn add_mul_swiglu() {
    let a = t(F, &[2], &[1.0, -2.0]);
    let b = t(F, &[2], &[2.0, 3.0]);
    check(&Op::Add, &[a.clone(), b.clone()], &[3.0, 1.0], 0.0);
    check(&Op::Mul, &[a.clone(), b.clone()], &[2.0, -6.0], 0.0);
    let silu = |x: f64| x / (1.0 + (-x).exp());
    check(
        &Op::SwiGlu,
        &[a, b],
        &[silu(1.0) * 2.0, silu(-2.0) * 3.0],
        1e-6,
    );
}

#[test]
fn argmax_first_max_and_nan_ignored() {
    let x = t(
        F,
        &[3, 4],
        &[
            1.0,
            3.0,
            3.0,
            f32::NAN,
            f32::NAN,
            -1.0,
            -2.0,
            -3.0,
            0.0,
            0.0,
            0.0,
            5.0,
        ],
    );
    for b in [CpuBackend::oracle(), CpuBackend::fast()] {
        assert_eq!(
            run_on(&b, &Op::Argmax, &[x.clone()]).to_u32(),
            vec![1, 1, 3],
            "{}",
            b.name()
        );
    }
}

#[test]
fn cast_rounds_to_nearest_even() {
    // 1 + 2^-11 is halfway between f16 1.0 and 1 + 2^-10: ties to even (1.0);
    // 1 + 3·2^-11 is halfway between 1 + 2^-10 and 1 + 2^-9: ties to 1 + 2^-9.
    let x = t(F, &[2], &[1.0 + 2f32.powi(-11), 1.0 + 3.0 * 2f32.powi(-11)]);
    check(
        &Op::Cast { to: DType::F16 },
        &[x.clone()],
        &[1.0, 1.0 + 2f64.powi(-9)],
        0.0,
    );
    let x = t(F, &[2], &[1.0 + 2f32.powi(-8), 1.0 + 3.0 * 2f32.powi(-8)]);
    check(
        &Op::Cast { to: DType::BF16 },
        &[x],
        &[1.0, 1.0 + 2f64.powi(-6)],
        0.0,
    );
    let x = t(DType::F16, &[2], &[1.5, -2.0]);
    check(&Op::Cast { to: DType::F32 }, &[x], &[1.5, -2.0], 0.0);
}

#[test]
fn patch_embed_cls_bias_pos() {
    // 1 channel, 2x4 image, patch 2 -> 2 patches; w all ones, bias 1; cls 10; pos [0, 100, 200].
    let px = t(F, &[1, 1, 2, 4], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
    let w = t(F, &[1, 1, 2, 2], &[1.0, 1.0, 1.0, 1.0]);
    let spec = PatchEmbedSpec {
        patch: 2,
        bias: true,
        cls: true,
        pos: true,
    };
    let inputs = [
        px.clone(),
        w.clone(),
        t(F, &[1], &[1.0]),
        t(F, &[1], &[10.0]),
        t(F, &[3, 1], &[0.0, 100.0, 200.0]),
    ];
    check(
        &Op::PatchEmbed(spec),
        &inputs,
        &[10.0, 1.0 + 14.0 + 100.0, 1.0 + 22.0 + 200.0],
        1e-6,
    );
    // Without CLS/bias/pos, with a weight that picks the top-right pixel of each patch.
    let w = t(F, &[1, 1, 2, 2], &[0.0, 1.0, 0.0, 0.0]);
    let spec = PatchEmbedSpec {
        patch: 2,
        bias: false,
        cls: false,
        pos: false,
    };
    check(&Op::PatchEmbed(spec), &[px, w], &[2.0, 4.0], 0.0);
}

#[test]
fn gelu_mlp_silu_known() {
    let silu = |x: f64| x / (1.0 + (-x).exp());
    let x = t(F, &[1, 1], &[1.0]);
    let w1 = t(F, &[2, 1], &[1.0, -1.0]);
    let b1 = t(F, &[2], &[0.0, 0.0]);
    let w2 = t(F, &[1, 2], &[1.0, 1.0]);
    let b2 = t(F, &[1], &[0.5]);
    let spec = MlpSpec {
        act: Activation::Silu,
        residual: true,
    };
    let res = t(F, &[1, 1], &[7.0]);
    check(
        &Op::GeluMlp(spec),
        &[x, w1, b1, w2, b2, res],
        &[silu(1.0) + silu(-1.0) + 0.5 + 7.0],
        1e-6,
    );
}

#[test]
fn slice_concat_kv_append() {
    let x = t(F, &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    check(
        &Op::Slice {
            axis: 1,
            start: 1,
            len: 2,
        },
        &[x.clone()],
        &[2.0, 3.0, 5.0, 6.0],
        0.0,
    );
    check(
        &Op::Slice {
            axis: 0,
            start: 1,
            len: 1,
        },
        &[x.clone()],
        &[4.0, 5.0, 6.0],
        0.0,
    );
    let y = t(F, &[2, 1], &[7.0, 8.0]);
    check(
        &Op::Concat { axis: 1 },
        &[x.clone(), y],
        &[1.0, 2.0, 3.0, 7.0, 4.0, 5.0, 6.0, 8.0],
        0.0,
    );
    for b in [CpuBackend::oracle(), CpuBackend::fast()] {
        // cache [B=2, cap=3, H=1, D=1] = 0..6; write rows 1..3 of both batches.
        let cache = b
            .upload(&t(F, &[2, 3, 1, 1], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]))
            .unwrap();
        let new = b
            .upload(&t(F, &[2, 2, 1, 1], &[10.0, 11.0, 12.0, 13.0]))
            .unwrap();
        b.execute(
            &Op::KvAppend(KvAppendSpec {
                capacity: 3,
                pos: 1,
            }),
            &[&new],
            &cache,
            "",
        )
        .unwrap();
        assert_eq!(
            b.download(&cache).unwrap().to_f32(),
            vec![0.0, 10.0, 11.0, 3.0, 12.0, 13.0],
            "{}",
            b.name()
        );
    }
}

#[test]
fn rejects_bad_launches() {
    let b = CpuBackend::oracle();
    let x = b.upload(&t(F, &[2, 2], &[1.0; 4])).unwrap();
    let bad_out = b.alloc(&TensorDesc::new(F, [3])).unwrap();
    assert!(b.execute(&Op::Softmax, &[&x], &bad_out, "").is_err());
    assert!(
        b.execute(&Op::Softmax, &[&x], &x, "").is_err(),
        "aliasing must be rejected"
    );
    let out = b.alloc(&TensorDesc::new(F, [2, 2])).unwrap();
    let e = b.execute(&Op::Softmax, &[&x], &out, "flash").unwrap_err();
    assert!(e.to_string().contains("registered: oracle"), "{e}");
    assert!(CpuBackend::fast()
        .supports(&Op::Softmax, DType::U32, "")
        .is_err());
    assert_eq!(b.name(), "cpu-oracle");
    assert_eq!(CpuBackend::fast().name(), "cpu");
}
