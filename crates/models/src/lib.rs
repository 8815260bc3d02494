//! foveate-models: Hugging Face checkpoints as they are saved, and the architectures built from
//! them over the runtime of `foveate-graph`.
//!
//! * [`arch`]: one builder per model family (CLIP, SigLIP, Llama-family text, LLaVA), chosen by
//!   `model_type`; [`model::Model`] is a loaded one on a backend.
//! * [`formats`]: the per-role weight-format policy of `--weights`; [`qcheckpoint`]: quantised
//!   checkpoints (`foveate quantize`).
//! * [`budget`]: the host memory a load will take, estimated before it allocates, and its budget.
//! * [`vars`]: the one weight source (checkpoint, random, recorder) every builder reads from;
//!   [`stack`]: tensors stacked by rows (a layer's q, k, v fused on the cpu).
//! * [`config`]: `config.json` (CLIP/SigLIP vision tower, Llama/Mistral/Qwen2 decoder, projector).
//! * [`weights`]: memory-mapped safetensors (single file or sharded), validated on open.
//! * [`names`]: tensor-name aliases of the transformers 4/5 and `model.*` layouts.
//! * [`manifest`]: the tensors (and shapes) a model reads, recorded from its builder.
//! * [`prompt`], [`template`]: tokenizer, chat template, `<image>` expansion.
//! * [`image`]: image decode and HF-parity preprocessing.
//! * [`checkpoint`]: all of the above for one directory.
//! * [`protocol`]: the model's side of a run's protocol card (weights hash, template hash, ...).
//! * [`synth`]: tiny random checkpoints for tests.
pub mod arch;
pub mod budget;
mod budget_size;
pub mod checkpoint;
pub mod config;
pub mod formats;
pub mod image;
pub mod manifest;
pub mod model;
pub mod names;
pub mod prompt;
pub mod protocol;
pub mod qcheckpoint;
pub mod stack;
pub mod synth;
pub mod template;
pub mod vars;
pub mod weights;

pub use arch::{ArchConfig, Architecture};
pub use checkpoint::Checkpoint;
pub use config::{
    FeatureStrategy, LayerAttention, LlavaConfig, TextConfig, TextKind, VisionConfig, VisionKind,
};
pub use model::{MemoryReport, Model, ModelOptions, PixelValues, Request};
pub use names::Part;
pub use prompt::{PromptBuilder, IMAGE_PLACEHOLDER};
pub use weights::Weights;
