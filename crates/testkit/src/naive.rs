//! The device-vs-device matrix (`foveate selftest --reference naive`): every fast kernel variant
//! against the same backend's `naive` variant, on shapes too large for the f64 oracle
//! ([`crate::scale_cases`]). The reference runs on the device, so a 4096 x 4096 attention costs a
//! GPU launch, not minutes of f64 loops.
//!
//! Per case:
//! * the family registers `naive` and the backend runs it on the case: `naive` is the reference
//!   of every other variant; `naive` itself is checked against the CPU oracle when the case is
//!   small (at most [`ORACLE_MAX_MACS`] multiply-adds), and is otherwise listed as the
//!   reference in `skipped`;
//! * no `naive` (GEMM): the CPU oracle when the case is small or the backend is the CPU itself,
//!   else the fast CPU backend (f32, itself checked against the oracle by the CPU matrix in CI).
//!
//! Two kernels that each meet the oracle tolerance can differ by twice it, so a comparison
//! between two kernels uses [`Tolerance::between_kernels`]; against the oracle, the usual bound.
//! Every output has a guard tail ([`crate::guard`]), the reference's included.

use crate::matrix::{catching, execute_guarded, launch, runnable, tolerance, upload_inputs};
use crate::report::{CaseResult, Report, Skipped};
use crate::{scale_cases, Case, MatrixOptions, Tolerance};
use foveate_core::registry::attention::NAIVE;
use foveate_core::{Backend, HostTensor, Op, Result};
use foveate_cpu::CpuBackend;
use std::str::FromStr;

/// Largest case (in multiply-adds) the oracle recomputes: ~0.1 s of its f64 loops.
pub const ORACLE_MAX_MACS: f64 = 6e7;

/// What the selftest compares each variant with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reference {
    /// The f64 CPU oracle, on the oracle matrix's shapes ([`crate::run_matrix`]).
    Oracle,
    /// The same backend's `naive` variant, on GPU-scale shapes ([`run_naive_matrix`]).
    Naive,
}

impl FromStr for Reference {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "oracle" => Ok(Reference::Oracle),
            "naive" => Ok(Reference::Naive),
            other => Err(format!(
                "unknown reference `{other}` (references: oracle, naive)"
            )),
        }
    }
}

/// Multiply-adds the oracle spends on `case` (its output size for families without a product).
pub fn case_macs(case: &Case) -> f64 {
    match &case.op {
        Op::Attention(a) => 2.0 * (a.batch * a.q_heads * a.q_len * a.kv_len * a.head_dim) as f64,
        Op::Gemm(_) => {
            let w = case.inputs[1].shape().dims();
            (case.inputs[0].shape().rows() * w[0] * w[1]) as f64
        }
        _ => case.inputs.iter().map(|t| t.numel() as f64).sum(),
    }
}

/// The output a variant is compared with, and what it is.
struct Want {
    name: String,
    out: std::result::Result<HostTensor, String>,
    tol: Tolerance,
}

/// Runs [`scale_cases`]`(opts)` on every selected variant of `backend` against its `naive`
/// variant (see the module docs); `oracle` checks `naive` on small cases and stands in for a
/// family without one.
pub fn run_naive_matrix(
    backend: &dyn Backend,
    oracle: &dyn Backend,
    opts: &MatrixOptions,
) -> Report {
    let mut report = Report::new(backend.name(), backend.device_name());
    let cpu = CpuBackend::fast();
    let on_cpu = backend.on_host();
    for case in scale_cases(opts) {
        let variants = runnable(backend, &case, opts, &mut report.skipped);
        if variants.is_empty() {
            continue;
        }
        let macs = case_macs(&case);
        let small = macs <= ORACLE_MAX_MACS;
        let has_naive = backend
            .variants(case.op.kind())
            .iter()
            .any(|v| v.name == NAIVE && v.dtypes.contains(&case.dtype))
            && backend.supports(&case.op, case.dtype, NAIVE).is_ok();
        let exact = Tolerance::for_op(&case.op, case.dtype);
        let oracle_want = || Want {
            name: oracle.name().into(),
            out: err_string(execute_guarded(oracle, &case, "")),
            tol: exact,
        };
        let inputs = catching(backend, || upload_inputs(backend, &case));
        let run = |variant: &str| match &inputs {
            Ok(ins) => catching(backend, || launch(backend, &case, ins, variant)),
            Err(e) => Err(foveate_core::Error::Msg(format!(
                "uploading the inputs: {e}"
            ))),
        };
        let between = Tolerance::between_kernels(&case.op, case.dtype);
        let want = if has_naive {
            Want {
                name: NAIVE.into(),
                out: err_string(run(NAIVE)),
                tol: between,
            }
        } else if small || on_cpu {
            oracle_want()
        } else {
            Want {
                name: cpu.name().into(),
                out: err_string(execute_guarded(&cpu, &case, "")),
                tol: between,
            }
        };
        for v in variants {
            if has_naive && v == NAIVE {
                match (&want.out, small) {
                    (Err(e), _) => report.results.push(CaseResult::new(&case, v, oracle.name()).failed(e.clone())),
                    (Ok(got), true) => {
                        let o = oracle_want();
                        let r = CaseResult::new(&case, v, &o.name);
                        report.results.push(match &o.out {
                            Ok(w) => r.judge(Ok(got.clone()), w, o.tol),
                            Err(e) => r.failed(format!("oracle `{}` failed: {e}", o.name)),
                        });
                    }
                    (Ok(_), false) => report.skipped.push(Skipped {
                        op: case.op.label(),
                        variant: v.into(),
                        dtype: case.dtype,
                        shape: case.shape.clone(),
                        reason: format!(
                            "naive is this case's reference; the oracle checks it only up to {ORACLE_MAX_MACS:.0e} multiply-adds (this case: {macs:.1e})"
                        ),
                    }),
                }
                continue;
            }
            // A variant that rounds its operands (`int8-dot`, `bf16-dot`) is within its own
            // bound of the truth and the reference within the dtype's: their sum.
            let own = tolerance(&case, v);
            let tol = if own == exact {
                want.tol
            } else {
                Tolerance { rel: want.tol.rel.max(own.rel + exact.rel), abs: want.tol.abs.max(own.abs + exact.abs), exact: false }
            };
            let r = CaseResult::new(&case, v, &want.name);
            report.results.push(match &want.out {
                Ok(w) => r.judge(run(v), w, tol),
                Err(e) => r.failed(format!("the reference `{}` failed: {e}", want.name)),
            });
        }
    }
    report
}

fn err_string(r: Result<HostTensor>) -> std::result::Result<HostTensor, String> {
    r.map_err(|e| e.to_string())
}
