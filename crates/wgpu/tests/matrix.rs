//! The shared correctness matrix (crates/testkit), Small size, on the wgpu backend: every op,
//! dtype and registered variant against the f64 CPU oracle.

use foveate_testkit::{assert_matrix_passes, skip_or_fail, MatrixSize};
use foveate_wgpu::WgpuBackend;

#[test]
fn small_matrix_passes_on_wgpu() {
    let be = match WgpuBackend::new() {
        Ok(b) => b,
        Err(e) => return skip_or_fail("small_matrix_passes_on_wgpu", "FOVEATE_REQUIRE_WGPU", &e.to_string()),
    };
    eprintln!("wgpu device: {}", foveate_core::Backend::device_name(&be));
    let report = assert_matrix_passes(&be, MatrixSize::Small);
    eprintln!("{} matrix runs passed", report.results.len());
}
