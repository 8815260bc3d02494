//! `foveate selftest --isolate`: one op family per process. The binary runs itself once per
//! `--op` (the other arguments passed on as given, the output as JSON) and merges the reports into
//! one report of the same schema as a plain `selftest --json` (results, per_op and skipped cases
//! concatenated in op order), so a sticky device fault (a CUDA illegal address poisons its
//! context for the rest of the process) costs one op family, not every case after it. A child
//! that crashes or prints no report becomes a failing result row of its family (variant `*`)
//! naming its exit status and the end of its stderr, and is listed under `crashed`.
//! `--plant-fault OP` (CUDA) runs the same way with `FOVEATE_CUDA_FAULT=OP` set for the children.

use crate::CmdResult;
use foveate_core::OpKind;
use serde_json::{json, Value};
use std::ffi::OsString;
use std::process::{Command, ExitCode};

/// The selftest arguments to pass to each child: everything after `selftest` except the flags
/// that only the parent acts on (`--isolate`, `--json`, `--failures-only`, `--plant-fault OP`)
/// and `--op` (each child gets its own).
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
            "--op" | "--plant-fault" => {
                it.next();
            }
            _ if s.starts_with("--op=") || s.starts_with("--plant-fault=") => {}
            _ => out.push(a.clone()),
        }
    }
    out
}

fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.trim_end().lines().collect();
    v[v.len().saturating_sub(lines)..].join(" | ")
}

/// One child's report, or a stand-in report with one failing row when it gave none.
struct Child {
    report: Value,
    /// Why the child counts as crashed.
    crash: Option<String>,
}

fn run_one(exe: &std::path::Path, base: &[OsString], op: OpKind, env: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(exe);
    cmd.arg("selftest")
        .args(base)
        .args(["--op", op.name(), "--json"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let (status, stdout, stderr) = match cmd.output() {
        Ok(o) => (
            o.status.code(),
            o.stdout,
            String::from_utf8_lossy(&o.stderr).into_owned(),
        ),
        Err(e) => (None, vec![], format!("cannot run {}: {e}", exe.display())),
    };
    let how = match status {
        Some(c) => format!("exit code {c}"),
        None => "killed by a signal".into(),
    };
    match serde_json::from_slice::<Value>(&stdout)
        .ok()
        .filter(|j| j.get("cases").is_some())
    {
        // A child that exited abnormally after printing a report still counts as crashed.
        Some(report) => {
            let crash = (!matches!(status, Some(0) | Some(1)))
                .then(|| format!("{how} after its report: {}", tail(&stderr, 4)));
            Child { report, crash }
        }
        None => {
            let why = format!(
                "{} process gave no report ({how}): {}",
                op.name(),
                tail(&stderr, 4)
            );
            let row = json!({
                "op": op.name(), "kind": op.name(), "variant": "*", "dtype": null, "shape": "*",
                "max_abs_err": null, "rel_err": null, "pass": false, "error": why,
            });
            let report = json!({
                "cases": 1, "failed": 1, "skipped": 0, "results": [row],
                "per_op": [{"op": op.name(), "runs": 1, "failed": 1, "skipped": 0}], "skipped_cases": [],
            });
            Child {
                report,
                crash: Some(why),
            }
        }
    }
}

fn failure_line(r: &Value) -> String {
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
    format!(
        "{} {} {} {}: {why}",
        f("op"),
        f("variant"),
        f("dtype"),
        f("shape")
    )
}

/// Runs `ops` (all families when empty) one process each, with `env` set for the children.
pub(super) fn run(
    backend: &str,
    size: &str,
    ops: &[OpKind],
    json_out: bool,
    env: &[(&str, &str)],
) -> CmdResult {
    let exe = std::env::current_exe()
        .map_err(|e| format!("--isolate: cannot find the foveate binary: {e}"))?;
    let argv: Vec<OsString> = std::env::args_os().collect();
    let base = child_args(&argv);
    let kinds: Vec<OpKind> = if ops.is_empty() {
        OpKind::ALL.to_vec()
    } else {
        ops.to_vec()
    };
    let (mut results, mut per_op, mut skipped_cases, mut crashed) =
        (vec![], vec![], vec![], vec![]);
    let (mut cases, mut failed, mut skipped) = (0u64, 0u64, 0u64);
    let mut device = String::new();
    for op in kinds {
        let c = run_one(&exe, &base, op, env);
        let j = &c.report;
        let n = |k: &str| j.get(k).and_then(Value::as_u64).unwrap_or(0);
        let list = |k: &str| {
            j.get(k)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        let (oc, of, os) = (n("cases"), n("failed"), n("skipped"));
        if device.is_empty() {
            device = j
                .get("device")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
        }
        if !json_out {
            let status = match (&c.crash, of) {
                (Some(e), _) => format!("CRASHED: {e}"),
                (None, 0) => "ok".into(),
                (None, f) => format!("{f} failed"),
            };
            println!(
                "{:<12} {:>5} runs {:>4} failed {:>4} skipped  {status}",
                op.name(),
                oc,
                of,
                os
            );
            for r in list("results")
                .iter()
                .filter(|r| r.get("pass") != Some(&Value::Bool(true)))
                .take(50)
            {
                println!("    {}", failure_line(r));
            }
        }
        (cases, failed, skipped) = (cases + oc, failed + of, skipped + os);
        results.extend(list("results"));
        per_op.extend(list("per_op"));
        skipped_cases.extend(list("skipped_cases"));
        if let Some(why) = c.crash {
            crashed.push(json!({"op": op.name(), "error": why}));
        }
    }
    if json_out {
        let rep = json!({
            "backend": backend, "device": device, "size": size, "isolate": true,
            "cases": cases, "failed": failed, "skipped": skipped, "crashed": crashed,
            "per_op": per_op, "results": results, "skipped_cases": skipped_cases,
        });
        println!("{}", serde_json::to_string_pretty(&rep)?);
    } else {
        println!(
            "isolated selftest on `{backend}`: {} runs, {failed} failed, {skipped} skipped, {} processes crashed",
            cases,
            crashed.len()
        );
    }
    if cases == 0 {
        return Err(
            format!("backend `{backend}` ran no case: every selected case was skipped").into(),
        );
    }
    Ok(if failed == 0 && crashed.is_empty() {
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
            "--plant-fault",
            "gemm",
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
