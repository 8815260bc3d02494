//! `foveate run`: one prompt + image through a LLaVA checkpoint on a chosen backend.

use crate::answerer::MemoryLimit;
use crate::CmdResult;
use foveate_core::Error;
use foveate_graph::SamplingParams;
use foveate_models::budget::Workload;
use foveate_models::Request;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Checkpoint directory (HF save_pretrained layout).
    #[arg(long)]
    model: PathBuf,
    /// Image file (PNG or JPEG).
    #[arg(long)]
    image: Option<PathBuf>,
    /// The prompt; `<image>` marks the image. Used verbatim unless --chat.
    #[arg(long)]
    prompt: std::ffi::OsString,
    /// Apply the checkpoint's chat template to the prompt.
    #[arg(long)]
    chat: bool,
    /// cpu | wgpu | cuda
    #[arg(long, default_value = "cpu")]
    backend: String,
    /// f32 | f16 | bf16
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
    /// naive | flash | block-sparse
    #[arg(long, default_value = crate::DEFAULT_ATTENTION)]
    attention: String,
    #[arg(long, default_value_t = 32)]
    max_new_tokens: usize,
    /// 0 means greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// 0 means no top-k cut.
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print one JSON object: text, tokens, prompt_tokens, timings.
    #[arg(long)]
    json: bool,
    /// Write the prefill logits (f32 [prompt_len, vocab], tensor `logits`) to this safetensors file.
    #[arg(long)]
    dump_logits: Option<PathBuf>,
    /// Host memory the load may take (e.g. 8G, 8GiB, 500M, plain bytes; default: MemAvailable):
    /// a load whose estimate is over it is refused before any weight is allocated.
    #[arg(long, value_parser = foveate_models::budget::parse_size, value_name = "SIZE")]
    max_memory: Option<u64>,
}

pub fn run(args: Args) -> CmdResult {
    if !(args.top_p > 0.0 && args.top_p <= 1.0) {
        return Err(Error::Msg(format!("--top-p: {} must be in (0, 1]", args.top_p)).into());
    }
    if args.temperature < 0.0 || !args.temperature.is_finite() {
        return Err(Error::Msg(format!("--temperature: {} must be >= 0", args.temperature)).into());
    }
    let prompt = args.prompt.to_str().ok_or_else(|| {
        Error::Msg(format!(
            "--prompt: not valid UTF-8 ({:?}); pass the prompt as UTF-8 text",
            args.prompt
        ))
    })?;
    let model = crate::answerer::load_model(
        &args.model,
        &args.backend,
        &args.dtype,
        &args.attention,
        args.weights.as_deref(),
        args.kv_dtype.as_deref(),
        MemoryLimit {
            max_memory: args.max_memory,
            // A byte-level BPE token is at least one byte: the prompt's bytes bound its tokens.
            workload: Workload {
                sequences: 1,
                text_tokens: prompt.len() + if args.chat { 64 } else { 8 },
                new_tokens: args.max_new_tokens,
                images_per_sequence: usize::from(args.image.is_some()),
                images_at_once: usize::from(args.image.is_some()),
            },
        },
    )?;
    let pixels = match &args.image {
        Some(p) => Some(model.load_image(p)?),
        None => None,
    };
    let input_ids = model.prompt_ids(prompt, args.chat, pixels.as_ref())?;
    let mut params = model.default_params(args.max_new_tokens);
    params.sampling = SamplingParams {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        seed: args.seed,
    };
    params.prompt_logits = args.dump_logits.is_some();
    let req = Request {
        input_ids: input_ids.clone(),
        pixels,
    };
    let gen = model.generate_one(&req, &params)?;
    if let (Some(path), Some(logits)) = (&args.dump_logits, &gen.prompt_logits) {
        write_logits(path, logits)?;
    }
    let text = model.decode_text(&gen.tokens)?;
    let t = &gen.timings;
    if args.json {
        let out = serde_json::json!({
            "text": text,
            "tokens": gen.tokens,
            "prompt_tokens": input_ids,
            "timings": {
                "load_ms": model.load_ms,
                "image_encode_ms": t.image_encode_ms,
                "prefill_ms": t.prefill_ms,
                "decode_tokens_per_s": t.decode_tokens_per_s(),
            },
        });
        println!("{out}");
    } else {
        println!("{text}");
        let m = model.memory();
        eprintln!(
            "[{} {}{}] load {:.0} ms, image {:.1} ms, prefill {:.1} ms ({} tokens), decode {:.1} tok/s; weights {:.1} MiB, activations+KV peak {:.2} MiB",
            model.backend().name(),
            model.dtype(),
            if model.formats().mixed() { format!(", weights {}", model.weights_by_format.summary()) } else { String::new() },
            model.load_ms,
            t.image_encode_ms,
            t.prefill_ms,
            input_ids.len(),
            t.decode_tokens_per_s(),
            m.weights_bytes as f64 / (1 << 20) as f64,
            m.pool.peak_bytes as f64 / (1 << 20) as f64,
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn write_logits(path: &std::path::Path, logits: &foveate_core::HostTensor) -> Result<(), Error> {
    let shape = logits.shape().dims().to_vec();
    let bytes: Vec<u8> = logits
        .to_f32()
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape, &bytes)
        .map_err(|e| Error::Msg(format!("{}: {e}", path.display())))?;
    let file = safetensors::serialize(vec![("logits", view)], None)
        .map_err(|e| Error::Msg(format!("{}: {e}", path.display())))?;
    foveate_core::write_atomic(path, &file)
}
