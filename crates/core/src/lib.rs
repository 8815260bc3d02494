//! foveate core: the vocabulary every backend, the graph executor and the tests share.
//!
//! * [`DType`], [`Shape`], [`TensorDesc`]: what a tensor is.
//! * [`HostTensor`]: bytes on the host; [`Tensor`]: a handle to backend storage.
//! * [`Op`] and its specs ([`AttentionSpec`], [`Mask`], [`Activation`], ...): what to compute.
//!   `Op::infer` validates input shapes and dtypes on the host and gives the output descriptor,
//!   so every backend checks every launch the same way before touching memory.
//! * [`Backend`]: the small trait every device implements (one dispatch per op).
//! * [`registry`]: the kernel variants of each op family.

pub mod backend;
pub mod dtype;
pub mod error;
pub mod mask;
pub mod op;
pub mod quant;
#[cfg(target_arch = "x86_64")]
mod quant_x86;
pub mod registry;
pub mod rope;
pub mod shape;
pub mod stamp;
pub mod tensor;

pub use backend::{check_launch, refuse_mixed_weights, run, Backend, Counters, MemoryStats};
pub use dtype::DType;
pub use error::{fmt_bytes, fmt_bytes_short, read_utf8, write_atomic, Error, Result, FREE_UNKNOWN};
pub use mask::{BlockClass, BlockLayout, Mask};
pub use op::{
    Activation, AttentionSpec, GemmSpec, KvAppendSpec, MlpSpec, Op, OpKind, PatchEmbedSpec,
    RopeFreqs, RopeSpec, ROPE_MAX_SECTIONS,
};
pub use registry::VariantInfo;
pub use shape::{Shape, TensorDesc};
pub use tensor::{HostTensor, Storage, Tensor};
