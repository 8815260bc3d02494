//! Compiles every kernel x specialisation with NVRTC for sm_80 and sm_90 (no GPU needed) and
//! checks the ptxas report: no compile error anywhere, no spills in the flash, decode and GEMM
//! families, and every kernel each module should define is there. Skips (saying why) when NVRTC
//! is absent; FOVEATE_REQUIRE_NVRTC=1 turns that into a failure.

use foveate_cuda::nvrtc;
use foveate_cuda::specs::{all_modules, compile_all, Family, HEAD_DIMS};

fn expected_kernels(f: Family) -> &'static [&'static str] {
    match f {
        Family::Elementwise | Family::Cast => {
            &["ew_add", "ew_mul", "ew_swiglu", "ew_unary", "embedding", "cast", "copy_rows_b2", "copy_rows_b4"]
        }
        Family::Norm => &["layer_norm", "rms_norm", "softmax", "argmax"],
        Family::Rope => &["rope"],
        Family::Gemm => &["gemm_none", "gemm_gelu", "gemm_gelu_tanh", "gemm_quick_gelu", "gemm_silu"],
        Family::GeluMlp => &["mlp_up_none", "mlp_up_gelu", "mlp_up_gelu_tanh", "mlp_up_quick_gelu", "mlp_up_silu", "mlp_down"],
        Family::PatchEmbed => &["patch_embed", "patch_cls"],
        Family::AttentionNaive => &["naive_none", "naive_causal", "naive_window", "naive_sparse_none", "naive_sparse_causal", "naive_sparse_window"],
        Family::Flash => &["flash_none", "flash_causal", "flash_window"],
        Family::Decode => &["decode_g1", "decode_g2", "decode_g4", "decode_g8", "decode_combine"],
        Family::BlockSparse => &["sparse_none", "sparse_causal", "sparse_window"],
    }
}

#[test]
fn every_kernel_compiles_for_sm80_and_sm90_without_spills() {
    if let Err(why) = nvrtc::nvrtc_status() {
        foveate_testkit::skip_or_fail("every_kernel_compiles_for_sm80_and_sm90_without_spills", "FOVEATE_REQUIRE_NVRTC", &why);
        return;
    }
    let modules = all_modules();
    // 3 dtypes x (7 single modules + 3 attention families x 5 head dims) + 12 casts
    assert_eq!(modules.len(), 3 * (7 + 3 * HEAD_DIMS.len()) + 12);
    let archs = vec!["sm_80".to_string(), "sm_90".to_string()];
    let rep = compile_all(&modules, &archs, 2).expect("NVRTC is present");
    assert!(rep.errors.is_empty(), "{} compile errors:\n{}", rep.errors.len(), rep.errors.join("\n"));
    let spills: Vec<String> = rep.fatal_spills().iter().map(|k| format!("{} {} {}: {} B spilled", k.arch, k.module, k.kernel, k.spill_stores + k.spill_loads)).collect();
    assert!(spills.is_empty(), "spills in flash/decode/GEMM kernels:\n{}", spills.join("\n"));
    for arch in &archs {
        for m in &modules {
            let label = m.label();
            for k in expected_kernels(m.family) {
                let found = rep.kernels.iter().find(|r| &r.arch == arch && r.module == label && r.kernel == *k);
                let r = found.unwrap_or_else(|| panic!("{arch} {label}: kernel {k} missing from the ptxas report"));
                assert!(r.registers > 0, "{arch} {label} {k}: 0 registers reported");
                assert!(r.registers <= 255);
            }
        }
    }
    // The tensor-core kernels are register-heavy but must stay within one block per SM at their
    // launch size (255 regs x 128 threads fits; 256 threads need <= 255 as well).
    let worst = rep.kernels.iter().filter(|k| k.family == Family::Flash).map(|k| k.registers).max().unwrap();
    eprintln!("{} kernels compiled for {:?}; max flash registers {worst}", rep.kernels.len(), archs);
    // The resource table of the families whose spills are fatal (KERNELS.md quotes it).
    for k in rep.kernels.iter().filter(|k| k.family.spills_fatal()) {
        eprintln!(
            "RES {} {} {} regs={} smem={} dyn={} stack={} spill={}",
            k.arch, k.module, k.kernel, k.registers, k.static_smem, k.dynamic_smem, k.stack, k.spill_stores + k.spill_loads
        );
    }
}
