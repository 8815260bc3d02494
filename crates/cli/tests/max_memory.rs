//! `--max-memory` and the load-memory estimate (issue #22): a load over the budget is refused
//! before anything is allocated, with one error naming the model, the need (broken down) and the
//! budget, on `bench` (a builtin 7B shape) and on `run` / `eval` / `serve` (a checkpoint
//! directory); the peak RSS of the refused process (wait4) stays at the binary's own. And the
//! estimate against `foveate bench`'s measured peak for a small builtin.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{repo, scratch};

/// A finished child: exit code (None: killed by a signal), stdout, stderr, peak RSS in bytes.
struct Done {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    max_rss: u64,
    took: Duration,
}

/// Runs `foveate args` and reaps it with wait4 for its own peak RSS (`ru_maxrss`). The refused
/// commands write a few lines, so the pipes are read after the exit; a child still running after
/// `limit` is killed (the test then fails on its exit status).
// The child is reaped by wait4 (for its rusage), not by `Child::wait`.
#[allow(clippy::zombie_processes)]
fn foveate(args: &[&str], limit: Duration) -> Done {
    use std::io::Read;
    let t0 = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_foveate"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start foveate");
    let pid = child.id() as libc::pid_t;
    let (mut status, mut usage): (libc::c_int, libc::rusage) = (0, unsafe { std::mem::zeroed() });
    loop {
        // SAFETY: pid is our child, not yet reaped (std never waits for it here); status and
        // usage are valid for writes.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        assert!(r >= 0, "wait4: {}", std::io::Error::last_os_error());
        if r == pid {
            break;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = t0.elapsed();
    let (mut stdout, mut stderr) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    Done {
        code,
        stdout,
        stderr,
        // ru_maxrss is in KiB on Linux.
        max_rss: usage.ru_maxrss as u64 * 1024,
        took,
    }
}

fn tiny() -> PathBuf {
    repo().join("eval/models/easyvqa-tiny")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The refusal: exit 1, nothing on stdout, one `error:` line naming the model, the need and the
/// budget, no panic, and a peak RSS of the binary alone.
fn refused(d: &Done, must: &[&str]) -> String {
    let err = d.stderr.trim_end();
    assert_eq!(
        d.code,
        Some(1),
        "exit {:?} after {:?}: {err}",
        d.code,
        d.took
    );
    assert!(d.stdout.is_empty(), "stdout: {}", d.stdout);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(lines.len(), 1, "one error line: {err}");
    assert!(!err.contains("internal error"), "{err}");
    for m in [
        "the load needs about ",
        "of host memory, more than the budget of ",
        "KV cache",
        "load temporaries",
        "nothing was allocated",
    ]
    .iter()
    .chain(must)
    {
        assert!(lines[0].contains(m), "`{m}` not in: {}", lines[0]);
    }
    // The binary, its libraries and the tokenizer: far below any weight tensor of a 7B model
    // (its embedding table alone is 250 MiB in bf16).
    assert!(
        d.max_rss < 160 << 20,
        "peak RSS {} MiB: something was allocated",
        d.max_rss >> 20
    );
    lines[0].to_string()
}

#[test]
fn bench_7b_over_max_memory_is_refused_before_loading() {
    let d = foveate(
        &[
            "bench",
            "-m",
            "llava-1.5-7b",
            "-d",
            "bf16",
            "-p",
            "32",
            "-n",
            "8",
            "-r",
            "1",
            "--warmup",
            "0",
            "--max-memory",
            "1G",
        ],
        Duration::from_secs(120),
    );
    let line = refused(
        &d,
        &[
            "llava-1.5-7b: ",
            "budget of 1073741824 bytes (1.00 GiB) set by --max-memory",
            "weights bf16 ",
        ],
    );
    // Its bf16 weights alone are 12.6 GiB: the need says at least that.
    let need: u64 = line
        .split("needs about ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no need in bytes: {line}"));
    assert!(need > 13 << 30, "{line}");
    assert!(d.took < Duration::from_secs(60), "took {:?}", d.took);
}

#[test]
fn checkpoint_over_max_memory_is_refused_on_run_eval_and_serve() {
    let model = tiny();
    let must = [
        "easyvqa-tiny: ",
        "budget of 1024 bytes (1.00 KiB) set by --max-memory",
        "weights f32 ",
    ];
    let d = foveate(
        &[
            "run",
            "--model",
            s(&model),
            "--prompt",
            "What shape is it?",
            "--max-memory",
            "1K",
        ],
        Duration::from_secs(60),
    );
    refused(&d, &must);
    let out = scratch("maxmem", "eval", false);
    let data = repo().join("eval/data/easy-vqa");
    let d = foveate(
        &[
            "eval",
            "--task",
            "easy-vqa",
            "--data",
            s(&data),
            "--limit",
            "2",
            "--model",
            s(&model),
            "--output",
            s(&out),
            "--max-memory",
            "1K",
        ],
        Duration::from_secs(60),
    );
    refused(&d, &must);
    assert!(!out.exists(), "eval left {} behind", out.display());
    let d = foveate(
        &[
            "serve",
            "--model",
            s(&model),
            "--port",
            "0",
            "--max-memory",
            "1K",
        ],
        Duration::from_secs(60),
    );
    refused(&d, &must);
    // A budget the load fits: it runs.
    let d = foveate(
        &[
            "run",
            "--model",
            s(&model),
            "--prompt",
            "What shape is it?",
            "--max-new-tokens",
            "2",
            "--max-memory",
            "1G",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(d.code, Some(0), "{}", d.stderr);
}

#[test]
fn bad_sizes_are_usage_errors() {
    for bad in ["8X", "0", "-1G", "lots"] {
        let d = foveate(
            &[
                "run",
                "--model",
                s(&tiny()),
                "--prompt",
                "hi",
                // `=`: a value starting with `-` is a value, not a flag.
                &format!("--max-memory={bad}"),
            ],
            Duration::from_secs(60),
        );
        assert_eq!(d.code, Some(2), "{bad}: {}", d.stderr);
        assert!(
            d.stderr.contains("--max-memory") && d.stderr.contains("is not a size"),
            "{bad}: {}",
            d.stderr
        );
    }
}

/// The estimate of `qwen2-0.5b --layers 2` (f32: its 519 MiB embedding table dominates) against
/// the peak RSS `foveate bench` measures (VmHWM, the process's baseline included): at least the
/// weights, at least the measured peak less the baseline, at most twice the peak.
#[test]
fn estimate_is_near_the_measured_peak() {
    // A two-layer bench, measured, then again under --max-memory at its own estimate.
    let bench = [
        "bench",
        "-m",
        "qwen2-0.5b",
        "--layers",
        "2",
        "-p",
        "64",
        "-n",
        "8",
        "-r",
        "1",
        "--warmup",
        "0",
        "-o",
        "json",
    ];
    let d = foveate(&bench, Duration::from_secs(300));
    assert_eq!(d.code, Some(0), "{}", d.stderr);
    let v: serde_json::Value = serde_json::from_str(&d.stdout).expect("bench json");
    let row = &v["rows"][0];
    let est = row["config"]["memory_estimate_mib"]["host"]
        .as_f64()
        .expect("estimate");
    let weights = row["config"]["weights_mib"].as_f64().expect("weights");
    let peak = row["metrics"]["peak_memory_mib"]["mean"]
        .as_f64()
        .expect("peak");
    eprintln!("qwen2-0.5b --layers 2: estimate {est:.1} MiB, weights {weights:.1} MiB, measured peak {peak:.1} MiB (wait4: {} MiB)", d.max_rss >> 20);
    assert!(est >= weights, "estimate {est} < weights {weights}");
    // The baseline (binary, libraries, thread stacks) is not estimated: allow 100 MiB of it.
    assert!(
        peak <= est + 100.0,
        "measured {peak} MiB > estimate {est} MiB + 100"
    );
    assert!(
        est <= 2.0 * peak,
        "estimate {est} MiB > twice the measured {peak} MiB"
    );
    // The same bench with --max-memory at the estimate loads.
    let at = format!("{}M", est.ceil() as u64);
    let d = foveate(
        &[&bench[..], &["--max-memory", &at]].concat(),
        Duration::from_secs(300),
    );
    assert_eq!(d.code, Some(0), "--max-memory {at}: {}", d.stderr);
}
