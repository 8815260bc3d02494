//! End-to-end tests of `foveate info` and `foveate selftest` (the real binary).

use std::process::Command;

fn foveate(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_foveate"))
        .args(args)
        .output()
        .expect("cannot run the foveate binary")
}

fn json(out: &std::process::Output) -> serde_json::Value {
    let s = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&s).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{s}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn selftest_cpu_json_runs_the_full_matrix_and_passes() {
    let out = foveate(&["selftest", "--backend", "cpu", "--json"]);
    let j = json(&out);
    assert!(
        out.status.success(),
        "exit {:?}, stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(j["backend"], "cpu");
    let cases = j["cases"].as_u64().unwrap();
    assert!(cases >= 200, "only {cases} runs");
    assert_eq!(j["failed"], 0);
    let results = j["results"].as_array().unwrap();
    assert_eq!(results.len() as u64, cases);
    assert!(results.iter().all(|r| r["pass"] == true));
    // Every op family ran.
    let per_op = j["per_op"].as_array().unwrap();
    assert_eq!(per_op.len(), 18, "{per_op:?}");
    assert!(per_op.iter().all(|o| o["runs"].as_u64().unwrap() > 0));
}

#[test]
fn selftest_filters_and_prints_a_table() {
    let out = foveate(&[
        "selftest",
        "--backend",
        "cpu",
        "--op",
        "attention",
        "--variant",
        "flash",
        "--dtype",
        "f16",
        "--size",
        "small",
    ]);
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{s}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<&str> = s.lines().filter(|l| l.starts_with("attention[")).collect();
    assert!(!rows.is_empty(), "{s}");
    assert!(
        rows.iter()
            .all(|l| l.contains(" flash ") && l.contains(" f16 ") && l.ends_with("ok")),
        "{s}"
    );
    assert!(s.lines().last().unwrap().contains(" 0 failed"), "{s}");
}

#[test]
fn selftest_unknown_backend_names_the_valid_ones() {
    let out = foveate(&["selftest", "--backend", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: ") && err.contains("`nope`"),
        "{err}"
    );
    for name in ["cpu", "wgpu", "cuda"] {
        assert!(err.contains(name), "{err}");
    }
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

#[test]
fn selftest_bad_arguments_are_usage_errors() {
    let out = foveate(&["selftest", "--op", "convolution"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown op `convolution`"));
    let out = foveate(&["selftest", "--size", "huge"]);
    assert_eq!(out.status.code(), Some(2));
    let out = foveate(&[
        "selftest",
        "--variant",
        "no-such-variant",
        "--op",
        "softmax",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-variant"));
}

#[test]
fn info_lists_cpu_as_available() {
    let out = foveate(&["info"]);
    assert!(out.status.success());
    let s = String::from_utf8_lossy(&out.stdout);
    let cpu = s
        .lines()
        .find(|l| l.starts_with("cpu "))
        .unwrap_or_else(|| panic!("{s}"));
    assert!(cpu.contains(" available "), "{cpu}");
    assert!(s.contains("CPU threads"), "{s}");

    let j = json(&foveate(&["info", "--json"]));
    let backends = j["backends"].as_array().unwrap();
    let cpu = backends.iter().find(|b| b["name"] == "cpu").unwrap();
    assert_eq!(cpu["available"], true);
    assert!(cpu["variants"]["attention"].as_array().unwrap().len() >= 1);
    // Unavailable backends say why.
    for b in backends.iter().filter(|b| b["available"] == false) {
        assert!(!b["device_or_reason"].as_str().unwrap().is_empty(), "{b}");
    }
    assert!(j["cpu_threads"].as_u64().unwrap() >= 1);
}

/// `foveate info` names the CPU kernel path it runs and the ones this CPU could; the device name
/// (what bench JSON records) carries it too, and `FOVEATE_CPU_ISA` lowers it (never raises it).
#[test]
fn info_names_the_cpu_kernel_path() {
    let j = json(&foveate(&["info", "--json"]));
    let k = &j["cpu_kernels"];
    let runnable: Vec<&str> = k["runnable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(runnable[0], "scalar", "{k}");
    let best = *runnable.last().unwrap();
    assert_eq!(k["selected"], best, "{k}");
    let cpu = j["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "cpu")
        .unwrap();
    let dev = cpu["device_or_reason"].as_str().unwrap();
    assert!(dev.contains(&format!("{best} kernels")), "{dev}");
    let text = String::from_utf8_lossy(&foveate(&["info"]).stdout).to_string();
    assert!(
        text.lines().any(|l| l.starts_with("cpu-kernels  ") && l.contains(best)),
        "{text}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_foveate"))
        .args(["info", "--json"])
        .env("FOVEATE_CPU_ISA", "scalar")
        .output()
        .unwrap();
    assert_eq!(json(&out)["cpu_kernels"]["selected"], "scalar");
    // The bf16-dot Gemm needs the avx512 path: off under scalar, with the reason.
    let off = json(&out)["cpu_kernels"]["bf16_dot"].as_str().unwrap().to_string();
    assert!(off.contains("needs AVX-512 BF16") && off.contains("`scalar`"), "{off}");
    let on = k["bf16_dot"].as_str().unwrap();
    assert_eq!(on == "on", dev.contains("bf16-dot"), "{on} / {dev}");
    // A path this CPU lacks (or a name that is none) warns and keeps the widest it has.
    let ask = if best == "avx512" { "neon" } else { "avx512" };
    let out = Command::new(env!("CARGO_BIN_EXE_foveate"))
        .args(["info", "--json"])
        .env("FOVEATE_CPU_ISA", ask)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(json(&out)["cpu_kernels"]["selected"], best);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("FOVEATE_CPU_ISA={ask}")), "{err}");
}

/// `foveate info | true`: the reader exits before foveate prints, so its writes fail with EPIPE;
/// that is no bug of foveate's: no "internal error", exit status 141 (as a SIGPIPE'd writer) or
/// 0 when the output went out before the reader left.
#[test]
fn a_closed_stdout_pipe_is_not_an_internal_error() {
    let script = format!(
        "set -o pipefail; '{}' info | true; echo \"status=$?\" >&2",
        env!("CARGO_BIN_EXE_foveate")
    );
    let out = Command::new("bash").args(["-c", &script]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("internal error"), "{err}");
    assert!(
        err.contains("status=141") || err.contains("status=0"),
        "{err}"
    );
}
