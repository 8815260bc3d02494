//! foveate-graph: the LLaVA executor. Runs the vision tower, projector, decoder and LM head as ops
//! of one [`foveate_core::Backend`], with a pooled buffer planner ([`pool`]), a KV cache
//! ([`decoder::KvCache`]), prefill then decode, and sampling ([`sample`]). Batches of requests
//! decode together: each step runs the GEMMs once over every active request's row and attention
//! per request over its own cache ([`LlavaModel::generate_each`]).
pub mod decoder;
pub mod exec;
mod generate;
pub mod model;
pub mod pool;
pub mod sample;
pub mod vision;
pub mod weights;

pub use exec::{AttentionKind, Exec};
pub use model::{GenerateParams, Generation, LlavaModel, MemoryReport, ModelOptions, PixelValues, Request, Timings};
pub use pool::{Buf, Pool, PoolStats};
pub use sample::SamplingParams;
