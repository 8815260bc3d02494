//! Seeded random inputs. Every case gets its own generator, seeded from the matrix seed and the
//! case's label, so filtering the matrix (`--op softmax`) reproduces exactly the same inputs.
//! Values are drawn in f32 and quantised to the case dtype by `HostTensor::from_f32`, so the
//! backend and the oracle see bit-identical inputs.

use foveate_core::{DType, HostTensor, Shape};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub struct Gen {
    rng: ChaCha8Rng,
}

/// FNV-1a, to mix a case label into the seed (stable across runs and platforms).
fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl Gen {
    pub fn new(seed: u64, label: &str) -> Self {
        Gen { rng: ChaCha8Rng::seed_from_u64(seed ^ fnv1a(label)) }
    }

    /// Uniform in `[lo, hi)`, nudged away from exact zero (inputs are never zero).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let x = self.rng.random_range(lo..hi);
        if x == 0.0 { (hi - lo) * 1e-3 } else { x }
    }

    pub fn index(&mut self, n: usize) -> usize {
        self.rng.random_range(0..n)
    }

    pub fn values(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }

    /// A float tensor of `dtype` with values uniform in `[lo, hi)`.
    pub fn tensor(&mut self, dtype: DType, shape: impl Into<Shape>, lo: f32, hi: f32) -> HostTensor {
        let shape = shape.into();
        let v = self.values(shape.numel(), lo, hi);
        HostTensor::from_f32(dtype, shape, &v)
    }

    /// Values of mixed magnitude: sign · 10^U[lo_exp, hi_exp).
    pub fn log_uniform(&mut self, n: usize, lo_exp: f32, hi_exp: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                let m = 10f32.powf(self.rng.random_range(lo_exp..hi_exp));
                if self.rng.random_bool(0.5) { m } else { -m }
            })
            .collect()
    }

    pub fn ids(&mut self, n: usize, below: u32) -> Vec<u32> {
        (0..n).map(|_| self.rng.random_range(0..below)).collect()
    }

    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.rng.random_range(0..=i);
            v.swap(i, j);
        }
    }
}
