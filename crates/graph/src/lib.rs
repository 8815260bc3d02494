//! foveate-graph: the model-agnostic runtime. An [`Exec`] runs ops of one
//! [`foveate_core::Backend`] into buffers of a size-class [`Pool`] (trimmed after every request),
//! picks the attention kernel variant and keeps block-sparse layouts built once per shape. A
//! [`KvCache`] holds a sequence's keys and values. [`generate_each`] prefills and decodes any
//! [`TextModel`] from [`PromptInput`]s: token ids, a [`Splice`] plan for image features and the
//! rotary [`Positions`] the architecture chose, with batched decode (each step runs the model once
//! over every active request's row) and sampling ([`sample`]).
//!
//! The architectures (vision towers, text models, their composition) live in `foveate-models`.
pub mod exec;
mod generate;
pub mod kv;
pub mod pool;
pub mod prompt;
pub mod sample;

pub use exec::{AttentionKind, Exec, SPARSE_BLOCK};
pub use generate::{generate_each, next_tokens, run_batched, run_continuous, Admitted, GenerateParams, Generation, Scheduler, TextModel, Timings};
pub use kv::{KvCache, KvShape, CAPACITY_STEP};
pub use pool::{size_class, Buf, Pool, PoolStats};
pub use prompt::{Positions, PromptInput, Splice};
pub use sample::{Rng, SamplingParams};
