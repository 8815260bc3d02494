//! The fast backend (every op, every attention variant) against the oracle on random inputs.
#![allow(clippy::cloned_ref_to_slice_refs)]

use foveate_core::*;
use foveate_cpu::CpuBackend;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

const F32: DType = DType::F32;
const DTYPES: [DType; 3] = DType::FLOATS;

fn rand_t(rng: &mut ChaCha8Rng, dt: DType, shape: &[usize]) -> HostTensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    HostTensor::from_f32(dt, shape.to_vec(), &v)
}

fn ids(rng: &mut ChaCha8Rng, shape: &[usize], below: u32) -> HostTensor {
    let n: usize = shape.iter().product();
    let v: Vec<u32> = (0..n).map(|_| rng.random_range(0..below)).collect();
    HostTensor::from_u32(shape.to_vec(), &v)
}

/// Absolute + relative bound per element, by output dtype.
fn tol(dt: DType) -> f64 {
    match dt {
        DType::F32 => 2e-5,
        DType::F16 => 3e-3,
        DType::BF16 => 2e-2,
        DType::U32 => 0.0,
        DType::Int8 | DType::Int4 => unreachable!("{dt} is a weight format, never an output"),
    }
}

/// Runs `op` on the oracle and on `fast` with `variant` (the output poisoned with NaN first) and
/// compares element by element: |got - want| <= tol · (1 + |want|).
fn compare_on(fast: &CpuBackend, op: &Op, inputs: &[HostTensor], variant: &str) -> Vec<f64> {
    let oracle = CpuBackend::oracle();
    let up =
        |b: &CpuBackend| -> Vec<Tensor> { inputs.iter().map(|h| b.upload(h).unwrap()).collect() };
    let oi = up(&oracle);
    let want = oracle
        .download(&run(&oracle, op, &oi.iter().collect::<Vec<_>>(), "").unwrap())
        .unwrap();
    let fi = up(fast);
    let out = fast
        .upload(&HostTensor::filled(
            want.dtype(),
            want.shape().clone(),
            f32::NAN,
        ))
        .unwrap();
    fast.execute(op, &fi.iter().collect::<Vec<_>>(), &out, variant)
        .unwrap();
    let got = fast.download(&out).unwrap();
    assert_eq!(got.desc, want.desc);
    let t = tol(want.dtype());
    let (g, w) = (got.to_f64(), want.to_f64());
    for (i, (g, w)) in g.iter().zip(&w).enumerate() {
        assert!(
            (g - w).abs() <= t * (1.0 + w.abs()),
            "{} `{variant}` {}: element {i}: fast {g}, oracle {w}",
            op.label(),
            want.desc
        );
    }
    w
}

fn compare(op: &Op, inputs: &[HostTensor], variant: &str) -> Vec<f64> {
    compare_on(&CpuBackend::fast(), op, inputs, variant)
}

#[test]
fn gemm_all_epilogues_and_odd_shapes() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    // (leading dims of a, N, K), covering each path of the fast product: M <= 4 (dot per element),
    // small work (single-threaded gemm), M < 16 with enough work (split over N), large (threaded gemm).
    let shapes: [(&[usize], usize, usize); 7] = [
        (&[1], 33, 17),
        (&[3], 4, 1),
        (&[5], 7, 3),
        (&[2, 3], 130, 40),
        (&[37], 65, 70),
        (&[8], 300, 120),
        (&[41], 100, 80),
    ];
    for dt in DTYPES {
        for (lead, n, k) in shapes {
            for act in Activation::ALL {
                for (bias, residual) in [(false, false), (true, false), (true, true), (false, true)]
                {
                    let mut a_shape = lead.to_vec();
                    a_shape.push(k);
                    let mut o_shape = lead.to_vec();
                    o_shape.push(n);
                    let mut ins = vec![
                        rand_t(&mut rng, dt, &a_shape),
                        rand_t(&mut rng, dt, &[n, k]),
                    ];
                    if bias {
                        ins.push(rand_t(&mut rng, dt, &[n]));
                    }
                    if residual {
                        ins.push(rand_t(&mut rng, dt, &o_shape));
                    }
                    compare(
                        &Op::Gemm(GemmSpec {
                            act,
                            bias,
                            residual,
                        }),
                        &ins,
                        "",
                    );
                }
            }
        }
    }
}

#[test]
fn gelu_mlp_and_patch_embed() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    for dt in DTYPES {
        for act in Activation::ALL {
            for residual in [false, true] {
                let (m, d, h, o) = (5, 13, 37, 11);
                let mut ins = vec![
                    rand_t(&mut rng, dt, &[1, m, d]),
                    rand_t(&mut rng, dt, &[h, d]),
                    rand_t(&mut rng, dt, &[h]),
                    rand_t(&mut rng, dt, &[o, h]),
                    rand_t(&mut rng, dt, &[o]),
                ];
                if residual {
                    ins.push(rand_t(&mut rng, dt, &[1, m, o]));
                }
                compare(&Op::GeluMlp(MlpSpec { act, residual }), &ins, "");
            }
        }
        for bits in 0..8u32 {
            let spec = PatchEmbedSpec {
                patch: 4,
                bias: bits & 1 != 0,
                cls: bits & 2 != 0,
                pos: bits & 4 != 0,
            };
            let (b, c, hi, wi, e) = (2, 3, 8, 12, 10);
            let t = (hi / 4) * (wi / 4) + spec.cls as usize;
            let mut ins = vec![
                rand_t(&mut rng, dt, &[b, c, hi, wi]),
                rand_t(&mut rng, dt, &[e, c, 4, 4]),
            ];
            for (present, shape) in [
                (spec.bias, vec![e]),
                (spec.cls, vec![e]),
                (spec.pos, vec![t, e]),
            ] {
                if present {
                    ins.push(rand_t(&mut rng, dt, &shape));
                }
            }
            compare(&Op::PatchEmbed(spec), &ins, "");
        }
    }
}

#[test]
fn row_ops_norms_rope_embedding() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for dt in DTYPES {
        let x = rand_t(&mut rng, dt, &[3, 5, 67]);
        let (g, b) = (rand_t(&mut rng, dt, &[67]), rand_t(&mut rng, dt, &[67]));
        compare(&Op::LayerNorm { eps: 1e-5 }, &[x.clone(), g.clone(), b], "");
        compare(&Op::RmsNorm { eps: 1e-6 }, &[x.clone(), g], "");
        compare(&Op::Softmax, &[x.clone()], "");
        compare(&Op::Argmax, &[x.clone()], "");
        for act in Activation::ALL {
            compare(&Op::Unary(act), &[x.clone()], "");
        }
        let y = rand_t(&mut rng, dt, &[3, 5, 67]);
        for op in [Op::Add, Op::Mul, Op::SwiGlu] {
            compare(&op, &[x.clone(), y.clone()], "");
        }
        for (theta, rot) in [(10000.0, None), (1e6, Some(4)), (500.0, Some(8))] {
            let x = rand_t(&mut rng, dt, &[2, 5, 3, 8]);
            let pos = ids(&mut rng, &[2, 5], 4096);
            compare(&Op::Rope(RopeSpec::text(theta, rot)), &[x, pos], "");
        }
        let table = rand_t(&mut rng, dt, &[11, 9]);
        let idx = ids(&mut rng, &[2, 7], 14); // some ids >= V
        let want = compare(&Op::Embedding, &[table, idx.clone()], "");
        for (t, &id) in idx.to_u32().iter().enumerate() {
            if id >= 11 {
                assert!(
                    want[t * 9..(t + 1) * 9].iter().all(|&v| v == 0.0),
                    "id {id} must give zeros"
                );
            }
        }
    }
}

#[test]
fn casts_and_byte_moves() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    for from in DTYPES {
        let x = rand_t(&mut rng, from, &[4, 37]);
        for to in DTYPES {
            compare(&Op::Cast { to }, &[x.clone()], "");
        }
    }
    let ids = ids(&mut rng, &[3, 5], 100_000);
    compare(&Op::Cast { to: F32 }, &[ids.clone()], "");
    compare(
        &Op::Cast { to: DType::U32 },
        &[HostTensor::from_f32(F32, [3], &[2.5, 3.5, -1.0])],
        "",
    );
    for x in [
        rand_t(&mut rng, DType::F16, &[3, 5, 7]),
        ids.reshape([3, 5, 1]).unwrap(),
    ] {
        for axis in 0..3 {
            let d = x.shape().dims()[axis];
            compare(
                &Op::Slice {
                    axis,
                    start: d / 2,
                    len: d - d / 2,
                },
                &[x.clone()],
                "",
            );
            compare(&Op::Concat { axis }, &[x.clone(), x.clone()], "");
        }
    }
    for dt in DTYPES {
        let fast = CpuBackend::fast();
        let oracle = CpuBackend::oracle();
        let cache0 = rand_t(&mut rng, dt, &[2, 6, 2, 3]);
        let new = rand_t(&mut rng, dt, &[2, 2, 2, 3]);
        let op = Op::KvAppend(KvAppendSpec {
            capacity: 6,
            pos: 3,
        });
        let mut outs = Vec::new();
        for b in [&fast, &oracle] {
            let c = b.upload(&cache0).unwrap();
            b.execute(&op, &[&b.upload(&new).unwrap()], &c, "").unwrap();
            outs.push(b.download(&c).unwrap());
        }
        assert_eq!(outs[0], outs[1]);
        let (c, n0, n) = (outs[0].to_f32(), cache0.to_f32(), new.to_f32());
        // batch 1, row 4 (second new row) head 1 came from new[1, 1, 1, :]; row 0 is untouched.
        assert_eq!(
            &c[((6 + 4) * 2 + 1) * 3..][..3],
            &n[((2 + 1) * 2 + 1) * 3..][..3]
        );
        assert_eq!(&c[..6], &n0[..6]);
    }
}

fn attn_case(rng: &mut ChaCha8Rng, dt: DType, spec: &AttentionSpec) -> Vec<HostTensor> {
    let q = rand_t(
        rng,
        dt,
        &[spec.batch, spec.q_len, spec.q_heads, spec.head_dim],
    );
    let kv = [spec.batch, spec.kv_capacity, spec.kv_heads, spec.head_dim];
    // Larger keys make the softmax peaky, so a wrong mask or head mapping shows.
    let mut k = rand_t(rng, F32, &kv).to_f32();
    k.iter_mut().for_each(|x| *x *= 4.0);
    vec![
        q,
        HostTensor::from_f32(dt, kv.to_vec(), &k),
        rand_t(rng, dt, &kv),
    ]
}

const VARIANTS: [&str; 3] = ["flash", "naive", "block-sparse"];

#[test]
fn attention_dense_masks_all_variants() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let w = |window| Mask::SlidingWindow { window };
    // (batch, q_heads, kv_heads, q_len, kv_len, head_dim, mask)
    let cases = [
        (2, 4, 1, 5, 9, 8, Mask::Causal),
        (1, 7, 1, 6, 6, 12, Mask::Causal),
        (1, 4, 2, 1, 17, 16, Mask::Causal),
        (1, 2, 2, 1, 1, 8, Mask::Causal),
        (1, 2, 1, 9, 4, 8, Mask::None),      // q_len > kv_len
        (2, 3, 3, 70, 70, 16, Mask::Causal), // crosses query and key tiles
        (1, 2, 1, 33, 130, 8, Mask::None),
        (1, 4, 1, 20, 20, 8, w(3)),
        (1, 4, 1, 20, 20, 8, w(100)), // window larger than the sequence
        (1, 2, 1, 5, 80, 8, w(7)),
        (1, 1, 1, 3, 3, 4, w(1)),
        // Decode rows (flash-decode too): GQA groups of 7, batches, windows, no mask.
        (2, 14, 2, 1, 70, 16, Mask::Causal),
        (1, 4, 1, 1, 40, 8, w(5)),
        (1, 3, 3, 1, 9, 8, Mask::None),
        (2, 4, 2, 1, 130, 8, w(100)),
    ];
    for dt in DTYPES {
        for (i, (b, hq, hkv, sq, skv, d, mask)) in cases.iter().cloned().enumerate() {
            if dt != F32 && i % 3 != 0 {
                continue;
            }
            let mut spec = AttentionSpec::new(b, hq, hkv, sq, skv, d, mask);
            if i % 2 == 1 {
                spec.kv_capacity = skv + 3; // rows past kv_len must be ignored
            }
            let ins = attn_case(&mut rng, dt, &spec);
            for v in VARIANTS {
                compare(&Op::Attention(spec.clone()), &ins, v);
            }
            if sq == 1 {
                compare(&Op::Attention(spec.clone()), &ins, "flash-decode");
            }
        }
    }
}

/// A KV cache stored in f16 or bf16 under f32 queries (`--kv-dtype`): every variant reads it as
/// stored (flash-decode converting only the rows a task reads) and matches the oracle at f32
/// tolerance, on the same 16-bit values.
#[test]
fn attention_reads_a_16_bit_cache_under_f32_queries() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let w = |window| Mask::SlidingWindow { window };
    for cache in [DType::F16, DType::BF16] {
        for (sq, skv, mask, d) in [
            (1, 70, Mask::Causal, 16),
            (1, 33, w(9), 16),
            (1, 20, Mask::None, 16),
            (5, 40, Mask::Causal, 16),
            // Past flash-decode's 256-key spans of a 16-bit cache: whole, partial, windowed;
            // a head width with a partial block of 8.
            (1, 600, Mask::Causal, 16),
            (1, 700, w(520), 12),
        ] {
            let mut spec = AttentionSpec::new(2, 6, 2, sq, skv, d, mask);
            spec.kv_capacity = skv + 5; // rows past kv_len must be ignored
            let ins = attn_case(&mut rng, F32, &spec);
            let narrow = |h: &HostTensor| {
                HostTensor::from_f32(cache, h.shape().dims().to_vec(), &h.to_f32())
            };
            let ins = vec![ins[0].clone(), narrow(&ins[1]), narrow(&ins[2])];
            let op = Op::Attention(spec.clone());
            for v in VARIANTS {
                compare(&op, &ins, v);
            }
            if sq == 1 {
                compare(&op, &ins, "flash-decode");
            }
        }
    }
}

#[test]
fn attention_block_sparse_layouts_all_variants() {
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let (sq, skv) = (37, 37);
    // Query block 2 (rows 8..12) keeps nothing: those rows must be zero.
    let mut keep = vec![1u8; 10 * 10];
    keep[2 * 10..3 * 10].fill(0);
    keep[5 * 10 + 1] = 0;
    let custom = BlockLayout::from_table(4, 4, 10, 10, keep, Mask::Causal).unwrap();
    let layouts = [
        BlockLayout::sliding_window(4, sq, skv, 10),
        BlockLayout::global_local(8, sq, skv, 1, 1, Mask::Causal),
        BlockLayout::global_local(5, sq, skv, 1, 0, Mask::None),
        BlockLayout::dense(16, sq, skv, Mask::None),
        custom,
    ];
    for dt in DTYPES {
        for (li, l) in layouts.iter().enumerate() {
            let spec =
                AttentionSpec::new(1, 4, 2, sq, skv, 8, Mask::BlockSparse(Arc::new(l.clone())));
            let ins = attn_case(&mut rng, dt, &spec);
            for v in VARIANTS {
                let out = compare(&Op::Attention(spec.clone()), &ins, v);
                if li == 4 {
                    let row = 4 * 8; // q_heads x head_dim per query row
                    assert!(
                        out[8 * row..12 * row].iter().all(|&x| x == 0.0),
                        "empty rows must be zero"
                    );
                    assert!(out[12 * row..13 * row].iter().any(|&x| x != 0.0));
                }
            }
        }
    }
}

#[test]
fn own_thread_pool_matches_oracle() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let fast3 = CpuBackend::fast_with_threads(3);
    assert_eq!(fast3.threads(), 3);
    assert!(fast3.device_name().contains("3 threads"));
    let ins = vec![
        rand_t(&mut rng, F32, &[40, 50]),
        rand_t(&mut rng, F32, &[70, 50]),
        rand_t(&mut rng, F32, &[70]),
    ];
    compare_on(
        &fast3,
        &Op::Gemm(GemmSpec {
            act: Activation::QuickGelu,
            bias: true,
            residual: false,
        }),
        &ins,
        "",
    );
    let spec = AttentionSpec::new(1, 4, 2, 40, 40, 8, Mask::Causal);
    let ins = attn_case(&mut rng, F32, &spec);
    compare_on(&fast3, &Op::Attention(spec), &ins, "flash");
}

#[test]
fn registry_and_supports() {
    let fast = CpuBackend::fast();
    let names: Vec<_> = fast
        .variants(OpKind::Attention)
        .iter()
        .map(|v| v.name)
        .collect();
    assert_eq!(names, ["flash", "naive", "block-sparse", "flash-decode"]);
    for k in OpKind::ALL {
        let vs = fast.variants(k);
        assert!(
            !vs.is_empty() && vs.iter().all(|v| v.dtypes.contains(&DType::BF16)),
            "{k}"
        );
        assert_eq!(CpuBackend::oracle().variants(k)[0].name, "oracle");
    }
    let op = Op::Attention(AttentionSpec::new(1, 2, 1, 4, 4, 8, Mask::Causal));
    let e = fast.supports(&op, F32, "flash-decode").unwrap_err();
    assert!(e.contains("flash-decode needs q_len = 1 (got 4)"), "{e}");
    let e = fast.supports(&op, F32, "flash-v2").unwrap_err();
    assert!(
        e.contains("registered: flash, naive, block-sparse, flash-decode"),
        "{e}"
    );
    // Decode picks flash-decode by default; a block layout goes to block-sparse.
    let decode = AttentionSpec::new(1, 2, 1, 1, 4, 8, Mask::Causal);
    let pick = |spec: &AttentionSpec| {
        foveate_core::registry::pick_attention("flash", spec, &|v| {
            fast.supports(&Op::Attention(spec.clone()), F32, v)
                .map(|_| ())
        })
    };
    assert_eq!(pick(&decode), Ok("flash-decode"));
    let layout = BlockLayout::dense(4, 1, 4, Mask::Causal);
    let sparse = AttentionSpec::new(1, 2, 1, 1, 4, 8, Mask::BlockSparse(Arc::new(layout)));
    assert!(fast
        .supports(&Op::Attention(sparse.clone()), F32, "flash-decode")
        .unwrap_err()
        .contains("not a block layout"));
    assert_eq!(pick(&sparse), Ok("block-sparse"));
    assert!(fast
        .supports(&op, DType::U32, "naive")
        .unwrap_err()
        .contains("u32"));
    assert!(fast
        .supports(
            &Op::Slice {
                axis: 0,
                start: 0,
                len: 1
            },
            DType::U32,
            ""
        )
        .is_ok());
}
