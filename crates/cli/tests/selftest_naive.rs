//! `foveate selftest --reference naive` (the device-vs-device matrix) on the CPU backend, as the
//! GPU kit runs it on a device: JSON, every row compared with naive or the oracle, all passing.

use std::process::Command;

fn foveate(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_foveate"))
        .args(args)
        .output()
        .expect("cannot run the foveate binary")
}

#[test]
fn selftest_reference_naive_runs_the_scale_matrix_on_cpu() {
    let out = foveate(&[
        "selftest",
        "--backend",
        "cpu",
        "--reference",
        "naive",
        "--size",
        "small",
        "--dtype",
        "f32,f16",
        "--json",
    ]);
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value =
        serde_json::from_str(&s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"));
    assert_eq!(j["reference"], "naive");
    assert_eq!(j["size"], "small");
    assert_eq!(j["failed"], 0);
    let results = j["results"].as_array().unwrap();
    let vs = |variant: &str, reference: &str| {
        results
            .iter()
            .filter(|r| r["variant"] == variant && r["reference"] == reference && r["pass"] == true)
            .count()
    };
    assert!(vs("flash", "naive") >= 20, "{}", vs("flash", "naive"));
    assert!(vs("block-sparse", "naive") >= 6);
    assert!(vs("naive", "cpu-oracle") >= 10);
    assert!(vs("tiled", "cpu-oracle") >= 10);
    // GPU-scale shapes: a query length past one 64-row tile.
    assert!(results
        .iter()
        .any(|r| r["shape"].as_str().unwrap().contains("sq127 ")));
}

#[test]
fn selftest_reference_naive_refuses_families_without_scale_cases() {
    let out = foveate(&[
        "selftest",
        "--backend",
        "cpu",
        "--reference",
        "naive",
        "--op",
        "softmax",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("attention and gemm only"), "{err}");
    let out = foveate(&["selftest", "--reference", "cuda"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown reference `cuda`"));
}
