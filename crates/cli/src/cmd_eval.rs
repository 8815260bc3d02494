//! `foveate eval`: run a task over a dataset with a model, journaled and resumable, or merge the
//! output folders of finished shards (`--merge DIR...`).
//!
//! The model side is [`build_answerer`]: until the model executor is linked in, running a model
//! fails with a clear message; `--merge` works now. Nothing here invents answers.

use crate::answerer::{MemoryLimit, PLANNED_PROMPT_TOKENS};
use crate::CmdResult;
use foveate_eval::{data, runner, Answerer, DatasetPaths, RunOptions, TaskKind, TaskSpec};
use foveate_models::budget::Workload;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// vqav2 | textvqa | docvqa | easy-vqa
    #[arg(long)]
    task: String,
    /// A task spec file replacing the shipped eval/tasks/<task>.toml.
    #[arg(long)]
    task_file: Option<PathBuf>,
    /// Ground truth (see `foveate score --help`); for easy-VQA the data dir (default: the split
    /// shipped in eval/data/easy-vqa, else the installed `easy-vqa` package's test split).
    #[arg(long, visible_alias = "data")]
    annotations: Option<PathBuf>,
    /// VQAv2 questions file (needed to run: it holds the question text).
    #[arg(long)]
    questions: Option<PathBuf>,
    /// Image folder (default: next to the annotations).
    #[arg(long)]
    images: Option<PathBuf>,
    /// Model to run (Hugging Face folder).
    #[arg(long, conflicts_with = "endpoint")]
    model: Option<PathBuf>,
    /// Take the generations from this OpenAI-compatible server instead (`http://HOST:PORT` or
    /// `.../v1`): foveate serve, llama-server, vLLM. Same task spec, prompts, post-processing,
    /// journal and scorer.
    #[arg(long, requires = "served_model")]
    endpoint: Option<String>,
    /// The model name the endpoint serves (`GET /v1/models`).
    #[arg(long)]
    served_model: Option<String>,
    /// Requests in flight to the endpoint.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Tries after the first for a request that failed on a connection error, a timeout, a 5xx or
    /// a 429 (other 4xx are not retried).
    #[arg(long, default_value_t = 4)]
    retries: usize,
    /// Seconds one request to the endpoint may take.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Backend for the model (cuda, wgpu, cpu).
    #[arg(long, default_value = "cpu")]
    backend: String,
    /// Compute dtype: f32, f16, bf16.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// KV cache dtype: f32, f16 or bf16 (default: the compute dtype). A 16-bit cache under f32
    /// compute halves the cache's memory and the bytes attention reads per decoded token (cpu
    /// backend only; docs/ARCHITECTURE.md, "KV cache dtype").
    #[arg(long = "kv-dtype")]
    kv_dtype: Option<String>,
    /// Weight format of the linear layers: f32, f16, bf16, int8, int4 (default: the compute dtype,
    /// or a quantised checkpoint's format). The LM head is int8 under int8/int4; norms and the
    /// vision tower keep the compute dtype, but on the cpu under f32 compute the token embeddings
    /// take f16 (int8/int4) or the 16-bit weight format, and the vision linears f16 under int8/int4
    /// (docs/ARCHITECTURE.md, "Weight formats").
    #[arg(long)]
    weights: Option<String>,
    /// Attention variant: naive, flash, block-sparse.
    #[arg(long, default_value = crate::DEFAULT_ATTENTION)]
    attention: String,
    /// Questions answered together (continuous batching); default: 16 on cpu and wgpu, 64 on cuda.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Only the first N questions.
    #[arg(long)]
    limit: Option<usize>,
    /// This run's shard, `I/N` (0-based index).
    #[arg(long, default_value = "0/1", value_parser = parse_shard)]
    shard: (usize, usize),
    /// Output folder (journal, submission, results).
    /// (default: eval/runs/<task>-<UTC date>-<time>, a new folder per run).
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Continue an interrupted run in the output folder.
    #[arg(long)]
    resume: bool,
    /// Merge these finished shard folders into --output instead of running a model.
    #[arg(long, num_args = 1..)]
    merge: Vec<PathBuf>,
    /// Print the results JSON instead of the table.
    #[arg(long)]
    json: bool,
    /// Host memory the model's load may take (e.g. 8G, 8GiB, 500M, plain bytes; default:
    /// MemAvailable): a load whose estimate (for --batch-size questions at once) is over it is
    /// refused before any weight is allocated.
    #[arg(long, value_parser = foveate_models::budget::parse_size, value_name = "SIZE")]
    max_memory: Option<u64>,
}

fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let (i, n) = s
        .split_once('/')
        .ok_or_else(|| format!("shard `{s}`: expected I/N, e.g. 0/4"))?;
    let i: usize = i
        .trim()
        .parse()
        .map_err(|_| format!("shard `{s}`: bad index"))?;
    let n: usize = n
        .trim()
        .parse()
        .map_err(|_| format!("shard `{s}`: bad count"))?;
    if n == 0 || i >= n {
        return Err(format!("shard `{s}`: need 0 <= I < N"));
    }
    Ok((i, n))
}

/// The model named by `--model` on `--backend`, as an [`Answerer`]; `max_new_tokens` is the
/// task's (for the memory estimate).
fn build_answerer(
    args: &Args,
    max_new_tokens: usize,
) -> Result<Box<dyn Answerer>, Box<dyn std::error::Error + Send + Sync>> {
    if let Some(url) = &args.endpoint {
        let name = args
            .served_model
            .as_deref()
            .ok_or("--endpoint needs --served-model NAME")?;
        let timeout = std::time::Duration::from_secs(args.timeout.max(1));
        return Ok(Box::new(crate::endpoint::EndpointAnswerer::connect(
            url,
            name,
            args.concurrency,
            args.retries,
            timeout,
        )?));
    }
    let dir = args.model.as_deref().ok_or("--model DIR (or --endpoint URL --served-model NAME) is required to run an evaluation (or use --merge)")?;
    let batch = match args.batch_size {
        Some(0) => return Err("--batch-size: must be at least 1".into()),
        Some(b) => b,
        None => crate::answerer::default_batch_size(&args.backend),
    };
    let model = crate::answerer::load_model(
        dir,
        &args.backend,
        &args.dtype,
        &args.attention,
        args.weights.as_deref(),
        args.kv_dtype.as_deref(),
        MemoryLimit {
            max_memory: args.max_memory,
            workload: Workload {
                sequences: batch,
                text_tokens: PLANNED_PROMPT_TOKENS,
                new_tokens: max_new_tokens,
                images_per_sequence: 1,
                images_at_once: batch,
            },
        },
    )?;
    Ok(Box::new(crate::answerer::ModelAnswerer::new(
        model,
        dir.display().to_string(),
        &args.attention,
        batch,
    )?))
}

/// `eval/runs/<task>-YYYYMMDD-HHMMSS` (UTC), with `-2`, `-3`... if that folder exists already.
fn default_output(task: TaskKind) -> PathBuf {
    let stamp: String = foveate_core::stamp::utc_now()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let base = format!("eval/runs/{task}-{}-{}", &stamp[..8], &stamp[8..]);
    let mut p = PathBuf::from(&base);
    let mut n = 2;
    while p.exists() {
        p = PathBuf::from(format!("{base}-{n}"));
        n += 1;
    }
    p
}

/// easy-VQA ships with the repository; use that copy when no data dir is given.
fn default_annotations(task: TaskKind, given: &Option<PathBuf>) -> Option<PathBuf> {
    let shipped = PathBuf::from("eval/data/easy-vqa");
    match (task, given) {
        (TaskKind::EasyVqa, None) if shipped.join("test").is_dir() => Some(shipped),
        _ => given.clone(),
    }
}

pub fn run(args: Args) -> CmdResult {
    let task = TaskKind::parse(&args.task)?;
    let spec = match &args.task_file {
        Some(f) => TaskSpec::from_file(f)?,
        None => TaskSpec::builtin(task),
    };
    if spec.task != task {
        return Err(format!("--task {task} but the task file is for {}", spec.task).into());
    }
    let paths = DatasetPaths {
        annotations: default_annotations(task, &args.annotations),
        questions: args.questions.clone(),
        image_root: args.images.clone(),
    };
    let ds = data::load(task, &paths)?;
    let output = args.output.clone().unwrap_or_else(|| default_output(task));
    let summary = if !args.merge.is_empty() {
        runner::merge(&ds, &args.merge, &output)?
    } else {
        // Every image is checked before the model loads or anything is written.
        runner::check_images(&ds, args.limit, args.shard)?;
        let mut answerer = build_answerer(&args, spec.max_new_tokens)?;
        let opts = RunOptions {
            limit: args.limit,
            shard: args.shard,
            out_dir: output.clone(),
            resume: args.resume,
            progress: true,
        };
        runner::run_eval(&spec, &ds, answerer.as_mut(), &opts)?
    };
    if args.json {
        println!("{}", std::fs::read_to_string(&summary.results_path)?);
    } else {
        print!("{}", summary.table);
        if let Some(url) = &args.endpoint {
            println!(
                "{:<9}  {url} ({}), {} in flight",
                "endpoint",
                args.served_model.as_deref().unwrap_or(""),
                args.concurrency
            );
        } else if args.merge.is_empty() {
            let (b, why) = match args.batch_size {
                Some(b) => (b, "--batch-size".to_string()),
                None => (
                    crate::answerer::default_batch_size(&args.backend),
                    format!("the {} default; --batch-size N to change it", args.backend),
                ),
            };
            println!("{:<9}  {b} ({why})", "batch");
        }
        println!("results: {}", summary.results_path.display());
    }
    if summary.failed > 0 {
        eprintln!("error: {} question(s) failed for good (journaled as failed and scored as wrong): rerun with --resume to ask them again", summary.failed);
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
