//! Attention variants (naive / flash / flash-decode / block-sparse, whatever each backend
//! registers) swept over sequence length; block-sparse (and flash on the same masks) also over
//! density (sliding windows of S/8, S/4, S/2) and pattern (window, global + local).
//!
//! Criterion ids: group `attention/FAMILY`, function `BACKEND/VARIANT/f32`, parameter `s<S>`
//! (`kv<S>` for decode), the convention `foveate-bench-collect` reads to chart throughput vs S.
//!
//! Throughput: dense and causal prefill set `Throughput::Elements(4·B·H·Sq·Sk·D)` (half for
//! causal: `AttentionSpec::flops`); block-sparse counts the kept blocks only
//! (`4·B·H·Sq·Sk·D · density`); decode (q_len 1) sets `Throughput::Bytes` of K and V read
//! (`2·B·Hkv·Sk·D·size`), as it is memory bound.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use foveate_benches::{devices, flops, quick, values};
use foveate_core::{
    registry::attention as names, AttentionSpec, Backend, BlockLayout, DType, Mask, Op, Tensor,
};
use std::sync::Arc;
use std::time::Duration;

/// ViT-B/16 heads (12 x 64, no mask) and Qwen2-0.5B heads (14 q / 2 kv x 64, causal).
const VIT: (usize, usize, usize) = (12, 12, 64);
const QWEN: (usize, usize, usize) = (14, 2, 64);

fn run_one(
    c: &mut Criterion,
    b: &dyn Backend,
    group: &str,
    variant: &str,
    id: String,
    spec: AttentionSpec,
    tp: Throughput,
) {
    let op = Op::Attention(spec.clone());
    if let Err(why) = b.supports(&op, DType::F32, variant) {
        eprintln!("bench: skip {group} {}/{variant} {id}: {why}", b.name());
        return;
    }
    let mk = |h: usize, rows: usize, seed: u64| {
        values::tensor(b, DType::F32, vec![1, rows, h, spec.head_dim], 1.0, seed)
    };
    let (q, k, v) = match (
        mk(spec.q_heads, spec.q_len, 1),
        mk(spec.kv_heads, spec.kv_capacity, 2),
        mk(spec.kv_heads, spec.kv_capacity, 3),
    ) {
        (Ok(q), Ok(k), Ok(v)) => (q, k, v),
        _ => {
            eprintln!(
                "bench: skip {group} {}/{variant} {id}: cannot allocate inputs",
                b.name()
            );
            return;
        }
    };
    let out = b
        .alloc(
            &op.infer(&[q.desc(), k.desc(), v.desc()])
                .expect("valid spec"),
        )
        .expect("alloc");
    let ins: [&Tensor; 3] = [&q, &k, &v];
    let mut g = c.benchmark_group(group);
    g.throughput(tp);
    g.bench_function(
        BenchmarkId::new(format!("{}/{variant}/f32", b.name()), id),
        |bch| {
            bch.iter(|| {
                b.execute(&op, &ins, &out, variant).expect("launch");
                b.synchronize().expect("synchronize");
            })
        },
    );
    g.finish();
}

fn attention(c: &mut Criterion) {
    let seqs: Vec<usize> = if quick() {
        vec![128, 512]
    } else {
        vec![128, 256, 512, 1024, 2048]
    };
    for dev in devices::available() {
        let b = dev.backend.as_ref();
        let seqs: Vec<usize> = if dev.slow { vec![32, 64] } else { seqs.clone() };
        let variants = devices::attention_variants(b);
        for &variant in &variants {
            for &s in &seqs {
                // Encoder (ViT-B/16 heads), no mask: 4·H·S²·D.
                let spec = AttentionSpec::new(1, VIT.0, VIT.1, s, s, VIT.2, Mask::None);
                let f = flops::attention(&spec);
                run_one(
                    c,
                    b,
                    "attention/vit-b16-none",
                    variant,
                    format!("s{s}"),
                    spec,
                    Throughput::Elements(f as u64),
                );
                // Decoder prefill (Qwen2 heads), causal: 2·H·S²·D.
                let spec = AttentionSpec::new(1, QWEN.0, QWEN.1, s, s, QWEN.2, Mask::Causal);
                let f = flops::attention(&spec);
                run_one(
                    c,
                    b,
                    "attention/qwen2-causal",
                    variant,
                    format!("s{s}"),
                    spec,
                    Throughput::Elements(f as u64),
                );
                // Decode: one query over S cached keys; bytes of K and V read.
                let spec = AttentionSpec::new(1, QWEN.0, QWEN.1, 1, s, QWEN.2, Mask::Causal);
                let by = flops::attention_kv_bytes(&spec, DType::F32);
                run_one(
                    c,
                    b,
                    "attention/qwen2-decode",
                    variant,
                    format!("kv{s}"),
                    spec,
                    Throughput::Bytes(by as u64),
                );
            }
            if variant != names::BLOCK_SPARSE && variant != names::FLASH {
                continue;
            }
            // Block-sparse layouts, run by block-sparse and (for comparison, on the same mask) by
            // flash: density (window S/8, S/4, S/2) and pattern (global + local), block 64.
            let sparse_seqs: Vec<usize> = if dev.slow {
                vec![64]
            } else if quick() {
                vec![1024]
            } else {
                vec![1024, 2048]
            };
            for &s in &sparse_seqs {
                let block = if dev.slow { 16 } else { 64 };
                let mut layouts = Vec::new();
                for div in [8usize, 4, 2] {
                    layouts.push((
                        format!("window-s{div}"),
                        BlockLayout::sliding_window(block, s, s, s / div),
                    ));
                }
                layouts.push((
                    "global1-local1".to_string(),
                    BlockLayout::global_local(block, s, s, 1, 1, Mask::Causal),
                ));
                for (pattern, l) in layouts {
                    let density = l.density();
                    let spec = AttentionSpec::new(
                        1,
                        QWEN.0,
                        QWEN.1,
                        s,
                        s,
                        QWEN.2,
                        Mask::BlockSparse(Arc::new(l)),
                    );
                    // Kept blocks only: 4·H·S²·D·density.
                    let f = flops::attention_sparse(&spec, density);
                    let group = format!("attention/qwen2-sparse-{pattern}");
                    run_one(
                        c,
                        b,
                        &group,
                        variant,
                        format!("s{s} d{density:.2}"),
                        spec,
                        Throughput::Elements(f as u64),
                    );
                }
            }
        }
    }
}

fn config() -> Criterion {
    let (w, m) = if quick() { (100, 300) } else { (300, 1000) };
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(w))
        .measurement_time(Duration::from_millis(m))
}

criterion_group! { name = benches; config = config(); targets = attention }
criterion_main!(benches);
