//! `foveate selftest --isolate`: one op family per process. The binary runs itself once per
//! `--op` (the other arguments passed on as given, the output as JSON) and merges the reports, so
//! a sticky device fault (a CUDA illegal address poisons its context for the rest of the
//! process) costs one op family, not every case after it. A child that crashes or prints no
//! report is a failed row naming its exit status and the end of its stderr.

use crate::CmdResult;
use foveate_core::OpKind;
use serde::Serialize;
use serde_json::Value;
use std::ffi::OsString;
use std::process::{Command, ExitCode};

/// One op family's process.
#[derive(Serialize)]
struct OpRun {
    op: String,
    /// The child's exit code (`None`: killed by a signal).
    exit: Option<i32>,
    cases: u64,
    failed: u64,
    skipped: u64,
    /// Why the child gave no report (crash, bad output).
    error: Option<String>,
    /// Failed cases: `label variant dtype shape: reason`.
    failures: Vec<String>,
}

#[derive(Serialize)]
struct IsolatedReport {
    backend: String,
    isolate: bool,
    cases: u64,
    failed: u64,
    /// Op families whose process crashed or gave no report.
    crashed: usize,
    ops: Vec<OpRun>,
}

/// The selftest arguments to pass to each child: everything after `selftest` except
/// `--isolate`, `--json`, `--failures-only` and `--op` (each child gets its own `--op`).
pub(super) fn child_args(argv: &[OsString]) -> Vec<OsString> {
    let start = argv
        .iter()
        .position(|a| a == "selftest")
        .map(|i| i + 1)
        .unwrap_or(argv.len());
    let mut out = vec![];
    let mut it = argv[start..].iter();
    while let Some(a) = it.next() {
        let s = a.to_string_lossy();
        match s.as_ref() {
            "--isolate" | "--json" | "--failures-only" => {}
            "--op" => {
                it.next();
            }
            _ if s.starts_with("--op=") => {}
            _ => out.push(a.clone()),
        }
    }
    out
}

fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.trim_end().lines().collect();
    v[v.len().saturating_sub(lines)..].join(" | ")
}

fn run_one(exe: &std::path::Path, base: &[OsString], op: OpKind) -> OpRun {
    let mut run = OpRun {
        op: op.name().to_string(),
        exit: None,
        cases: 0,
        failed: 0,
        skipped: 0,
        error: None,
        failures: vec![],
    };
    let out = match Command::new(exe)
        .arg("selftest")
        .args(base)
        .args(["--op", op.name(), "--json"])
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            run.error = Some(format!("cannot run {}: {e}", exe.display()));
            return run;
        }
    };
    run.exit = out.status.code();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: Option<Value> = serde_json::from_slice(&out.stdout).ok();
    let Some(j) = report.filter(|j| j.get("cases").is_some()) else {
        let how = match out.status.code() {
            Some(c) => format!("exit code {c}"),
            None => "killed by a signal".into(),
        };
        run.error = Some(format!("no report ({how}): {}", tail(&stderr, 4)));
        return run;
    };
    let n = |k: &str| j.get(k).and_then(Value::as_u64).unwrap_or(0);
    (run.cases, run.failed, run.skipped) = (n("cases"), n("failed"), n("skipped"));
    for r in j
        .get("results")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if r.get("pass") == Some(&Value::Bool(true)) {
            continue;
        }
        let f = |k: &str| {
            r.get(k)
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string())
                })
                .unwrap_or_default()
        };
        let why = r
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("rel_err {}", f("rel_err")));
        run.failures.push(format!(
            "{} {} {} {}: {why}",
            f("op"),
            f("variant"),
            f("dtype"),
            f("shape")
        ));
    }
    // A child that exited abnormally after printing a report still counts as crashed.
    if !matches!(out.status.code(), Some(0) | Some(1)) {
        run.error = Some(format!(
            "exit status {:?} after its report: {}",
            out.status.code(),
            tail(&stderr, 4)
        ));
    }
    run
}

/// Runs `ops` (all families when empty) one process each.
pub(super) fn run(backend: &str, ops: &[OpKind], json: bool, failures_only: bool) -> CmdResult {
    let exe = std::env::current_exe()
        .map_err(|e| format!("--isolate: cannot find the foveate binary: {e}"))?;
    let argv: Vec<OsString> = std::env::args_os().collect();
    let base = child_args(&argv);
    let kinds: Vec<OpKind> = if ops.is_empty() {
        OpKind::ALL.to_vec()
    } else {
        ops.to_vec()
    };
    let mut runs = vec![];
    for op in kinds {
        let r = run_one(&exe, &base, op);
        if !json {
            let status = match (&r.error, r.failed) {
                (Some(e), _) => format!("CRASHED: {e}"),
                (None, 0) => "ok".into(),
                (None, f) => format!("{f} failed"),
            };
            println!(
                "{:<12} {:>5} runs {:>4} failed {:>4} skipped  {status}",
                r.op, r.cases, r.failed, r.skipped
            );
            let shown = if failures_only || r.failed > 0 {
                r.failures.len()
            } else {
                0
            };
            for f in r.failures.iter().take(shown.min(50)) {
                println!("    {f}");
            }
        }
        runs.push(r);
    }
    let rep = IsolatedReport {
        backend: backend.to_string(),
        isolate: true,
        cases: runs.iter().map(|r| r.cases).sum(),
        failed: runs.iter().map(|r| r.failed).sum(),
        crashed: runs.iter().filter(|r| r.error.is_some()).count(),
        ops: runs,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&rep)?);
    } else {
        println!(
            "isolated selftest on `{backend}`: {} op families, {} runs, {} failed, {} processes crashed",
            rep.ops.len(),
            rep.cases,
            rep.failed,
            rep.crashed
        );
    }
    if rep.cases == 0 && rep.crashed == 0 {
        return Err(
            format!("backend `{backend}` ran no case: every selected case was skipped").into(),
        );
    }
    Ok(if rep.failed == 0 && rep.crashed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_args_drop_the_per_process_flags() {
        let argv: Vec<OsString> = [
            "foveate",
            "selftest",
            "--backend",
            "cuda",
            "--isolate",
            "--op",
            "gemm,softmax",
            "--op=rope",
            "--json",
            "--dtype",
            "bf16",
            "--failures-only",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        assert_eq!(
            child_args(&argv),
            ["--backend", "cuda", "--dtype", "bf16"]
                .map(OsString::from)
                .to_vec()
        );
    }
}
