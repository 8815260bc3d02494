//! Gemm with int8/int4 weights (kernels/cuda/quant_gemm.cu: `qgemm_*` tiles dequantising the W
//! tile, `qgemv_*` for decode) and GeluMlp (gelu_mlp.cu built with QBITS per stage): every module compiles with NVRTC for sm_80 and sm_90 without
//! spills (no GPU needed; skips without NVRTC, fails with FOVEATE_REQUIRE_NVRTC=1), and on a GPU
//! both variants match the cpu oracle on the same host tensors (skips without one, fails with
//! FOVEATE_REQUIRE_CUDA=1).

use foveate_core::{Activation, Backend, DType, GemmSpec, HostTensor, Op};
use foveate_cpu::CpuBackend;
use foveate_cuda::nvrtc;
use foveate_cuda::specs::{all_modules, compile_all, kernels_of, table_line, Family};
use foveate_cuda::CudaBackend;
use foveate_testkit::{compare_with, Gen, Tolerance};

#[test]
fn quant_gemm_modules_compile_for_sm80_and_sm90_without_spills() {
    if let Err(why) = nvrtc::nvrtc_status() {
        foveate_testkit::skip_or_fail("quant_gemm_modules_compile", "FOVEATE_REQUIRE_NVRTC", &why);
        return;
    }
    let quant = |m: &foveate_cuda::specs::ModuleSpec| m.defines.iter().any(|(k, _)| k == "QBITS");
    let modules: Vec<_> = all_modules().into_iter().filter(quant).collect();
    // quant_gemm.cu and gelu_mlp.cu x f32 / f16 / bf16 activations x int8 / int4 weights.
    assert_eq!(modules.len(), 12);
    assert!(modules.iter().all(|m| matches!(m.family, Family::QuantGemm | Family::GeluMlp)));
    let archs = vec!["sm_80".to_string(), "sm_90".to_string()];
    let (rep, _) = compile_all(&modules, &archs, 2).expect("NVRTC is present");
    assert!(rep.errors.is_empty(), "compile errors:\n{}", rep.errors.join("\n"));
    for k in &rep.kernels {
        eprintln!("RES {}", table_line(&k.row()));
    }
    let spills: Vec<_> = rep.fatal_spills().iter().map(|k| format!("{} {} {}", k.arch, k.module, k.kernel)).collect();
    assert!(spills.is_empty(), "spills:\n{}", spills.join("\n"));
    for arch in &archs {
        for m in &modules {
            for k in kernels_of(m.family) {
                assert!(
                    rep.kernels.iter().any(|r| &r.arch == arch && r.module == m.label() && r.kernel == *k),
                    "{arch} {}: kernel {k} missing from the ptxas report",
                    m.label()
                );
            }
        }
    }
}

fn run(b: &dyn Backend, op: &Op, ins: &[HostTensor], variant: &str) -> Result<HostTensor, String> {
    let ts: Vec<_> = ins.iter().map(|h| b.upload(h)).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
    let refs: Vec<_> = ts.iter().collect();
    let descs: Vec<_> = ins.iter().map(|h| &h.desc).collect();
    let od = op.infer(&descs).map_err(|e| e.to_string())?;
    let out = b.upload(&HostTensor::filled(od.dtype, od.shape.clone(), f32::NAN)).map_err(|e| e.to_string())?;
    b.execute(op, &refs, &out, variant).map_err(|e| e.to_string())?;
    b.download(&out).map_err(|e| e.to_string())
}

#[test]
fn quant_gemm_matches_the_oracle_on_the_gpu() {
    let be = match CudaBackend::new(0) {
        Ok(b) => b,
        Err(e) => {
            return foveate_testkit::skip_or_fail(
                "quant_gemm_matches_the_oracle_on_the_gpu",
                "FOVEATE_REQUIRE_CUDA",
                &e.to_string(),
            )
        }
    };
    let oracle = CpuBackend::oracle();
    let mut g = Gen::new(14, "quant_gemm");
    let full = GemmSpec { act: Activation::GeluTanh, bias: true, residual: true };
    let (mut n_cases, mut fails) = (0, Vec::new());
    for dt in [DType::F32, DType::F16, DType::BF16] {
        for wq in [DType::Int8, DType::Int4] {
            for (m, k, n) in [(1, 32, 5), (3, 96, 67), (17, 160, 130), (40, 64, 200), (2, 4096, 9)] {
                for spec in [GemmSpec::plain(), full] {
                    let mut ins = vec![g.tensor(dt, vec![m, k], -1.0, 1.0), g.tensor(wq, vec![n, k], -1.0, 1.0)];
                    if spec.bias {
                        ins.push(g.tensor(dt, vec![n], -1.0, 1.0));
                    }
                    if spec.residual {
                        ins.push(g.tensor(dt, vec![m, n], -1.0, 1.0));
                    }
                    let op = Op::Gemm(spec);
                    let want = run(&oracle, &op, &ins, "").expect("oracle");
                    for variant in ["tiled", "gemv"] {
                        n_cases += 1;
                        let what = format!("{} {dt} x {wq} [{variant}] m={m} k={k} n={n}", op.label());
                        match run(&be, &op, &ins, variant) {
                            Ok(got) => {
                                let c = compare_with(&got, &want, Tolerance::for_dtype(dt));
                                if !c.pass {
                                    fails.push(format!("{what}: rel {:.2e} max abs {:.2e}", c.rel_err, c.max_abs_err));
                                }
                            }
                            Err(e) => fails.push(format!("{what}: {e}")),
                        }
                    }
                }
            }
        }
    }
    // GeluMlp: each stage's weight int8, int4 or in the activations' dtype.
    for dt in [DType::F32, DType::F16, DType::BF16] {
        for (w1, w2) in [(DType::Int8, DType::Int4), (DType::Int4, dt), (dt, DType::Int8)] {
            for (m, residual) in [(3, false), (70, true)] {
                let (d, h, o) = (64, 160, 40);
                let mut ins = vec![
                    g.tensor(dt, vec![m, d], -1.0, 1.0),
                    g.tensor(w1, vec![h, d], -1.0, 1.0),
                    g.tensor(dt, vec![h], -1.0, 1.0),
                    g.tensor(w2, vec![o, h], -1.0, 1.0),
                    g.tensor(dt, vec![o], -1.0, 1.0),
                ];
                if residual {
                    ins.push(g.tensor(dt, vec![m, o], -1.0, 1.0));
                }
                let op = Op::GeluMlp(foveate_core::MlpSpec { act: Activation::GeluErf, residual });
                let want = run(&oracle, &op, &ins, "").expect("oracle");
                n_cases += 1;
                let what = format!("{} {dt} x {w1}/{w2} m={m}", op.label());
                match run(&be, &op, &ins, "") {
                    Ok(got) => {
                        let c = compare_with(&got, &want, Tolerance::for_dtype(dt));
                        if !c.pass {
                            fails.push(format!("{what}: rel {:.2e} max abs {:.2e}", c.rel_err, c.max_abs_err));
                        }
                    }
                    Err(e) => fails.push(format!("{what}: {e}")),
                }
            }
        }
    }
    eprintln!("quant_gemm_matches_the_oracle_on_the_gpu: {} of {n_cases} passed", n_cases - fails.len());
    assert!(fails.is_empty(), "{} of {n_cases} failed:\n{}", fails.len(), fails.join("\n"));
}
