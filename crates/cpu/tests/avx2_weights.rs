//! The AVX2 kernels pass the Gemm and GeluMlp matrix, weight formats and the `int8-dot` variant
//! included, on a CPU whose widest path is wider (AVX-512): `FOVEATE_CPU_ISA=avx2` caps the
//! process's kernel path, so this binary holds this one test only. (`fast_vs_oracle` and the
//! testkit matrix run the widest path; `scalar_weights` the scalar one.)

use foveate_core::OpKind;
use foveate_cpu::{CpuBackend, Isa};
use foveate_testkit::{run_matrix, MatrixOptions, MatrixSize};

#[test]
fn avx2_kernels_pass_the_product_matrix() {
    if !Isa::Avx2.supported() {
        eprintln!("skipped: this CPU lacks {} (the avx2 path)", Isa::Avx2.needs());
        return;
    }
    std::env::set_var("FOVEATE_CPU_ISA", "avx2");
    assert_eq!(foveate_cpu::selected_isa(), Isa::Avx2);
    let mut opts = MatrixOptions::new(MatrixSize::Full);
    opts.ops = Some(vec![OpKind::Gemm, OpKind::GeluMlp]);
    let report = run_matrix(&CpuBackend::fast(), &CpuBackend::oracle(), &opts);
    eprintln!("{}", report.summary_line());
    assert!(report.all_passed(), "{}", report.table(true));
    for w in ["w:int8", "w:int4"] {
        let n = report
            .results
            .iter()
            .filter(|r| r.shape.contains(w) && r.variant == "int8-dot")
            .count();
        assert!(n >= 4, "only {n} int8-dot runs with {w}");
    }
}
