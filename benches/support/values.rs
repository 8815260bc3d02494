//! Deterministic pseudo-random values (splitmix64), so benches need no RNG crate and every run
//! sees the same inputs.

use foveate_core::{Backend, DType, HostTensor, Result, Shape, Tensor};

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `[-1, 1)`.
    pub fn unit(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn below(&mut self, n: u32) -> u32 {
        (self.next_u64() % n.max(1) as u64) as u32
    }
}

/// `n` values uniform in `[-scale, scale)`.
pub fn uniform(n: usize, scale: f32, seed: u64) -> Vec<f32> {
    let mut r = Rng::new(seed);
    (0..n).map(|_| r.unit() * scale).collect()
}

/// A random tensor of `dtype` on `backend`, values in `[-scale, scale)`.
pub fn tensor(
    backend: &dyn Backend,
    dtype: DType,
    shape: impl Into<Shape>,
    scale: f32,
    seed: u64,
) -> Result<Tensor> {
    let shape = shape.into();
    let v = uniform(shape.numel(), scale, seed);
    backend.upload(&HostTensor::from_f32(dtype, shape, &v))
}

/// Random token ids below `vocab`.
pub fn ids(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut r = Rng::new(seed);
    (0..n).map(|_| r.below(vocab as u32)).collect()
}
