//! `foveate bench` on a tiny synthetic checkpoint and `foveate compare` on two result files:
//! the JSON has the schema and the measured metrics, the table has the ratios, the charts exist.

use std::path::Path;
use std::process::Command;

mod common;

fn tmp(name: &str) -> std::path::PathBuf {
    common::scratch("bench-test", name, true)
}

fn foveate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_foveate"))
}

/// Run `foveate ARGS EXTRA -o json --out OUT`, check it succeeded, and parse OUT.
fn bench_json(args: &[&str], extra: &[&str], out: &Path) -> serde_json::Value {
    let o = foveate()
        .args(args)
        .args(extra)
        .args(["-o", "json", "--out"])
        .arg(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap()
}

/// `foveate compare FILES... EXTRA... --chart CHART`; checks it succeeded and returns stdout.
fn compare(files: &[&Path], extra: &[&str], chart: &Path) -> String {
    let o = foveate()
        .arg("compare")
        .args(files)
        .args(extra)
        .arg("--chart")
        .arg(chart)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    stdout
}

fn result_file(path: &Path, tool: &str, encode_ms: f64, tps: [f64; 2]) {
    let v = serde_json::json!({
        "schema": "foveate-bench/1", "tool": tool, "version": "0", "commit": "0123456789abcdef", "date": "2026-01-01T00:00:00Z",
        "device": "test", "rows": [
            { "workload": "vit-b16", "kind": "e2e", "backend": "cpu", "variant": "x", "dtype": "f32",
              "metrics": { "image_encode_ms": { "mean": encode_ms, "sd": 1.0, "n": 3, "unit": "ms" } } },
            { "workload": "attention a s64", "kind": "kernel", "backend": "cpu", "variant": "x", "dtype": "f32",
              "family": "attention a", "seq_len": 64, "metrics": { "gflops": { "mean": tps[0], "unit": "GFLOP/s" } } },
            { "workload": "attention a s128", "kind": "kernel", "backend": "cpu", "variant": "x", "dtype": "f32",
              "family": "attention a", "seq_len": 128, "metrics": { "gflops": { "mean": tps[1], "unit": "GFLOP/s" } } }
        ]
    });
    std::fs::write(path, serde_json::to_string(&v).unwrap()).unwrap();
}

#[test]
fn compare_prints_ratios_and_writes_charts() {
    let d = tmp("compare");
    let (a, b) = (d.join("torch.json"), d.join("cpu.json"));
    result_file(&a, "pytorch", 100.0, [10.0, 20.0]);
    result_file(&b, "foveate", 80.0, [20.0, 10.0]);
    let stdout = compare(&[&a, &b], &[], &d.join("chart"));
    // encode: 80 / 100 = 0.80; rates: ref / x = 10 / 20 = 0.50 and 20 / 10 = 2.00.
    let enc = stdout
        .lines()
        .find(|l| l.contains("| vit-b16 | image_encode_ms"))
        .expect("encode row");
    assert!(enc.contains("| 0.80 |"), "{enc}");
    let s64 = stdout
        .lines()
        .find(|l| l.contains("attention a s64"))
        .expect("s64 row");
    assert!(s64.trim_end().ends_with("| 0.50 |"), "{s64}");
    let s128 = stdout
        .lines()
        .find(|l| l.contains("attention a s128"))
        .expect("s128 row");
    assert!(s128.trim_end().ends_with("| 2.00 |"), "{s128}");
    let png = std::fs::read(d.join("chart.png")).expect("png written");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let svg = std::fs::read_to_string(d.join("chart.svg")).expect("svg written");
    assert!(
        svg.contains("<svg") && (svg.contains("polyline") || svg.contains("<path")),
        "svg has no lines"
    );
}

#[test]
fn compare_names_a_bad_file_and_field() {
    let d = tmp("bad");
    let p = d.join("bad.json");
    std::fs::write(&p, r#"{"schema": "other/2"}"#).unwrap();
    let out = foveate().arg("compare").arg(&p).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.json") && err.contains("schema"), "{err}");
}

#[test]
fn bench_times_a_tiny_checkpoint() {
    let d = tmp("bench");
    let ck = d.join("ck");
    foveate_models::synth::write_checkpoint(&ck, &foveate_models::synth::SynthSpec::default())
        .unwrap();
    let json = d.join("r.json");
    let v = bench_json(
        &[
            "bench",
            "--model",
            ck.to_str().unwrap(),
            "-p",
            "8",
            "-n",
            "3",
            "-r",
            "2",
        ],
        &["--warmup", "0", "--threads", "1"],
        &json,
    );
    assert_eq!(v["schema"], "foveate-bench/1");
    assert!(v["date"].as_str().unwrap().ends_with('Z'));
    let row = &v["rows"][0];
    assert_eq!(row["workload"], "ck p8 n3");
    for m in [
        "image_encode_ms",
        "prefill_ms",
        "decode_ms",
        "prefill_tokens_per_s",
        "decode_tokens_per_s",
        "ttft_ms",
    ] {
        let x = &row["metrics"][m];
        assert_eq!(x["n"], 2, "{m}: {x}");
        assert!(x["mean"].as_f64().unwrap() > 0.0, "{m}: {x}");
    }
    // Time to first token is encode + prefill.
    let ttft = row["metrics"]["ttft_ms"]["mean"].as_f64().unwrap();
    let sum = row["metrics"]["image_encode_ms"]["mean"].as_f64().unwrap()
        + row["metrics"]["prefill_ms"]["mean"].as_f64().unwrap();
    assert!((ttft - sum).abs() < 1e-6 * sum.max(1.0), "{ttft} vs {sum}");
    assert!(row["metrics"]["peak_memory_mib"]["mean"].as_f64().unwrap() > 0.0);
}

#[test]
fn bench_rejects_an_unknown_model_by_name() {
    let out = foveate()
        .args(["bench", "--model", "no-such-model-xyz"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no-such-model-xyz") && err.contains("vit-b16"),
        "{err}"
    );
}

/// `foveate bench --roofline --quick -b BACKEND`: the peaks are measured, every kernel family is
/// there with its formula, and each fraction is its rate over the peak of its bound, in (0, 4]
/// (above 1 when a small kernel stays in cache while the copy probe streams: with one wgpu submit
/// per batch, lavapipe's 16x128 elementwise ops reach ~1.55 of the quick copy probe).
fn roofline_quick(backend: &str, attention_variants: &[&str]) {
    let d = tmp(&format!("roofline-{backend}"));
    let json = d.join("r.json");
    let v = bench_json(
        &["bench", "--roofline", "--quick", "-b", backend],
        &["--threads", "1", "-r", "3"],
        &json,
    );
    let rows = v["rows"].as_array().unwrap();
    let peak = |w: &str, m: &str| {
        let r = rows
            .iter()
            .find(|r| r["workload"] == w && r["kind"] == "peak")
            .unwrap_or_else(|| panic!("no `{w}` row"));
        r["metrics"][m]["mean"].as_f64().unwrap()
    };
    let (gemm, copy) = (peak("peak gemm", "gflops"), peak("peak copy", "gbps"));
    assert!(gemm > 0.0 && copy > 0.0, "{gemm} {copy}");
    let kernels: Vec<&serde_json::Value> = rows.iter().filter(|r| r["kind"] == "kernel").collect();
    for r in &kernels {
        let (w, m) = (r["workload"].as_str().unwrap(), &r["metrics"]);
        assert!(
            !r["config"]["formula"].as_str().unwrap_or("").is_empty(),
            "{w}: no formula"
        );
        let (rate, ceiling) = match r["config"]["bound"].as_str().unwrap() {
            "flops" => (m["gflops"]["mean"].as_f64().unwrap(), gemm),
            "bytes" => (m["gbps"]["mean"].as_f64().unwrap(), copy),
            other => panic!("{w}: bound {other}"),
        };
        let f = m["fraction_of_peak"]["mean"].as_f64().unwrap();
        assert!(
            (f - rate / ceiling).abs() <= 1e-9 * f.max(1.0),
            "{w}: fraction {f} vs {rate} / {ceiling}"
        );
        assert!(f > 0.0 && f <= 4.0, "{w} {}: fraction {f}", r["variant"]);
    }
    let has = |prefix: &str| {
        kernels
            .iter()
            .any(|r| r["workload"].as_str().unwrap().starts_with(prefix))
    };
    for p in [
        "gemm ",
        "gemm+bias+quick_gelu",
        "mlp vit-b16",
        "patch_embed vit-b16",
        "layer_norm",
        "rms_norm",
        "add ",
        "swiglu",
        "softmax",
        "rope",
        "embedding",
        "gelu ",
    ] {
        assert!(has(p), "no `{p}` row");
    }
    for v in attention_variants {
        let n = kernels
            .iter()
            .filter(|r| r["variant"] == *v && r["seq_len"].is_u64())
            .count();
        assert!(n >= 2, "attention `{v}`: {n} rows");
    }
    assert!(kernels
        .iter()
        .any(|r| r["family"] == "attention qwen2-0.5b decode" && r["config"]["bound"] == "bytes"));
}

#[test]
fn roofline_quick_on_cpu() {
    roofline_quick("cpu", &["flash", "naive", "block-sparse"]);
}

#[test]
fn roofline_quick_on_wgpu() {
    if let Err(e) = foveate_wgpu::WgpuBackend::new() {
        if std::env::var("FOVEATE_REQUIRE_WGPU").is_ok_and(|v| v == "1") {
            panic!("FOVEATE_REQUIRE_WGPU=1 but no wgpu adapter: {e}");
        }
        eprintln!("roofline_quick_on_wgpu: skipped, no wgpu adapter: {e}");
        return;
    }
    roofline_quick("wgpu", &["flash", "naive", "flash-decode", "block-sparse"]);
}

#[test]
fn compare_charts_one_pair_per_unit_and_filters_families() {
    let d = tmp("units");
    let p = d.join("r.json");
    let row = |fam: &str, s: usize, m: &str, unit: &str, v: f64| {
        serde_json::json!({ "workload": format!("{fam} s{s}"), "kind": "kernel", "backend": "cpu", "variant": "x", "dtype": "f32",
            "family": fam, "seq_len": s, "metrics": { m: { "mean": v, "unit": unit } } })
    };
    let v = serde_json::json!({ "schema": "foveate-bench/1", "tool": "foveate", "version": "0", "date": "2026-01-01T00:00:00Z", "device": "t",
        "rows": [row("attention a", 64, "gflops", "GFLOP/s", 1.0), row("attention a", 128, "gflops", "GFLOP/s", 2.0),
                 row("attention qwen2-0.5b decode", 64, "gbps", "GB/s", 3.0), row("attention qwen2-0.5b decode", 128, "gbps", "GB/s", 4.0)] });
    std::fs::write(&p, v.to_string()).unwrap();
    compare(&[&p], &[], &d.join("c-0.5b"));
    for f in [
        "c-0.5b-gflops.svg",
        "c-0.5b-gflops.png",
        "c-0.5b-gbps.svg",
        "c-0.5b-gbps.png",
    ] {
        assert!(d.join(f).is_file(), "{f} not written");
    }
    let svg = std::fs::read_to_string(d.join("c-0.5b-gbps.svg")).unwrap();
    assert!(
        svg.contains("GB/s") && svg.contains("decode") && !svg.contains("attention a "),
        "gbps chart holds other units"
    );
    compare(&[&p], &["--chart-only", "attention a"], &d.join("only"));
    assert!(d.join("only.svg").is_file() && !d.join("only-gbps.svg").exists());
}

/// `--print-config`: the builtin's config.json with --layers applied (what the llama.cpp GGUF
/// writer reads), and an unknown name refused by name.
#[test]
fn bench_prints_a_builtin_config() {
    let o = foveate()
        .args([
            "bench",
            "--model",
            "qwen2-0.5b",
            "--layers",
            "3",
            "--print-config",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let t = &v["text_config"];
    assert_eq!(t["model_type"], "qwen2");
    assert_eq!(t["num_hidden_layers"], 3);
    assert_eq!(
        (
            &t["hidden_size"],
            &t["num_key_value_heads"],
            &t["vocab_size"]
        ),
        (
            &serde_json::json!(896),
            &serde_json::json!(2),
            &serde_json::json!(151936)
        )
    );
    assert_eq!(t["tie_word_embeddings"], true);
    let o = foveate()
        .args(["bench", "--model", "/no/such/dir", "--print-config"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/no/such/dir"));
}
