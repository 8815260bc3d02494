//! Architectures: one builder file per model family over shared layer helpers ([`layers`],
//! [`vit`]), behind two small traits: [`ArchConfig`] (what a parsed `config.json` tells the
//! runtime) and [`Architecture`] (a built model: its text model, its image features and how a
//! request becomes a [`PromptInput`]). The family is chosen by `model_type` in [`FAMILIES`].
//!
//! * [`clip`], [`siglip`]: vision towers ([`vit::VisionTower`]);
//! * [`llama`]: the Llama / Mistral / Qwen2 text model ([`foveate_graph::TextModel`]);
//! * [`llava`]: `LlavaForConditionalGeneration`, a vision tower + GELU projector + text model;
//! * [`qwen2_vl`]: `Qwen2VLForConditionalGeneration` / `Qwen2_5_VLForConditionalGeneration`: the
//!   dynamic-resolution tower with its patch merger ([`qwen2_vl_vision`], windows and layouts in
//!   [`qwen2_vl_window`], config in [`qwen2_vl_config`]) + the Qwen2 text model with M-RoPE.
//!
//! Adding a family: write `arch/<family>.rs` (its config parser, its builder taking tensors from a
//! [`TensorSource`], its forward over [`layers`]) and add one [`Family`] row to [`FAMILIES`].

pub mod clip;
pub mod layers;
pub mod llama;
pub mod llava;
pub mod qwen2_vl;
pub mod qwen2_vl_config;
pub mod qwen2_vl_vision;
pub mod qwen2_vl_window;
pub mod siglip;
pub mod vit;

use crate::model::PixelValues;
use crate::vars::TensorSource;
use foveate_core::{Error, Result};
use foveate_graph::{Buf, Exec, PromptInput, TextModel};
use serde_json::Value;
use std::any::Any;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// A parsed `config.json`: what the loader, the tokenizer and the request checks need, and the
/// builder of the model it describes.
pub trait ArchConfig: Send + Sync {
    /// The family's `model_type`.
    fn model_type(&self) -> &'static str;
    fn image_token_id(&self) -> u32;
    /// Image tokens one `<image>` expands into (0 when it depends on the image).
    fn image_tokens_per_image(&self) -> usize;
    /// Image tokens of one preprocessed image (the fixed count unless it depends on the image).
    fn image_tokens(&self, _px: &PixelValues) -> Result<usize> {
        Ok(self.image_tokens_per_image())
    }
    /// Does the number of image tokens depend on the image (dynamic resolution)? Then a prompt
    /// with an image is tokenized with the image's pixel values.
    fn image_tokens_vary(&self) -> bool {
        false
    }
    /// The tokens around an image's tokens (start, end) that a raw `<image>` placeholder stands
    /// for, when the family writes them (Qwen2-VL's vision start / end); chat templates write them
    /// themselves.
    fn image_wrap(&self) -> Option<(u32, u32)> {
        None
    }
    /// The context window in tokens and the config field it comes from (for messages).
    fn context_window(&self) -> (usize, &'static str);
    /// Stop tokens the config names.
    fn eos_token_ids(&self) -> Vec<u32>;
    /// Builds the model from `src`. `all_layers`: every layer the checkpoint holds, also those
    /// past the layer the model reads features from (what a checkpoint writer records).
    fn build(&self, src: &mut dyn TensorSource, all_layers: bool) -> Result<Box<dyn Architecture>>;
    fn as_any(&self) -> &dyn Any;
}

/// A built model.
pub trait Architecture: Send + Sync {
    fn text(&self) -> &dyn TextModel;
    /// The request as the runtime runs it: images encoded, the splice plan of their features,
    /// the rotary positions of the prompt. `ids` already hold the expanded image tokens.
    fn prompt(
        &self,
        ex: &Exec,
        ids: Vec<u32>,
        pixels: Option<&PixelValues>,
    ) -> Result<PromptInput> {
        Ok(self
            .prompts(ex, vec![(ids, pixels)])?
            .pop()
            .expect("one prompt per request"))
    }
    /// Several requests at once ([`Architecture::prompt`] is this with one); an architecture
    /// may encode their images as one batch.
    fn prompts(
        &self,
        ex: &Exec,
        reqs: Vec<(Vec<u32>, Option<&PixelValues>)>,
    ) -> Result<Vec<PromptInput>>;
    /// Image features `[1, N, D_text]` as spliced into the prompt.
    fn image_features(&self, ex: &Exec, px: &PixelValues) -> Result<Buf>;
    /// The vision tower's patch embeddings `[1, T, E]` (the input of its first layer).
    fn patch_embeddings(&self, ex: &Exec, px: &PixelValues) -> Result<Buf>;
    fn as_any(&self) -> &dyn Any;
}

/// A supported family: its `model_type`, the transformers class, and its config parser.
pub struct Family {
    pub model_type: &'static str,
    pub class: &'static str,
    pub parse: fn(&Value, &str) -> Result<Arc<dyn ArchConfig>>,
}

/// Every supported family.
pub const FAMILIES: &[Family] = &[llava::FAMILY, qwen2_vl::FAMILY_2, qwen2_vl::FAMILY_2_5];

/// Parses a `config.json` value (`file` names it in errors) with its family's parser.
pub fn parse_config(v: &Value, file: &str) -> Result<Arc<dyn ArchConfig>> {
    let mt = v.get("model_type").and_then(Value::as_str).unwrap_or("");
    match FAMILIES.iter().find(|f| f.model_type == mt) {
        Some(f) => (f.parse)(v, file),
        None => {
            let archs = v
                .get("architectures")
                .map(|a| a.to_string())
                .unwrap_or_default();
            let supported: Vec<String> = FAMILIES
                .iter()
                .map(|f| format!("{}, i.e. {}", f.model_type, f.class))
                .collect();
            Err(Error::format(
                file,
                "model_type",
                format!(
                    "`{mt}` (architectures {archs}) is not supported (supported: {})",
                    supported.join("; ")
                ),
            ))
        }
    }
}

/// Waits for the device, then gives every prompt of a batch the time since `t0`: what encoding the
/// batch's images took (how every architecture's `prompts` ends).
pub(crate) fn stamp_image_encode(
    ex: &Exec,
    t0: Instant,
    mut out: Vec<PromptInput>,
) -> Result<Vec<PromptInput>> {
    ex.backend.synchronize()?;
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    for p in out.iter_mut() {
        p.image_encode_ms = ms;
    }
    Ok(out)
}

/// Reads and parses `config.json`.
pub fn load_config(path: &Path) -> Result<Arc<dyn ArchConfig>> {
    let text = foveate_core::read_utf8(path)?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| Error::format(path.display().to_string(), "(json)", e.to_string()))?;
    parse_config(&v, &path.display().to_string())
}
