//! The CUDA-facing CLI without a GPU: `foveate info` names the libnvrtc / libcuda it loaded (or
//! why not), and `foveate selftest --isolate` runs one op family per process and reports a child
//! that gave no report (here: the cuda backend, absent on this machine) as a failed row.

use std::process::Command;

fn foveate(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_foveate"));
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("cannot run the foveate binary")
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
fn info_names_the_nvrtc_it_loaded_or_why_not() {
    let out = foveate(&["info", "--json"], &[]);
    assert!(out.status.success());
    let j = json(&out);
    let nv = &j["cuda"]["nvrtc"];
    if nv["loaded"] == true {
        let v = nv["version"].as_str().unwrap();
        assert!(v.starts_with("12.") || v.starts_with("13."), "{nv}");
        assert!(nv["path"].as_str().unwrap().contains("libnvrtc"), "{nv}");
    } else if std::env::var("FOVEATE_REQUIRE_NVRTC").is_ok_and(|v| v == "1") {
        panic!("FOVEATE_REQUIRE_NVRTC=1 but info says NVRTC is not loaded: {nv}");
    }
    // Hidden NVRTC: not loaded, and the reason names the path that did not load.
    let out = foveate(
        &["info", "--json"],
        &[("FOVEATE_NVRTC_PATH", "/nonexistent/libnvrtc.so.13")],
    );
    let j = json(&out);
    let nv = &j["cuda"]["nvrtc"];
    assert_eq!(nv["loaded"], false, "{nv}");
    assert!(
        nv["reason"]
            .as_str()
            .unwrap()
            .contains("FOVEATE_NVRTC_PATH=/nonexistent/libnvrtc.so.13 did not load"),
        "{nv}"
    );
    // The driver line is there either way (no libcuda on a machine without a GPU).
    assert!(j["cuda"]["driver"]["loaded"].is_boolean());
    // The table form prints both library lines.
    let out = foveate(
        &["info"],
        &[("FOVEATE_NVRTC_PATH", "/nonexistent/libnvrtc.so.13")],
    );
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.lines().any(|l| l.starts_with("libnvrtc  not loaded: ")),
        "{s}"
    );
    assert!(s.lines().any(|l| l.starts_with("libcuda ")), "{s}");
}

#[test]
fn isolate_runs_each_op_family_in_its_own_process() {
    let out = foveate(
        &[
            "selftest",
            "--backend",
            "cpu",
            "--isolate",
            "--op",
            "softmax,argmax",
            "--size",
            "small",
            "--json",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j = json(&out);
    assert_eq!(j["isolate"], true);
    let ops = j["ops"].as_array().unwrap();
    assert_eq!(
        ops.iter()
            .map(|o| o["op"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["softmax", "argmax"]
    );
    assert!(
        ops.iter()
            .all(|o| o["exit"] == 0 && o["cases"].as_u64().unwrap() > 0 && o["error"].is_null()),
        "{ops:?}"
    );
    assert_eq!(
        j["cases"].as_u64().unwrap(),
        ops.iter()
            .map(|o| o["cases"].as_u64().unwrap())
            .sum::<u64>()
    );
    assert_eq!(j["failed"], 0);
}

#[test]
fn isolate_reports_a_child_without_a_report_and_goes_on() {
    // No GPU here: each child fails to open cuda, prints no report and exits 1. Both op families
    // are still tried, each is a crashed row naming the reason, and the run fails.
    let out = foveate(
        &[
            "selftest",
            "--backend",
            "cuda",
            "--isolate",
            "--op",
            "rms_norm,softmax",
        ],
        &[],
    );
    let s = String::from_utf8_lossy(&out.stdout);
    if out.status.success() {
        // A machine with a GPU: the real run passed.
        assert!(s.contains("0 processes crashed"), "{s}");
        return;
    }
    assert_eq!(out.status.code(), Some(1), "{s}");
    let rows: Vec<&str> = s
        .lines()
        .filter(|l| l.starts_with("rms_norm") || l.starts_with("softmax"))
        .collect();
    assert_eq!(rows.len(), 2, "{s}");
    assert!(
        rows.iter()
            .all(|r| r.contains("CRASHED: no report (exit code 1)") && r.contains("cuda")),
        "{s}"
    );
    assert!(s.contains("2 processes crashed"), "{s}");
}
