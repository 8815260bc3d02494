//! Opening the backend: on a machine without libcuda or a GPU, `CudaBackend::new` must return
//! `Error::Unavailable` with a reason, never panic. With a GPU (a later session) the same test
//! opens it, and `matrix_passes_on_the_gpu` runs the correctness matrix against the CPU oracle.

use foveate_core::{Backend, Error};
use foveate_cuda::CudaBackend;
use foveate_testkit::MatrixSize;

#[test]
fn new_returns_unavailable_with_a_reason_or_a_device() {
    let r = std::panic::catch_unwind(|| CudaBackend::new(0));
    let r = r.expect("CudaBackend::new panicked");
    // SAFETY: only probes whether the shared library can be opened.
    let driver = unsafe { cudarc::driver::sys::is_culib_present() };
    match r {
        Ok(b) => {
            assert!(driver);
            assert_eq!(b.name(), "cuda");
            eprintln!("CUDA device present: {}", b.device_name());
        }
        Err(Error::Unavailable { backend, reason }) => {
            assert_eq!(backend, "cuda");
            assert!(!reason.is_empty());
            if !driver {
                assert!(reason.contains("libcuda"), "reason should name the missing driver library: {reason}");
            }
            eprintln!("cuda unavailable here, as expected: {reason}");
        }
        Err(e) => panic!("expected Error::Unavailable, got {e}"),
    }
    // A bad ordinal is also an error, not a panic.
    assert!(std::panic::catch_unwind(|| CudaBackend::new(1 << 20)).expect("no panic").is_err());
}

#[test]
fn matrix_passes_on_the_gpu() {
    match CudaBackend::new(0) {
        Ok(b) => {
            foveate_testkit::assert_matrix_passes(&b, MatrixSize::Full);
        }
        Err(e) => foveate_testkit::skip_or_fail("matrix_passes_on_the_gpu", "FOVEATE_REQUIRE_CUDA", &e.to_string()),
    }
}
