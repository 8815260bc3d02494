//! Running the matrix: every case on every registered variant of a backend, against the oracle.

use crate::report::{CaseResult, Report, Skipped};
use crate::guard::Guarded;
use crate::{cases, Case, MatrixOptions, Tolerance};
use foveate_core::{Backend, Error, HostTensor, Result, Tensor, TensorDesc};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Uploads the inputs of `case`.
pub(crate) fn upload_inputs(backend: &dyn Backend, case: &Case) -> Result<Vec<Tensor>> {
    case.inputs.iter().map(|h| backend.upload(h)).collect()
}

/// Runs `case` on already uploaded `inputs` into a guarded output (poisoned with NaN, or the
/// case's initial output for KvAppend, with a sentinel tail: see [`crate::guard`]), synchronises
/// and reads the output back; a write past its end is an error.
pub(crate) fn launch(backend: &dyn Backend, case: &Case, inputs: &[Tensor], variant: &str) -> Result<HostTensor> {
    let descs: Vec<&TensorDesc> = case.inputs.iter().map(|t| &t.desc).collect();
    let out_desc = case.op.infer(&descs)?;
    let refs: Vec<&Tensor> = inputs.iter().collect();
    let init = match &case.init_out {
        Some(t) => t.clone(),
        None => HostTensor::filled(out_desc.dtype, out_desc.shape.clone(), f32::NAN),
    };
    let out = Guarded::upload(backend, &init)?;
    backend.execute(&case.op, &refs, &out.out, variant)?;
    backend.synchronize()?;
    out.download(backend)
}

/// `f()`, with a panic turned into an error (a bug in the backend, reported as one failed case
/// rather than an aborted matrix).
pub(crate) fn catching<T>(backend: &dyn Backend, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
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

/// Uploads the inputs and runs one variant (see [`launch`]), a panic becoming an error.
pub(crate) fn execute_guarded(backend: &dyn Backend, case: &Case, variant: &str) -> Result<HostTensor> {
    catching(backend, || launch(backend, case, &upload_inputs(backend, case)?, variant))
}

/// The bound for `variant` on `case` ([`Tolerance::for_variant`]).
pub(crate) fn tolerance(case: &Case, variant: &str) -> Tolerance {
    let descs: Vec<&TensorDesc> = case.inputs.iter().map(|t| &t.desc).collect();
    Tolerance::for_variant(&case.op, case.dtype, variant, &descs)
}

/// Runs one case on one variant of `backend` and compares with `want` (the oracle's output).
pub fn run_case(backend: &dyn Backend, variant: &str, case: &Case, want: &HostTensor) -> CaseResult {
    let got = execute_guarded(backend, case, variant);
    CaseResult::new(case, variant, "cpu-oracle").judge(got, want, tolerance(case, variant))
}

/// The variants of `case.op`'s family that `opts.variant` selects and `backend` can run on the
/// case; each one it cannot run goes to `skipped` with the reason (the whole case, as variant
/// `*`, when the backend lacks the dtype or registers no variant).
pub(crate) fn runnable(backend: &dyn Backend, case: &Case, opts: &MatrixOptions, skipped: &mut Vec<Skipped>) -> Vec<&'static str> {
    let skip = |variant: &str, reason: String| Skipped {
        op: case.op.label(),
        variant: variant.to_string(),
        dtype: case.dtype,
        shape: case.shape.clone(),
        reason,
    };
    if !backend.dtypes().contains(&case.dtype) {
        skipped.push(skip("*", format!("backend `{}` does not compute in {}", backend.name(), case.dtype)));
        return Vec::new();
    }
    let variants = backend.variants(case.op.kind());
    if variants.is_empty() {
        skipped.push(skip("*", format!("backend `{}` registers no variant of {}", backend.name(), case.op.name())));
        return Vec::new();
    }
    let mut out = Vec::new();
    for v in variants.iter().filter(|v| opts.variant.as_deref().is_none_or(|n| n == v.name)) {
        if !v.dtypes.contains(&case.dtype) {
            skipped.push(skip(v.name, format!("variant `{}` does not list {}", v.name, case.dtype)));
        } else if let Err(why) = backend.supports(&case.op, case.dtype, v.name) {
            skipped.push(skip(v.name, why));
        } else {
            out.push(v.name);
        }
    }
    out
}

/// Why `got` is a skip rather than a failure: the case stores a weight in another format than
/// its activations ([`foveate_core::Op::mixed_weights`]) and the backend answered "unsupported"
/// (wgpu and cuda refuse such ops through `refuse_mixed_weights`, which no `supports` query can
/// see, as it depends on the input tensors).
pub(crate) fn refused_weights(case: &Case, got: &Result<HostTensor>) -> Option<String> {
    let descs: Vec<&TensorDesc> = case.inputs.iter().map(|t| &t.desc).collect();
    match got {
        Err(e @ Error::Unsupported { .. }) if case.op.mixed_weights(&descs).is_some() => Some(e.to_string()),
        _ => None,
    }
}

/// Runs `cases(opts)` on every variant of `backend` that `opts.variant` selects and that
/// `backend.supports()`, comparing with `oracle` (its default variant). Unsupported
/// combinations are listed in `skipped` with the backend's reason; an op family with no
/// registered variant is listed there too, and so is a case with weights in another format than
/// its activations that the backend refuses at `execute` ([`refused_weights`]).
pub fn run_matrix(backend: &dyn Backend, oracle: &dyn Backend, opts: &MatrixOptions) -> Report {
    let mut report = Report::new(backend.name(), backend.device_name());
    for case in cases(opts) {
        let variants = runnable(backend, &case, opts, &mut report.skipped);
        if variants.is_empty() {
            continue;
        }
        let want = execute_guarded(oracle, &case, "");
        for v in variants {
            let r = CaseResult::new(&case, v, oracle.name());
            let got = execute_guarded(backend, &case, v);
            if let Some(reason) = refused_weights(&case, &got) {
                report.skipped.push(Skipped { op: case.op.label(), variant: v.to_string(), dtype: case.dtype, shape: case.shape.clone(), reason });
                continue;
            }
            report.results.push(match &want {
                Ok(w) => r.judge(got, w, tolerance(&case, v)),
                Err(e) => r.failed(format!("oracle `{}` failed: {e}", oracle.name())),
            });
        }
    }
    report
}
