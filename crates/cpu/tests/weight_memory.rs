//! A 16-bit or quantised weight read again and again by Gemm keeps no f32 copy: the results match
//! the oracle, and the process's resident memory does not grow by the size of a widened copy
//! (4 bytes per element) over 20 reads. One test in this binary, so no other test allocates
//! meanwhile.

use foveate_core::{run, Backend, DType, GemmSpec, HostTensor, Op};
use foveate_cpu::CpuBackend;

/// Resident set size in bytes (Linux: /proc/self/statm), None elsewhere.
fn rss() -> Option<usize> {
    let s = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = s.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn vals(n: usize, seed: u32) -> Vec<f32> {
    (0..n as u32)
        .map(|i| {
            ((i.wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32 / (1u32 << 24) as f32)
                * 0.2
                - 0.1
        })
        .collect()
}

fn max_rel_err(got: &[f32], want: &[f32]) -> f64 {
    let scale = want
        .iter()
        .fold(0f64, |m, &w| m.max((w as f64).abs()))
        .max(1e-30);
    got.iter()
        .zip(want)
        .fold(0f64, |m, (&g, &w)| m.max((g as f64 - w as f64).abs()))
        / scale
}

#[test]
fn weights_read_in_place_keep_no_widened_copy() {
    let (n, k) = (1024, 2048); // 8 MiB of f32 if widened
                               // Two threads: each keeps one f32 panel buffer (64 rows, 512 KiB here) for m > 4, whatever
                               // the machine's core count.
    let fast = CpuBackend::fast_with_threads(2);
    let oracle = CpuBackend::oracle();
    let op = Op::Gemm(GemmSpec::plain());
    let mut report = Vec::new();
    for dt in [DType::BF16, DType::F16, DType::Int8, DType::Int4] {
        let w = fast
            .upload(&HostTensor::from_f32(dt, [n, k], &vals(n * k, 7)))
            .unwrap();
        // m = 1 (the in-register GEMV) and m = 8 (f32 panels): both against the oracle.
        for m in [1usize, 8] {
            let a = fast
                .upload(&HostTensor::from_f32(
                    DType::F32,
                    [m, k],
                    &vals(m * k, 3 + m as u32),
                ))
                .unwrap();
            let want = oracle
                .download(&run(&oracle, &op, &[&a, &w], "").unwrap())
                .unwrap()
                .to_f32();
            let out = fast
                .alloc(&foveate_core::TensorDesc::new(DType::F32, [m, n]))
                .unwrap();
            // Int8/int4 weights: `tiled` (f32 activations) is exact up to f32 sums; the default
            // (`int8-dot`, activations rounded to int8 per group of 32) within that rounding.
            if dt.is_quant() {
                fast.execute(&op, &[&a, &w], &out, "").unwrap();
                let err = max_rel_err(&fast.download(&out).unwrap().to_f32(), &want);
                assert!(
                    err < 2e-3,
                    "{dt} m{m} default (int8-dot): max error {err:.2e} relative to max |want|"
                );
                report.push(format!("{dt} m{m} default int8-dot: max rel err {err:.1e}"));
            }
            let variant = if dt.is_quant() { "tiled" } else { "" };
            for _ in 0..3 {
                fast.execute(&op, &[&a, &w], &out, variant).unwrap();
            }
            let before = rss();
            for _ in 0..20 {
                fast.execute(&op, &[&a, &w], &out, variant).unwrap();
            }
            let after = rss();
            let got = fast.download(&out).unwrap().to_f32();
            let err = max_rel_err(&got, &want);
            assert!(
                err < 1e-4,
                "{dt} m{m} {variant}: max error {err:.2e} relative to max |want|"
            );
            match (before, after) {
                (Some(b), Some(a)) => {
                    let grew = a.saturating_sub(b);
                    report.push(format!("{dt} m{m}: rss {b} -> {a} (+{grew})"));
                    assert!(grew < 2 * n * k, "{dt} m{m}: resident memory grew by {grew} bytes over 20 reads (a widened copy is {} bytes)", 4 * n * k);
                }
                _ => report.push(format!(
                    "{dt} m{m}: no /proc/self/statm here, memory growth not checked"
                )),
            }
        }
    }
    eprintln!("{}", report.join("\n"));
}
