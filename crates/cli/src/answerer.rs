//! The model side of `foveate eval`: a loaded LLaVA model answering one question about one image.

use foveate_core::{Backend, DType, Error, Result};
use foveate_eval::{Answerer, ModelInfo};
use foveate_graph::AttentionKind;
use foveate_models::{Model, ModelOptions, Request};
use std::path::Path;
use std::sync::Arc;

/// Opens `backend` and loads the checkpoint in `dir` with the given dtype and attention variant;
/// the one place the CLI turns flags into a model (`run`, `eval` and `bench` share it).
pub fn load_model(dir: &Path, backend: &str, dtype: &str, attention: &str) -> Result<Model> {
    let dtype: DType = dtype.parse().map_err(|e: String| Error::Msg(format!("--dtype: {e}")))?;
    if !dtype.is_float() {
        return Err(Error::Msg(format!("--dtype: {dtype} is not a compute dtype (supported: f32, f16, bf16)")));
    }
    let attention: AttentionKind = attention.parse().map_err(|e: String| Error::Msg(format!("--attention: {e}")))?;
    if backend == "cpu" && dtype != DType::F32 {
        eprintln!(
            "note: the cpu backend computes in f32: it widens {dtype} weights once (kept beside them, 3x their {dtype} \
             size in memory) and activations at every op; --dtype f32 is faster and needs less memory"
        );
    }
    let backend: Arc<dyn Backend> = Arc::from(crate::backends::open(backend)?);
    Model::load(dir, backend, ModelOptions { dtype, attention })
}

pub struct ModelAnswerer {
    model: Model,
    info: ModelInfo,
}

impl ModelAnswerer {
    pub fn new(model: Model, model_name: String, attention: &str) -> Self {
        let info = ModelInfo {
            model: model_name,
            backend: model.backend().name().to_string(),
            dtype: model.dtype().to_string(),
            attention: attention.to_string(),
        };
        ModelAnswerer { model, info }
    }
}

impl Answerer for ModelAnswerer {
    /// The task prompt is one user turn with the image before it, through the checkpoint's chat
    /// template (as LLaVA evaluations feed it); greedy decoding until a stop token.
    fn answer(&mut self, image: &Path, prompt: &str, max_new_tokens: usize) -> Result<String> {
        let pixels = self.model.load_image(image)?;
        let input_ids = self.model.tokenize(prompt, true, true)?;
        let params = self.model.default_params(max_new_tokens);
        let generated = self.model.generate_one(&Request { input_ids, pixels: Some(pixels) }, &params)?;
        let mut tokens = generated.tokens;
        if generated.stopped_on_token {
            tokens.pop();
        }
        self.model.decode_text(&tokens)
    }

    fn describe(&self) -> ModelInfo {
        self.info.clone()
    }
}
