//! Helpers for backend crates' tests (candle's `test_device!` idea: one line per backend).

use crate::{run_matrix, MatrixOptions, MatrixSize, Report};
use foveate_core::Backend;
use foveate_cpu::CpuBackend;

/// Is the environment variable set to a true value (`1`, `true`, `yes`)? Used for
/// `FOVEATE_REQUIRE_WGPU` / `FOVEATE_REQUIRE_NVRTC`: when set, a missing device fails the test
/// instead of skipping it.
pub fn require_env(var: &str) -> bool {
    std::env::var(var).map(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes")).unwrap_or(false)
}

/// For a test whose device is absent: panics when `require_var` is set, otherwise prints why the
/// test is skipped (never silently) and returns.
pub fn skip_or_fail(test: &str, require_var: &str, reason: &str) {
    if require_env(require_var) {
        panic!("{test}: {reason} (and {require_var} is set, so this is a failure)");
    }
    eprintln!("SKIPPED {test}: {reason} (set {require_var}=1 to make this a failure)");
}

/// Runs the whole matrix of `size` on `backend` against the CPU oracle (`cpu-oracle`); see
/// [`assert_matrix_passes_with`]. The one line a backend crate's test needs:
/// `foveate_testkit::assert_matrix_passes(&backend, MatrixSize::Small)`.
pub fn assert_matrix_passes(backend: &dyn Backend, size: MatrixSize) -> Report {
    assert_matrix_passes_with(backend, &CpuBackend::oracle(), size)
}

/// Runs the whole matrix of `size` on `backend` against `oracle`, prints a summary (per-op counts
/// and skips) and panics with the failing rows if any case failed or nothing ran.
pub fn assert_matrix_passes_with(backend: &dyn Backend, oracle: &dyn Backend, size: MatrixSize) -> Report {
    let report = run_matrix(backend, oracle, &MatrixOptions::new(size));
    eprintln!("{}", report.summary_line());
    eprint!("{}", report.per_op_table());
    eprint!("{}", report.skipped_table());
    if report.results.is_empty() {
        panic!("{}: the {} matrix ran no case at all", backend.name(), size.name());
    }
    if !report.all_passed() {
        panic!("{}\n{} of {} runs failed:\n{}", report.summary_line(), report.failed().len(), report.results.len(), report.table(true));
    }
    report
}
