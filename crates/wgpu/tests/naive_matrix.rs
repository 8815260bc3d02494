//! The device-vs-device matrix (small size) on the wgpu backend: flash, flash-decode and
//! block-sparse against the backend's own naive kernel at more than one tile (q/kv 65..4096,
//! every head dim, chunked prefill, windows and 64x64 sparse tiles), GEMMs with M, N > 128.
//! f32 only: lavapipe runs ~0.2 GFLOP/s; the GPU kit runs every dtype at full size.

use foveate_core::{DType, OpKind};
use foveate_cpu::CpuBackend;
use foveate_testkit::{run_naive_matrix, skip_or_fail, MatrixOptions, MatrixSize};
use foveate_wgpu::WgpuBackend;

#[test]
fn small_naive_matrix_passes_on_wgpu() {
    let be = match WgpuBackend::new() {
        Ok(b) => b,
        Err(e) => {
            return skip_or_fail(
                "small_naive_matrix_passes_on_wgpu",
                "FOVEATE_REQUIRE_WGPU",
                &e.to_string(),
            )
        }
    };
    let t0 = std::time::Instant::now();
    let mut opts = MatrixOptions::new(MatrixSize::Small);
    opts.dtypes = vec![DType::F32];
    let report = run_naive_matrix(&be, &CpuBackend::oracle(), &opts);
    eprintln!(
        "{} in {:.1} s",
        report.summary_line(),
        t0.elapsed().as_secs_f64()
    );
    eprint!("{}", report.per_op_table());
    eprint!("{}", report.skipped_table());
    assert!(report.all_passed(), "{}", report.table(true));
    for v in ["flash", "flash-decode", "block-sparse"] {
        let n = report
            .results
            .iter()
            .filter(|r| r.kind == OpKind::Attention && r.variant == v && r.reference == "naive")
            .count();
        assert!(n >= 4, "attention `{v}` ran {n} cases against naive");
    }
}
