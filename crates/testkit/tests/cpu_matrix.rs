//! The CPU fast backend (every registered variant) passes the matrix against the f64 oracle.

use foveate_core::{Backend, DType, OpKind};
use foveate_cpu::CpuBackend;
use foveate_testkit::{assert_matrix_passes, MatrixSize};

#[test]
fn cpu_fast_passes_the_full_matrix() {
    let cpu = CpuBackend::fast();
    let report = assert_matrix_passes(&cpu, MatrixSize::Full);
    assert!(report.results.len() >= 200, "only {} runs", report.results.len());
    for kind in OpKind::ALL {
        assert!(report.results.iter().any(|r| r.kind == kind), "no {kind} run");
    }
    // Weights stored in every other format ran on both products and both kernel shapes (m <= 4:
    // dots on the stored rows; larger m: f32 panels), under f32 and 16-bit activations.
    for w in ["w:f16", "w:bf16", "w:int8", "w:int4"] {
        for kind in [OpKind::Gemm, OpKind::GeluMlp] {
            let runs: Vec<_> = report.results.iter().filter(|r| r.kind == kind && r.shape.contains(w)).collect();
            assert!(runs.iter().any(|r| r.shape.starts_with("m1 ") || r.shape.starts_with("x1 ")), "{kind} {w}: no m = 1 run");
            assert!(runs.len() >= 4, "{kind} {w}: {} runs", runs.len());
            if w.contains("int") {
                assert!(runs.iter().any(|r| r.dtype == DType::BF16) && runs.iter().any(|r| r.dtype == DType::F16), "{kind} {w}: not under 16-bit activations");
            }
        }
    }
    // The int8-dot Gemm ran on int8 and int4 weights (its integer kernel: m <= 4) under every
    // activation dtype, and on everything else as tiled.
    for w in ["w:int8", "w:int4"] {
        for dt in DType::FLOATS {
            let n = report.results.iter().filter(|r| r.variant == "int8-dot" && r.dtype == dt && r.shape.contains(w) && r.shape.starts_with("m1 ")).count();
            assert!(n >= 1, "int8-dot never ran m = 1 with {w} under {dt}");
        }
    }
    assert!(report.results.iter().any(|r| r.variant == "int8-dot" && !r.shape.contains("w:")));
    // The f16-dot Gemm ran its kernel (m = 1, f16 weights under f32 activations) where the CPU has
    // it; elsewhere it runs as tiled.
    if foveate_cpu::f16_dot_available() {
        assert!(report.results.iter().any(|r| r.variant == "f16-dot" && r.dtype == DType::F32 && r.shape.contains("w:f16") && r.shape.starts_with("m1 ")), "f16-dot never ran m = 1 with w:f16 under f32");
        let rs = report.results.iter().filter(|r| r.variant == "f16-dot" && r.shape.contains("w:f16"));
        let (rel, abs) = rs.fold((0f64, 0f64), |(a, b), r| (a.max(r.rel_err), b.max(r.max_abs_err)));
        eprintln!("margin gemm f16-dot (f16 weights) worst rel_err {rel:.2e}  worst max_abs_err {abs:.2e}");
    } else {
        eprintln!("skipped: the f16-dot kernel checks (no AVX2/F16C path selected)");
    }
    // bf16-dot ran its kernel (more than 4 rows) on every weight format but f32, under every
    // activation dtype, where this CPU runs it.
    match foveate_cpu::bf16_dot_unavailable() {
        None => {
            // f16/bf16 weights are tagged `w:` under f32 activations (a weight in its
            // activations' own dtype carries no tag), int8/int4 under every float dtype.
            let f32_only = [DType::F32];
            for (w, dts) in [("w:f16", &f32_only[..]), ("w:bf16", &f32_only), ("w:int8", &DType::FLOATS), ("w:int4", &DType::FLOATS)] {
                for &dt in dts {
                    let n = report.results.iter().filter(|r| r.variant == "bf16-dot" && r.dtype == dt && r.shape.contains(w) && !r.shape.starts_with("m1 ")).count();
                    assert!(n >= 1, "bf16-dot never ran over 4 rows with {w} under {dt}");
                }
            }
            assert!(report.results.iter().any(|r| r.variant == "bf16-dot" && r.dtype == DType::BF16 && !r.shape.contains("w:") && !r.shape.starts_with("m1 ")));
            // ... and its decode kernel on bf16 weights (m = 1) under f32 and bf16 activations.
            assert!(report.results.iter().any(|r| r.variant == "bf16-dot" && r.dtype == DType::F32 && r.shape.contains("w:bf16") && r.shape.starts_with("m1 ")));
            assert!(report.results.iter().any(|r| r.variant == "bf16-dot" && r.dtype == DType::BF16 && !r.shape.contains("w:") && r.shape.starts_with("m1 ")));
            let rs = report.results.iter().filter(|r| r.variant == "bf16-dot" && r.shape.contains("w:"));
            let (rel, abs) = rs.fold((0f64, 0f64), |(a, b), r| (a.max(r.rel_err), b.max(r.max_abs_err)));
            eprintln!("margin gemm bf16-dot (16-bit and quantised weights) worst rel_err {rel:.2e}  worst max_abs_err {abs:.2e}");
        }
        Some(why) => eprintln!("skipped: the bf16-dot kernel checks ({why})"),
    }
    for dt in DType::FLOATS {
        let rs = report.results.iter().filter(|r| r.variant == "int8-dot" && r.dtype == dt && r.shape.contains("w:int"));
        let (rel, abs) = rs.fold((0f64, 0f64), |(a, b), r| (a.max(r.rel_err), b.max(r.max_abs_err)));
        eprintln!("margin gemm int8-dot {dt:<5} (int8/int4 weights) worst rel_err {rel:.2e}  worst max_abs_err {abs:.2e}");
    }
    // Margins: the worst error per op family and dtype, for tuning tolerances (printed only).
    for kind in OpKind::ALL {
        for dt in DType::FLOATS {
            let rs = report.results.iter().filter(|r| r.kind == kind && r.dtype == dt && !["int8-dot", "bf16-dot", "f16-dot"].contains(&r.variant.as_str()));
            let (rel, abs) = rs.fold((0f64, 0f64), |(a, b), r| (a.max(r.rel_err), b.max(r.max_abs_err)));
            eprintln!("margin {:<12} {dt:<5} worst rel_err {rel:.2e}  worst max_abs_err {abs:.2e}", kind.name());
        }
    }
    // Every registered attention variant ran on at least one masked and one unmasked case:
    // block-sparse masks for all but flash-decode, which takes base masks only (decode rows; its
    // sliding-window decode cases are in foveate-cpu's fast_vs_oracle).
    for v in cpu.variants(OpKind::Attention) {
        let runs: Vec<_> = report.results.iter().filter(|r| r.kind == OpKind::Attention && r.variant == v.name).collect();
        if v.name == "flash-decode" {
            assert!(runs.iter().any(|r| r.op.contains("[causal]")), "attention `flash-decode` never ran a causal mask");
        } else {
            assert!(runs.iter().any(|r| r.op.contains("sparse")), "attention `{}` never ran a block-sparse mask", v.name);
        }
        assert!(runs.iter().any(|r| r.op.contains("[none]")), "attention `{}` never ran unmasked", v.name);
    }
}

#[test]
fn cpu_fast_passes_the_small_matrix() {
    let report = assert_matrix_passes(&CpuBackend::fast(), MatrixSize::Small);
    for kind in OpKind::ALL {
        assert!(report.results.iter().any(|r| r.kind == kind), "no {kind} run");
    }
}
