//! llama.cpp's `llama-bench -o json` output read as a foveate result file, so that
//! `foveate compare llama.json foveate.json` lines llama.cpp's tests up with `foveate bench` rows
//! (docs/BENCHMARKS-llamacpp.md).
//!
//! llama-bench writes a JSON array with one object per test: a prompt test `ppP` (`n_prompt` P,
//! `n_gen` 0) or a generation test `tgN` (`n_prompt` 0, `n_gen` N), each run at a context depth
//! `n_depth`, with its timed runs in `samples_ns` (older versions: only `avg_ns`/`stddev_ns` and
//! `avg_ts`/`stddev_ts`). The records become rows:
//!
//! * a prompt test of P tokens at depth 0 and a generation test of N tokens at depth P, of one
//!   model file and settings, make the row `MODEL pP nN` with `prefill_ms`,
//!   `prefill_tokens_per_s`, `decode_ms` and `decode_tokens_per_s`: what `foveate bench -p P -n N`
//!   measures (foveate decodes after its prompt, hence the depth: `llama-bench -d P`).
//! * a test left unpaired is a row of its own: `MODEL pP` (`MODEL pP dD` at a depth), `MODEL nN dD`,
//!   or `MODEL pP+nN` for a `-pg` test (`ms` and `tokens_per_s` over both).
//! * MODEL is the model file's name without `.gguf` and a trailing format
//!   (`qwen2-0.5b-q8_0.gguf` -> `qwen2-0.5b`).
//! * dtype is the file type of `model_type` (`qwen2 1B Q8_0`) in foveate's names of a weight
//!   format under f32 activations (llama.cpp's CPU graph is f32 between the matmuls): `all F32` ->
//!   `f32`, `F16` -> `f32/wf16`, `BF16` -> `f32/wbf16`, `Q8_0` -> `f32/wint8`, `Q4_0` -> `f32/wint4`
//!   (the same layouts as foveate's int8/int4: blocks of 32 with an f16 scale), others by their
//!   llama.cpp name (`Q4_K - Medium` -> `f32/wq4_k_m`).
//! * backend is `backends` in lower case (`cpu`), variant is `flash` under `-fa 1` (`no-flash`,
//!   `flash-auto`), plus the settings that differ between the file's records (`t4`: 4 threads).
//!
//! Repeated records of one test (several runs concatenated) are pooled: mean and sample sd over all
//! their timed runs.

use foveate_benches::results::{Metric, ResultFile, Row, SCHEMA};
use foveate_benches::stats::Stat;
use foveate_core::Error;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

type Res<T> = Result<T, Error>;

/// Whether a parsed JSON document is llama-bench output (an array; foveate files are objects).
pub fn is_llama_bench(v: &Value) -> bool {
    v.is_array()
}

/// Settings that tell tests apart within a file; those that differ between its records are
/// appended to the variant (prefix, field).
const SETTINGS: [(&str, &str); 7] = [
    ("t", "n_threads"),
    ("k", "type_k"),
    ("v", "type_v"),
    ("b", "n_batch"),
    ("ub", "n_ubatch"),
    ("ngl", "n_gpu_layers"),
    ("@", "build_commit"),
];

/// One record, its fields checked.
struct Test {
    model_file: String,
    model: String,
    dtype: String,
    backend: String,
    flash: String,
    settings: Vec<String>,
    prompt: u64,
    gen: u64,
    depth: u64,
    ms: Metric,
    tps: Metric,
    index: usize,
}

struct Rec<'a> {
    file: &'a str,
    i: usize,
    o: &'a Map<String, Value>,
}

impl Rec<'_> {
    fn err(&self, key: &str, msg: impl Into<String>) -> Error {
        Error::format(self.file, format!("[{}].{key}", self.i), msg)
    }
    fn get(&self, key: &str) -> Res<&Value> {
        self.o
            .get(key)
            .ok_or_else(|| self.err(key, "missing (not llama-bench -o json output?)"))
    }
    fn str(&self, key: &str) -> Res<&str> {
        let v = self.get(key)?;
        v.as_str()
            .ok_or_else(|| self.err(key, format!("expected a string, found {v}")))
    }
    fn uint(&self, key: &str) -> Res<u64> {
        let v = self.get(key)?;
        v.as_u64()
            .ok_or_else(|| self.err(key, format!("expected a count, found {v}")))
    }
    fn num(&self, key: &str) -> Res<f64> {
        let v = self.get(key)?;
        match v.as_f64() {
            Some(x) if x.is_finite() && x >= 0.0 => Ok(x),
            _ => Err(self.err(key, format!("expected a non-negative number, found {v}"))),
        }
    }
    /// A setting as text (strings as they are, numbers and booleans printed); absent: empty.
    fn setting(&self, key: &str) -> String {
        match self.o.get(key) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
        }
    }
}

/// The model name in a model file name: `dir/qwen2-0.5b-q4_k_m.gguf` -> `qwen2-0.5b`.
pub fn model_name(file: &str) -> String {
    let base = file.rsplit(['/', '\\']).next().unwrap_or(file);
    let stem = base.strip_suffix(".gguf").unwrap_or(base);
    if let Some(cut) = stem.rfind(['-', '.']) {
        let fmt = stem[cut + 1..].to_ascii_lowercase();
        let quant = |p: &str| {
            fmt.strip_prefix(p)
                .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
        };
        let is_format = ["f32", "f16", "bf16"].contains(&fmt.as_str())
            || quant("q")
            || quant("iq")
            || quant("tq")
            || fmt.starts_with("mxfp");
        if is_format && cut > 0 {
            return stem[..cut].to_string();
        }
    }
    stem.to_string()
}

/// foveate's dtype name of a llama.cpp `model_type` (`ARCH SIZE FILETYPE`, the file type maybe
/// prefixed `(guessed) `).
pub fn weights_dtype(model_type: &str) -> Option<String> {
    let mut parts = model_type.splitn(3, ' ');
    let (_arch, _size, ftype) = (parts.next()?, parts.next()?, parts.next()?);
    let ftype = ftype.trim().trim_start_matches("(guessed) ").trim();
    let w = match ftype {
        "all F32" | "F32" => return Some("f32".into()),
        "F16" => "f16".to_string(),
        "BF16" => "bf16".to_string(),
        "Q8_0" => "int8".to_string(),
        "Q4_0" => "int4".to_string(),
        "" => return None,
        other => {
            // `Q4_K - Medium` -> q4_k_m; `IQ4_NL - 4.5 bpw` -> iq4_nl; `MXFP4 MoE` -> mxfp4_moe.
            let (name, size) = other.split_once(" - ").unwrap_or((other, ""));
            let mut s = name.to_ascii_lowercase().replace(' ', "_");
            if let Some(c @ ('S' | 'M' | 'L')) = size.chars().next() {
                if ["Small", "Medium", "Large"].contains(&size) {
                    s.push('_');
                    s.push(c.to_ascii_lowercase());
                }
            }
            s
        }
    };
    Some(format!("f32/w{w}"))
}

fn test(file: &str, i: usize, v: &Value) -> Res<Test> {
    let o = v
        .as_object()
        .ok_or_else(|| Error::format(file, format!("[{i}]"), "expected a test object"))?;
    let r = Rec { file, i, o };
    let model_file = r.str("model_filename")?.to_string();
    let model_type = r.str("model_type")?;
    let dtype = weights_dtype(model_type).ok_or_else(|| {
        r.err(
            "model_type",
            format!("`{model_type}` is not `ARCH SIZE FILETYPE`"),
        )
    })?;
    let (prompt, gen) = (r.uint("n_prompt")?, r.uint("n_gen")?);
    // Versions before depth tests have no n_depth: depth 0.
    let depth = if o.contains_key("n_depth") {
        r.uint("n_depth")?
    } else {
        0
    };
    if prompt + gen == 0 {
        return Err(r.err("n_prompt", "a test of neither prompt nor generated tokens"));
    }
    let tokens = (prompt + gen) as f64;
    let (ms, tps) = match o.get("samples_ns") {
        Some(s) => {
            let ns: Vec<f64> = s
                .as_array()
                .filter(|a| !a.is_empty())
                .and_then(|a| {
                    a.iter()
                        .map(|x| x.as_f64().filter(|t| *t > 0.0 && t.is_finite()))
                        .collect::<Option<Vec<f64>>>()
                })
                .ok_or_else(|| {
                    r.err(
                        "samples_ns",
                        "expected a non-empty array of positive numbers",
                    )
                })?;
            let ms: Vec<f64> = ns.iter().map(|t| t / 1e6).collect();
            let tps: Vec<f64> = ns.iter().map(|t| tokens / (t / 1e9)).collect();
            (
                Metric::new(Stat::of(&ms), "ms"),
                Metric::new(Stat::of(&tps), "tokens/s"),
            )
        }
        None => {
            let ms = Metric {
                mean: r.num("avg_ns")? / 1e6,
                sd: r.num("stddev_ns")? / 1e6,
                n: 1,
                unit: "ms".into(),
            };
            let tps = Metric {
                mean: r.num("avg_ts")?,
                sd: r.num("stddev_ts")?,
                n: 1,
                unit: "tokens/s".into(),
            };
            if ms.mean <= 0.0 {
                return Err(r.err("avg_ns", "a test that took no time"));
            }
            (ms, tps)
        }
    };
    let backend = match r.setting("backends") {
        b if b.is_empty() => "cpu".to_string(),
        b => b.to_ascii_lowercase(),
    };
    let flash = match r.setting("flash_attn").as_str() {
        "1" | "true" => "flash".to_string(),
        "0" | "false" => "no-flash".to_string(),
        "-1" => "flash-auto".to_string(),
        "" => "llama.cpp".to_string(),
        x => format!("fa{x}"),
    };
    Ok(Test {
        model: model_name(&model_file),
        model_file,
        dtype,
        backend,
        flash,
        settings: SETTINGS.iter().map(|(_, k)| r.setting(k)).collect(),
        prompt,
        gen,
        depth,
        ms,
        tps,
        index: i,
    })
}

/// Mean and sample sd over the runs of several metrics of the same quantity.
fn pool(ms: &[&Metric]) -> Metric {
    let n: usize = ms.iter().map(|m| m.n.max(1)).sum();
    let mean = ms.iter().map(|m| m.mean * m.n.max(1) as f64).sum::<f64>() / n as f64;
    let ss: f64 = ms
        .iter()
        .map(|m| {
            let k = m.n.max(1) as f64;
            (k - 1.0) * m.sd * m.sd + k * (m.mean - mean).powi(2)
        })
        .sum();
    Metric {
        mean,
        sd: if n > 1 {
            (ss / (n - 1) as f64).sqrt()
        } else {
            0.0
        },
        n,
        unit: ms[0].unit.clone(),
    }
}

/// The fields of the first record of a row, kept in its config.
fn config(o: &Value, prompt: u64, gen: u64, depth: u64, records: usize) -> Value {
    let mut c = Map::new();
    for k in [
        "model_filename",
        "model_type",
        "model_size",
        "model_n_params",
        "n_threads",
        "n_batch",
        "n_ubatch",
        "type_k",
        "type_v",
        "flash_attn",
        "n_gpu_layers",
        "build_commit",
        "build_number",
    ] {
        if let Some(v) = o.get(k) {
            c.insert(k.into(), v.clone());
        }
    }
    c.insert("prompt".into(), json!(prompt));
    c.insert("decode".into(), json!(gen));
    c.insert("depth".into(), json!(depth));
    c.insert("records".into(), json!(records));
    Value::Object(c)
}

/// Distinct values of a string field over the records, in order of appearance.
fn distinct(records: &[Value], key: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in records {
        if let Some(s) = r.get(key).and_then(|v| v.as_str()) {
            if !s.is_empty() && !out.iter().any(|x| x == s) {
                out.push(s.to_string());
            }
        }
    }
    out
}

/// llama-bench `-o json` output (already parsed) as a result file; errors name the file, the
/// record and the field.
pub fn parse(v: &Value, file: &str) -> Res<ResultFile> {
    let records = v
        .as_array()
        .ok_or_else(|| Error::format(file, "(json)", "expected a llama-bench JSON array"))?;
    if records.is_empty() {
        return Err(Error::format(
            file,
            "(json)",
            "a llama-bench array with no tests",
        ));
    }
    let tests: Vec<Test> = records
        .iter()
        .enumerate()
        .map(|(i, r)| test(file, i, r))
        .collect::<Res<_>>()?;
    // The settings that differ between records name the variant.
    let varying: Vec<usize> = (0..SETTINGS.len())
        .filter(|&s| tests.iter().any(|t| t.settings[s] != tests[0].settings[s]))
        .collect();
    // Groups: one model file under one set of settings; within a group, tests by (P, N, depth).
    type Key = (u64, u64, u64);
    let mut groups: Vec<(&Test, BTreeMap<Key, Vec<&Test>>)> = Vec::new();
    for t in &tests {
        let same = |g: &Test| {
            g.model_file == t.model_file
                && g.dtype == t.dtype
                && g.backend == t.backend
                && g.flash == t.flash
                && g.settings == t.settings
        };
        let g = match groups.iter().position(|(g, _)| same(g)) {
            Some(i) => i,
            None => {
                groups.push((t, BTreeMap::new()));
                groups.len() - 1
            }
        };
        groups[g]
            .1
            .entry((t.prompt, t.gen, t.depth))
            .or_default()
            .push(t);
    }
    let mut rows = Vec::new();
    for (g, tests_of) in &groups {
        let mut variant = g.flash.clone();
        for &s in &varying {
            variant += &format!(" {}{}", SETTINGS[s].0, g.settings[s]);
        }
        let mut used: Vec<Key> = Vec::new();
        let mut row = |workload: String, seq: Option<u64>, parts: Vec<(&str, &[&Test])>| {
            let mut metrics = BTreeMap::new();
            let mut cfg = Value::Null;
            for (what, ts) in parts {
                let ms: Vec<&Metric> = ts.iter().map(|t| &t.ms).collect();
                let tps: Vec<&Metric> = ts.iter().map(|t| &t.tps).collect();
                let (a, b) = match what {
                    "prefill" => ("prefill_ms", "prefill_tokens_per_s"),
                    "decode" => ("decode_ms", "decode_tokens_per_s"),
                    _ => ("ms", "tokens_per_s"),
                };
                metrics.insert(a.to_string(), pool(&ms));
                metrics.insert(b.to_string(), pool(&tps));
                if cfg.is_null() {
                    let t = ts[0];
                    cfg = config(&records[t.index], t.prompt, t.gen, t.depth, ts.len());
                }
            }
            rows.push(Row {
                workload,
                kind: "e2e".into(),
                backend: g.backend.clone(),
                variant: variant.clone(),
                dtype: g.dtype.clone(),
                family: None,
                seq_len: seq.map(|s| s as usize),
                metrics,
                config: cfg,
            });
        };
        // Prompt + generation at the prompt's depth: the `foveate bench` row.
        for (&(p, n, d), tg) in tests_of {
            if p != 0 || d == 0 {
                continue;
            }
            if let Some(pp) = tests_of.get(&(d, 0, 0)) {
                row(
                    format!("{} p{d} n{n}", g.model),
                    Some(d),
                    vec![("prefill", pp), ("decode", tg)],
                );
                used.extend([(d, 0, 0), (p, n, d)]);
            }
        }
        for (&(p, n, d), ts) in tests_of {
            if used.contains(&(p, n, d)) {
                continue;
            }
            let depth = if d > 0 {
                format!(" d{d}")
            } else {
                String::new()
            };
            match (p, n) {
                (p, 0) => row(
                    format!("{} p{p}{depth}", g.model),
                    Some(p),
                    vec![("prefill", ts)],
                ),
                (0, n) => row(format!("{} n{n} d{d}", g.model), None, vec![("decode", ts)]),
                (p, n) => row(
                    format!("{} p{p}+n{n}{depth}", g.model),
                    Some(p),
                    vec![("both", ts)],
                ),
            }
        }
    }
    let commits = distinct(records, "build_commit");
    let cpus = distinct(records, "cpu_info");
    Ok(ResultFile {
        schema: SCHEMA.into(),
        tool: "llama.cpp".into(),
        version: commits.join("; "),
        commit: commits.first().cloned(),
        date: distinct(records, "test_time")
            .first()
            .cloned()
            .unwrap_or_default(),
        device: cpus.join("; "),
        host: json!({ "cpu": cpus.join("; "), "gpu": distinct(records, "gpu_info").join("; "),
                      "build_number": records[0].get("build_number") }),
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_lose_their_format() {
        assert_eq!(model_name("/m/qwen2-0.5b-q4_k_m.gguf"), "qwen2-0.5b");
        assert_eq!(model_name("qwen2-0.5b-f32.gguf"), "qwen2-0.5b");
        assert_eq!(
            model_name("Qwen2-0.5B-Instruct.Q8_0.gguf"),
            "Qwen2-0.5B-Instruct"
        );
        assert_eq!(model_name("llava-1.5-7b-bf16.gguf"), "llava-1.5-7b");
        // No format at the end: the whole stem ("0.5b" is not one).
        assert_eq!(model_name("qwen2-0.5b.gguf"), "qwen2-0.5b");
        assert_eq!(model_name("model.bin"), "model.bin");
    }

    #[test]
    fn file_types_map_to_foveate_weight_formats() {
        let w = |s: &str| weights_dtype(s).unwrap();
        assert_eq!(w("qwen2 1B all F32"), "f32");
        assert_eq!(w("qwen2 ?B F16"), "f32/wf16");
        assert_eq!(w("qwen2 1B BF16"), "f32/wbf16");
        assert_eq!(w("llama 7B Q8_0"), "f32/wint8");
        assert_eq!(w("qwen2 1B Q4_0"), "f32/wint4");
        assert_eq!(w("qwen2 1B Q4_K - Medium"), "f32/wq4_k_m");
        assert_eq!(w("llama 7B IQ4_NL - 4.5 bpw"), "f32/wiq4_nl");
        assert_eq!(w("llama 7B (guessed) Q8_0"), "f32/wint8");
        assert_eq!(weights_dtype("qwen2"), None);
    }

    fn rec(p: u64, n: u64, d: u64, ns: &[u64]) -> Value {
        json!({"build_commit": "abc1234", "cpu_info": "CPU X", "backends": "CPU",
               "model_filename": "m/qwen2-0.5b-q8_0.gguf", "model_type": "qwen2 1B Q8_0",
               "n_threads": 2, "type_k": "f16", "type_v": "f16", "flash_attn": 1,
               "n_prompt": p, "n_gen": n, "n_depth": d, "samples_ns": ns})
    }

    #[test]
    fn prompt_and_generation_at_the_prompt_depth_pair_up_and_repeats_pool() {
        let v = json!([
            rec(256, 0, 0, &[100_000_000, 300_000_000]),
            rec(0, 32, 256, &[400_000_000]),
            rec(0, 32, 256, &[800_000_000]),
            rec(0, 16, 0, &[200_000_000])
        ]);
        let f = parse(&v, "l.json").unwrap();
        assert_eq!(f.tool, "llama.cpp");
        assert_eq!(f.commit.as_deref(), Some("abc1234"));
        let names: Vec<&str> = f.rows.iter().map(|r| r.workload.as_str()).collect();
        assert_eq!(names, ["qwen2-0.5b p256 n32", "qwen2-0.5b n16 d0"]);
        let r = &f.rows[0];
        assert_eq!(
            (r.backend.as_str(), r.variant.as_str(), r.dtype.as_str()),
            ("cpu", "flash", "f32/wint8")
        );
        assert_eq!(r.seq_len, Some(256));
        let m = |k: &str| &r.metrics[k];
        assert!((m("prefill_ms").mean - 200.0).abs() < 1e-9);
        assert_eq!(m("prefill_ms").n, 2);
        // Two records of one test pool: runs of 400 and 800 ms.
        assert!((m("decode_ms").mean - 600.0).abs() < 1e-9);
        assert!((m("decode_ms").sd - 282.842712474619).abs() < 1e-6);
        assert_eq!(m("decode_ms").n, 2);
        // 32 tokens in 0.4 s and 0.8 s: 80 and 40 tokens/s.
        assert!((m("decode_tokens_per_s").mean - 60.0).abs() < 1e-9);
        assert_eq!(f.rows[1].metrics.len(), 2);
    }

    #[test]
    fn settings_that_differ_name_the_variant() {
        let mut b = rec(64, 0, 0, &[1_000_000]);
        b["n_threads"] = json!(4);
        let f = parse(&json!([rec(64, 0, 0, &[1_000_000]), b]), "l.json").unwrap();
        let v: Vec<&str> = f.rows.iter().map(|r| r.variant.as_str()).collect();
        assert_eq!(v, ["flash t2", "flash t4"]);
    }

    #[test]
    fn bad_records_name_the_file_record_and_field() {
        let err = |v: Value| parse(&v, "bad.json").unwrap_err().to_string();
        let mut r = rec(64, 0, 0, &[1]);
        r.as_object_mut().unwrap().remove("n_gen");
        let e = err(json!([rec(64, 0, 0, &[1]), r]));
        assert!(e.contains("bad.json") && e.contains("[1].n_gen"), "{e}");
        let mut r = rec(64, 0, 0, &[1]);
        r["samples_ns"] = json!("fast");
        let e = err(json!([r]));
        assert!(e.contains("[0].samples_ns"), "{e}");
        let mut r = rec(64, 0, 0, &[1]);
        r["model_type"] = json!(7);
        assert!(err(json!([r])).contains("[0].model_type"));
        assert!(err(json!([])).contains("no tests"));
        assert!(err(json!([1])).contains("[0]"));
    }
}
