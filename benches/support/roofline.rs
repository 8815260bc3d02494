//! The roofline of `foveate bench --roofline`: the device's measured peak GEMM FLOP/s and copy
//! GB/s, and every kernel family on real model shapes as a fraction of the peak that bounds it.
//!
//! * compute-bound kernels (GEMM with M > 1, the fused MLP, patch embedding, attention prefill
//!   per registered variant, dense and block-sparse) report GFLOP/s against the GEMM peak;
//! * memory-bound kernels (GEMM with M = 1, decode attention, norms, RoPE, embedding, the
//!   elementwise ops, softmax, argmax, cast, concat) report GB/s of bytes read + written against
//!   the copy bandwidth.
//!
//! Peaks are the best repetition (they are ceilings); kernels are mean ± sd. A fraction above 1
//! means the kernel's working set stayed in cache while the copy went to memory. Each row carries
//! its FLOP or byte formula in `config.formula`. Every case a backend cannot run is skipped with
//! the reason printed.

use crate::results::{Metric, Row};
use crate::stats::Stat;
use crate::{flops, shapes, values};
use foveate_core::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// How large the measured shapes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// Real model shapes (ViT-B/16, ViT-L/14-336, Qwen2-0.5B), sequences up to 1024.
    Full,
    /// For a CPU rasteriser adapter (lavapipe): at most 32 rows and 8192 columns, sequences up to 128.
    Reduced,
    /// Tiny shapes for tests (`--quick`): at most 16 rows and 128 columns, sequences 16 and 32.
    Quick,
}

impl Size {
    fn rows(self, r: usize) -> usize {
        match self {
            Size::Full => r,
            Size::Reduced => r.min(32),
            Size::Quick => r.min(16),
        }
    }
    fn cols(self, c: usize) -> usize {
        match self {
            Size::Full => c,
            Size::Reduced => c.min(8192),
            Size::Quick => c.min(128),
        }
    }
    fn seqs(self) -> Vec<usize> {
        match self {
            Size::Full => vec![64, 128, 197, 256, 512, 1024],
            Size::Reduced => vec![32, 64, 128],
            Size::Quick => vec![16, 32],
        }
    }
    /// Square sizes of the peak GEMM probe, copy elements, and the time each repetition fills.
    fn probe(self) -> (Vec<usize>, usize, f64) {
        match self {
            Size::Full => (vec![512, 1024, 2048], 16 << 20, 150.0),
            Size::Reduced => (vec![128, 256, 384], 4 << 20, 100.0),
            Size::Quick => (vec![64, 128], 64 << 10, 10.0),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Size::Full => "full",
            Size::Reduced => "reduced",
            Size::Quick => "quick",
        }
    }
}

pub struct Options {
    /// Timed repetitions per kernel (at least 3).
    pub reps: usize,
    pub size: Size,
    /// Threads of the host copy probe (the CPU backend's copy bandwidth); None: not measured.
    pub host_threads: Option<usize>,
}

/// The two ceilings.
#[derive(Clone, Copy, Debug)]
pub struct Peaks {
    pub gemm_gflops: f64,
    pub copy_gbps: f64,
}

/// ms per launch of `op`: a warm-up launch, a calibration launch, then `reps` repetitions of as
/// many back-to-back launches as fill `budget_ms`, synchronised at both ends of each.
pub fn time_op(
    b: &dyn Backend,
    op: &Op,
    ins: &[&Tensor],
    variant: &str,
    reps: usize,
    budget_ms: f64,
) -> Result<Vec<f64>> {
    let descs: Vec<&TensorDesc> = ins.iter().map(|t| t.desc()).collect();
    let out = b.alloc(&op.infer(&descs)?)?;
    let once = |n: usize| -> Result<f64> {
        b.synchronize()?;
        let t0 = Instant::now();
        for _ in 0..n {
            b.execute(op, ins, &out, variant)?;
        }
        b.synchronize()?;
        Ok(t0.elapsed().as_secs_f64() * 1e3 / n as f64)
    };
    once(1)?;
    let first = once(1)?;
    let inner = ((budget_ms / first.max(1e-3)) as usize).clamp(1, 10_000);
    (0..reps.max(1)).map(|_| once(inner)).collect()
}

fn best(xs: &[f64]) -> f64 {
    xs.iter().copied().fold(f64::INFINITY, f64::min)
}

/// Host memory copy on `threads` threads (the CPU device's copy bandwidth), best ms of `reps`.
fn host_copy_ms(n: usize, threads: usize, reps: usize) -> f64 {
    let src: Vec<f32> = values::uniform(n, 1.0, 3);
    let mut dst = vec![0f32; n];
    let chunk = n.div_ceil(threads.max(1));
    let mut times = Vec::new();
    for _ in 0..reps.max(1) + 1 {
        let t0 = Instant::now();
        std::thread::scope(|s| {
            for (d, x) in dst.chunks_mut(chunk).zip(src.chunks(chunk)) {
                s.spawn(move || d.copy_from_slice(x));
            }
        });
        times.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    std::hint::black_box(&dst);
    best(&times[1..])
}

/// Measures the two peaks and returns them with their rows.
pub fn peaks(b: &dyn Backend, o: &Options) -> Result<(Peaks, Vec<Row>)> {
    let (sizes, n, budget) = o.size.probe();
    let reps = o.reps.max(3);
    let up = |shape: Vec<usize>, seed: u64| values::tensor(b, DType::F32, shape, 1.0, seed);
    let (mut gemm, mut at) = (0f64, 0usize);
    for &s in &sizes {
        let (x, w) = (up(vec![s, s], 1)?, up(vec![s, s], 2)?);
        let t = best(&time_op(
            b,
            &Op::Gemm(GemmSpec::plain()),
            &[&x, &w],
            "",
            reps,
            budget,
        )?);
        let g = flops::gemm(s, s, s) / (t / 1e3) / 1e9;
        if g > gemm {
            (gemm, at) = (g, s);
        }
    }
    // Copy: the backend's full-length Slice (a device copy kernel), read + write.
    let x = up(vec![1, n], 3)?;
    let bytes = (2 * n * 4) as f64;
    let t = best(&time_op(
        b,
        &Op::Slice {
            axis: 1,
            start: 0,
            len: n,
        },
        &[&x],
        "",
        reps,
        budget,
    )?);
    let mut copy = bytes / (t / 1e3) / 1e9;
    let mut how = format!("{} slice kernel", b.name());
    if let Some(threads) = o.host_threads {
        let h = bytes / (host_copy_ms(n, threads, reps) / 1e3) / 1e9;
        if h > copy {
            (copy, how) = (h, format!("host memcpy on {threads} threads"));
        }
    }
    let peak_row = |workload: &str, key: &str, v: f64, unit: &str, config: serde_json::Value| Row {
        workload: workload.into(),
        kind: "peak".into(),
        backend: b.name().into(),
        variant: String::new(),
        dtype: "f32".into(),
        family: None,
        seq_len: None,
        metrics: BTreeMap::from([(key.to_string(), Metric::value(v, unit))]),
        config,
    };
    let rows = vec![
        peak_row(
            "peak gemm",
            "gflops",
            gemm,
            "GFLOP/s",
            json!({ "formula": "2·N³, best of N in the list", "sizes": sizes, "best_n": at }),
        ),
        peak_row(
            "peak copy",
            "gbps",
            copy,
            "GB/s",
            json!({ "formula": "2·n·4 bytes (read + write)", "mib": (n * 4) >> 20, "how": how }),
        ),
    ];
    eprintln!(
        "bench: {}: peak GEMM {gemm:.2} GFLOP/s (N = {at}), copy {copy:.2} GB/s ({how})",
        b.name()
    );
    Ok((
        Peaks {
            gemm_gflops: gemm,
            copy_gbps: copy,
        },
        rows,
    ))
}

/// One kernel to measure.
struct Case {
    workload: String,
    variant: String,
    family: Option<String>,
    seq: Option<usize>,
    op: Op,
    inputs: Vec<TensorDesc>,
    /// FLOPs, or bytes when `flops_bound` is false.
    work: f64,
    flops_bound: bool,
    formula: &'static str,
}

fn d(s: &[usize]) -> TensorDesc {
    TensorDesc::new(DType::F32, s.to_vec())
}

fn flop_case(
    workload: String,
    variant: &str,
    op: Op,
    inputs: Vec<TensorDesc>,
    work: f64,
    formula: &'static str,
) -> Case {
    Case {
        workload,
        variant: variant.into(),
        family: None,
        seq: None,
        op,
        inputs,
        work,
        flops_bound: true,
        formula,
    }
}

/// A memory-bound case: bytes of every input plus the output.
fn byte_case(workload: String, op: Op, inputs: Vec<TensorDesc>) -> Case {
    let refs: Vec<&TensorDesc> = inputs.iter().collect();
    let out = op.infer(&refs).map(|o| o.size_bytes()).unwrap_or(0);
    let work = (inputs.iter().map(|t| t.size_bytes()).sum::<usize>() + out) as f64;
    Case {
        workload,
        variant: String::new(),
        family: None,
        seq: None,
        op,
        inputs,
        work,
        flops_bound: false,
        formula: "bytes of inputs + output",
    }
}

fn gemm_cases(z: Size) -> Vec<Case> {
    let mut v = Vec::new();
    // Named as in eval/tools/torch_baseline.py so `foveate compare` lines them up.
    for (m, n, k) in [
        (197, 768, 768),
        (197, 3072, 768),
        (197, 768, 3072),
        (256, 896, 896),
        (256, 4864, 896),
        (1, 896, 4864),
        (1, 151936, 896),
    ] {
        let (m, n, k) = (z.rows(m), z.cols(n), z.cols(k));
        let op = Op::Gemm(GemmSpec::plain());
        let ins = vec![d(&[m, k]), d(&[n, k])];
        if m == 1 {
            // Decode GEMV: memory bound, bytes of weights + x + out.
            let work = (4 * (n * k + k + n)) as f64;
            v.push(Case {
                workload: format!("gemm {m}x{n}x{k}"),
                variant: String::new(),
                family: None,
                seq: None,
                op,
                inputs: ins,
                work,
                flops_bound: false,
                formula: "4·(N·K + K + N) bytes",
            });
        } else {
            v.push(flop_case(
                format!("gemm {m}x{n}x{k}"),
                "",
                op,
                ins,
                flops::gemm(m, n, k),
                "2·M·N·K",
            ));
        }
    }
    // The ViT fc1 with its bias + quick_gelu epilogue fused.
    let (m, n, k) = (z.rows(197), z.cols(3072), z.cols(768));
    let op = Op::Gemm(GemmSpec {
        act: Activation::QuickGelu,
        bias: true,
        residual: false,
    });
    v.push(flop_case(
        format!("gemm+bias+quick_gelu {m}x{n}x{k}"),
        "",
        op,
        vec![d(&[m, k]), d(&[n, k]), d(&[n])],
        flops::gemm(m, n, k),
        "2·M·N·K",
    ));
    // ViT-B/16 GELU MLP, as in the PyTorch baseline: 2·M·(D·H + H·O).
    let (m, e, h) = (z.rows(197), z.cols(768), z.cols(3072));
    let ins = vec![d(&[m, e]), d(&[h, e]), d(&[h]), d(&[e, h]), d(&[e])];
    v.push(flop_case(
        format!("mlp vit-b16 m{m}"),
        "",
        Op::GeluMlp(MlpSpec {
            act: Activation::GeluErf,
            residual: false,
        }),
        ins,
        flops::mlp(m, e, h, e),
        "2·M·(D·H + H·O)",
    ));
    // Patch embedding as an implicit GEMM: 2·patches·E·(C·P·P).
    for vit in [shapes::VIT_B16, shapes::VIT_L14_336] {
        let (p, e) = (vit.patch, z.cols(vit.hidden));
        let side = match z {
            Size::Full => vit.image / p,
            Size::Reduced => (vit.image / p).min(8),
            Size::Quick => (vit.image / p).min(4),
        };
        let (img, t) = (side * p, side * side + 1);
        let op = Op::PatchEmbed(PatchEmbedSpec {
            patch: p,
            bias: false,
            cls: true,
            pos: true,
        });
        let ins = vec![d(&[1, 3, img, img]), d(&[e, 3, p, p]), d(&[e]), d(&[t, e])];
        v.push(flop_case(
            format!("patch_embed {} {img}px", vit.name),
            "",
            op,
            ins,
            flops::patch_embed(1, side * side, e, 3, p),
            "2·patches·E·(3·P·P)",
        ));
    }
    v
}

fn attention_cases(b: &dyn Backend, z: Size) -> Vec<Case> {
    let variants = crate::devices::attention_variants(b);
    let block = if z == Size::Full { 64 } else { 8 };
    let mut v = Vec::new();
    for &var in &variants {
        for &s in &z.seqs() {
            let qkv = |hq: usize, hkv: usize, q: usize| {
                vec![d(&[1, q, hq, 64]), d(&[1, s, hkv, 64]), d(&[1, s, hkv, 64])]
            };
            let mut push =
                |fam: &str, spec: AttentionSpec, hq, hkv, work: f64, flops_bound: bool, formula| {
                    v.push(Case {
                        workload: format!("attention {fam} s{s}"),
                        variant: var.into(),
                        family: Some(format!("attention {fam}")),
                        seq: Some(s),
                        inputs: qkv(hq, hkv, spec.q_len),
                        op: Op::Attention(spec),
                        work,
                        flops_bound,
                        formula,
                    });
                };
            // ViT-B/16 heads, no mask; Qwen2-0.5B heads (14 q / 2 kv), causal.
            let spec = AttentionSpec::new(1, 12, 12, s, s, 64, Mask::None);
            push(
                "vit-b16 none",
                spec.clone(),
                12,
                12,
                flops::attention(&spec),
                true,
                "4·H·S²·D",
            );
            let spec = AttentionSpec::new(1, 14, 2, s, s, 64, Mask::Causal);
            push(
                "qwen2-0.5b causal",
                spec.clone(),
                14,
                2,
                flops::attention(&spec),
                true,
                "2·H·S²·D (causal)",
            );
            // Causal sliding window of S/4 as a block layout: kept blocks only.
            if s >= 2 * block {
                let l = BlockLayout::sliding_window(block, s, s, s / 4);
                let density = l.density();
                let spec = AttentionSpec::new(1, 14, 2, s, s, 64, Mask::BlockSparse(Arc::new(l)));
                push(
                    "qwen2-0.5b window-s/4",
                    spec.clone(),
                    14,
                    2,
                    flops::attention_sparse(&spec, density),
                    true,
                    "4·H·S²·D·density (kept blocks)",
                );
            }
            // Decode: one query over S cached keys, memory bound.
            let spec = AttentionSpec::new(1, 14, 2, 1, s, 64, Mask::Causal);
            push(
                "qwen2-0.5b decode",
                spec.clone(),
                14,
                2,
                flops::attention_kv_bytes(&spec, DType::F32),
                false,
                "2·Hkv·S·D·4 bytes of K and V",
            );
        }
    }
    v
}

fn memory_cases(z: Size) -> Vec<Case> {
    use shapes::{QWEN2_05B as QW, VIT_B16 as VB, VIT_L14_336 as VL};
    let (rows, w, inter) = (z.rows(512), z.cols(QW.hidden), z.cols(QW.intermediate));
    let (vt, vm) = (z.rows(VB.tokens()), z.cols(VB.mlp));
    let (lt, lh) = (z.rows(VL.tokens()), z.cols(VL.hidden));
    let mut v = vec![
        byte_case(
            format!("layer_norm vit-l14 {lt}x{lh}"),
            Op::LayerNorm { eps: 1e-5 },
            vec![d(&[lt, lh]), d(&[lh]), d(&[lh])],
        ),
        byte_case(
            format!("rms_norm qwen2 {rows}x{w}"),
            Op::RmsNorm { eps: 1e-6 },
            vec![d(&[rows, w]), d(&[w])],
        ),
        byte_case(
            format!("add qwen2 {rows}x{w}"),
            Op::Add,
            vec![d(&[rows, w]), d(&[rows, w])],
        ),
        byte_case(
            format!("mul qwen2 {rows}x{inter}"),
            Op::Mul,
            vec![d(&[rows, inter]), d(&[rows, inter])],
        ),
        byte_case(
            format!("swiglu qwen2 {rows}x{inter}"),
            Op::SwiGlu,
            vec![d(&[rows, inter]), d(&[rows, inter])],
        ),
        byte_case(
            format!("softmax vit-b16 scores {}x{vt}", VB.heads * vt),
            Op::Softmax,
            vec![d(&[VB.heads * vt, vt])],
        ),
        byte_case(
            format!("rope qwen2 q {rows}x14x64"),
            Op::Rope(RopeSpec::text(1e6, None)),
            vec![
                d(&[1, rows, 14, 64]),
                TensorDesc::new(DType::U32, vec![1, rows]),
            ],
        ),
        byte_case(
            format!("argmax qwen2 logits 1x{}", z.cols(QW.vocab)),
            Op::Argmax,
            vec![d(&[1, z.cols(QW.vocab)])],
        ),
        byte_case(
            format!("cast f32->f16 {rows}x{w}"),
            Op::Cast { to: DType::F16 },
            vec![d(&[rows, w])],
        ),
        byte_case(
            format!("concat llava splice {rows}x{w}"),
            Op::Concat { axis: 1 },
            vec![d(&[1, rows / 4, w]), d(&[1, rows - rows / 4, w])],
        ),
    ];
    for a in [Activation::GeluErf, Activation::QuickGelu] {
        v.push(byte_case(
            format!("{a} vit-b16 mlp {vt}x{vm}"),
            Op::Unary(a),
            vec![d(&[vt, vm])],
        ));
    }
    // Embedding reads only the looked-up rows: 2·rows·D·4 (+ ids).
    let mut e = byte_case(
        format!("embedding qwen2 {rows} ids"),
        Op::Embedding,
        vec![
            d(&[z.cols(32000), w]),
            TensorDesc::new(DType::U32, vec![1, rows]),
        ],
    );
    e.work = (2 * rows * w * 4 + rows * 4) as f64;
    e.formula = "2·rows·D·4 + ids bytes";
    v.push(e);
    v
}

fn upload(b: &dyn Backend, t: &TensorDesc, seed: u64) -> Result<Tensor> {
    if t.dtype == DType::U32 {
        return b.upload(&HostTensor::from_u32(
            t.shape.clone(),
            &values::ids(t.numel(), 100, seed),
        ));
    }
    values::tensor(b, DType::F32, t.shape.clone(), 1.0, seed)
}

/// Peaks, then every kernel as a fraction of its peak. Cases the backend cannot run are skipped
/// with the reason printed.
pub fn measure(b: &dyn Backend, o: &Options) -> Result<Vec<Row>> {
    let (pk, mut rows) = peaks(b, o)?;
    let reps = o.reps.max(3);
    let budget = o.size.probe().2;
    let mut cases = gemm_cases(o.size);
    cases.extend(attention_cases(b, o.size));
    cases.extend(memory_cases(o.size));
    for c in cases {
        let id = format!(
            "{} {}",
            c.workload,
            if c.variant.is_empty() {
                "(default)"
            } else {
                &c.variant
            }
        );
        if let Err(why) = b.supports(&c.op, DType::F32, &c.variant) {
            eprintln!("bench: skip {id} on {}: {why}", b.name());
            continue;
        }
        let ins = c
            .inputs
            .iter()
            .enumerate()
            .map(|(i, t)| upload(b, t, 10 + i as u64))
            .collect::<Result<Vec<_>>>()?;
        let refs: Vec<&Tensor> = ins.iter().collect();
        let ms = time_op(b, &c.op, &refs, &c.variant, reps, budget)?;
        let rates: Vec<f64> = ms.iter().map(|t| c.work / (t / 1e3) / 1e9).collect();
        let (key, unit, peak) = if c.flops_bound {
            ("gflops", "GFLOP/s", pk.gemm_gflops)
        } else {
            ("gbps", "GB/s", pk.copy_gbps)
        };
        let rate = Stat::of(&rates);
        let variant = if c.variant.is_empty() {
            b.variants(c.op.kind())
                .first()
                .map_or("", |v| v.name)
                .to_string()
        } else {
            c.variant
        };
        let metrics = BTreeMap::from([
            ("ms".to_string(), Metric::new(Stat::of(&ms), "ms")),
            (key.to_string(), Metric::new(rate, unit)),
            (
                "fraction_of_peak".to_string(),
                Metric {
                    mean: rate.mean / peak,
                    sd: rate.sd / peak,
                    n: rate.n,
                    unit: "fraction".into(),
                },
            ),
        ]);
        rows.push(Row {
            workload: c.workload,
            kind: "kernel".into(),
            backend: b.name().into(),
            variant,
            dtype: "f32".into(),
            family: c.family,
            seq_len: c.seq,
            metrics,
            config: json!({ "bound": if c.flops_bound { "flops" } else { "bytes" }, "formula": c.formula, "work": c.work, "size": o.size.name() }),
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn quick_cases_are_small_and_cover_every_family() {
        let b = foveate_cpu::CpuBackend::fast_with_threads(1);
        let mut cases = gemm_cases(Size::Quick);
        cases.extend(attention_cases(&b, Size::Quick));
        cases.extend(memory_cases(Size::Quick));
        for c in &cases {
            let n: usize = c.inputs.iter().map(|t| t.numel()).max().unwrap();
            assert!(n <= 1 << 20, "{}: {n} elements", c.workload);
            assert!(c.work > 0.0, "{}", c.workload);
        }
        for k in OpKind::ALL
            .iter()
            .filter(|k| !matches!(k, OpKind::KvAppend | OpKind::Slice))
        {
            assert!(cases.iter().any(|c| c.op.kind() == *k), "no case for {k}");
        }
        for fam in [
            "vit-b16 none",
            "qwen2-0.5b causal",
            "qwen2-0.5b window-s/4",
            "qwen2-0.5b decode",
        ] {
            assert!(
                cases
                    .iter()
                    .any(|c| c.family.as_deref() == Some(&format!("attention {fam}"))),
                "{fam}"
            );
        }
    }
}
