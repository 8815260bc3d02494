use crate::DType;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Dimensions of a contiguous, row-major tensor.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Shape(pub Vec<usize>);

impl Shape {
    pub fn new(dims: impl Into<Vec<usize>>) -> Self {
        Shape(dims.into())
    }
    pub fn dims(&self) -> &[usize] {
        &self.0
    }
    pub fn rank(&self) -> usize {
        self.0.len()
    }
    pub fn numel(&self) -> usize {
        self.0.iter().product()
    }
    /// Row-major strides in elements.
    pub fn strides(&self) -> Vec<usize> {
        let mut s = vec![1; self.0.len()];
        for i in (0..self.0.len().saturating_sub(1)).rev() {
            s[i] = s[i + 1] * self.0[i + 1];
        }
        s
    }
    /// Last dimension (1 for a scalar).
    pub fn last(&self) -> usize {
        *self.0.last().unwrap_or(&1)
    }
    /// Product of all dimensions but the last: the number of rows.
    pub fn rows(&self) -> usize {
        if self.0.is_empty() { 1 } else { self.0[..self.0.len() - 1].iter().product() }
    }
}

impl From<Vec<usize>> for Shape {
    fn from(v: Vec<usize>) -> Self {
        Shape(v)
    }
}
impl From<&[usize]> for Shape {
    fn from(v: &[usize]) -> Self {
        Shape(v.to_vec())
    }
}
impl<const N: usize> From<[usize; N]> for Shape {
    fn from(v: [usize; N]) -> Self {
        Shape(v.to_vec())
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{d}")?;
        }
        write!(f, "]")
    }
}

/// A tensor's type and shape, without its data.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TensorDesc {
    pub dtype: DType,
    pub shape: Shape,
}

impl TensorDesc {
    pub fn new(dtype: DType, shape: impl Into<Shape>) -> Self {
        TensorDesc { dtype, shape: shape.into() }
    }
    pub fn numel(&self) -> usize {
        self.shape.numel()
    }
    pub fn size_bytes(&self) -> usize {
        crate::quant::bytes_for(self.dtype, self.numel())
    }
}

impl fmt::Display for TensorDesc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.dtype, self.shape)
    }
}
