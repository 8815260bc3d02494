//! Host-side launch checks of the CUDA backend: a tensor whose buffer is smaller than its
//! descriptor is an error before any kernel launches. Needs a GPU; skips without one (fails
//! with FOVEATE_REQUIRE_CUDA=1). The out-of-memory message is tested without a GPU in
//! `backend::tests`.

use foveate_core::{Backend, DType, TensorDesc};
use foveate_cuda::CudaBackend;

#[test]
fn mismatched_buffer_sizes_are_errors() {
    let be = match CudaBackend::new(0) {
        Ok(b) => b,
        Err(e) => {
            return foveate_testkit::skip_or_fail(
                "mismatched_buffer_sizes_are_errors",
                "FOVEATE_REQUIRE_CUDA",
                &e.to_string(),
            )
        }
    };
    foveate_testkit::assert_launch_checks(&be);
    // Far more than any GPU has: out of memory, with the size asked for and the free memory.
    let e = be
        .alloc(&TensorDesc::new(DType::F32, vec![1 << 40]))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("backend `cuda`: out of memory: asked for 4398046511104 bytes (4.00 TiB), "),
        "{e}"
    );
    assert!(e.ends_with(" free"), "{e}");
}
