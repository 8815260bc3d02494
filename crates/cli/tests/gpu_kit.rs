//! The GPU session kit (scripts/gpu-check.sh, issue #17) cannot rot while no GPU is lent: its dry
//! run (CPU backend, wgpu on lavapipe, tiny shapes) runs here with the built binary and must pass,
//! a failing or hanging step must make it exit non-zero, and its summary's ratios and exit codes
//! are checked on a synthetic run.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::repo;

fn scratch(name: &str) -> PathBuf {
    common::scratch("gpu-kit", name, false)
}

fn kit(out: &Path, extra: &[&str]) -> Output {
    Command::new("bash")
        .arg(repo().join("scripts/gpu-check.sh"))
        .args(["--dry-run", "--bin", env!("CARGO_BIN_EXE_foveate"), "--out"])
        .arg(out)
        .args(extra)
        .env_remove("OUT") // the device tool's folder: would switch the kit to packed output
        .env(
            "XDG_RUNTIME_DIR",
            std::env::var("XDG_RUNTIME_DIR").unwrap_or_else(|_| "/tmp".into()),
        )
        .output()
        .expect("run bash scripts/gpu-check.sh")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json(p: &Path) -> Value {
    let s = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&s).unwrap_or_else(|e| panic!("{}: not JSON ({e})", p.display()))
}

/// The verdict of one step, read from its own file (steps/NN-NAME.json).
fn step(out: &Path, name: &str) -> Value {
    let dir = out.join("steps");
    let f = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.extension().is_some_and(|x| x == "json")
                && p.file_stem()
                    .unwrap()
                    .to_string_lossy()
                    .ends_with(&format!("-{name}"))
        })
        .unwrap_or_else(|| panic!("no verdict for step {name} in {}", dir.display()));
    json(&f)
}

#[test]
fn dry_run_passes_and_leaves_a_verdict_per_step() {
    let out = scratch("dry");
    let o = kit(&out, &[]);
    let log = text(&o);
    assert_eq!(o.status.code(), Some(0), "{log}");
    let s = json(&out.join("summary.json"));
    assert_eq!(s["final"], true, "{log}");
    assert_eq!(s["mode"], "dry");
    assert_eq!(s["budget_s"], 180);
    assert!(s["used_s"].as_f64().unwrap() < 180.0);
    let steps = s["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 15, "{log}");
    let mut shares = 0;
    for v in steps {
        let name = v["step"].as_str().unwrap();
        // The summary holds what each step's own file holds.
        assert_eq!(&step(&out, name), v, "{name}");
        let status = v["status"].as_str().unwrap();
        assert!(
            status == "pass" || status == "skip",
            "{name}: {status}: {}\n{log}",
            v["reason"]
        );
        if status == "skip" {
            assert!(
                !v["reason"].as_str().unwrap().is_empty(),
                "{name} skipped without a reason"
            );
        }
        assert!(
            v["seconds"].as_f64().unwrap() <= v["cap_s"].as_f64().unwrap() + 6.0,
            "{name}: {v}"
        );
        shares += v["share_s"].as_u64().unwrap();
    }
    assert_eq!(shares, 180, "the shares add up to the budget");
    let mut must_pass = vec!["info", "selftest", "parity", "easy-vqa", "roofline", "e2e"];
    if std::env::var("FOVEATE_REQUIRE_WGPU").as_deref() == Ok("1") {
        must_pass.extend(["selftest-wgpu", "wgpu-bench"]);
    }
    for name in must_pass {
        assert_eq!(step(&out, name)["status"], "pass", "{name}\n{log}");
    }
    // What the checks read, not just that they ran.
    let st = step(&out, "selftest");
    assert!(st["details"]["cases"].as_u64().unwrap() >= 200, "{st}");
    assert_eq!(st["details"]["failed"], 0);
    let parity = step(&out, "parity");
    let runs = parity["details"]["runs"].as_array().unwrap();
    assert!(runs.len() >= 18, "{parity}");
    assert!(
        runs.iter()
            .all(|r| r["tokens_equal"] == true && r["prompt_ids_equal"] == true),
        "{parity}"
    );
    assert!(parity["details"]["worst_logits_rel_err"].as_f64().unwrap() <= 1e-4);
    let ev = step(&out, "easy-vqa");
    assert_eq!(ev["details"]["answered"], 50);
    assert!(ev["details"]["agreement"].as_f64().unwrap() >= 0.99, "{ev}");
    let roof = step(&out, "roofline");
    assert!(
        roof["details"]["kernels_with_fraction"].as_u64().unwrap() > 10,
        "{roof}"
    );
    assert!(
        s["roofline"]["cpu"]["peaks"]["peak gemm"]["value"]
            .as_f64()
            .unwrap()
            > 0.0,
        "{}",
        s["roofline"]
    );
    // The closing table: one row per step and the counts.
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("roofline cpu: peak"), "{log}");
    for v in steps {
        assert!(
            stdout
                .lines()
                .any(|l| l.trim_start().starts_with(v["step"].as_str().unwrap())),
            "{log}"
        );
    }
    let passed = steps.iter().filter(|v| v["status"] == "pass").count();
    assert!(
        stdout.contains(&format!(
            "steps: {passed} passed, 0 failed, 0 timed out, {} skipped",
            15 - passed
        )),
        "{log}"
    );
    assert!(
        stdout
            .trim_end()
            .ends_with("gpu-check: exit 0: every step that ran passed"),
        "{log}"
    );
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn a_failing_step_makes_the_kit_exit_non_zero_and_the_next_steps_still_run() {
    let out = scratch("fail");
    let o = kit(
        &out,
        &[
            "--only",
            "info,selftest,easy-vqa",
            "--inject-failure",
            "selftest",
        ],
    );
    let log = text(&o);
    assert_eq!(o.status.code(), Some(1), "{log}");
    let st = step(&out, "selftest");
    assert_eq!(st["status"], "fail", "{log}");
    assert_eq!(st["injected"], "failure");
    assert!(
        st["reason"].as_str().unwrap().contains("injected failure"),
        "{st}"
    );
    assert_eq!(step(&out, "info")["status"], "pass");
    assert_eq!(
        step(&out, "easy-vqa")["status"],
        "pass",
        "the step after the failure ran"
    );
    let s = json(&out.join("summary.json"));
    assert_eq!(s["exit_code"], 1);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("steps: 2 passed, 1 failed, 0 timed out, 0 skipped"),
        "{log}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("selftest") && l.contains("FAIL")),
        "{log}"
    );
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn a_hanging_step_is_killed_within_the_budget() {
    let out = scratch("hang");
    let t0 = std::time::Instant::now();
    let o = kit(
        &out,
        &[
            "--only",
            "parity",
            "--inject-hang",
            "parity",
            "--budget",
            "4",
        ],
    );
    let wall = t0.elapsed().as_secs_f64();
    let log = text(&o);
    assert_eq!(o.status.code(), Some(1), "{log}");
    let v = step(&out, "parity");
    assert_eq!(v["status"], "timeout", "{log}");
    // The cap is what is left of the 4 s budget when the step starts (set-up before it may take a
    // second or two on a loaded machine).
    let cap = v["cap_s"].as_f64().unwrap();
    assert!((1.0..=4.0).contains(&cap), "{v}");
    assert!(v["seconds"].as_f64().unwrap() < cap + 6.0, "{v}");
    // The budget, its kill grace (5 s) and the summary, not the hour the stand-in sleeps.
    assert!(wall < 30.0, "took {wall:.0} s\n{log}");
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn bad_usage_is_named_and_exits_64() {
    let out = scratch("usage");
    for (args, want) in [
        (vec!["--frobnicate"], "unknown option `--frobnicate`"),
        (vec!["--only", "selftest,nope"], "unknown step `nope`"),
        (vec!["--budget", "soon"], "--budget soon"),
    ] {
        let o = kit(&out, &args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(64), "{args:?}: {}", text(&o));
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let _ = std::fs::remove_dir_all(&out);
}

fn bench_file(tool: &str, rows: Value) -> Value {
    serde_json::json!({"schema": "foveate-bench/1", "tool": tool, "version": "t", "commit": null,
        "date": "2026-01-01T00:00:00Z", "device": "NVIDIA H200", "host": {}, "rows": rows})
}

fn row(workload: &str, kind: &str, variant: &str, dtype: &str, metrics: Value) -> Value {
    serde_json::json!({"workload": workload, "kind": kind, "backend": "cuda", "variant": variant, "dtype": dtype, "metrics": metrics, "config": {}})
}

/// A foveate result file with one bf16 Qwen2-0.5B decode row of these metrics.
fn qwen_e2e(metrics: Value) -> Value {
    bench_file(
        "foveate",
        serde_json::json!([row("qwen2-0.5b p512 n128", "e2e", "flash", "bf16", metrics)]),
    )
}

fn m(mean: f64, unit: &str) -> Value {
    serde_json::json!({"mean": mean, "sd": 0.0, "n": 3, "unit": unit})
}

fn verdict_file(dir: &Path, order: &str, name: &str, kind: &str, status: &str) {
    let v = serde_json::json!({"step": name, "kind": kind, "status": status, "reason": format!("{name} {status}"),
        "details": {}, "order": order, "seconds": 1.0, "share_s": 10, "cap_s": 10, "rc": 0});
    std::fs::write(
        dir.join(format!("steps/{order}-{name}.json")),
        v.to_string(),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join(format!("steps/{order}-{name}"))).unwrap();
}

fn summary(work: &Path) -> Output {
    Command::new("python3")
        .arg(repo().join("scripts/gpu_kit.py"))
        .args([
            "summary",
            "--final",
            "--mode",
            "real",
            "--backend",
            "cuda",
            "--budget",
            "480",
            "--used",
            "100",
            "--date",
            "2026-01-01T00:00:00Z",
            "--commit",
            "abc123",
            "--work",
        ])
        .arg(work)
        .arg("--out")
        .arg(work)
        .output()
        .expect("python3 scripts/gpu_kit.py summary")
}

/// Ratios pair foveate's best variant with PyTorch's row of the same workload and dtype; a failed
/// benchmark step exits 2, a failed correctness step 1; the commit is filled into result files.
#[test]
fn summary_ratios_vs_pytorch_and_exit_codes() {
    let work = scratch("summary");
    std::fs::create_dir_all(work.join("steps")).unwrap();
    verdict_file(&work, "01", "info", "correctness", "pass");
    verdict_file(&work, "10", "torch", "perf", "pass");
    verdict_file(&work, "11", "roofline", "perf", "pass");
    verdict_file(&work, "12", "e2e", "perf", "fail");
    let torch = bench_file(
        "pytorch",
        serde_json::json!([
            row(
                "gemm 197x768x768",
                "kernel",
                "matmul",
                "f32",
                serde_json::json!({"ms": m(0.020, "ms")})
            ),
            row(
                "qwen2-0.5b p512 n128",
                "e2e",
                "sdpa",
                "bf16",
                serde_json::json!({"prefill_ms": m(10.0, "ms"), "decode_ms": m(400.0, "ms")})
            ),
        ]),
    );
    let roofline = bench_file(
        "foveate",
        serde_json::json!([
            row(
                "peak gemm",
                "peak",
                "",
                "f32",
                serde_json::json!({"gflops": m(50000.0, "GFLOP/s")})
            ),
            row(
                "gemm 197x768x768",
                "kernel",
                "tiled",
                "f32",
                serde_json::json!({"ms": m(0.030, "ms"), "fraction_of_peak": m(0.25, "fraction"), "gflops": m(12000.0, "GFLOP/s")})
            ),
            row(
                "gemm 197x768x768",
                "kernel",
                "slow",
                "f32",
                serde_json::json!({"ms": m(0.090, "ms"), "fraction_of_peak": m(0.08, "fraction"), "gflops": m(4000.0, "GFLOP/s")})
            ),
        ]),
    );
    let e2e =
        qwen_e2e(serde_json::json!({"prefill_ms": m(5.0, "ms"), "decode_ms": m(600.0, "ms")}));
    std::fs::write(
        work.join("steps/10-torch/torch-cuda-f32.json"),
        torch.to_string(),
    )
    .unwrap();
    std::fs::write(
        work.join("steps/11-roofline/roofline-cuda.json"),
        roofline.to_string(),
    )
    .unwrap();
    std::fs::write(
        work.join("steps/12-e2e/e2e-cuda-qwen.json"),
        e2e.to_string(),
    )
    .unwrap();

    let o = summary(&work);
    let log = text(&o);
    assert_eq!(
        o.status.code(),
        Some(2),
        "a failed benchmark step alone exits 2\n{log}"
    );
    let s = json(&work.join("summary.json"));
    let r = s["ratios_vs_pytorch"].as_array().unwrap();
    let find = |w: &str, metric: &str| {
        r.iter()
            .find(|x| x["workload"] == w && x["metric"] == metric)
            .unwrap_or_else(|| panic!("{w} {metric}: {r:?}"))
    };
    let g = find("gemm 197x768x768", "ms");
    assert_eq!(g["variant"], "tiled", "the best variant is compared");
    assert!((g["ratio"].as_f64().unwrap() - 1.5).abs() < 1e-9, "{g}");
    assert!(
        (find("qwen2-0.5b p512 n128", "prefill_ms")["ratio"]
            .as_f64()
            .unwrap()
            - 0.5)
            .abs()
            < 1e-9
    );
    assert!(
        (find("qwen2-0.5b p512 n128", "decode_ms")["ratio"]
            .as_f64()
            .unwrap()
            - 1.5)
            .abs()
            < 1e-9
    );
    assert_eq!(r.len(), 3, "{r:?}");
    assert_eq!(
        s["roofline"]["cuda"]["kernels"]["gemm 197x768x768"]["fraction"],
        0.25
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("gemm 197x768x768") && l.contains(" 1.50 ") && l.contains("tiled")),
        "{log}"
    );
    assert!(stdout.contains("gpu-check: exit 2"), "{log}");
    // The device machine has no git: the run's commit goes into the result files.
    assert_eq!(
        json(&work.join("steps/11-roofline/roofline-cuda.json"))["commit"],
        "abc123"
    );

    verdict_file(&work, "02", "selftest", "correctness", "timeout");
    let o = summary(&work);
    assert_eq!(
        o.status.code(),
        Some(1),
        "a timed-out correctness step exits 1\n{}",
        text(&o)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("TIMEOUT"));
    std::fs::remove_dir_all(&work).unwrap();
}

/// Runs one of gpu_kit.py's checks on a synthetic step folder holding `files` (name, contents);
/// returns the verdict.
fn check(name: &str, cmd: &str, files: &[(&str, String)], args: &[&str]) -> Value {
    let d = scratch(&format!("check-{name}"));
    std::fs::create_dir_all(&d).unwrap();
    for (f, body) in files {
        std::fs::write(d.join(f), body).unwrap();
    }
    let v = d.join("verdict.json");
    let o = Command::new("python3")
        .arg(repo().join("scripts/gpu_kit.py"))
        .args([cmd, "--step", name, "--kind", "correctness", "--verdict"])
        .arg(&v)
        .arg("--dir")
        .arg(&d)
        .args(args)
        .output()
        .expect("python3 scripts/gpu_kit.py");
    assert!(o.status.success(), "{name}: {}", text(&o));
    let out = json(&v);
    std::fs::remove_dir_all(&d).unwrap();
    out
}

fn selftest_report(device: &str, passes: &[(&str, bool)]) -> String {
    let results: Vec<Value> = passes
        .iter()
        .map(|(op, pass)| {
            serde_json::json!({"op": op, "kind": "gemm", "variant": "tiled", "dtype": "f32", "shape": "[3, 4]", "rel_err": 0.0,
                "max_abs_err": 0.0, "pass": pass, "error": if *pass { Value::Null } else { format!("{op} tiled f32: illegal memory access").into() }})
        })
        .collect();
    let failed = passes.iter().filter(|p| !p.1).count();
    serde_json::json!({"backend": "cuda", "device": device, "size": "small", "cases": passes.len(), "failed": failed, "skipped": 0,
        "per_op": [], "results": results, "skipped_cases": []})
    .to_string()
}

/// The verdicts of the GPU-only steps (which the dry run skips) say pass only on a clean report.
#[test]
fn gpu_step_checks_fail_on_bad_reports() {
    let ok = selftest_report("NVIDIA H200", &[("gemm", true), ("softmax", true)]);
    let bad = selftest_report("NVIDIA H200", &[("gemm", true), ("softmax", false)]);
    let st = |files: &[(&str, String)], args: &[&str]| {
        check("selftest", "selftest", files, args)["status"].clone()
    };
    assert_eq!(
        st(
            &[("selftest.out", ok.clone()), ("selftest.rc", "0".into())],
            &[]
        ),
        "pass"
    );
    assert_eq!(
        st(
            &[("selftest.out", bad.clone()), ("selftest.rc", "1".into())],
            &[]
        ),
        "fail"
    );
    assert_eq!(
        st(
            &[
                ("selftest-gemm.out", ok.clone()),
                ("selftest-gemm.rc", "0".into()),
                ("selftest-rope.rc", "101".into())
            ],
            &[]
        ),
        "fail",
        "a process that died"
    );
    let lavapipe = selftest_report(
        "llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, Cpu)",
        &[("gemm", true)],
    );
    assert_eq!(
        st(
            &[("selftest.out", lavapipe), ("selftest.rc", "0".into())],
            &["--gpu-adapter"]
        ),
        "fail",
        "wgpu fell back to the CPU"
    );

    let fault = |passes: &[(&str, bool)], rc: &str| {
        check(
            "fault",
            "fault",
            &[
                ("fault.out", selftest_report("NVIDIA H200", passes)),
                ("fault.rc", rc.into()),
            ],
            &[],
        )
    };
    let v = fault(
        &[("gemm", true), ("attention", false), ("softmax", true)],
        "1",
    );
    assert_eq!(v["status"], "pass", "{v}");
    assert_eq!(
        fault(
            &[("gemm", true), ("attention", false), ("softmax", false)],
            "1"
        )["status"],
        "fail",
        "the fault spread"
    );
    assert_eq!(
        fault(&[("gemm", true), ("attention", false)], "1")["status"],
        "fail",
        "nothing ran after it"
    );
    assert_eq!(
        fault(&[("gemm", true), ("softmax", true)], "0")["status"],
        "fail",
        "the fault went unnoticed"
    );

    let san = |log: &str| {
        check(
            "memcheck",
            "sanitizer",
            &[
                ("memcheck.log", log.into()),
                ("selftest.out", ok.clone()),
                ("selftest.rc", "0".into()),
            ],
            &["--tool", "memcheck", "--error-exitcode", "86"],
        )
    };
    assert_eq!(
        san("========= COMPUTE-SANITIZER\n========= ERROR SUMMARY: 0 errors\n")["status"],
        "pass"
    );
    assert_eq!(san("========= Invalid __global__ write of size 4 bytes\n========= ERROR SUMMARY: 2 errors\n")["status"], "fail");
    assert_eq!(
        san("========= Error: Device not supported\n")["status"],
        "skip"
    );

    let e2e = |syncs: f64, allocs: f64| {
        let metrics = serde_json::json!({"decode_ms": m(100.0, "ms"), "decode_host_syncs_per_step": m(syncs, "count"), "decode_allocations_per_step": m(allocs, "count")});
        let f = qwen_e2e(metrics);
        check("counters", "counters", &[("e2e.json", f.to_string())], &[])
    };
    assert_eq!(e2e(1.0, 0.0)["status"], "pass");
    assert_eq!(e2e(24.0, 0.0)["status"], "fail", "a sync per layer");
    assert_eq!(e2e(1.0, 3.0)["status"], "fail", "allocations per step");
    let none = qwen_e2e(serde_json::json!({"decode_ms": m(1.0, "ms")}));
    assert_eq!(
        check(
            "counters",
            "counters",
            &[("e2e.json", none.to_string())],
            &[]
        )["status"],
        "skip"
    );
}
