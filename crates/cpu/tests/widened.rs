//! 16-bit tensors read again keep their f32 widening until the next write; a write must drop it,
//! or later ops would read stale values.

use foveate_core::{run, Backend, DType, HostTensor, Op, Tensor};
use foveate_cpu::{CpuBackend, CpuStorage};

fn kept_bytes(t: &Tensor) -> usize {
    t.storage_as::<CpuStorage>().expect("cpu storage").widened_bytes()
}

fn values(be: &CpuBackend, t: &Tensor) -> Vec<f32> {
    be.download(t).unwrap().to_f32()
}

#[test]
fn a_write_drops_the_kept_widening() {
    for dt in [DType::F16, DType::BF16] {
        let be = CpuBackend::fast();
        let ones = be.upload(&HostTensor::from_f32(dt, [4], &[1.0; 4])).unwrap();
        let x = be.upload(&HostTensor::from_f32(dt, [4], &[1.0, 2.0, 3.0, 4.0])).unwrap();
        // Two reads of `x` (as a weight would be read by every forward): the second keeps a copy.
        assert_eq!(values(&be, &run(&be, &Op::Add, &[&x, &ones], "").unwrap()), [2.0, 3.0, 4.0, 5.0]);
        assert_eq!(kept_bytes(&x), 0, "{dt}: kept after one read");
        assert_eq!(values(&be, &run(&be, &Op::Add, &[&x, &ones], "").unwrap()), [2.0, 3.0, 4.0, 5.0]);
        assert_eq!(kept_bytes(&x), 16, "{dt}: not kept after two reads");
        // Overwrite `x` with x + x; the next reads must see the new values, not the kept ones.
        be.execute(&Op::Add, &[&ones, &ones], &x, "").unwrap();
        assert_eq!(kept_bytes(&x), 0, "{dt}: kept copy survived a write");
        for _ in 0..3 {
            assert_eq!(values(&be, &run(&be, &Op::Add, &[&x, &ones], "").unwrap()), [3.0; 4], "{dt}");
        }
        assert_eq!(kept_bytes(&x), 16);
        // f32 tensors are read in place: nothing kept.
        let y = be.upload(&HostTensor::from_f32(DType::F32, [4], &[1.0; 4])).unwrap();
        let one32 = be.upload(&HostTensor::from_f32(DType::F32, [4], &[1.0; 4])).unwrap();
        for _ in 0..2 {
            run(&be, &Op::Add, &[&y, &one32], "").unwrap();
        }
        assert_eq!(kept_bytes(&y), 0);
    }
}
