//! The kernel-variant registry. Each backend lists, per op family, the variants it implements
//! and the dtypes each one supports; tests and benches iterate over it, so a variant is tested and
//! benchmarked as soon as it is registered.

use crate::{DType, OpKind};
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VariantInfo {
    pub op: OpKind,
    /// e.g. `naive`, `flash`, `flash-decode`, `block-sparse`, `tiled`, `oracle`.
    pub name: &'static str,
    pub dtypes: Vec<DType>,
    /// One line: what the variant does and where it applies.
    pub note: &'static str,
}

impl VariantInfo {
    pub fn new(op: OpKind, name: &'static str, dtypes: &[DType], note: &'static str) -> Self {
        VariantInfo { op, name, dtypes: dtypes.to_vec(), note }
    }
}

/// Attention variant names, shared by every backend that implements them.
pub mod attention {
    pub const NAIVE: &str = "naive";
    pub const FLASH: &str = "flash";
    pub const FLASH_DECODE: &str = "flash-decode";
    pub const BLOCK_SPARSE: &str = "block-sparse";
    pub const ALL: [&str; 4] = [NAIVE, FLASH, FLASH_DECODE, BLOCK_SPARSE];
}
