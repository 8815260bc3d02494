//! foveate-testkit: the correctness matrix (op x dtype x shape x mask x backend variant).
//!
//! [`cases`] builds seeded random cases for every op; [`run_matrix`] runs each case on every
//! registered variant of a backend and compares with the f64 CPU oracle ([`compare`]); the
//! [`Report`] prints as a table or serialises to JSON. Backend crates call
//! [`assert_matrix_passes`] from their tests (one line per backend, like candle's
//! `test_device!`), and `foveate selftest` prints the same report.
//!
//! Outputs are poisoned with NaN (u32::MAX for ids) before each run, so an element the backend
//! never writes fails; `KvAppend`'s cache starts with random contents and is compared whole.
//! Every output is followed by a guard tail of sentinels ([`guard`]), so a write past its end fails.
//!
//! [`run_naive_matrix`] is the device-vs-device matrix: GPU-scale attention and GEMM cases
//! ([`scale_cases`]), each fast variant against the same backend's `naive` variant.

mod assert;
mod cases;
mod compare;
mod gen;
pub mod guard;
mod launch;
mod matrix;
mod naive;
mod report;

pub use assert::{assert_matrix_passes, assert_matrix_passes_with, require_env, skip_or_fail};
pub use cases::{cases, scale_cases};
pub use compare::{compare, compare_with, Comparison, Tolerance};
pub use gen::Gen;
pub use launch::assert_launch_checks;
pub use matrix::{run_case, run_matrix};
pub use naive::{case_macs, run_naive_matrix, Reference, ORACLE_MAX_MACS};
pub use report::{CaseResult, OpSummary, Report, Skipped};

use foveate_core::{DType, HostTensor, Op, OpKind};
use std::str::FromStr;

/// How big the matrix's shapes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatrixSize {
    /// Tiny shapes with the same coverage, for slow devices (lavapipe runs ~0.2 GFLOP/s):
    /// head dims 64 and 128 with q/kv lengths <= 40, GEMMs <= 48.
    Small,
    /// The full matrix for CPU and CUDA: odd sizes, every head dim 64/72/80/96/128, longer sequences.
    Full,
}

impl MatrixSize {
    pub fn name(self) -> &'static str {
        match self {
            MatrixSize::Small => "small",
            MatrixSize::Full => "full",
        }
    }
}

impl FromStr for MatrixSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "small" => Ok(MatrixSize::Small),
            "full" => Ok(MatrixSize::Full),
            other => Err(format!("unknown matrix size `{other}` (sizes: small, full)")),
        }
    }
}

/// Which part of the matrix to build and run.
#[derive(Clone, Debug)]
pub struct MatrixOptions {
    pub size: MatrixSize,
    /// Only these op families (all when None).
    pub ops: Option<Vec<OpKind>>,
    /// Case dtypes (the float inputs' dtype).
    pub dtypes: Vec<DType>,
    /// Only this variant of each op family (every registered variant when None).
    pub variant: Option<String>,
    pub seed: u64,
}

impl MatrixOptions {
    /// Every op, every float dtype, every variant.
    pub fn new(size: MatrixSize) -> Self {
        MatrixOptions { size, ops: None, dtypes: DType::FLOATS.to_vec(), variant: None, seed: 0x5eed_f0ea }
    }
}

impl Default for MatrixOptions {
    fn default() -> Self {
        MatrixOptions::new(MatrixSize::Full)
    }
}

/// One case: an op with its (already quantised) inputs.
#[derive(Clone, Debug)]
pub struct Case {
    pub op: Op,
    pub inputs: Vec<HostTensor>,
    /// The dtype of the float inputs.
    pub dtype: DType,
    /// Human label of the shape, e.g. `b2 hq7 hkv1 sq1 sk33 d64`.
    pub shape: String,
    /// Initial contents of the output. None: poisoned with NaN (u32::MAX for ids).
    /// `KvAppend` sets it to a random cache, whose rows outside `pos..pos+len` must survive.
    pub init_out: Option<HostTensor>,
}

/// Inside `impl Backend for X { ... }` of a test double that wraps another backend in field
/// `$inner`: forwards every method the double does not change (all but `name`, `device_name`
/// and `execute`) to it.
#[macro_export]
macro_rules! forward_backend {
    ($inner:ident) => {
        fn dtypes(&self) -> Vec<::foveate_core::DType> {
            self.$inner.dtypes()
        }
        fn variants(&self, op: ::foveate_core::OpKind) -> Vec<::foveate_core::VariantInfo> {
            self.$inner.variants(op)
        }
        fn supports(
            &self,
            op: &::foveate_core::Op,
            dtype: ::foveate_core::DType,
            variant: &str,
        ) -> std::result::Result<(), String> {
            self.$inner.supports(op, dtype, variant)
        }
        fn alloc(&self, desc: &::foveate_core::TensorDesc) -> ::foveate_core::Result<::foveate_core::Tensor> {
            self.$inner.alloc(desc)
        }
        fn upload(&self, host: &::foveate_core::HostTensor) -> ::foveate_core::Result<::foveate_core::Tensor> {
            self.$inner.upload(host)
        }
        fn download(&self, t: &::foveate_core::Tensor) -> ::foveate_core::Result<::foveate_core::HostTensor> {
            self.$inner.download(t)
        }
        fn on_host(&self) -> bool {
            self.$inner.on_host()
        }
        fn synchronize(&self) -> ::foveate_core::Result<()> {
            self.$inner.synchronize()
        }
        fn memory_stats(&self) -> Option<::foveate_core::MemoryStats> {
            self.$inner.memory_stats()
        }
        fn counters(&self) -> Option<::foveate_core::Counters> {
            self.$inner.counters()
        }
    };
}
