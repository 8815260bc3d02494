//! Weight conversion at load: a checkpoint's bf16 values into each stored format, the work a
//! `--weights` load (and `foveate quantize`) does per tensor. One Qwen2-0.5B MLP weight
//! (4,864 x 896 = 4.36 M elements) per iteration; `Throughput::Elements` (elements/s).
//!
//! * `chunks/FORMAT`: [`HostTensor::encode_f32_chunks`], the load path (chunks on every core,
//!   quantised with the vector groups where the CPU has AVX2);
//! * `serial/FORMAT`: [`quant::encode`] on one thread (the vector groups alone);
//! * `scalar/FORMAT`: [`quant::encode_scalar`], the scalar definition the others must equal.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use foveate_benches::quick;
use foveate_core::{quant, DType, HostTensor};
use half::bf16;
use std::hint::black_box;
use std::time::Duration;

fn load(c: &mut Criterion) {
    let (rows, k) = (4864, 896);
    let n = rows * k;
    let raw: Vec<bf16> = (0..n)
        .map(|i| bf16::from_f32(((i * 7919 % 2003) as f32 - 1001.0) / 4096.0))
        .collect();
    let f32s: Vec<f32> = raw.iter().map(|v| v.to_f32()).collect();
    let fill = |start: usize, out: &mut [f32]| {
        for (o, v) in out.iter_mut().zip(&raw[start..]) {
            *o = v.to_f32();
        }
    };
    let mut g = c.benchmark_group("load/4864x896 from bf16");
    g.throughput(Throughput::Elements(n as u64));
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    for dt in [DType::F32, DType::F16, DType::Int8, DType::Int4] {
        let mut bytes = vec![0u8; quant::bytes_for(dt, n)];
        g.bench_function(BenchmarkId::new(format!("chunks/{dt}"), format!("{threads} threads")), |b| {
            b.iter(|| HostTensor::encode_f32_chunks(dt, black_box(&mut bytes), n, fill))
        });
        if !dt.is_quant() {
            continue;
        }
        let (quants, scales) = bytes.split_at_mut(quant::quant_bytes(dt, n));
        g.bench_function(BenchmarkId::new(format!("serial/{dt}"), "1 thread"), |b| {
            b.iter(|| quant::encode_into(dt, black_box(&f32s), quants, scales))
        });
        g.bench_function(BenchmarkId::new(format!("scalar/{dt}"), "1 thread"), |b| {
            b.iter(|| quant::encode_scalar(dt, black_box(&f32s), quants, scales))
        });
    }
    g.finish();
}

fn config() -> Criterion {
    let (w, m) = if quick() { (200, 500) } else { (500, 2000) };
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(w))
        .measurement_time(Duration::from_millis(m))
}

criterion_group! { name = benches; config = config(); targets = load }
criterion_main!(benches);
