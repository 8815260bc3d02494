//! `foveate serve`: the model behind an OpenAI-compatible HTTP API (see `foveate-serve`).

use crate::answerer::{MemoryLimit, PLANNED_PROMPT_TOKENS};
use crate::CmdResult;
use foveate_models::budget::Workload;
use foveate_serve::request::Limits;
use foveate_serve::ServeOptions;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Model to serve (Hugging Face folder).
    #[arg(long)]
    model: PathBuf,
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
    /// Requests decoding together (continuous batching); default: 16 on cpu and wgpu, 64 on cuda.
    #[arg(long)]
    batch_size: Option<usize>,
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// 0 picks a free port (the address is printed).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// The model name clients send (default: the model folder's name).
    #[arg(long)]
    served_model_name: Option<String>,
    /// Requests waiting for a batch slot (being read or queued); one more gets a 429.
    #[arg(long, default_value_t = 256)]
    max_queue: usize,
    /// Largest request body in bytes; a larger one gets a 413.
    #[arg(long, default_value_t = 20 << 20)]
    max_body_bytes: usize,
    /// Largest image (width x height, read from its header before decoding); a larger one gets a 413.
    #[arg(long, default_value_t = 16_000_000)]
    max_image_pixels: u64,
    /// Images per request (this runtime takes at most one).
    #[arg(long, default_value_t = 1)]
    max_images: usize,
    /// Also accept `file://PATH` image URLs, for files under DIR only.
    #[arg(long, value_name = "DIR")]
    allow_file_urls: Option<PathBuf>,
    /// Host memory the load may take (e.g. 8G, 8GiB, 500M, plain bytes; default: MemAvailable):
    /// a load whose estimate (for --batch-size requests of one image, 128 prompt and 256 new
    /// tokens) is over it is refused before any weight is allocated.
    #[arg(long, value_parser = foveate_models::budget::parse_size, value_name = "SIZE")]
    max_memory: Option<u64>,
}

/// Tokens a served request is planned to generate (requests may ask for more, up to the context
/// window: the estimate covers the typical request, not the longest).
const PLANNED_NEW_TOKENS: usize = 256;

pub fn run(args: Args) -> CmdResult {
    let name = match &args.served_model_name {
        Some(n) => n.clone(),
        None => args
            .model
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| args.model.display().to_string()),
    };
    let batch_size = match args.batch_size {
        Some(0) => return Err("--batch-size: must be at least 1".into()),
        Some(b) => b,
        None => crate::answerer::default_batch_size(&args.backend),
    };
    let opts = ServeOptions {
        host: args.host.clone(),
        port: args.port,
        batch_size,
        max_queue: args.max_queue,
        max_body_bytes: args.max_body_bytes,
        limits: Limits {
            max_images: args.max_images,
            max_image_pixels: args.max_image_pixels,
            allow_file_urls: args.allow_file_urls.clone(),
        },
        attention: args.attention.clone(),
        ctrl_c: true,
        ..ServeOptions::new(name.clone())
    };
    let memory = MemoryLimit {
        max_memory: args.max_memory,
        workload: Workload {
            sequences: batch_size,
            text_tokens: PLANNED_PROMPT_TOKENS,
            new_tokens: PLANNED_NEW_TOKENS,
            images_per_sequence: args.max_images.min(1),
            images_at_once: batch_size * args.max_images.min(1),
        },
    };
    let (dir, backend, dtype, attention, weights, kv) = (
        args.model.clone(),
        args.backend.clone(),
        args.dtype.clone(),
        args.attention.clone(),
        args.weights.clone(),
        args.kv_dtype.clone(),
    );
    eprintln!(
        "loading {} on {backend} (the weights are hashed once for the protocol card)...",
        dir.display()
    );
    let server = foveate_serve::start(
        opts,
        Box::new(move || {
            crate::answerer::load_model(
                &dir,
                &backend,
                &dtype,
                &attention,
                weights.as_deref(),
                kv.as_deref(),
                memory,
            )
        }),
    )?;
    // One line on stdout, so scripts and tests can read the address (with --port 0 too).
    println!(
        "foveate serve: model `{name}` at {}/v1 (batch {batch_size}, queue {}); Ctrl-C stops",
        server.url(),
        args.max_queue
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();
    server.wait();
    Ok(ExitCode::SUCCESS)
}
