//! `foveate bench`: llama-bench-style end-to-end timings (image encode, prefill, decode, time to
//! first token, peak memory; mean ± sd over repetitions), one row per configuration, and
//! `--roofline`: the device's measured GEMM FLOP/s and copy GB/s with each kernel as a fraction.
//! JSON output follows `foveate_benches::results` (the schema `foveate compare` and the PyTorch
//! baseline share).

use crate::{backends, CmdResult};
use foveate_benches::e2e::{builtin_plan, E2eModel};
use foveate_benches::results::{self, Metric, ResultFile, Row};
use foveate_benches::roofline::{self, Size};
use foveate_benches::stats::Stat;
use foveate_benches::{devices, shapes};
use foveate_core::{Backend, DType, Error};
use foveate_graph::AttentionKind;
use foveate_models::budget::{parse_size, Budget, Estimate, LoadPlan, Workload};
use foveate_models::formats::Formats;
use foveate_models::model::{formats_for, resolve_formats};
use foveate_models::Checkpoint;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct Args {
    /// A LLaVA or Qwen2-VL checkpoint directory, or a builtin shape with random weights:
    /// vit-b16, vit-l14-336, qwen2-0.5b, llava-qwen2-0.5b, llava-1.5-7b, qwen2-vl-2b, qwen2.5-vl-3b.
    #[arg(short = 'm', long, required_unless_present = "roofline")]
    model: Option<String>,
    /// Backends, comma separated (cpu, wgpu, cuda).
    #[arg(short = 'b', long, value_delimiter = ',', default_value = "cpu")]
    backend: Vec<String>,
    /// Compute dtypes, comma separated.
    #[arg(short = 'd', long, value_delimiter = ',', default_value = "f32")]
    dtype: Vec<String>,
    /// Weight formats of the linear layers, comma separated (f32, f16, bf16, int8, int4; default:
    /// the compute dtype). The LM head is int8 under int8/int4; norms and the vision tower keep the
    /// compute dtype, but on the cpu under f32 compute the token embeddings take f16 (int8/int4) or
    /// the 16-bit weight format, and the vision linears f16 under int8/int4 (docs/ARCHITECTURE.md,
    /// "Weight formats").
    #[arg(short = 'w', long, value_delimiter = ',')]
    weights: Vec<String>,
    /// KV cache dtype: f32, f16 or bf16 (default: the compute dtype). A 16-bit cache under f32
    /// compute runs on the cpu backend only.
    #[arg(long = "kv-dtype")]
    kv_dtype: Option<String>,
    /// Attention kernel families, comma separated (naive, flash, block-sparse).
    #[arg(short = 'a', long, value_delimiter = ',', default_value = crate::DEFAULT_ATTENTION)]
    attention: Vec<String>,
    /// Prompt lengths (text tokens), comma separated.
    #[arg(
        short = 'p',
        long = "prompt",
        value_delimiter = ',',
        default_value = "512"
    )]
    prompt: Vec<usize>,
    /// Decode steps, comma separated.
    #[arg(
        short = 'n',
        long = "decode",
        value_delimiter = ',',
        default_value = "128"
    )]
    decode: Vec<usize>,
    /// Requests decoded together (comma separated): prompts prefilled as one ragged forward, then
    /// one decode step for all of them (what `eval --batch-size` runs). Tokens/s count every
    /// request's tokens.
    #[arg(
        short = 'B',
        long = "batch",
        value_delimiter = ',',
        default_value = "1"
    )]
    batch: Vec<usize>,
    /// Timed repetitions per configuration.
    #[arg(short = 'r', long, default_value_t = 5)]
    reps: usize,
    /// Untimed warm-up runs per configuration.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Output format: md, json or csv.
    #[arg(short = 'o', long, default_value = "md")]
    output: String,
    /// Write the output to this file instead of stdout.
    #[arg(long = "out")]
    out: Option<PathBuf>,
    /// CPU threads (cpu backend only; default: all cores).
    #[arg(short = 't', long)]
    threads: Option<usize>,
    /// Override the layer count of a builtin shape (both towers), for quick runs.
    #[arg(long)]
    layers: Option<usize>,
    /// Override the vocabulary of a builtin shape's language model (e.g. to fit an adapter that
    /// binds at most 128 MiB per buffer, like lavapipe: Qwen2-0.5B's f32 embedding is 519 MiB).
    #[arg(long)]
    vocab: Option<usize>,
    /// Skip the image encode.
    #[arg(long)]
    no_image: bool,
    /// Measure the device's peak GEMM FLOP/s and copy GB/s and report every kernel family
    /// (GEMMs, fused MLP, patch embedding, attention per variant, norms and elementwise ops) as a
    /// fraction of the one that bounds it.
    #[arg(long)]
    roofline: bool,
    /// With --roofline: tiny shapes and short timings (a smoke run, seconds; not a measurement).
    #[arg(long, requires = "roofline")]
    quick: bool,
    /// Host memory a load may take (e.g. 8G, 8GiB, 500M, plain bytes; default: MemAvailable). A
    /// load whose estimate (weights, load temporaries, KV caches, activations) is over the
    /// smaller of this and MemAvailable is refused before anything is allocated.
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    max_memory: Option<u64>,
    /// Print the HF `config.json` of the builtin shape --model (with --layers / --vocab applied)
    /// and exit; scripts/llamacpp-compare.sh writes GGUF files of it.
    #[arg(long, requires = "model")]
    print_config: bool,
}

impl Args {
    /// `-t N`: the size of the rayon pool the command runs on (set by `main` before it starts).
    pub(crate) fn threads(&self) -> Option<usize> {
        self.threads
    }
}

/// The backend `name`; the cpu one on a pool of its own only when `-t` differs from the pool this
/// command runs on (which `main` sizes to `-t`): a cpu backend on another pool than its caller's
/// hands every parallel op across pools while the calling worker spins on a core.
fn open(name: &str, threads: Option<usize>) -> foveate_core::Result<Arc<dyn Backend>> {
    match (name, own_pool(threads)) {
        ("cpu", Some(n)) => Ok(Arc::new(foveate_cpu::CpuBackend::fast_with_threads(n))),
        _ => Ok(Arc::from(backends::open(name)?)),
    }
}

/// The thread count of a pool of the cpu backend's own for `-t`, or `None` when the pool the
/// caller runs on already has that many threads (or no `-t` was given).
fn own_pool(threads: Option<usize>) -> Option<usize> {
    threads
        .map(|n| n.max(1))
        .filter(|&n| n != rayon::current_num_threads())
}

/// Peak resident memory of this process (VmHWM), in bytes.
fn vm_hwm() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let l = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    l.split_whitespace()
        .nth(1)?
        .parse::<u64>()
        .ok()
        .map(|kb| kb * 1024)
}

/// Resets VmHWM to the current RSS (Linux `clear_refs` 5); best effort.
fn reset_hwm() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn mib(b: usize) -> f64 {
    b as f64 / (1u64 << 20) as f64
}

fn ms(s: Stat) -> Metric {
    Metric::new(s, "ms")
}

struct Config<'a> {
    backend: &'a str,
    dtype: DType,
    /// `--weights` (None: the compute dtype, or a quantised checkpoint's format).
    weights: Option<DType>,
    /// `--kv-dtype` (None: the compute dtype).
    kv: Option<DType>,
    attention: AttentionKind,
    prompt: usize,
    decode: usize,
    batch: usize,
}

/// The plan, estimate and budget check of one configuration's load, then the load: a load over
/// budget is refused before anything is allocated.
fn load(
    a: &Args,
    model: &str,
    backend: Arc<dyn Backend>,
    c: &Config,
) -> foveate_core::Result<(E2eModel, Estimate)> {
    let on_host = backend.on_host();
    let budget = Budget::host(a.max_memory);
    if let Some(mut b) = shapes::builtin(model) {
        if let (Some(v), Some(t)) = (a.vocab, b.text.as_mut()) {
            t.vocab = v.max(1);
        }
        let formats = formats_for(
            backend.as_ref(),
            Formats::new(c.dtype, c.weights.unwrap_or(c.dtype)),
        )
        .with_kv(c.kv);
        let plan = builtin_plan(&b, a.layers)?;
        let est = plan.estimate(formats, on_host, c.attention, &workload(a, &plan, c));
        plan.check(&est, &budget)?;
        let m = E2eModel::builtin_with(&b, a.layers, backend, formats, c.attention)?;
        return Ok((m, est));
    }
    let dir = Path::new(model);
    if !dir.is_dir() {
        return Err(Error::Msg(format!(
            "--model `{model}` is neither a checkpoint directory nor a builtin shape ({})",
            shapes::builtin_names().join(", ")
        )));
    }
    let ck = Checkpoint::open(dir)?;
    let formats =
        formats_for(backend.as_ref(), resolve_formats(&ck, c.dtype, c.weights)?).with_kv(c.kv);
    let plan = LoadPlan::checkpoint(&ck)?;
    let est = plan.estimate(formats, on_host, c.attention, &workload(a, &plan, c));
    plan.check(&est, &budget)?;
    Ok((
        E2eModel::load_checkpoint(ck, backend, formats, c.attention)?,
        est,
    ))
}

/// What one configuration runs: `batch` caches of `prompt + decode` tokens, one image encoded
/// (outside the prompt) unless `--no-image`.
fn workload(a: &Args, plan: &LoadPlan, c: &Config) -> Workload {
    Workload {
        sequences: c.batch,
        text_tokens: c.prompt,
        new_tokens: c.decode,
        images_per_sequence: 0,
        images_at_once: usize::from(plan.dims.vision_rows > 0 && !a.no_image),
    }
}

fn run_config(a: &Args, model: &str, c: &Config) -> foveate_core::Result<Row> {
    let backend = open(c.backend, a.threads)?;
    reset_hwm();
    let t0 = std::time::Instant::now();
    let (m, est) = load(a, model, backend.clone(), c)?;
    // Wall time of the load: plan, estimate, read, convert / quantise, upload.
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;
    // Peak resident memory through the load (cpu: the weights and one tensor's temporaries).
    let load_peak = if backend.memory_stats().is_none() {
        vm_hwm()
    } else {
        None
    };
    let image = m.has_vision() && !a.no_image;
    let text = m.has_text();
    let (mut enc, mut pre, mut dec) = (vec![], vec![], vec![]);
    // Backend work counters over the timed decodes (after the warm-up runs).
    let mut work: Option<foveate_core::Counters> = None;
    let mut steps = 0usize;
    for i in 0..a.warmup + a.reps.max(1) {
        let e = if image { Some(m.encode()?) } else { None };
        let (p, d) = if text {
            let mut p = m.prefill_batch(c.batch, c.prompt, c.decode, i as u64)?;
            let before = backend.counters();
            let d = m.decode(&mut p, c.decode)?;
            if let (true, Some(b), Some(now)) = (i >= a.warmup, before, backend.counters()) {
                let w = work.get_or_insert_with(Default::default);
                let n = now.since(&b);
                (w.launches, w.submits, w.host_syncs, w.allocations) = (
                    w.launches + n.launches,
                    w.submits + n.submits,
                    w.host_syncs + n.host_syncs,
                    w.allocations + n.allocations,
                );
                steps += c.decode;
            }
            (Some(p.ms), Some(d))
        } else {
            (None, None)
        };
        if i >= a.warmup {
            enc.extend(e);
            pre.extend(p);
            dec.extend(d);
        }
        eprintln!(
            "bench: {model} {} {}{}{} {} b{} run {}{}: encode {} prefill {} decode {}",
            c.backend,
            c.dtype,
            c.weights.map_or(String::new(), |w| format!(" weights {w}")),
            c.kv.map_or(String::new(), |k| format!(" kv {k}")),
            c.attention.name(),
            c.batch,
            i + 1,
            if i < a.warmup { " (warm-up)" } else { "" },
            e.map_or("-".into(), |v| format!("{v:.1} ms")),
            p.map_or("-".into(), |v| format!("{v:.1} ms")),
            d.map_or("-".into(), |v| format!("{v:.1} ms"))
        );
    }
    let mut metrics = BTreeMap::new();
    metrics.insert("load_ms".into(), Metric::value(load_ms, "ms"));
    if image {
        metrics.insert("image_encode_ms".into(), ms(Stat::of(&enc)));
    }
    if text {
        metrics.insert("prefill_ms".into(), ms(Stat::of(&pre)));
        let tps: Vec<f64> = pre
            .iter()
            .map(|t| (c.batch * c.prompt) as f64 / (t / 1e3))
            .collect();
        metrics.insert(
            "prefill_tokens_per_s".into(),
            Metric::new(Stat::of(&tps), "tokens/s"),
        );
        if c.decode > 0 {
            metrics.insert("decode_ms".into(), ms(Stat::of(&dec)));
            let tps: Vec<f64> = dec
                .iter()
                .map(|t| (c.batch * c.decode) as f64 / (t / 1e3))
                .collect();
            metrics.insert(
                "decode_tokens_per_s".into(),
                Metric::new(Stat::of(&tps), "tokens/s"),
            );
        }
    }
    if let (Some(w), true) = (work, steps > 0) {
        for (name, v) in [
            ("decode_launches_per_step", w.launches),
            ("decode_submits_per_step", w.submits),
            ("decode_host_syncs_per_step", w.host_syncs),
            ("decode_allocations_per_step", w.allocations),
        ] {
            metrics.insert(
                name.into(),
                Metric::value(v as f64 / steps as f64, "per step"),
            );
        }
    }
    // Time to first token: image encode + prefill (through the first sampled token).
    let ttft: Vec<f64> = (0..a.reps.max(1))
        .map(|i| enc.get(i).copied().unwrap_or(0.0) + pre.get(i).copied().unwrap_or(0.0))
        .collect();
    metrics.insert("ttft_ms".into(), ms(Stat::of(&ttft)));
    let peak = match backend.memory_stats() {
        Some(s) => Some(s.peak_bytes),
        None => vm_hwm(),
    };
    if let Some(p) = peak {
        metrics.insert(
            "peak_memory_mib".into(),
            Metric::value(p as f64 / (1u64 << 20) as f64, "MiB"),
        );
    }
    if let Some(p) = load_peak {
        metrics.insert(
            "load_peak_memory_mib".into(),
            Metric::value(p as f64 / (1u64 << 20) as f64, "MiB"),
        );
    }
    let weights_by_format: serde_json::Map<String, serde_json::Value> = m
        .weight_formats
        .0
        .iter()
        .map(|(d, b)| (d.name().to_string(), json!(*b as f64 / (1u64 << 20) as f64)))
        .collect();
    let workload = if text && c.batch > 1 {
        format!("{} p{} n{} b{}", m.name, c.prompt, c.decode, c.batch)
    } else if text {
        format!("{} p{} n{}", m.name, c.prompt, c.decode)
    } else {
        m.name.clone()
    };
    Ok(Row {
        workload,
        kind: "e2e".into(),
        backend: c.backend.into(),
        variant: c.attention.name().into(),
        dtype: match c.weights {
            Some(w) if w != c.dtype => format!("{}/w{}", c.dtype.name(), w.name()),
            _ => c.dtype.name().into(),
        },
        family: None,
        seq_len: text.then_some(c.prompt),
        metrics,
        config: json!({
            "model": model, "prompt": c.prompt, "decode": c.decode, "batch": c.batch, "reps": a.reps, "warmup": a.warmup,
            "threads": a.threads, "layers": a.layers, "vocab": a.vocab, "image": image, "weights_mib": m.weight_bytes as f64 / (1u64 << 20) as f64,
            "weights": c.weights.map(|w| w.name()), "weights_mib_by_format": weights_by_format,
            "kv_dtype": c.kv.unwrap_or(c.dtype).name(),
            "device": backend.device_name(),
            "memory_estimate_mib": {
                "host": mib(est.host_bytes() as usize), "weights": mib(est.weights.total()),
                "load_temporary": mib(est.temporary), "kv_cache": mib(est.kv_cache),
                "activations": mib(est.activations),
            },
        }),
    })
}

/// The roofline on one backend: real model shapes, reduced ones on a CPU rasteriser adapter,
/// tiny ones with `--quick`.
fn roofline(a: &Args, name: &str) -> foveate_core::Result<(Vec<Row>, String)> {
    let b = open(name, a.threads)?;
    let dev = b.device_name();
    let size = if a.quick {
        Size::Quick
    } else if b.name() != "cpu" && devices::is_cpu_rasteriser(&dev) {
        eprintln!("bench: {name} adapter `{dev}` is a CPU rasteriser: roofline on reduced shapes (at most 32 rows and 8192 columns, sequences up to 128)");
        Size::Reduced
    } else {
        Size::Full
    };
    let host_threads = (b.name() == "cpu").then(|| {
        a.threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    });
    let rows = roofline::measure(
        b.as_ref(),
        &roofline::Options {
            reps: a.reps,
            size,
            host_threads,
        },
    )?;
    Ok((rows, dev))
}

fn render(file: &ResultFile, format: &str) -> Result<String, String> {
    match format {
        "json" => Ok(serde_json::to_string_pretty(file).expect("serialisable") + "\n"),
        "md" | "csv" => {
            let md = format == "md";
            let mut names: Vec<String> = Vec::new();
            for r in &file.rows {
                for k in r.metrics.keys() {
                    if !names.contains(k) {
                        names.push(k.clone());
                    }
                }
            }
            let head: Vec<String> = ["workload", "backend", "variant", "dtype"]
                .iter()
                .map(|s| s.to_string())
                .chain(names.iter().cloned())
                .collect();
            let mut out = String::new();
            let sep = if md { " | " } else { "," };
            let line = |cells: &[String]| {
                if md {
                    format!("| {} |\n", cells.join(sep))
                } else {
                    format!("{}\n", cells.join(sep))
                }
            };
            out += &line(&head);
            if md {
                out += &line(&vec!["---".to_string(); head.len()]);
            }
            for r in &file.rows {
                let mut cells = vec![
                    r.workload.clone(),
                    r.backend.clone(),
                    r.variant.clone(),
                    r.dtype.clone(),
                ];
                for k in &names {
                    cells.push(match r.metrics.get(k) {
                        Some(m) if md && m.n > 1 => format!("{:.2} ± {:.2}", m.mean, m.sd),
                        Some(m) if md => format!("{:.3}", m.mean),
                        Some(m) => format!("{}", m.mean),
                        None => {
                            if md {
                                "-".into()
                            } else {
                                String::new()
                            }
                        }
                    });
                }
                out += &line(&cells);
            }
            Ok(out)
        }
        other => Err(format!(
            "--output `{other}` is not supported (supported: md, json, csv)"
        )),
    }
}

/// `--print-config`: the builtin's config.json as `foveate bench` would load it.
fn print_config(a: &Args, model: &str) -> CmdResult {
    let mut b = shapes::builtin(model).ok_or_else(|| {
        Error::Msg(format!(
            "--print-config: `{model}` is not a builtin shape ({})",
            shapes::builtin_names().join(", ")
        ))
    })?;
    if let (Some(v), Some(t)) = (a.vocab, b.text.as_mut()) {
        t.vocab = v.max(1);
    }
    let text = serde_json::to_string_pretty(&b.config_json(a.layers)).expect("serialisable");
    match &a.out {
        Some(p) => std::fs::write(p, text + "\n").map_err(|e| Error::io(p, e))?,
        None => println!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run(a: Args) -> CmdResult {
    if let (true, Some(model)) = (a.print_config, &a.model) {
        return print_config(&a, model);
    }
    let mut rows = Vec::new();
    let mut devices = Vec::new();
    if a.roofline {
        for name in &a.backend {
            let (r, dev) = roofline(&a, name)?;
            rows.extend(r);
            devices.push(dev);
        }
    }
    if let Some(model) = &a.model {
        let kv = a
            .kv_dtype
            .as_deref()
            .map(crate::answerer::parse_kv)
            .transpose()?;
        for be in &a.backend {
            for dt in &a.dtype {
                let dtype: DType = dt
                    .parse()
                    .map_err(|e: String| Error::Msg(format!("--dtype: {e}")))?;
                let weights: Vec<Option<DType>> = if a.weights.is_empty() {
                    vec![None]
                } else {
                    a.weights
                        .iter()
                        .map(|w| crate::answerer::parse_weights(w).map(Some))
                        .collect::<Result<_, _>>()?
                };
                for (at, weights) in a
                    .attention
                    .iter()
                    .flat_map(|at| weights.iter().map(move |w| (at, *w)))
                {
                    let attention: AttentionKind = at
                        .parse()
                        .map_err(|e: String| Error::Msg(format!("--attention: {e}")))?;
                    for &prompt in &a.prompt {
                        for &decode in &a.decode {
                            for &batch in &a.batch {
                                if batch == 0 {
                                    return Err(Error::Msg(
                                        "--batch: a batch of 0 requests".into(),
                                    )
                                    .into());
                                }
                                let c = Config {
                                    backend: be,
                                    dtype,
                                    weights,
                                    kv,
                                    attention,
                                    prompt,
                                    decode,
                                    batch,
                                };
                                let row = run_config(&a, model, &c)?;
                                let dev = row.config["device"]
                                    .as_str()
                                    .unwrap_or_default()
                                    .to_string();
                                if !devices.contains(&dev) {
                                    devices.push(dev);
                                }
                                rows.push(row);
                            }
                        }
                    }
                }
            }
        }
    }
    let file = ResultFile::new(devices.join("; "), results::host_info(), rows);
    let text = render(&file, &a.output)?;
    match &a.out {
        Some(p) => std::fs::write(p, text).map_err(|e| Error::io(p, e))?,
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::own_pool;

    /// `-t N` on a pool of N threads keeps the backend on it; another N, or a pool of another
    /// size, gets a pool of its own (the 2026-12-08 bug: always a pool of its own).
    #[test]
    fn the_backend_shares_a_pool_of_the_asked_size() {
        let pool = |n| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap()
        };
        pool(2).install(|| {
            assert_eq!(own_pool(Some(2)), None);
            assert_eq!(own_pool(None), None);
            assert_eq!(own_pool(Some(3)), Some(3));
        });
        pool(1).install(|| {
            assert_eq!(own_pool(Some(0)), None, "-t 0 counts as 1");
            assert_eq!(own_pool(Some(2)), Some(2));
        });
    }
}
