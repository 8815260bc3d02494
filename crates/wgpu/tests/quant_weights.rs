//! Gemm with weight-only int8/int4 weights (planar groups of 32, `foveate_core::quant`) against
//! the cpu oracle on the same host tensors: the decode GEMV (`gemv_q`, M <= 8) and the tiled GEMM
//! dequantising its B tile (`gemm` with WQ), under every activation dtype the adapter offers.

mod common;
use common::*;
use foveate_core::{Activation, Backend, DType, GemmSpec, MlpSpec, Op};
use std::time::Instant;

fn gemm_cases(be: &foveate_wgpu::WgpuBackend, wq: DType, seed: u64) -> Vec<Option<String>> {
    let mut r = Rand::new(seed);
    let mut res = Vec::new();
    let full = GemmSpec { act: Activation::GeluTanh, bias: true, residual: true };
    let bias_only = GemmSpec { act: Activation::None, bias: true, residual: false };
    for dt in dtypes(be) {
        for m in [1, 3, 17] {
            for k in [32, 96] {
                for n in [5, 67] {
                    for spec in [GemmSpec::plain(), bias_only, full] {
                        let mut ins = vec![r.u(dt, &[m, k]), r.u(wq, &[n, k])];
                        if spec.bias {
                            ins.push(r.u(dt, &[n]));
                        }
                        if spec.residual {
                            ins.push(r.u(dt, &[m, n]));
                        }
                        res.push(check(be, &Op::Gemm(spec), &ins, "", None));
                    }
                }
            }
        }
        // Rank-3 activations, the GEMV's largest M, and more than one tile in M and N.
        let ins = vec![r.u(dt, &[2, 4, 64]), r.u(wq, &[9, 64])];
        res.push(check(be, &Op::Gemm(GemmSpec::plain()), &ins, "tiled", None));
        let ins = vec![r.u(dt, &[40, 64]), r.u(wq, &[70, 64]), r.u(dt, &[70])];
        res.push(check(be, &Op::Gemm(bias_only), &ins, "", None));
    }
    res
}

#[test]
fn gemm_int8_weights() {
    let Some(be) = backend("gemm_int8_weights") else { return };
    let t = Instant::now();
    let res = gemm_cases(be, DType::Int8, 81);
    eprintln!("gemm_int8_weights: {:.2} s", t.elapsed().as_secs_f64());
    report("gemm_int8_weights", res);
}

#[test]
fn gemm_int4_weights() {
    let Some(be) = backend("gemm_int4_weights") else { return };
    let t = Instant::now();
    let res = gemm_cases(be, DType::Int4, 41);
    eprintln!("gemm_int4_weights: {:.2} s", t.elapsed().as_secs_f64());
    report("gemm_int4_weights", res);
}

#[test]
fn gelu_mlp_int8_int4_weights() {
    let Some(be) = backend("gelu_mlp_int8_int4_weights") else { return };
    let t = Instant::now();
    let mut r = Rand::new(17);
    let mut res = Vec::new();
    for dt in dtypes(be) {
        for (w1, w2) in [(DType::Int8, DType::Int4), (DType::Int4, DType::Int8), (DType::Int8, dt), (dt, DType::Int4)] {
            for residual in [false, true] {
                for m in [3, 17] {
                    let (d, h, o) = (64, 96, 20);
                    let mut ins = vec![r.u(dt, &[m, d]), r.u(w1, &[h, d]), r.u(dt, &[h]), r.u(w2, &[o, h]), r.u(dt, &[o])];
                    if residual {
                        ins.push(r.u(dt, &[m, o]));
                    }
                    res.push(check(be, &Op::GeluMlp(MlpSpec { act: Activation::GeluErf, residual }), &ins, "", None));
                }
            }
        }
    }
    eprintln!("gelu_mlp_int8_int4_weights: {:.2} s", t.elapsed().as_secs_f64());
    report("gelu_mlp_int8_int4_weights", res);
}

/// Mixed weights the kernels do not read (a 16-bit weight under f32 activations) are refused by
/// name, not computed wrongly.
#[test]
fn unimplemented_weight_formats_are_refused() {
    let Some(be) = backend("unimplemented_weight_formats_are_refused") else { return };
    if !be.has_f16() {
        eprintln!("SKIPPED unimplemented_weight_formats_are_refused: the adapter has no shader-f16, so no f16 weight uploads");
        return;
    }
    let mut r = Rand::new(5);
    let host = [r.u(DType::F32, &[2, 32]), r.u(DType::F16, &[8, 32])];
    let ins: Vec<_> = host.iter().map(|h| be.upload(h).expect("upload")).collect();
    let refs: Vec<_> = ins.iter().collect();
    let out = be.alloc(&foveate_core::TensorDesc::new(DType::F32, vec![2, 8])).expect("alloc");
    let err = be.execute(&Op::Gemm(GemmSpec::plain()), &refs, &out, "").expect_err("f16 weights under f32 must be refused");
    let err = err.to_string();
    assert!(err.contains("gemm") && err.contains("f16"), "refusal should name the op and the format: {err}");
}
