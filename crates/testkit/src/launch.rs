//! The host-side launch checks every backend must make before a kernel runs: a tensor whose
//! buffer is smaller than its descriptor, or an output of the wrong shape, is an error (never
//! an out-of-bounds access or a panic), and the well-formed launch still runs. One function so
//! the cpu, wgpu and cuda tests hold every backend to the same messages.

use foveate_core::{Backend, DType, Error, HostTensor, Op, Tensor, TensorDesc};

/// The same buffer as `t`, described as an f32 tensor of `dims` (bigger than the buffer).
fn view(t: &Tensor, dims: &[usize]) -> Tensor {
    Tensor::new(t.storage().clone(), TensorDesc::new(DType::F32, dims.to_vec()))
}

/// Panics (with the backend's name) unless `be` refuses undersized input and output buffers and
/// a wrong output shape with the expected messages, and then runs the well-formed launch.
pub fn assert_launch_checks(be: &dyn Backend) {
    let name = be.name().to_string();
    let small = be.upload(&HostTensor::from_f32(DType::F32, vec![4], &[1.0, 2.0, 3.0, 4.0])).unwrap();
    let other = be.upload(&HostTensor::from_f32(DType::F32, vec![64], &[0.5; 64])).unwrap();
    let out = be.alloc(&TensorDesc::new(DType::F32, vec![64])).unwrap();

    let e = be.execute(&Op::Add, &[&view(&small, &[64]), &other], &out, "").unwrap_err();
    assert!(matches!(e, Error::Shape { .. }), "{name}: {e}");
    assert_eq!(e.to_string(), "add: input 0 f32[64] needs 256 bytes but its buffer holds 16", "{name}");

    let small_out = be.alloc(&TensorDesc::new(DType::F32, vec![4])).unwrap();
    let e = be.execute(&Op::Add, &[&other, &other], &view(&small_out, &[64]), "").unwrap_err();
    assert_eq!(e.to_string(), "add: output f32[64] needs 256 bytes but its buffer holds 16", "{name}");

    // A shape mismatch between the inputs and the output, with right-sized buffers.
    let e = be.execute(&Op::Add, &[&other, &other], &small_out, "").unwrap_err();
    assert!(e.to_string().starts_with("add: output is f32[4], expected f32[64]"), "{name}: {e}");

    // The well-formed launch runs.
    be.execute(&Op::Add, &[&other, &other], &out, "").unwrap();
    assert_eq!(be.download(&out).unwrap().to_f32(), vec![1.0; 64], "{name}");
}
