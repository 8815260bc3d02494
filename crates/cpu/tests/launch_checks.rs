//! Host-side launch checks on the CPU backends: a tensor whose buffer is smaller than its
//! descriptor, or an output of the wrong shape, is an error before any kernel runs (never an
//! out-of-bounds access or a panic).

use foveate_core::{Backend, DType, Error, HostTensor, Op, Tensor, TensorDesc};
use foveate_cpu::CpuBackend;

fn view(t: &Tensor, dims: &[usize]) -> Tensor {
    // The same 16-byte buffer, described as a bigger tensor.
    Tensor::new(
        t.storage().clone(),
        TensorDesc::new(DType::F32, dims.to_vec()),
    )
}

#[test]
fn mismatched_buffer_sizes_are_errors() {
    for be in [CpuBackend::fast(), CpuBackend::oracle()] {
        let small = be
            .upload(&HostTensor::from_f32(
                DType::F32,
                vec![4],
                &[1.0, 2.0, 3.0, 4.0],
            ))
            .unwrap();
        let other = be
            .upload(&HostTensor::from_f32(DType::F32, vec![64], &[0.5; 64]))
            .unwrap();
        let out = be.alloc(&TensorDesc::new(DType::F32, vec![64])).unwrap();
        let big = view(&small, &[64]);
        let e = be.execute(&Op::Add, &[&big, &other], &out, "").unwrap_err();
        assert!(matches!(e, Error::Shape { .. }), "{e}");
        assert_eq!(
            e.to_string(),
            "add: input 0 f32[64] needs 256 bytes but its buffer holds 16",
            "{}",
            be.name()
        );
        let small_out = be.alloc(&TensorDesc::new(DType::F32, vec![4])).unwrap();
        let e = be
            .execute(&Op::Add, &[&other, &other], &view(&small_out, &[64]), "")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "add: output f32[64] needs 256 bytes but its buffer holds 16"
        );
        // A shape mismatch between the inputs and the output, with right-sized buffers.
        let e = be
            .execute(&Op::Add, &[&other, &other], &small_out, "")
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("add: output is f32[4], expected f32[64]"),
            "{e}"
        );
        // The well-formed launch runs.
        be.execute(&Op::Add, &[&other, &other], &out, "").unwrap();
        assert_eq!(be.download(&out).unwrap().to_f32(), vec![1.0; 64]);
    }
}
