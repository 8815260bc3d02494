//! The scalar weight kernels (what runs without AVX2/FMA/F16C) pass the Gemm and GeluMlp matrix,
//! weight formats included: `FOVEATE_CPU_SCALAR=1` turns the SIMD kernels off for the process,
//! so this binary holds this one test only.

use foveate_core::OpKind;
use foveate_cpu::CpuBackend;
use foveate_testkit::{run_matrix, MatrixOptions, MatrixSize};

#[test]
fn scalar_kernels_pass_the_product_matrix() {
    std::env::set_var("FOVEATE_CPU_SCALAR", "1");
    let mut opts = MatrixOptions::new(MatrixSize::Full);
    opts.ops = Some(vec![OpKind::Gemm, OpKind::GeluMlp]);
    let report = run_matrix(&CpuBackend::fast(), &CpuBackend::oracle(), &opts);
    eprintln!("{}", report.summary_line());
    assert!(report.all_passed(), "{}", report.table(true));
    for w in ["w:f16", "w:bf16", "w:int8", "w:int4"] {
        let n = report
            .results
            .iter()
            .filter(|r| r.shape.contains(w))
            .count();
        assert!(n >= 8, "only {n} runs with {w}");
    }
}
