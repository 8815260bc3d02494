use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Element types. Floats are the compute types (f16/bf16 store, f32 accumulate);
/// `U32` carries token ids, positions and argmax results. `Int8` and `Int4` are weight-only
/// storage formats (groups of 32 with an f16 scale, see [`crate::quant`]): a GEMM or MLP weight
/// may be one of them, never an activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    F32,
    F16,
    BF16,
    U32,
    Int8,
    Int4,
}

impl DType {
    pub const FLOATS: [DType; 3] = [DType::F32, DType::F16, DType::BF16];

    /// The weight formats `--weights` takes: a plain float or a quantised format.
    pub const WEIGHTS: [DType; 5] = [DType::F32, DType::F16, DType::BF16, DType::Int8, DType::Int4];

    /// Bytes per element. Quantised formats have no whole-byte element size: this is 1 for them;
    /// use [`crate::quant::bytes_for`] (what [`crate::TensorDesc::size_bytes`] does) for a tensor.
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::U32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::Int8 | DType::Int4 => 1,
        }
    }

    /// Values an op computes on (f32, f16, bf16).
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::BF16)
    }

    /// A weight-only quantised format (int8, int4).
    pub fn is_quant(self) -> bool {
        matches!(self, DType::Int8 | DType::Int4)
    }

    /// Bits a weight of this format costs, scales included (int8: 8.5, int4: 4.5).
    pub fn bits_per_weight(self) -> f64 {
        match self {
            DType::Int8 => 8.5,
            DType::Int4 => 4.5,
            other => 8.0 * other.size() as f64,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::U32 => "u32",
            DType::Int8 => "int8",
            DType::Int4 => "int4",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" | "float" => Ok(DType::F32),
            "f16" | "float16" | "half" => Ok(DType::F16),
            "bf16" | "bfloat16" => Ok(DType::BF16),
            "u32" | "uint32" => Ok(DType::U32),
            "int8" | "q8" | "q8_0" => Ok(DType::Int8),
            "int4" | "q4" | "q4_0" => Ok(DType::Int4),
            other => Err(format!("unknown dtype `{other}` (supported: f32, f16, bf16, u32, int8, int4)")),
        }
    }
}
