//! Running the matrix: every case on every registered variant of a backend, against the oracle.

use crate::report::{CaseResult, Report, Skipped};
use crate::{cases, compare_with, Case, MatrixOptions, Tolerance};
use foveate_core::{Backend, Error, HostTensor, Result, Tensor, TensorDesc};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Uploads the inputs, uploads the poisoned (or, for KvAppend, initial) output, executes and
/// downloads the output.
fn execute(backend: &dyn Backend, case: &Case, variant: &str) -> Result<HostTensor> {
    let descs: Vec<&TensorDesc> = case.inputs.iter().map(|t| &t.desc).collect();
    let out_desc = case.op.infer(&descs)?;
    let inputs: Vec<Tensor> = case.inputs.iter().map(|h| backend.upload(h)).collect::<Result<_>>()?;
    let refs: Vec<&Tensor> = inputs.iter().collect();
    let init = match &case.init_out {
        Some(t) => t.clone(),
        None => HostTensor::filled(out_desc.dtype, out_desc.shape.clone(), f32::NAN),
    };
    let out = backend.upload(&init)?;
    backend.execute(&case.op, &refs, &out, variant)?;
    backend.synchronize()?;
    backend.download(&out)
}

/// Like [`execute`], but a panicking backend becomes an error (a bug in the backend, reported as
/// one failed case rather than an aborted matrix).
fn execute_guarded(backend: &dyn Backend, case: &Case, variant: &str) -> Result<HostTensor> {
    match catch_unwind(AssertUnwindSafe(|| execute(backend, case, variant))) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic payload".into());
            Err(Error::device(backend.name(), format!("panicked: {msg}")))
        }
    }
}

/// Runs one case on one variant of `backend` and compares with `want` (the oracle's output).
pub fn run_case(backend: &dyn Backend, variant: &str, case: &Case, want: &HostTensor) -> CaseResult {
    let mut r = CaseResult {
        op: case.op.label(),
        kind: case.op.kind(),
        variant: variant.to_string(),
        dtype: case.dtype,
        shape: case.shape.clone(),
        max_abs_err: f64::NAN,
        rel_err: f64::NAN,
        pass: false,
        error: None,
    };
    match execute_guarded(backend, case, variant) {
        Err(e) => r.error = Some(e.to_string()),
        Ok(got) => {
            let c = compare_with(&got, want, Tolerance::for_op(&case.op, case.dtype));
            r.max_abs_err = c.max_abs_err;
            r.rel_err = c.rel_err;
            r.pass = c.pass;
            r.error = c.reason;
        }
    }
    r
}

/// Runs `cases(opts)` on every variant of `backend` that `opts.variant` selects and that
/// `backend.supports()`, comparing with `oracle` (its default variant). Unsupported
/// combinations are listed in `skipped` with the backend's reason; an op family with no
/// registered variant is listed there too.
pub fn run_matrix(backend: &dyn Backend, oracle: &dyn Backend, opts: &MatrixOptions) -> Report {
    let mut report = Report::new(backend.name(), backend.device_name());
    let dtypes = backend.dtypes();
    for case in cases(opts) {
        let skip = |variant: &str, reason: String| Skipped {
            op: case.op.label(),
            variant: variant.to_string(),
            dtype: case.dtype,
            shape: case.shape.clone(),
            reason,
        };
        if !dtypes.contains(&case.dtype) {
            report.skipped.push(skip("*", format!("backend `{}` does not compute in {}", backend.name(), case.dtype)));
            continue;
        }
        let variants = backend.variants(case.op.kind());
        if variants.is_empty() {
            report.skipped.push(skip("*", format!("backend `{}` registers no variant of {}", backend.name(), case.op.name())));
            continue;
        }
        let mut want: Option<std::result::Result<HostTensor, String>> = None;
        for v in variants.iter().filter(|v| opts.variant.as_deref().is_none_or(|n| n == v.name)) {
            if !v.dtypes.contains(&case.dtype) {
                report.skipped.push(skip(v.name, format!("variant `{}` does not list {}", v.name, case.dtype)));
                continue;
            }
            if let Err(why) = backend.supports(&case.op, case.dtype, v.name) {
                report.skipped.push(skip(v.name, why));
                continue;
            }
            let want = want.get_or_insert_with(|| execute_guarded(oracle, &case, "").map_err(|e| e.to_string()));
            let result = match want {
                Ok(w) => run_case(backend, v.name, &case, w),
                Err(e) => {
                    let mut r = run_case_stub(&case, v.name);
                    r.error = Some(format!("oracle `{}` failed: {e}", oracle.name()));
                    r
                }
            };
            report.results.push(result);
        }
    }
    report
}

fn run_case_stub(case: &Case, variant: &str) -> CaseResult {
    CaseResult {
        op: case.op.label(),
        kind: case.op.kind(),
        variant: variant.to_string(),
        dtype: case.dtype,
        shape: case.shape.clone(),
        max_abs_err: f64::NAN,
        rel_err: f64::NAN,
        pass: false,
        error: None,
    }
}
