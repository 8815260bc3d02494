//! Criterion's estimates as `foveate-bench/1` rows, so `cargo bench` results go through
//! `foveate compare` like any other result file (`cargo run -p foveate-benches --bin
//! foveate-bench-collect`).
//!
//! The benches in this directory name every case the same way: group `BENCH/FAMILY`, function
//! `BACKEND/VARIANT/DTYPE`, parameter `s<N> ...` or `kv<N> ...` when the case is one point of a
//! sequence-length sweep (any other parameter is a label). Criterion writes
//! `<dir>/<group>/<function>/<parameter>/new/{benchmark,estimates,sample}.json`; each becomes a
//! row with `ms` (criterion's mean and standard deviation per iteration) and the throughput the
//! bench declared: `Elements` as GFLOP/s (tokens/s for `e2e/prefill` and `e2e/decode`), `Bytes`
//! as GB/s.

use crate::results::{Metric, Row};
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

#[derive(Deserialize)]
struct BenchmarkJson {
    group_id: String,
    function_id: Option<String>,
    value_str: Option<String>,
    throughput: Option<serde_json::Value>,
    #[serde(default)]
    full_id: String,
}

#[derive(Deserialize)]
struct Estimate {
    point_estimate: f64,
}

#[derive(Deserialize)]
struct EstimatesJson {
    mean: Estimate,
    std_dev: Estimate,
}

#[derive(Deserialize)]
struct SampleJson {
    iters: Vec<f64>,
}

/// Where criterion writes: `$CRITERION_HOME`, `$CARGO_TARGET_DIR/criterion`, the target directory
/// `cargo metadata` names, else `target/criterion` (criterion's own order).
pub fn default_dir() -> PathBuf {
    if let Some(h) = std::env::var_os("CRITERION_HOME") {
        return h.into();
    }
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(t).join("criterion");
    }
    let meta =
        std::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .output()
            .ok()
            .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok());
    match meta.as_ref().and_then(|m| m["target_directory"].as_str()) {
        Some(t) => PathBuf::from(t).join("criterion"),
        None => PathBuf::from("target/criterion"),
    }
}

/// The sequence length of a sweep parameter: its first word as `s<N>` or `kv<N>`.
pub fn seq_of(param: &str) -> Option<usize> {
    let w = param.split_whitespace().next()?;
    let digits = w.strip_prefix("kv").or_else(|| w.strip_prefix('s'))?;
    digits.parse().ok()
}

fn read<T: for<'de> Deserialize<'de>>(p: &Path) -> Result<T, String> {
    let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))
}

fn find(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n == "new") && p.join("benchmark.json").is_file() {
                out.push(p);
            } else {
                find(&p, out);
            }
        }
    }
}

/// One criterion result directory (`.../new`) as a row.
pub fn row(new_dir: &Path) -> Result<Row, String> {
    let b: BenchmarkJson = read(&new_dir.join("benchmark.json"))?;
    let est: EstimatesJson = read(&new_dir.join("estimates.json"))?;
    let n = read::<SampleJson>(&new_dir.join("sample.json"))
        .map(|s| s.iters.len())
        .unwrap_or(1);
    let func = b.function_id.clone().unwrap_or_default();
    let mut parts = func.splitn(3, '/');
    let (backend, variant, dtype) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or("f32"),
    );
    let param = b.value_str.clone().unwrap_or_default();
    let family = b.group_id.replace('/', " ");
    let seq = seq_of(&param);
    let (ms, sd) = (
        est.mean.point_estimate / 1e6,
        est.std_dev.point_estimate / 1e6,
    );
    let mut metrics = BTreeMap::from([(
        "ms".to_string(),
        Metric {
            mean: ms,
            sd,
            n,
            unit: "ms".into(),
        },
    )]);
    let (kind, count) = match &b.throughput {
        Some(t) => match (
            t.get("Elements").and_then(|v| v.as_f64()),
            t.get("Bytes")
                .or_else(|| t.get("BytesDecimal"))
                .and_then(|v| v.as_f64()),
        ) {
            (Some(e), _) => ("elements", e),
            (None, Some(by)) => ("bytes", by),
            _ => ("none", 0.0),
        },
        None => ("none", 0.0),
    };
    if count > 0.0 && ms > 0.0 {
        let per_s = count / (ms / 1e3);
        let tokens = b.group_id.starts_with("e2e/prefill") || b.group_id.starts_with("e2e/decode");
        let (key, unit, v) = match kind {
            "bytes" => ("gbps", "GB/s", per_s / 1e9),
            _ if tokens => ("tokens_per_s", "tokens/s", per_s),
            _ => ("gflops", "GFLOP/s", per_s / 1e9),
        };
        metrics.insert(
            key.into(),
            Metric {
                mean: v,
                sd: v * sd / ms,
                n,
                unit: unit.into(),
            },
        );
    }
    let measured = std::fs::metadata(new_dir.join("estimates.json"))
        .and_then(|m| m.modified())
        .ok();
    let age_s = measured
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .map(|d| d.as_secs());
    Ok(Row {
        workload: if param.is_empty() {
            family.clone()
        } else {
            format!("{family} {param}")
        },
        kind: if b.group_id.starts_with("e2e") {
            "e2e"
        } else {
            "kernel"
        }
        .into(),
        backend: backend.into(),
        variant: variant.into(),
        dtype: dtype.into(),
        family: seq.map(|_| family.clone()),
        seq_len: seq,
        metrics,
        config: json!({ "criterion_id": b.full_id, "throughput": { kind: count }, "age_s_when_collected": age_s }),
    })
}

/// Every result under `dir` whose group starts with one of `prefixes` (all when empty) and that
/// is at most `max_age` old, sorted by workload then series.
pub fn collect(
    dir: &Path,
    prefixes: &[String],
    max_age: Option<Duration>,
) -> Result<Vec<Row>, String> {
    let mut dirs = Vec::new();
    find(dir, &mut dirs);
    if dirs.is_empty() {
        return Err(format!(
            "{}: no criterion results (run `cargo bench -p foveate-benches` first)",
            dir.display()
        ));
    }
    let mut rows = Vec::new();
    for d in dirs {
        if let Some(max) = max_age {
            let old = std::fs::metadata(d.join("estimates.json"))
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age > max);
            if old {
                continue;
            }
        }
        let r = row(&d)?;
        let group = r.config["criterion_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if prefixes.is_empty() || prefixes.iter().any(|p| group.starts_with(p.as_str())) {
            rows.push(r);
        }
    }
    rows.sort_by(|a, b| {
        (
            a.family.as_deref().unwrap_or(&a.workload),
            a.seq_len,
            a.series(),
        )
            .cmp(&(
                b.family.as_deref().unwrap_or(&b.workload),
                b.seq_len,
                b.series(),
            ))
    });
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(
        dir: &Path,
        group: &str,
        func: &str,
        param: &str,
        tp: serde_json::Value,
        mean_ns: f64,
    ) -> PathBuf {
        let d = dir
            .join(group.replace('/', "_"))
            .join(func.replace('/', "_"))
            .join(param.replace(' ', "_"))
            .join("new");
        std::fs::create_dir_all(&d).unwrap();
        let b = json!({ "group_id": group, "function_id": func, "value_str": param, "throughput": tp,
            "full_id": format!("{group}/{func}/{param}"), "directory_name": "x", "title": "x" });
        std::fs::write(d.join("benchmark.json"), b.to_string()).unwrap();
        let e = |v: f64| json!({ "point_estimate": v, "standard_error": 0.0, "confidence_interval": { "confidence_level": 0.95, "lower_bound": v, "upper_bound": v } });
        std::fs::write(d.join("estimates.json"), json!({ "mean": e(mean_ns), "median": e(mean_ns), "median_abs_dev": e(0.0), "slope": null, "std_dev": e(mean_ns / 10.0) }).to_string()).unwrap();
        std::fs::write(
            d.join("sample.json"),
            json!({ "sampling_mode": "Flat", "iters": [1.0, 1.0, 1.0], "times": [1.0, 1.0, 1.0] })
                .to_string(),
        )
        .unwrap();
        d
    }

    #[test]
    fn rows_carry_rates_sweeps_and_series() {
        let dir =
            std::env::temp_dir().join(format!("foveate-criterion-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // 2 GFLOP in 1 ms = 2000 GFLOP/s; 1 MB in 0.5 ms = 2 GB/s; 128 tokens in 2 ms = 64000 tokens/s.
        write(
            &dir,
            "attention/vit-b16-none",
            "cpu/flash/f32",
            "s128",
            json!({ "Elements": 2_000_000_000u64 }),
            1e6,
        );
        write(
            &dir,
            "attention/qwen2-decode",
            "wgpu/flash-decode/f32",
            "kv512",
            json!({ "Bytes": 1_000_000u64 }),
            5e5,
        );
        write(
            &dir,
            "e2e/prefill",
            "cpu/flash/f32",
            "qwen2-0.5b p128",
            json!({ "Elements": 128u64 }),
            2e6,
        );
        let rows = collect(&dir, &[], None).unwrap();
        assert_eq!(rows.len(), 3);
        let a = rows
            .iter()
            .find(|r| r.workload == "attention vit-b16-none s128")
            .unwrap();
        assert_eq!(
            (
                a.backend.as_str(),
                a.variant.as_str(),
                a.dtype.as_str(),
                a.seq_len
            ),
            ("cpu", "flash", "f32", Some(128))
        );
        assert_eq!(a.family.as_deref(), Some("attention vit-b16-none"));
        assert!((a.metrics["gflops"].mean - 2000.0).abs() < 1e-9);
        assert!(
            (a.metrics["ms"].mean - 1.0).abs() < 1e-12 && (a.metrics["ms"].sd - 0.1).abs() < 1e-12
        );
        assert_eq!(a.metrics["ms"].n, 3);
        let d = rows.iter().find(|r| r.variant == "flash-decode").unwrap();
        assert_eq!(d.seq_len, Some(512));
        assert!((d.metrics["gbps"].mean - 2.0).abs() < 1e-9);
        let p = rows.iter().find(|r| r.kind == "e2e").unwrap();
        assert!((p.metrics["tokens_per_s"].mean - 64000.0).abs() < 1e-6);
        assert_eq!(p.seq_len, None, "a label is not a sweep point");
        assert_eq!(
            collect(&dir, &["attention/".into()], None).unwrap().len(),
            2
        );
        assert!(collect(&dir.join("missing"), &[], None).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn sweep_parameters() {
        assert_eq!(seq_of("s1024 window-s8 d0.19"), Some(1024));
        assert_eq!(seq_of("kv256"), Some(256));
        assert_eq!(seq_of("vit-b16 qkv 197x768x768"), None);
        assert_eq!(seq_of("swiglu"), None);
    }
}
