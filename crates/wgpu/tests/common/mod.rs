//! Shared test helpers: open the backend (or say why not), random inputs, compare with the oracle.
#![allow(dead_code)]

use foveate_core::{Backend, DType, HostTensor, Op, Shape};
use foveate_cpu::CpuBackend;
use foveate_wgpu::WgpuBackend;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::OnceLock;

/// The shared backend, or None after printing why the test skips (panics with
/// FOVEATE_REQUIRE_WGPU=1).
pub fn backend(test: &str) -> Option<&'static WgpuBackend> {
    static BE: OnceLock<Result<WgpuBackend, String>> = OnceLock::new();
    match BE.get_or_init(|| WgpuBackend::new().map_err(|e| e.to_string())) {
        Ok(b) => Some(b),
        Err(why) => {
            let require = std::env::var("FOVEATE_REQUIRE_WGPU").map(|v| v == "1" || v == "true").unwrap_or(false);
            if require {
                panic!("{test}: {why} (FOVEATE_REQUIRE_WGPU=1 is set, so this fails)");
            }
            eprintln!("SKIPPED {test}: {why} (set FOVEATE_REQUIRE_WGPU=1 to make this a failure)");
            None
        }
    }
}

pub struct Rand(ChaCha8Rng);

impl Rand {
    pub fn new(seed: u64) -> Self {
        Rand(ChaCha8Rng::seed_from_u64(seed))
    }
    pub fn vals(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.0.random_range(lo..hi)).collect()
    }
    pub fn t(&mut self, dt: DType, shape: &[usize], lo: f32, hi: f32) -> HostTensor {
        let n = Shape::from(shape).numel();
        HostTensor::from_f32(dt, shape.to_vec(), &self.vals(n, lo, hi))
    }
    /// Values in [-1, 1).
    pub fn u(&mut self, dt: DType, shape: &[usize]) -> HostTensor {
        self.t(dt, shape, -1.0, 1.0)
    }
    pub fn ids(&mut self, shape: &[usize], below: u32) -> HostTensor {
        let n = Shape::from(shape).numel();
        HostTensor::from_u32(shape.to_vec(), &(0..n).map(|_| self.0.random_range(0..below)).collect::<Vec<_>>())
    }
}

/// Relative L2 error and max abs error; NaN anywhere is infinite error.
pub fn errors(got: &HostTensor, want: &HostTensor) -> (f64, f64) {
    assert_eq!(got.desc, want.desc, "descriptor mismatch");
    let (g, w) = (got.to_f64(), want.to_f64());
    let mut num = 0.0;
    let mut den = 0.0;
    let mut max = 0.0f64;
    for (a, b) in g.iter().zip(&w) {
        if !a.is_finite() {
            return (f64::INFINITY, f64::INFINITY);
        }
        num += (a - b) * (a - b);
        den += b * b;
        max = max.max((a - b).abs());
    }
    ((num / den.max(1e-30)).sqrt(), max)
}

pub fn tol(dt: DType) -> f64 {
    match dt {
        DType::F16 => 4e-3,
        _ => 2e-5,
    }
}

pub fn dtypes(be: &WgpuBackend) -> Vec<DType> {
    be.dtypes()
}

/// Runs `op` on both backends (output poisoned with NaN, or starting from `init` for KvAppend)
/// and compares. Returns a failure description, or None.
pub fn check(be: &WgpuBackend, op: &Op, inputs: &[HostTensor], variant: &str, init: Option<&HostTensor>) -> Option<String> {
    let oracle = CpuBackend::oracle();
    let dt = inputs[0].dtype();
    let descs: Vec<_> = inputs.iter().map(|h| &h.desc).collect();
    let out_desc = op.infer(&descs).expect("test case must be valid");
    let run = |b: &dyn Backend| -> Result<HostTensor, String> {
        let ts: Vec<_> = inputs.iter().map(|h| b.upload(h)).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
        let refs: Vec<_> = ts.iter().collect();
        let start = match init {
            Some(h) => h.clone(),
            None => HostTensor::filled(out_desc.dtype, out_desc.shape.clone(), f32::NAN),
        };
        let out = b.upload(&start).map_err(|e| e.to_string())?;
        b.execute(op, &refs, &out, if b.name() == "wgpu" { variant } else { "" }).map_err(|e| e.to_string())?;
        b.download(&out).map_err(|e| e.to_string())
    };
    let want = match run(&oracle) {
        Ok(w) => w,
        Err(e) => return Some(format!("{} {dt}: oracle failed: {e}", op.label())),
    };
    let got = match run(be) {
        Ok(g) => g,
        Err(e) => return Some(format!("{} {dt} [{variant}]: {e}", op.label())),
    };
    let (rel, max) = errors(&got, &want);
    let t = if out_desc.dtype == DType::U32 { 0.0 } else { tol(dt.max_tol(out_desc.dtype)) };
    if rel > t || !rel.is_finite() {
        return Some(format!(
            "{} {dt} [{variant}] shape {}: rel err {rel:.3e} (max abs {max:.3e}) > {t:.1e}",
            op.label(),
            out_desc.shape
        ));
    }
    None
}

pub trait MaxTol {
    fn max_tol(self, other: DType) -> DType;
}

impl MaxTol for DType {
    /// The looser of two dtypes' tolerances.
    fn max_tol(self, other: DType) -> DType {
        if self == DType::F16 || other == DType::F16 {
            DType::F16
        } else {
            self
        }
    }
}

/// Runs every check, prints a count, and fails with all failures at once.
pub fn report(test: &str, results: Vec<Option<String>>) {
    let n = results.len();
    let fails: Vec<String> = results.into_iter().flatten().collect();
    eprintln!("{test}: {} of {n} cases passed", n - fails.len());
    assert!(n > 0, "{test}: no case ran");
    assert!(fails.is_empty(), "{test}: {} of {n} failed:\n{}", fails.len(), fails.join("\n"));
}
