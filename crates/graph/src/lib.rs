//! foveate-graph: the LLaVA executor. Runs the vision tower, projector, decoder and LM head as ops
//! of one [`foveate_core::Backend`], with a pooled buffer planner ([`pool`]), a KV cache
//! ([`decoder::KvCache`]), prefill then decode, and sampling ([`sample`]).
pub mod decoder;
pub mod exec;
pub mod model;
pub mod pool;
pub mod sample;
pub mod vision;
pub mod weights;

pub use exec::{AttentionKind, Exec};
pub use model::{GenerateParams, Generation, LlavaModel, MemoryReport, ModelOptions, PixelValues, Request, Timings};
pub use pool::{Buf, Pool, PoolStats};
pub use sample::SamplingParams;
