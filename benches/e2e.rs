//! End to end on the graph executor with random weights of real shapes: ViT-B/16 image encode
//! (12 layers + projector), Qwen2-0.5B prefill of 128 tokens, and Qwen2-0.5B decode steps.
//! `FOVEATE_BENCH_QUICK=1` runs 2-layer versions of the same shapes.
//!
//! Throughput: encode sets `Throughput::Elements(FLOPs)` = patch GEMM + layers·(4·2·T·D² +
//! 2·T·(D·M + M·D) + 4·T²·D) + projector MLP (`E2eModel::encode_flops`); prefill and decode set
//! `Throughput::Elements(tokens)` (tokens/s; one decode iteration is one token).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use foveate_benches::e2e::E2eModel;
use foveate_benches::{devices, quick, shapes};
use foveate_core::DType;
use foveate_graph::AttentionKind;
use std::time::Duration;

const PROMPT: usize = 128;

fn e2e(c: &mut Criterion) {
    let layers = if quick() { Some(2) } else { None };
    for dev in devices::available() {
        if dev.slow {
            eprintln!("bench: skip e2e on {}: real model shapes take minutes per step on a CPU rasteriser adapter", dev.name());
            continue;
        }
        // Criterion ids: group `e2e/STAGE`, function `BACKEND/flash/f32`, parameter the model.
        let func = format!("{}/flash/f32", dev.name());
        let be = dev.name().to_string();
        let tag = layers.map_or(String::new(), |n| format!(" ({n} layers)"));
        let vit = shapes::builtin("vit-b16").expect("builtin");
        match E2eModel::builtin(
            &vit,
            layers,
            dev.backend.clone(),
            DType::F32,
            AttentionKind::Flash,
        ) {
            Ok(m) => {
                let mut g = c.benchmark_group("e2e/encode");
                g.throughput(Throughput::Elements(m.encode_flops() as u64));
                g.bench_function(BenchmarkId::new(&func, format!("vit-b16{tag}")), |b| {
                    b.iter(|| m.encode().expect("encode"))
                });
                g.finish();
            }
            Err(e) => eprintln!("bench: skip e2e/encode on {be}: {e}"),
        }
        let qwen = shapes::builtin("qwen2-0.5b").expect("builtin");
        let m = match E2eModel::builtin(
            &qwen,
            layers,
            dev.backend.clone(),
            DType::F32,
            AttentionKind::Flash,
        ) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("bench: skip e2e/prefill and e2e/decode on {be}: {e}");
                continue;
            }
        };
        let mut g = c.benchmark_group("e2e/prefill");
        g.throughput(Throughput::Elements(PROMPT as u64));
        g.bench_function(
            BenchmarkId::new(&func, format!("qwen2-0.5b p{PROMPT}{tag}")),
            |b| b.iter(|| m.prefill(PROMPT, 0, 1).expect("prefill").ms),
        );
        g.finish();
        let mut g = c.benchmark_group("e2e/decode");
        g.throughput(Throughput::Elements(1));
        g.bench_function(
            BenchmarkId::new(&func, format!("qwen2-0.5b after p{PROMPT}{tag}")),
            |b| {
                b.iter_custom(|iters| {
                    // Chunks of at most 64 steps after a fresh (untimed) prefill, so the KV length stays
                    // between PROMPT and PROMPT + 64.
                    let mut total = Duration::ZERO;
                    let mut left = iters as usize;
                    while left > 0 {
                        let steps = left.min(64);
                        let mut p = m.prefill(PROMPT, steps, 2).expect("prefill");
                        total +=
                            Duration::from_secs_f64(m.decode(&mut p, steps).expect("decode") / 1e3);
                        left -= steps;
                    }
                    total
                })
            },
        );
        g.finish();
    }
}

fn config() -> Criterion {
    let m = if quick() { 2 } else { 8 };
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(m))
}

criterion_group! { name = benches; config = config(); targets = e2e }
criterion_main!(benches);
