//! The matrix's results: per-case rows, skips with reasons, a table and a summary.

use crate::{compare_with, Case, Tolerance};
use foveate_core::{DType, HostTensor, OpKind, Result};
use serde::Serialize;
use std::fmt::Write;

/// One backend-variant run of one case.
#[derive(Clone, Debug, Serialize)]
pub struct CaseResult {
    /// `Op::label()`, e.g. `gemm[gelu,bias]`.
    pub op: String,
    /// The op family (for per-op counts).
    pub kind: OpKind,
    pub variant: String,
    /// What the output was compared with: `cpu-oracle`, or in the device-vs-device matrix the
    /// same backend's `naive` variant (or `cpu` for a family without one, on large shapes).
    pub reference: String,
    pub dtype: DType,
    pub shape: String,
    pub max_abs_err: f64,
    pub rel_err: f64,
    pub pass: bool,
    /// Why it failed: the backend's error, or the worst mismatching element.
    pub error: Option<String>,
}

impl CaseResult {
    /// A row for `variant` on `case`, compared with `reference`, not yet judged.
    pub fn new(case: &Case, variant: &str, reference: &str) -> Self {
        CaseResult {
            op: case.op.label(),
            kind: case.op.kind(),
            variant: variant.to_string(),
            reference: reference.to_string(),
            dtype: case.dtype,
            shape: case.shape.clone(),
            max_abs_err: f64::NAN,
            rel_err: f64::NAN,
            pass: false,
            error: None,
        }
    }

    /// Fails the row with `why`.
    pub fn failed(mut self, why: impl Into<String>) -> Self {
        self.error = Some(why.into());
        self
    }

    /// Judges the backend's output (or its error) against `want` under `tol`.
    pub fn judge(mut self, got: Result<HostTensor>, want: &HostTensor, tol: Tolerance) -> Self {
        match got {
            Err(e) => self.failed(e.to_string()),
            Ok(got) => {
                let c = compare_with(&got, want, tol);
                (self.max_abs_err, self.rel_err, self.pass, self.error) = (c.max_abs_err, c.rel_err, c.pass, c.reason);
                self
            }
        }
    }
}

/// A case x variant the backend declined, with its reason.
#[derive(Clone, Debug, Serialize)]
pub struct Skipped {
    pub op: String,
    pub variant: String,
    pub dtype: DType,
    pub shape: String,
    pub reason: String,
}

/// Runs and failures of one op family.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct OpSummary {
    pub op: OpKind,
    pub runs: usize,
    pub failed: usize,
    pub skipped: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub backend: String,
    pub device: String,
    pub results: Vec<CaseResult>,
    pub skipped: Vec<Skipped>,
}

fn fmt_err(x: f64) -> String {
    if x.is_nan() { "-".into() } else { format!("{x:.2e}") }
}

impl Report {
    pub fn new(backend: impl Into<String>, device: impl Into<String>) -> Self {
        Report { backend: backend.into(), device: device.into(), results: Vec::new(), skipped: Vec::new() }
    }

    pub fn failed(&self) -> Vec<&CaseResult> {
        self.results.iter().filter(|r| !r.pass).collect()
    }

    pub fn all_passed(&self) -> bool {
        self.results.iter().all(|r| r.pass)
    }

    /// Runs, failures and skips per op family, in `OpKind::ALL` order (families with none omitted).
    pub fn per_op(&self) -> Vec<OpSummary> {
        OpKind::ALL
            .into_iter()
            .map(|op| OpSummary {
                op,
                runs: self.results.iter().filter(|r| r.kind == op).count(),
                failed: self.results.iter().filter(|r| r.kind == op && !r.pass).count(),
                skipped: self.skipped.iter().filter(|s| s.op.starts_with(op.name())).count(),
            })
            .filter(|s| s.runs + s.skipped > 0)
            .collect()
    }

    /// `cpu (…): 612 runs, 0 failed, 40 skipped`.
    pub fn summary_line(&self) -> String {
        format!(
            "{} ({}): {} runs, {} failed, {} skipped",
            self.backend,
            self.device,
            self.results.len(),
            self.failed().len(),
            self.skipped.len()
        )
    }

    /// A fixed-width table of results (only failures when `failures_only`), with the error of each
    /// failing row on the line below it.
    pub fn table(&self, failures_only: bool) -> String {
        let rows: Vec<&CaseResult> = self.results.iter().filter(|r| !failures_only || !r.pass).collect();
        let w_op = rows.iter().map(|r| r.op.len()).max().unwrap_or(2).max(2);
        let w_var = rows.iter().map(|r| r.variant.len()).max().unwrap_or(7).max(7);
        let w_ref = rows.iter().map(|r| r.reference.len()).max().unwrap_or(9).max(9);
        let w_shape = rows.iter().map(|r| r.shape.len()).max().unwrap_or(5).max(5);
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<w_op$}  {:<w_var$}  {:<w_ref$}  {:<5}  {:<w_shape$}  {:>10}  {:>10}  result",
            "op", "variant", "reference", "dtype", "shape", "max abs", "rel err"
        );
        for r in rows {
            let _ = writeln!(
                s,
                "{:<w_op$}  {:<w_var$}  {:<w_ref$}  {:<5}  {:<w_shape$}  {:>10}  {:>10}  {}",
                r.op,
                r.variant,
                r.reference,
                r.dtype.name(),
                r.shape,
                fmt_err(r.max_abs_err),
                fmt_err(r.rel_err),
                if r.pass { "ok" } else { "FAIL" }
            );
            if let (false, Some(e)) = (r.pass, &r.error) {
                let _ = writeln!(s, "    {e}");
            }
        }
        s
    }

    /// Per-op counts as lines `op: runs (failed, skipped)`.
    pub fn per_op_table(&self) -> String {
        let mut s = String::new();
        for o in self.per_op() {
            let _ = writeln!(s, "{:<12} {:>4} runs  {:>3} failed  {:>3} skipped", o.op.name(), o.runs, o.failed, o.skipped);
        }
        s
    }

    /// The skipped combinations with their reasons (deduplicated by op label, variant and reason).
    pub fn skipped_table(&self) -> String {
        let mut seen: Vec<(String, String, String, usize)> = Vec::new();
        for k in &self.skipped {
            match seen.iter_mut().find(|(o, v, r, _)| *o == k.op && *v == k.variant && *r == k.reason) {
                Some(e) => e.3 += 1,
                None => seen.push((k.op.clone(), k.variant.clone(), k.reason.clone(), 1)),
            }
        }
        let mut s = String::new();
        for (o, v, r, n) in seen {
            let _ = writeln!(s, "skipped {o} / {v} ({n}x): {r}");
        }
        s
    }
}
