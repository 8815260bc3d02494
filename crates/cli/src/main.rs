//! The `foveate` binary. One module per subcommand; adding one is a `mod` line, an enum variant
//! and a match arm below.
//!
//! Errors: every failure prints one line `error: ...` on stderr and exits 1 (clap's usage errors
//! exit 2). A panic is a bug: the hook prints it as such and `main` exits 101.

/// The attention kernel family `run`, `eval` and `bench` use unless told otherwise.
pub(crate) const DEFAULT_ATTENTION: &str = "flash";

mod answerer;
mod backends;
mod cmd_bench;
mod cmd_compare;
mod cmd_cuda_compile;
mod cmd_diff;
mod cmd_eval;
mod cmd_preprocess;
mod cmd_quantize;
mod cmd_run;
mod cmd_score;
mod cmd_serve;
mod endpoint;
mod info;
mod llama_bench;
mod selftest;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// What a subcommand returns: its exit code, or an error printed as `error: ...`.
pub type CmdResult = Result<ExitCode, Box<dyn std::error::Error + Send + Sync>>;

#[derive(Parser)]
#[command(
    name = "foveate",
    version,
    about = "Vision-language models on hand-written kernels (CUDA, WGSL, CPU)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Which backends are usable here, and why the others are not.
    Info(info::Args),
    /// Times image encode, prefill and decode (or, with --roofline, kernels against the device peak).
    Bench(cmd_bench::Args),
    /// Side-by-side table (with ratios) and charts of several bench result files (llama-bench JSON too).
    Compare(cmd_compare::Args),
    /// Compiles every CUDA kernel with NVRTC (no GPU needed) and prints registers, shared memory and spills.
    CudaCompile(cmd_cuda_compile::Args),
    /// Runs the correctness matrix on a backend against the CPU oracle.
    Selftest(selftest::Args),
    /// Scores a predictions file (official submission format) with the task's official metric.
    Score(cmd_score::Args),
    /// Runs a task with a model (journaled, resumable, sharded) or merges finished shards.
    Eval(cmd_eval::Args),
    /// Runs one prompt + image through a LLaVA checkpoint and prints the answer.
    Run(cmd_run::Args),
    /// Writes the model's pixel_values for an image (safetensors) and prints the processor settings.
    Preprocess(cmd_preprocess::Args),
    /// Writes a quantised copy of a checkpoint (int8 / int4 linear weights and a manifest).
    Quantize(cmd_quantize::Args),
    /// Serves a model over an OpenAI-compatible HTTP API (chat completions with images, streaming).
    Serve(cmd_serve::Args),
    /// Compares two eval runs: protocol differences, score deltas per answer type, changed answers.
    Diff(cmd_diff::Args),
}

fn dispatch(cli: Cli) -> CmdResult {
    match cli.command {
        Command::Info(a) => info::run(a),
        Command::Bench(a) => cmd_bench::run(a),
        Command::Compare(a) => cmd_compare::run(a),
        Command::CudaCompile(a) => cmd_cuda_compile::run(a),
        Command::Selftest(a) => selftest::run(a),
        Command::Score(a) => cmd_score::run(a),
        Command::Eval(a) => cmd_eval::run(a),
        Command::Run(a) => cmd_run::run(a),
        Command::Preprocess(a) => cmd_preprocess::run(a),
        Command::Quantize(a) => cmd_quantize::run(a),
        Command::Serve(a) => cmd_serve::run(a),
        Command::Diff(a) => cmd_diff::run(a),
    }
}

/// The error and its sources, on one line (sources already quoted in the message are skipped).
fn error_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let m = s.to_string();
        if !line.contains(&m) {
            line.push_str(": ");
            line.push_str(&m);
        }
        src = s.source();
    }
    line.replace('\n', " ")
}

/// Runs the command on a worker of rayon's global pool, whose threads (one per core) are the cpu
/// backend's: its parallel loops then start on the calling worker with the other workers
/// stealing, and its small ops run right there. Called from outside the pool, every parallel op
/// would wake a worker, put the caller to sleep and wake it again, and the idle workers, as many
/// as the cores, would compete with the caller for them (easy-VQA on 2 cores: a quarter of the
/// CPU time went to rayon's yield loops and futex wake-ups).
///
/// `serve` is the exception: it blocks for the server's lifetime, so it stays off the pool and
/// its model thread joins the pool itself (foveate_serve), leaving every worker to the model.
///
/// `bench -t N` sizes that pool to N threads, so the cpu backend still runs on the command's pool.
/// On a pool of its own (as before 2026-12-08), every parallel op crossed from the command's
/// worker to the backend's pool, and the waiting worker spun and yielded on a core the backend
/// needed: Qwen2-0.5B int4 decode on 2 cores ran at 68-73 tok/s with `-t 2` against 89 without
/// (docs/BENCHMARKS-llamacpp.md, run 10).
fn on_pool(cli: Cli) -> CmdResult {
    if matches!(cli.command, Command::Serve(_)) {
        return dispatch(cli);
    }
    if let Command::Bench(a) = &cli.command {
        if let Some(n) = a.threads() {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n.max(1))
                .build_global()
                .map_err(|e| format!("-t {n}: cannot size the thread pool: {e}"))?;
        }
    }
    rayon::scope(|_| dispatch(cli))
}

/// Set when stdout's reader went away mid-print (`foveate info | head`): not a bug, no message.
static STDOUT_CLOSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Is this panic `println!` failing because stdout is a pipe whose reader has exited? (Rust
/// ignores SIGPIPE, so the write fails with EPIPE and `println!` panics with this message.)
fn is_broken_stdout(info: &std::panic::PanicHookInfo) -> bool {
    let p = info.payload();
    let msg = p
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| p.downcast_ref::<&str>().copied())
        .unwrap_or("");
    msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe")
}

fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        if is_broken_stdout(info) {
            STDOUT_CLOSED.store(true, std::sync::atomic::Ordering::Relaxed);
            return;
        }
        eprintln!("error: internal error (a bug in foveate, please report it): {info}");
    }));
    // clap prints help/version (exit 0) and usage errors (exit 2) itself.
    let cli = Cli::parse();
    match std::panic::catch_unwind(move || on_pool(cli)) {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            eprintln!("error: {}", error_line(e.as_ref()));
            ExitCode::from(1)
        }
        // 128 + SIGPIPE: what a shell reports for a writer whose pipe was closed.
        Err(_) if STDOUT_CLOSED.load(std::sync::atomic::Ordering::Relaxed) => ExitCode::from(141),
        Err(_) => ExitCode::from(101),
    }
}
