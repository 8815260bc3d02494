//! `foveate compare` on llama.cpp's `llama-bench -o json` output: a real file captured from a
//! llama.cpp build (`tests/data/llama-bench-sample.json`) against the `foveate bench` file of the
//! same run (`tests/data/foveate-bench-sample.json`; how both were made: `tests/data/README.md`).
//! Rows line up per weight format and every ratio is recomputed here from the raw files. Nothing
//! here needs llama.cpp.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn read(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn compare(files: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_foveate"))
        .arg("compare")
        .args(files)
        .output()
        .unwrap()
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// llama.cpp's timed runs of one test of the fixture (all its records), in ms and tokens/s.
fn llama_runs(v: &Value, file_type: &str, prompt: u64, gen: u64) -> (Vec<f64>, Vec<f64>) {
    let (mut ms, mut tps) = (vec![], vec![]);
    for r in v.as_array().unwrap() {
        if r["model_type"].as_str().unwrap().splitn(3, ' ').nth(2) == Some(file_type)
            && r["n_prompt"] == prompt
            && r["n_gen"] == gen
        {
            for ns in r["samples_ns"].as_array().unwrap() {
                let ns = ns.as_f64().unwrap();
                ms.push(ns / 1e6);
                tps.push((prompt + gen) as f64 / (ns / 1e9));
            }
        }
    }
    assert!(!ms.is_empty(), "no {file_type} p{prompt} n{gen} test");
    (ms, tps)
}

/// The numbers of one table line: (llama.cpp value, foveate value or None, ratio or None).
fn cells(
    table: &str,
    workload: &str,
    weights: &str,
    metric: &str,
) -> (f64, Option<f64>, Option<f64>) {
    let head = format!("| {workload} | {weights} | {metric} (");
    let line = table
        .lines()
        .find(|l| l.starts_with(&head))
        .unwrap_or_else(|| panic!("no line `{head}` in\n{table}"));
    let c: Vec<&str> = line.split('|').map(str::trim).collect();
    let num = |s: &str| s.split_whitespace().next().unwrap().parse::<f64>().ok();
    (num(c[4]).unwrap(), num(c[5]), num(c[6]))
}

#[test]
fn llama_bench_rows_line_up_with_foveate_per_weight_format() {
    let (lp, fp) = (
        data("llama-bench-sample.json"),
        data("foveate-bench-sample.json"),
    );
    let (llama, fov) = (read(&lp), read(&fp));
    let o = compare(&[&lp, &fp]);
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{table}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // The header names both tools, llama.cpp's build and the reference column.
    assert!(
        table.contains("llama.cpp cpu/flash/f32 @") && table.contains("(reference)"),
        "{table}"
    );
    assert!(table.contains("foveate cpu/flash/f32"), "{table}");
    let (p, n) = (256u64, 32u64);
    let workload = format!("qwen2-0.5b p{p} n{n}");
    for (weights, file_type) in [
        ("f32", "all F32"),
        ("f16", "F16"),
        ("bf16", "BF16"),
        ("int8", "Q8_0"),
        ("int4", "Q4_0"),
    ] {
        let row = fov["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| {
                let d = r["dtype"].as_str().unwrap();
                d == weights || d == format!("f32/w{weights}")
            })
            .unwrap_or_else(|| panic!("foveate sample has no {weights} row"));
        let fm = |k: &str| row["metrics"][k]["mean"].as_f64().unwrap();
        // Prefill: times, foveate over llama.cpp.
        let (ms, _) = llama_runs(&llama, file_type, p, 0);
        let (l, f, ratio) = cells(&table, &workload, weights, "prefill_ms");
        assert!(
            (l - mean(&ms)).abs() < 1e-3,
            "{weights} prefill {l} vs {ms:?}"
        );
        assert!((f.unwrap() - fm("prefill_ms")).abs() < 1e-3, "{weights}");
        let want = fm("prefill_ms") / mean(&ms);
        assert!(
            (ratio.unwrap() - want).abs() <= 0.005 + 1e-9,
            "{weights} prefill ratio {ratio:?} vs {want}"
        );
        // Decode (llama-bench at depth p): rates, llama.cpp over foveate.
        let (_, tps) = llama_runs(&llama, file_type, 0, n);
        let (l, f, ratio) = cells(&table, &workload, weights, "decode_tokens_per_s");
        assert!(
            (l - mean(&tps)).abs() < 1e-3,
            "{weights} decode {l} vs {tps:?}"
        );
        assert!((f.unwrap() - fm("decode_tokens_per_s")).abs() < 1e-3);
        let want = mean(&tps) / fm("decode_tokens_per_s");
        assert!(
            (ratio.unwrap() - want).abs() <= 0.005 + 1e-9,
            "{weights} decode ratio {ratio:?} vs {want}"
        );
    }
    // A llama.cpp-only format has its row with no foveate value.
    let (l, f, ratio) = cells(&table, &workload, "q4_k_m", "decode_ms");
    assert!(l > 0.0 && f.is_none() && ratio.is_none());
}

/// Each kind of damage: exit 1 with the file and the field named, never a panic (101).
#[test]
fn malformed_llama_bench_files_are_named_with_the_field() {
    let d = common::scratch("llama-compare", "bad", true);
    let good = std::fs::read_to_string(data("llama-bench-sample.json")).unwrap();
    let v: Value = serde_json::from_str(&good).unwrap();
    let mut no_gen = v.clone();
    no_gen[1].as_object_mut().unwrap().remove("n_gen");
    let mut bad_samples = v.clone();
    bad_samples[0]["samples_ns"] = serde_json::json!(["fast"]);
    let mut bad_type = v.clone();
    bad_type[2]["model_type"] = serde_json::json!("qwen2");
    for (name, text, want) in [
        (
            "truncated.json",
            good[..good.len() / 2].to_string(),
            "(json)",
        ),
        ("no-gen.json", no_gen.to_string(), "[1].n_gen"),
        ("samples.json", bad_samples.to_string(), "[0].samples_ns"),
        ("type.json", bad_type.to_string(), "[2].model_type"),
        ("empty.json", "[]".to_string(), "no tests"),
    ] {
        let p = d.join(name);
        std::fs::write(&p, text).unwrap();
        let o = compare(&[&p, &data("foveate-bench-sample.json")]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{name}: {err}");
        assert!(
            err.contains(name) && err.contains(want),
            "{name}: `{want}` not in {err}"
        );
    }
}
