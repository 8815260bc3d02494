//! Host-side launch checks on the CPU backends: a tensor whose buffer is smaller than its
//! descriptor, or an output of the wrong shape, is an error before any kernel runs (never an
//! out-of-bounds access or a panic).

use foveate_cpu::CpuBackend;

#[test]
fn mismatched_buffer_sizes_are_errors() {
    for be in [CpuBackend::fast(), CpuBackend::oracle()] {
        foveate_testkit::assert_launch_checks(&be);
    }
}
