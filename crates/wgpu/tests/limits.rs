//! Host-side checks of the wgpu backend: buffers above the adapter's limits are refused with the
//! size asked for and the limit, and a launch whose tensors' buffers are smaller than their
//! descriptors is an error before anything is dispatched. Runs on lavapipe where no GPU exists.

mod common;
use common::backend;
use foveate_core::{Backend, DType, TensorDesc};
use foveate_wgpu::check_buffer_size;

#[test]
fn buffer_size_is_checked_against_both_limits() {
    let limits = wgpu::Limits {
        max_buffer_size: 1 << 30,
        max_storage_buffer_binding_size: 128 << 20,
        ..Default::default()
    };
    assert!(check_buffer_size(128 << 20, "tensor", &limits).is_ok());
    let e = check_buffer_size((128 << 20) + 4, "tensor", &limits)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "backend `wgpu`: a `tensor` buffer of 134217732 bytes (128.00 MiB) exceeds the adapter's \
         max_storage_buffer_binding_size of 134217728 bytes (128.00 MiB)"
    );
    let e = check_buffer_size(3 << 30, "scratch", &limits)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(
            "`scratch` buffer of 3221225472 bytes (3.00 GiB) exceeds the adapter's max_buffer_size"
        ),
        "{e}"
    );
}

#[test]
fn alloc_above_the_adapter_limit_is_an_error() {
    let Some(be) = backend("alloc_above_the_adapter_limit_is_an_error") else {
        return;
    };
    let lim = be
        .limits()
        .max_storage_buffer_binding_size
        .min(be.limits().max_buffer_size);
    let n = (lim / 4 + 16) as usize;
    let e = be
        .alloc(&TensorDesc::new(DType::F32, vec![n]))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!(
            "backend `wgpu`: a `tensor` buffer of {} bytes",
            n * 4
        )),
        "{e}"
    );
    assert!(e.contains("exceeds the adapter's max_"), "{e}");
    // The backend still works afterwards.
    assert!(be.alloc(&TensorDesc::new(DType::F32, vec![16])).is_ok());
}

#[test]
fn mismatched_buffer_sizes_are_errors() {
    let Some(be) = backend("mismatched_buffer_sizes_are_errors") else {
        return;
    };
    foveate_testkit::assert_launch_checks(be);
}
