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
    // The schema of a plain `selftest --json`, merged over the processes, in op order.
    assert_eq!(j["isolate"], true);
    assert_eq!(j["backend"], "cpu");
    assert!(
        j["device"].as_str().unwrap().starts_with("CPU"),
        "{}",
        j["device"]
    );
    let per_op = j["per_op"].as_array().unwrap();
    assert_eq!(
        per_op
            .iter()
            .map(|o| o["op"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["softmax", "argmax"]
    );
    let results = j["results"].as_array().unwrap();
    assert_eq!(results.len() as u64, j["cases"].as_u64().unwrap());
    assert!(
        results.iter().any(|r| r["op"] == "softmax") && results.iter().any(|r| r["op"] == "argmax")
    );
    assert!(results.iter().all(|r| r["pass"] == true));
    assert_eq!(j["failed"], 0);
    assert_eq!(j["crashed"].as_array().unwrap().len(), 0);
}

#[test]
fn isolate_reports_a_child_without_a_report_and_goes_on() {
    // No GPU here: each child fails to open cuda, prints no report and exits 1. Both op families
    // are still tried, each becomes a failing row naming the reason, and the run fails.
    let out = foveate(
        &[
            "selftest",
            "--backend",
            "cuda",
            "--isolate",
            "--op",
            "rms_norm,softmax",
            "--json",
        ],
        &[],
    );
    let j = json(&out);
    if out.status.success() {
        // A machine with a GPU: the real run passed.
        assert_eq!(j["crashed"].as_array().unwrap().len(), 0);
        return;
    }
    assert_eq!(out.status.code(), Some(1));
    let results = j["results"].as_array().unwrap();
    assert_eq!(
        results
            .iter()
            .map(|r| r["op"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["rms_norm", "softmax"]
    );
    for r in results {
        let e = r["error"].as_str().unwrap();
        assert!(
            r["pass"] == false
                && e.contains(&format!(
                    "{} process gave no report (exit code 1)",
                    r["op"].as_str().unwrap()
                )),
            "{r}"
        );
        assert!(e.contains("cuda"), "{e}");
    }
    assert_eq!(j["failed"], 2);
    assert_eq!(j["crashed"].as_array().unwrap().len(), 2);
    // The table names both too.
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
    assert!(
        s.lines().filter(|l| l.contains("CRASHED: ")).count() == 2,
        "{s}"
    );
    assert!(s.contains("2 processes crashed"), "{s}");
}

#[test]
fn plant_fault_is_for_cuda_only() {
    let out = foveate(
        &["selftest", "--backend", "cpu", "--plant-fault", "gemm"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("--plant-fault: only the cuda backend can plant a fault"),
        "{e}"
    );
    let out = foveate(
        &[
            "selftest",
            "--backend",
            "cuda",
            "--plant-fault",
            "convolution",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "an unknown op is a usage error");
}
