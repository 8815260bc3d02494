//! The model side of `foveate eval`: a loaded model answering questions about images, one at a
//! time or with continuous batching.

use foveate_core::{Backend, DType, Error, Result};
use foveate_eval::runner::Query;
use foveate_eval::{Answerer, ModelInfo, Outcome};
use foveate_graph::{AttentionKind, GenerateParams, Generation};
use foveate_models::budget::{Budget, Workload};
use foveate_models::{Model, ModelOptions, Request};
use std::path::Path;
use std::sync::Arc;

/// `--weights`: a weight format (f32, f16, bf16, int8, int4).
pub fn parse_weights(s: &str) -> Result<DType> {
    let w: DType = s
        .parse()
        .map_err(|e: String| Error::Msg(format!("--weights: {e}")))?;
    if !DType::WEIGHTS.contains(&w) {
        return Err(Error::Msg(format!(
            "--weights: {w} is not a weight format (supported: f32, f16, bf16, int8, int4)"
        )));
    }
    Ok(w)
}

/// `--kv-dtype`: f32, f16 or bf16.
pub fn parse_kv(s: &str) -> Result<DType> {
    let d: DType = s
        .parse()
        .map_err(|e: String| Error::Msg(format!("--kv-dtype: {e}")))?;
    if !d.is_float() {
        return Err(Error::Msg(format!(
            "--kv-dtype: {d} is not a KV cache dtype (supported: f32, f16, bf16)"
        )));
    }
    Ok(d)
}

/// The memory side of a load: `--max-memory` and what the model will run (for its KV caches and
/// activations).
#[derive(Clone, Copy, Debug)]
pub struct MemoryLimit {
    pub max_memory: Option<u64>,
    pub workload: Workload,
}

/// Text tokens planned for an eval question or a served request's prompt, chat template included
/// (the estimate's assumption; easy-VQA and VQAv2 prompts take 20 to 60).
pub const PLANNED_PROMPT_TOKENS: usize = 128;

/// Opens `backend` and loads the checkpoint in `dir` with the given dtype, attention variant,
/// weight format (`--weights`; None: the compute dtype, or a quantised checkpoint's format) and
/// KV cache dtype (`--kv-dtype`; None: the compute dtype); the
/// one place the CLI turns flags into a model (`run`, `eval` and `serve` share it). A load whose
/// memory estimate is over the budget (`--max-memory`, MemAvailable) is refused before any weight
/// is allocated.
pub fn load_model(
    dir: &Path,
    backend: &str,
    dtype: &str,
    attention: &str,
    weights: Option<&str>,
    kv: Option<&str>,
    memory: MemoryLimit,
) -> Result<Model> {
    let weights = weights.map(parse_weights).transpose()?;
    let kv = kv.map(parse_kv).transpose()?;
    let dtype: DType = dtype
        .parse()
        .map_err(|e: String| Error::Msg(format!("--dtype: {e}")))?;
    if !dtype.is_float() {
        return Err(Error::Msg(format!(
            "--dtype: {dtype} is not a compute dtype (supported: f32, f16, bf16)"
        )));
    }
    let attention: AttentionKind = attention
        .parse()
        .map_err(|e: String| Error::Msg(format!("--attention: {e}")))?;
    if backend == "cpu" && dtype != DType::F32 {
        eprintln!(
            "note: the cpu backend computes in f32 and rounds every {dtype} activation back to {dtype}; \
             for 16-bit weights with f32 activations (no rounding between ops) use \
             --dtype f32 --weights {dtype}"
        );
    }
    let backend: Arc<dyn Backend> = Arc::from(crate::backends::open(backend)?);
    let budget = Budget::host(memory.max_memory);
    Model::load_within(
        dir,
        backend,
        ModelOptions {
            dtype,
            attention,
            weights,
            kv,
        },
        Some((&budget, &memory.workload)),
    )
}

pub struct ModelAnswerer {
    model: Model,
    info: ModelInfo,
}

/// Questions answered together when `--batch-size` is not given, per backend: enough rows to keep
/// the device busy through the tiny GEMMs of a small model, few enough that a 7B model's prefill
/// activations stay small next to its weights.
pub fn default_batch_size(backend: &str) -> usize {
    match backend {
        "cuda" => 64,
        _ => 16,
    }
}

impl ModelAnswerer {
    /// Hashes the weights for the protocol card (one read of the files).
    pub fn new(
        model: Model,
        model_name: String,
        attention: &str,
        batch_size: usize,
    ) -> Result<Self> {
        let batch_size = batch_size.max(1);
        let info = ModelInfo {
            model: model_name,
            backend: model.backend().name().to_string(),
            device: model.backend().device_name(),
            dtype: model.dtype().to_string(),
            attention: attention.to_string(),
            batch_size,
            card: foveate_models::protocol::model_card(&model)?,
            decoding: foveate_eval::protocol::greedy_decoding(),
            engine: foveate_models::protocol::engine_json(
                &model,
                "in-process",
                attention,
                batch_size,
            ),
        };
        Ok(ModelAnswerer { model, info })
    }

    /// Prompt ids (one user turn with the image before it, through the checkpoint's chat template,
    /// as LLaVA evaluations feed it) and pixels of one question.
    fn request(&self, image: &Path, prompt: &str) -> Result<Request> {
        let pixels = self.model.load_image(image)?;
        let input_ids = self.model.prompt_ids(prompt, true, Some(&pixels))?;
        Ok(Request {
            input_ids,
            pixels: Some(pixels),
        })
    }

    /// The text of a generation, without its stop token.
    fn text(&self, g: Generation) -> Result<String> {
        let mut tokens = g.tokens;
        if g.stopped_on_token {
            tokens.pop();
        }
        self.model.decode_text(&tokens)
    }
}

impl Answerer for ModelAnswerer {
    /// Greedy decoding until a stop token.
    fn answer(&mut self, image: &Path, prompt: &str, max_new_tokens: usize) -> Result<String> {
        let req = self.request(image, prompt)?;
        let generated = self
            .model
            .generate_one(&req, &self.model.default_params(max_new_tokens))?;
        self.text(generated)
    }

    /// Continuous batching: `batch_size` questions decode together; as each finishes, the next
    /// question takes its slot (images of an admitted group are encoded as one batch).
    fn answer_all(
        &mut self,
        queries: &[Query],
        done: &mut dyn FnMut(usize, Outcome) -> Result<()>,
    ) -> Result<()> {
        let mut taken = 0usize;
        let mut next = |free: usize| -> Result<Vec<(Request, GenerateParams)>> {
            let end = (taken + free).min(queries.len());
            let group = queries[taken..end]
                .iter()
                .map(|q| {
                    Ok((
                        self.request(&q.image, &q.prompt)?,
                        self.model.default_params(q.max_new_tokens),
                    ))
                })
                .collect::<Result<Vec<_>>>()?;
            taken = end;
            Ok(group)
        };
        let mut finished = |i: usize, g: Generation| done(i, Ok(self.text(g)?));
        self.model
            .generate_batched(self.info.batch_size, &mut next, &mut finished)
    }

    fn rendered_prompt(&self, prompt: &str) -> String {
        let p = &self.model.checkpoint.prompt;
        p.apply_chat_template(prompt, true)
            .unwrap_or_else(|_| prompt.to_string())
    }

    fn describe(&self) -> ModelInfo {
        self.info.clone()
    }
}
