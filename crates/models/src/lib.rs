//! foveate-models: Hugging Face LLaVA checkpoints as they are saved.
//!
//! * [`config`]: `config.json` (CLIP/SigLIP vision tower, Llama/Mistral/Qwen2 decoder, projector).
//! * [`weights`]: memory-mapped safetensors (single file or sharded), validated on open.
//! * [`names`]: tensor-name aliases of the transformers 4/5 and `model.*` layouts.
//! * [`manifest`]: the tensors (and shapes) a model reads.
//! * [`prompt`], [`template`]: tokenizer, chat template, `<image>` expansion.
//! * [`image`]: image decode and HF-parity preprocessing.
//! * [`checkpoint`]: all of the above for one directory.
//! * [`synth`]: tiny random checkpoints for tests.
pub mod checkpoint;
pub mod config;
pub mod image;
pub mod manifest;
pub mod names;
pub mod prompt;
pub mod synth;
pub mod template;
pub mod weights;

pub use checkpoint::Checkpoint;
pub use config::{FeatureStrategy, LayerAttention, LlavaConfig, TextConfig, TextKind, VisionConfig, VisionKind};
pub use names::Part;
pub use prompt::{PromptBuilder, IMAGE_PLACEHOLDER};
pub use weights::Weights;
