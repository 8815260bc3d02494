//! The result-file schema shared by `foveate bench`, `eval/tools/torch_baseline.py` and
//! `foveate compare` (version [`SCHEMA`]).
//!
//! A file holds rows; a row is one configuration (workload x backend x variant x dtype) with named
//! metrics, each a mean ± sd over repetitions and its unit. `workload` names what was computed,
//! independently of who computed it, so rows from different files line up in `compare`
//! (e.g. `vit-b16`, `qwen2-0.5b p256 n32`, `attention vit-b16 s197`). Rows with a `seq_len` and a
//! throughput metric are charted against it, one line per `family` and series.

use crate::stats::Stat;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const SCHEMA: &str = "foveate-bench/1";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub mean: f64,
    #[serde(default)]
    pub sd: f64,
    #[serde(default = "one")]
    pub n: usize,
    /// `ms`, `tokens/s`, `GFLOP/s`, `GB/s`, `MiB`, `fraction`.
    pub unit: String,
}

fn one() -> usize {
    1
}

impl Metric {
    pub fn new(s: Stat, unit: &str) -> Self {
        Metric {
            mean: s.mean,
            sd: s.sd,
            n: s.n,
            unit: unit.to_string(),
        }
    }
    pub fn value(v: f64, unit: &str) -> Self {
        Metric {
            mean: v,
            sd: 0.0,
            n: 1,
            unit: unit.to_string(),
        }
    }
    /// A rate (`…/s`) or a fraction of peak: higher is better. Times and memory: lower is better.
    pub fn higher_is_better(&self) -> bool {
        self.unit.ends_with("/s") || self.unit == "fraction"
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub workload: String,
    /// `e2e`, `kernel` or `peak`.
    pub kind: String,
    pub backend: String,
    #[serde(default)]
    pub variant: String,
    pub dtype: String,
    /// Chart line family (e.g. `attention h12 d64 none`); rows of one family differ in `seq_len`.
    #[serde(default)]
    pub family: Option<String>,
    #[serde(default)]
    pub seq_len: Option<usize>,
    /// Metric name → value. BTreeMap so files diff cleanly.
    pub metrics: BTreeMap<String, Metric>,
    /// Free-form settings of the run (prompt length, threads, ...).
    #[serde(default)]
    pub config: serde_json::Value,
}

impl Row {
    /// `backend/variant/dtype`: the series a row belongs to within its file.
    pub fn series(&self) -> String {
        if self.variant.is_empty() {
            format!("{}/{}", self.backend, self.dtype)
        } else {
            format!("{}/{}/{}", self.backend, self.variant, self.dtype)
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResultFile {
    pub schema: String,
    /// `foveate` or `pytorch`.
    pub tool: String,
    pub version: String,
    #[serde(default)]
    pub commit: Option<String>,
    /// UTC, RFC 3339.
    pub date: String,
    pub device: String,
    /// Machine facts (cpu model, cores, threads used).
    #[serde(default)]
    pub host: serde_json::Value,
    pub rows: Vec<Row>,
}

impl ResultFile {
    /// A foveate result file stamped now, with this build's version and git commit.
    pub fn new(device: String, host: serde_json::Value, rows: Vec<Row>) -> ResultFile {
        ResultFile {
            schema: SCHEMA.into(),
            tool: "foveate".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            commit: git_commit(),
            date: utc_now(),
            device,
            host,
            rows,
        }
    }

    /// Parses and checks a result file; errors name the file and the field.
    pub fn parse(text: &str, file: &str) -> foveate_core::Result<ResultFile> {
        let v: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| foveate_core::Error::format(file, "(json)", e.to_string()))?;
        match v.get("schema").and_then(|s| s.as_str()) {
            Some(SCHEMA) => {}
            Some(other) => {
                return Err(foveate_core::Error::format(
                    file,
                    "schema",
                    format!("`{other}` is not supported (supported: {SCHEMA})"),
                ))
            }
            None => {
                return Err(foveate_core::Error::format(
                    file,
                    "schema",
                    format!("missing (expected \"{SCHEMA}\")"),
                ))
            }
        }
        serde_json::from_value(v)
            .map_err(|e| foveate_core::Error::format(file, "rows", e.to_string()))
    }
}

/// The 1, 5 and 15 minute load averages (`/proc/loadavg`), if readable.
pub fn load_average() -> Option<[f64; 3]> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    let v: Vec<f64> = s
        .split_whitespace()
        .take(3)
        .filter_map(|x| x.parse().ok())
        .collect();
    (v.len() == 3).then(|| [v[0], v[1], v[2]])
}

/// The machine in words: `/proc/cpuinfo` model name, the cores this process may use, and the
/// load average when the file was written (the machine may be shared).
pub fn host_info() -> serde_json::Value {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    serde_json::json!({ "cpu": model, "cores": cores, "os": std::env::consts::OS, "loadavg": load_average() })
}

pub use foveate_core::stamp::{git_commit, utc_now};

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn parse_rejects_other_schemas_by_name() {
        let e = ResultFile::parse(r#"{"schema":"x"}"#, "a.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("a.json") && e.contains("schema"), "{e}");
        let ok = format!(
            r#"{{"schema":"{SCHEMA}","tool":"t","version":"0","date":"d","device":"c","rows":[{{"workload":"w","kind":"e2e","backend":"cpu","dtype":"f32","metrics":{{"ms":{{"mean":1.0,"unit":"ms"}}}}}}]}}"#
        );
        let f = ResultFile::parse(&ok, "b.json").unwrap();
        assert_eq!(f.rows[0].metrics["ms"].n, 1);
        assert_eq!(f.rows[0].series(), "cpu/f32");
    }
}
