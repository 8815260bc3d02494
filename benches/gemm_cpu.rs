//! CPU GEMM throughput: the fast backend (`gemm` crate + fused epilogue) against the f64 oracle
//! and a naive f32 triple loop. Each bench sets Throughput::Elements to its FLOP count, so
//! criterion's "elements/s" reads as FLOP/s. The fast backend runs on `FOVEATE_BENCH_THREADS`
//! threads when set.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use foveate_core::{Backend, DType, GemmSpec, HostTensor, Op, Tensor};
use foveate_cpu::CpuBackend;
use std::hint::black_box;
use std::time::Duration;

/// `out[m, n] = sum_k a[m, k] · w[n, k]`, the plainest loop (f32 accumulation).
fn naive_gemm(a: &[f32], w: &[f32], m: usize, n: usize, k: usize, out: &mut [f32]) {
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0f32;
            for p in 0..k {
                acc += a[i * k + p] * w[j * k + p];
            }
            out[i * n + j] = acc;
        }
    }
}

fn values(n: usize, seed: u32) -> Vec<f32> {
    // Deterministic values in [-1, 1) without a RNG dependency.
    (0..n as u32)
        .map(|i| {
            ((i.wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32 / (1u32 << 24) as f32)
                * 2.0
                - 1.0
        })
        .collect()
}

fn bench_backend(c: &mut Criterion, group: &str, b: &CpuBackend, m: usize, n: usize, k: usize) {
    let a = b
        .upload(&HostTensor::from_f32(DType::F32, [m, k], &values(m * k, 1)))
        .unwrap();
    let w = b
        .upload(&HostTensor::from_f32(DType::F32, [n, k], &values(n * k, 2)))
        .unwrap();
    let out = b
        .alloc(&foveate_core::TensorDesc::new(DType::F32, [m, n]))
        .unwrap();
    let op = Op::Gemm(GemmSpec::plain());
    let mut g = c.benchmark_group(group);
    // FLOPs = 2·M·N·K (one multiply and one add per (m, n, k) triple).
    g.throughput(Throughput::Elements((2 * m * n * k) as u64));
    // Criterion ids as in the other benches: function `BACKEND/VARIANT/DTYPE`.
    let variant = if b.name() == "cpu" { "tiled" } else { "oracle" };
    g.bench_function(
        BenchmarkId::new(
            format!("{}/{variant}/f32", b.name()),
            format!("{m}x{n}x{k}"),
        ),
        |bch| {
            bch.iter(|| {
                b.execute(
                    &op,
                    &[black_box(&a), black_box(&w)],
                    black_box(&out as &Tensor),
                    "",
                )
                .unwrap()
            })
        },
    );
    g.finish();
}

/// Decode-shaped GEMV (M = 1) with the weight stored as `wdt` (f32 activations): the fast path
/// reads the stored rows directly. Throughput is the weight's bytes, so criterion's "bytes/s" is
/// the weight-read bandwidth (the activation row and output are negligible); time per GEMV
/// should fall with the bytes per weight when the product is memory-bound.
fn bench_weights(c: &mut Criterion, b: &CpuBackend, n: usize, k: usize, wdt: DType, variant: &str) {
    let a = b
        .upload(&HostTensor::from_f32(DType::F32, [1, k], &values(k, 1)))
        .unwrap();
    let wh = HostTensor::from_f32(wdt, [n, k], &values(n * k, 2));
    let bytes = wh.bytes.len();
    let w = b.upload(&wh).unwrap();
    drop(wh);
    let out = b
        .alloc(&foveate_core::TensorDesc::new(DType::F32, [1, n]))
        .unwrap();
    let op = Op::Gemm(GemmSpec::plain());
    let mut g = c.benchmark_group(format!("gemm_cpu/1x{n}x{k}-weights"));
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function(
        BenchmarkId::new(format!("{}/{variant}/f32", b.name()), format!("1x{n}x{k} w:{wdt}")),
        |bch| {
            bch.iter(|| {
                b.execute(
                    &op,
                    &[black_box(&a), black_box(&w)],
                    black_box(&out as &Tensor),
                    variant,
                )
                .unwrap()
            })
        },
    );
    g.finish();
}

fn bench_naive(c: &mut Criterion, group: &str, m: usize, n: usize, k: usize) {
    let (a, w) = (values(m * k, 1), values(n * k, 2));
    let mut out = vec![0f32; m * n];
    let mut g = c.benchmark_group(group);
    // FLOPs = 2·M·N·K.
    g.throughput(Throughput::Elements((2 * m * n * k) as u64));
    g.sample_size(10);
    g.bench_function(
        BenchmarkId::new("host/naive-loop/f32", format!("{m}x{n}x{k}")),
        |bch| bch.iter(|| naive_gemm(black_box(&a), black_box(&w), m, n, k, &mut out)),
    );
    g.finish();
}

fn gemm_cpu(c: &mut Criterion) {
    let fast = foveate_benches::devices::cpu();
    let oracle = CpuBackend::oracle();
    // 64x64x64: fast, oracle and naive. FLOPs = 2·64·64·64 = 524,288.
    bench_backend(c, "gemm_cpu/64x64x64", &fast, 64, 64, 64);
    bench_backend(c, "gemm_cpu/64x64x64", &oracle, 64, 64, 64);
    bench_naive(c, "gemm_cpu/64x64x64", 64, 64, 64);
    // 512x768x768 (a ViT-B projection on ~2.5 images): fast and naive. FLOPs = 2·512·768·768 ≈ 604 M.
    bench_backend(c, "gemm_cpu/512x768x768", &fast, 512, 768, 768);
    bench_naive(c, "gemm_cpu/512x768x768", 512, 768, 768);
    // 1024x1024x1024: fast only (the naive loop takes seconds). FLOPs = 2·1024³ ≈ 2.15 G.
    bench_backend(c, "gemm_cpu/1024x1024x1024", &fast, 1024, 1024, 1024);
    // Decode-shaped GEMV, Qwen2-0.5B MLP down projection: M = 1, N = 896, K = 4864.
    // FLOPs = 2·1·896·4864 ≈ 8.7 M.
    bench_backend(c, "gemm_cpu/1x896x4864", &fast, 1, 896, 4864);
    // The same GEMV shape with the weight in every storage format (f32 activations), 4096 x 4096:
    // 64 MiB as f32, 32 MiB as f16/bf16, 17 MiB as int8, 9 MiB as int4 (quants + f16 scales).
    // `FOVEATE_BENCH_WEIGHTS=0` leaves these out.
    // (criterion filter: `cargo bench -p foveate-benches --bench gemm_cpu -- weights`)
    if std::env::var("FOVEATE_BENCH_WEIGHTS").map_or(true, |v| v != "0") {
        for wdt in DType::WEIGHTS {
            bench_weights(c, &fast, 4096, 4096, wdt, "tiled");
        }
        // f16 rows 896 and 4,864 wide (Qwen2-0.5B's q/o/gate/up rows and its down projection's),
        // 112 MiB each so the weights stream from memory as in a decode step, not from the L3: a
        // wide row's activations no longer stay in L1 beside the weights streaming past.
        for k in [896, 4864] {
            bench_weights(c, &fast, (112 << 20) / (2 * k), k, DType::F16, "tiled");
            // The same bytes as bf16 through the AVX-512 BF16 GEMV (Qwen2-0.5B bf16 decode).
            let gemm = Op::Gemm(GemmSpec::plain());
            match fast.supports(&gemm, DType::F32, "bf16-dot") {
                Ok(()) => {
                    bench_weights(c, &fast, (112 << 20) / (2 * k), k, DType::BF16, "bf16-dot")
                }
                Err(why) => eprintln!("gemm_cpu: bf16-dot left out: {why}"),
            }
        }
        // int8/int4 with the activation row quantised too (integer dot products).
        for wdt in [DType::Int8, DType::Int4] {
            bench_weights(c, &fast, 4096, 4096, wdt, "int8-dot");
            // The same bytes in rows 896 wide (Qwen2-0.5B's attention, MLP up/gate and LM head
            // rows): 18,724 rows, where a kernel's per-row work shows.
            bench_weights(c, &fast, 4096 * 4096 / 896, 896, wdt, "int8-dot");
        }
    }
}

fn config() -> Criterion {
    let (w, m) = if foveate_benches::quick() {
        (200, 500)
    } else {
        (1000, 3000)
    };
    Criterion::default()
        .warm_up_time(Duration::from_millis(w))
        .measurement_time(Duration::from_millis(m))
}

criterion_group! {
    name = benches;
    config = config();
    targets = gemm_cpu
}
criterion_main!(benches);
