//! Every registered op x variant x available backend x dtype, on real model shapes (ViT-B/16 and
//! ViT-L/14-336 attention, MLP, patch embedding; Qwen2-0.5B and Llama-7B decoder attention at
//! prefill and decode; the other ops at those models' widths).
//!
//! Throughput: compute-bound ops set `Throughput::Elements(FLOPs)` (criterion's "elem/s" reads as
//! FLOP/s), with the formula next to each case; memory-bound ops (and decode GEMVs, M = 1) set
//! `Throughput::Bytes(bytes read + written)`. GPU work is synchronised inside the timed region.
//! On a CPU rasteriser adapter (lavapipe) rows, tokens and sequences are capped at 32 (widths stay
//! real) and cases above 50 MFLOP / 4 MiB are skipped; every skip prints why.
//! `FOVEATE_BENCH_QUICK=1`: f32 only, shorter timings. On a real GPU also FlashAttention-2's
//! benchmark points and 4096..8192 square GEMMs (next to the cuBLAS variant): see `gpu_cases`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use foveate_benches::{devices, flops, quick, shapes, values};
use foveate_core::*;
use std::time::Duration;

/// One benchmark case: the op, its input descriptors, and its throughput.
struct Case {
    label: String,
    op: Op,
    inputs: Vec<TensorDesc>,
    tp: Throughput,
}

fn d(dt: DType, s: &[usize]) -> TensorDesc {
    TensorDesc::new(dt, s.to_vec())
}

fn fl(f: f64) -> Throughput {
    Throughput::Elements(f as u64)
}

/// Bytes of all inputs plus the output; an embedding lookup reads only the rows it gathers
/// (2·out + ids, not the whole table).
fn bytes(op: &Op, ins: &[TensorDesc]) -> Throughput {
    let refs: Vec<&TensorDesc> = ins.iter().collect();
    let out = op.infer(&refs).map(|o| o.size_bytes()).unwrap_or(0);
    if matches!(op, Op::Embedding) {
        return Throughput::Bytes((2 * out + ins[1].size_bytes()) as u64);
    }
    Throughput::Bytes((ins.iter().map(|t| t.size_bytes()).sum::<usize>() + out) as u64)
}

fn attn_case(name: &str, spec: AttentionSpec, dt: DType) -> Case {
    let q = d(dt, &[spec.batch, spec.q_len, spec.q_heads, spec.head_dim]);
    let kv = d(
        dt,
        &[spec.batch, spec.kv_capacity, spec.kv_heads, spec.head_dim],
    );
    // Prefill/encode: 4·B·H·Sq·Sk·D (half when causal). Decode (q_len 1): bytes of K and V read.
    let tp = if spec.q_len == 1 {
        Throughput::Bytes(flops::attention_kv_bytes(&spec, dt) as u64)
    } else {
        fl(flops::attention(&spec))
    };
    Case {
        label: format!("{name} q{} kv{}", spec.q_len, spec.kv_len),
        op: Op::Attention(spec),
        inputs: vec![q, kv.clone(), kv],
        tp,
    }
}

fn gemm_case(name: &str, m: usize, n: usize, k: usize, spec: GemmSpec, dt: DType) -> Case {
    let mut inputs = vec![d(dt, &[m, k]), d(dt, &[n, k])];
    if spec.bias {
        inputs.push(d(dt, &[n]));
    }
    if spec.residual {
        inputs.push(d(dt, &[m, n]));
    }
    // 2·M·N·K; a decode GEMV (M = 1) is memory bound: bytes of all inputs plus the output.
    let op = Op::Gemm(spec);
    let tp = if m == 1 {
        bytes(&op, &inputs)
    } else {
        fl(flops::gemm(m, n, k))
    };
    Case {
        label: format!("{name} {m}x{n}x{k}"),
        op,
        inputs,
        tp,
    }
}

/// The cases of one op family. `r` caps the row / token / sequence counts (the identity for real
/// shapes; 32 on a CPU rasteriser adapter, where the widths stay real but the rows shrink).
fn cases(kind: OpKind, dt: DType, r: &dyn Fn(usize) -> usize) -> Vec<Case> {
    use shapes::{LLAMA_7B as L7, QWEN2_05B as QW, VIT_B16 as VB, VIT_L14_336 as VL};
    let plain = GemmSpec::plain();
    let mut v = Vec::new();
    match kind {
        OpKind::Gemm => {
            v.push(gemm_case(
                "vit-b16 qkv",
                r(VB.tokens()),
                VB.hidden,
                VB.hidden,
                GemmSpec {
                    bias: true,
                    ..plain
                },
                dt,
            ));
            v.push(gemm_case(
                "vit-b16 fc1",
                r(VB.tokens()),
                VB.mlp,
                VB.hidden,
                GemmSpec {
                    act: Activation::QuickGelu,
                    bias: true,
                    residual: false,
                },
                dt,
            ));
            v.push(gemm_case(
                "vit-l14 out",
                r(VL.tokens()),
                VL.hidden,
                VL.hidden,
                GemmSpec {
                    bias: true,
                    residual: true,
                    ..plain
                },
                dt,
            ));
            v.push(gemm_case(
                "qwen2 up",
                r(256),
                QW.intermediate,
                QW.hidden,
                plain,
                dt,
            ));
            v.push(gemm_case(
                "qwen2 down decode",
                1,
                QW.hidden,
                QW.intermediate,
                GemmSpec {
                    residual: true,
                    ..plain
                },
                dt,
            ));
            v.push(gemm_case(
                "llama7b up decode",
                1,
                L7.intermediate,
                L7.hidden,
                plain,
                dt,
            ));
        }
        OpKind::Attention => {
            for vit in [VB, VL] {
                let t = r(vit.tokens());
                v.push(attn_case(
                    vit.name,
                    AttentionSpec::new(1, vit.heads, vit.heads, t, t, vit.head_dim, Mask::None),
                    dt,
                ));
            }
            for (dec, s) in [(QW, r(256)), (L7, r(512))] {
                // prefill (q_len = s), then decode (q_len = 1) over the same cache
                for q_len in [s, 1] {
                    let spec =
                        AttentionSpec::new(1, dec.q_heads, dec.kv_heads, q_len, s, dec.head_dim, Mask::Causal);
                    v.push(attn_case(dec.name, spec, dt));
                }
            }
            // Block-sparse: Qwen2-0.5B heads, a causal sliding window of S/4 as a block layout
            // (64-blocks; 8 when the rows are capped). FLOPs of the kept blocks only.
            let s = r(1024);
            let block = if s >= 256 { 64 } else { 8 };
            let layout = BlockLayout::sliding_window(block, s, s, s / 4);
            let density = layout.density();
            let spec = AttentionSpec::new(
                1,
                QW.q_heads,
                QW.kv_heads,
                s,
                s,
                QW.head_dim,
                Mask::BlockSparse(std::sync::Arc::new(layout)),
            );
            let mut c = attn_case(
                &format!("{} window-s/4 d{density:.2}", QW.name),
                spec.clone(),
                dt,
            );
            c.tp = fl(flops::attention_sparse(&spec, density));
            v.push(c);
        }
        OpKind::GeluMlp => {
            for vit in [VB, VL] {
                let (t, e, h) = (r(vit.tokens()), vit.hidden, vit.mlp);
                let inputs = vec![
                    d(dt, &[t, e]),
                    d(dt, &[h, e]),
                    d(dt, &[h]),
                    d(dt, &[e, h]),
                    d(dt, &[e]),
                    d(dt, &[t, e]),
                ];
                // 2·M·(D·H + H·O).
                v.push(Case {
                    label: format!("{} {t}x{e}x{h}", vit.name),
                    op: Op::GeluMlp(MlpSpec {
                        act: Activation::QuickGelu,
                        residual: true,
                    }),
                    inputs,
                    tp: fl(flops::mlp(t, e, h, e)),
                });
            }
        }
        OpKind::PatchEmbed => {
            for vit in [VB, VL] {
                let (e, p) = (vit.hidden, vit.patch);
                // Patches per side: the model's, or fewer (a smaller image) when rows are capped.
                let side = (vit.image / p).min(r(usize::MAX).isqrt());
                let (img, t) = (side * p, side * side + 1);
                let inputs = vec![
                    d(dt, &[1, 3, img, img]),
                    d(dt, &[e, 3, p, p]),
                    d(dt, &[e]),
                    d(dt, &[t, e]),
                ];
                // As a GEMM: 2·patches·E·(C·P·P).
                let f = flops::patch_embed(1, t - 1, e, 3, p);
                v.push(Case {
                    label: format!("{} {img}px", vit.name),
                    op: Op::PatchEmbed(PatchEmbedSpec {
                        patch: p,
                        bias: false,
                        cls: true,
                        pos: true,
                    }),
                    inputs,
                    tp: fl(f),
                });
            }
        }
        _ => {
            let (rows, w) = (r(256), QW.hidden);
            // Labelled with the first input's shape; bytes of all inputs plus the output.
            let mut push = |label: &str, op: Op, inputs: Vec<TensorDesc>| {
                let tp = bytes(&op, &inputs);
                let dims: Vec<String> = inputs[0]
                    .shape
                    .dims()
                    .iter()
                    .map(|x| x.to_string())
                    .collect();
                v.push(Case {
                    label: format!("{label} {}", dims.join("x")),
                    op,
                    inputs,
                    tp,
                });
            };
            match kind {
                OpKind::LayerNorm => {
                    push(
                        "vit-b16",
                        Op::LayerNorm { eps: 1e-5 },
                        vec![
                            d(dt, &[r(VB.tokens()), VB.hidden]),
                            d(dt, &[VB.hidden]),
                            d(dt, &[VB.hidden]),
                        ],
                    );
                    push(
                        "vit-l14",
                        Op::LayerNorm { eps: 1e-5 },
                        vec![
                            d(dt, &[r(VL.tokens()), VL.hidden]),
                            d(dt, &[VL.hidden]),
                            d(dt, &[VL.hidden]),
                        ],
                    );
                }
                OpKind::RmsNorm => {
                    push(
                        "qwen2 prefill",
                        Op::RmsNorm { eps: 1e-6 },
                        vec![d(dt, &[rows, w]), d(dt, &[w])],
                    );
                    push(
                        "llama7b decode",
                        Op::RmsNorm { eps: 1e-5 },
                        vec![d(dt, &[1, L7.hidden]), d(dt, &[L7.hidden])],
                    );
                }
                OpKind::Rope => push(
                    "qwen2 q prefill",
                    Op::Rope(RopeSpec::text(1e6, None)),
                    vec![d(dt, &[1, rows, QW.q_heads, 64]), d(DType::U32, &[1, rows])],
                ),
                OpKind::Embedding => push(
                    "qwen2 prefill",
                    Op::Embedding,
                    vec![d(dt, &[32000, w]), d(DType::U32, &[1, rows])],
                ),
                OpKind::Add => push(
                    "qwen2 residual",
                    Op::Add,
                    vec![d(dt, &[rows, w]), d(dt, &[rows, w])],
                ),
                OpKind::Mul => push(
                    "qwen2 mlp",
                    Op::Mul,
                    vec![
                        d(dt, &[rows, QW.intermediate]),
                        d(dt, &[rows, QW.intermediate]),
                    ],
                ),
                OpKind::SwiGlu => push(
                    "qwen2 mlp",
                    Op::SwiGlu,
                    vec![
                        d(dt, &[rows, QW.intermediate]),
                        d(dt, &[rows, QW.intermediate]),
                    ],
                ),
                OpKind::Unary => {
                    for a in [Activation::GeluErf, Activation::QuickGelu, Activation::Silu] {
                        push(
                            &format!("vit-b16 mlp {a}"),
                            Op::Unary(a),
                            vec![d(dt, &[r(VB.tokens()), VB.mlp])],
                        );
                    }
                }
                OpKind::Softmax => push(
                    "vit-b16 scores",
                    Op::Softmax,
                    vec![d(dt, &[VB.heads * r(VB.tokens()), r(VB.tokens())])],
                ),
                OpKind::Argmax => push("qwen2 logits", Op::Argmax, vec![d(dt, &[1, QW.vocab])]),
                OpKind::Cast => {
                    let to = if dt == DType::F32 {
                        DType::F16
                    } else {
                        DType::F32
                    };
                    push(
                        &format!("qwen2 hidden to {to}"),
                        Op::Cast { to },
                        vec![d(dt, &[rows, w])],
                    );
                }
                OpKind::KvAppend => push(
                    "qwen2 decode",
                    Op::KvAppend(KvAppendSpec {
                        capacity: 512,
                        pos: 300,
                    }),
                    vec![d(dt, &[1, 1, QW.kv_heads, 64])],
                ),
                OpKind::Slice => push(
                    "vit-l14 drop cls",
                    Op::Slice {
                        axis: 1,
                        start: 1,
                        len: r(VL.tokens()) - 1,
                    },
                    vec![d(dt, &[1, r(VL.tokens()), VL.hidden])],
                ),
                OpKind::Concat => push(
                    "llava splice",
                    Op::Concat { axis: 1 },
                    vec![d(dt, &[1, rows / 4, w]), d(dt, &[1, rows - rows / 4, w])],
                ),
                _ => {}
            }
        }
    }
    v
}

/// GPU-only shapes (a real GPU, never the CPU or a CPU rasteriser; f16/bf16 only;
/// `FOVEATE_BENCH_GPU_SHAPES=0` turns them off): FlashAttention-2's forward benchmark points
/// (batch x seqlen = 16k tokens, head dim 64 and 128, causal and not) and square GEMMs of
/// 4096..8192, where the cuBLAS variant (when libcublas is there) is the baseline.
fn gpu_cases(kind: OpKind, dt: DType) -> Vec<Case> {
    if dt == DType::F32 || std::env::var("FOVEATE_BENCH_GPU_SHAPES").is_ok_and(|v| v == "0") {
        return vec![];
    }
    match kind {
        OpKind::Attention => shapes::fa2_points()
            .into_iter()
            .map(|(b, s, h, hd, causal)| {
                let mask = if causal { Mask::Causal } else { Mask::None };
                let mut c = attn_case(
                    &format!("fa2 b{b} h{h} d{hd}{}", if causal { " causal" } else { "" }),
                    AttentionSpec::new(b, h, h, s, s, hd, mask),
                    dt,
                );
                c.label = format!("{} s{s}", c.label.split(" q").next().unwrap_or(""));
                c
            })
            .collect(),
        OpKind::Gemm => shapes::GPU_GEMM_SIZES
            .iter()
            .map(|&n| gemm_case("square", n, n, n, GemmSpec::plain(), dt))
            .collect(),
        _ => vec![],
    }
}

/// The naive attention kernel visits keys one at a time: at FA2's longer sequences one launch
/// takes seconds, so those points skip it.
fn too_slow(var: &str, case: &Case) -> bool {
    var == registry::attention::NAIVE && matches!(&case.op, Op::Attention(a) if a.kv_len >= 4096)
}

/// What a CPU rasteriser adapter can time in seconds: at most 50 MFLOP or 4 MiB per launch.
fn is_small(tp: &Throughput) -> bool {
    match tp {
        Throughput::Elements(f) => *f < 50_000_000,
        Throughput::Bytes(b) => *b < 4 << 20,
        _ => true,
    }
}

fn upload(b: &dyn Backend, desc: &TensorDesc, seed: u64) -> Result<Tensor> {
    if desc.dtype == DType::U32 {
        // Positions / ids: small values valid for every table in the cases.
        return b.upload(&HostTensor::from_u32(
            desc.shape.clone(),
            &values::ids(desc.numel(), 1000, seed),
        ));
    }
    values::tensor(b, desc.dtype, desc.shape.clone(), 1.0, seed)
}

/// Criterion ids: group `kernels/OP`, function `BACKEND/VARIANT/DTYPE`, parameter the case label
/// (the convention `foveate-bench-collect` reads).
fn kernels(c: &mut Criterion) {
    let devs = devices::available();
    // Quick runs cap rows / sequences at 256 (e.g. Llama-7B attention at 256 instead of 512).
    let real = |n: usize| if quick() { n.min(256) } else { n };
    let capped = |n: usize| n.min(32);
    for dev in &devs {
        if dev.slow {
            eprintln!("bench: kernels on {}: rows / tokens / sequence capped at 32 (real widths), cases above 50 MFLOP or 4 MiB skipped", dev.name());
        }
    }
    for kind in OpKind::ALL {
        let mut g = c.benchmark_group(format!("kernels/{kind}"));
        for dev in &devs {
            let b = dev.backend.as_ref();
            let r: &dyn Fn(usize) -> usize = if dev.slow { &capped } else { &real };
            for var in b.variants(kind) {
                for dt in b.dtypes().into_iter().filter(|t| var.dtypes.contains(t)) {
                    if quick() && dt != DType::F32 {
                        continue;
                    }
                    let func = format!("{}/{}/{dt}", dev.name(), var.name);
                    let gpu = !dev.slow && dev.name() != "cpu";
                    let extra = if gpu { gpu_cases(kind, dt) } else { vec![] };
                    for case in cases(kind, dt, r).into_iter().chain(extra) {
                        let id = format!("kernels/{kind} {func} {}", case.label);
                        if dev.slow && !is_small(&case.tp) {
                            eprintln!("bench: skip {id}: too large for a CPU rasteriser adapter");
                            continue;
                        }
                        if too_slow(var.name, &case) {
                            eprintln!("bench: skip {id}: the naive kernel takes seconds per launch at this length");
                            continue;
                        }
                        if let Err(why) = b.supports(&case.op, dt, var.name) {
                            eprintln!("bench: skip {id}: {why}");
                            continue;
                        }
                        let ins: Vec<Tensor> = match case
                            .inputs
                            .iter()
                            .enumerate()
                            .map(|(i, t)| upload(b, t, i as u64 + 1))
                            .collect()
                        {
                            Ok(v) => v,
                            Err(e) => {
                                eprintln!("bench: skip {id}: {e}");
                                continue;
                            }
                        };
                        let refs: Vec<&Tensor> = ins.iter().collect();
                        let descs: Vec<&TensorDesc> = case.inputs.iter().collect();
                        // KvAppend writes its cache in place: the output is the cache.
                        let out = match case.op.infer(&descs).and_then(|o| b.alloc(&o)) {
                            Ok(o) => o,
                            Err(e) => {
                                eprintln!("bench: skip {id}: {e}");
                                continue;
                            }
                        };
                        g.throughput(case.tp.clone());
                        g.bench_function(BenchmarkId::new(&func, &case.label), |bch| {
                            bch.iter(|| {
                                b.execute(&case.op, &refs, &out, var.name).expect("launch");
                                b.synchronize().expect("synchronize");
                            })
                        });
                    }
                }
            }
        }
        g.finish();
    }
}

fn config() -> Criterion {
    let (w, m) = if quick() { (100, 300) } else { (300, 1000) };
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(w))
        .measurement_time(Duration::from_millis(m))
}

criterion_group! { name = benches; config = config(); targets = kernels }
criterion_main!(benches);
