//! The backends a bench runs on: `cpu` always (on `FOVEATE_BENCH_THREADS` threads when set), and
//! `wgpu` when an adapter opens; a backend that cannot open is skipped with its reason printed.

use foveate_core::Backend;
use foveate_cpu::CpuBackend;
use std::sync::Arc;

/// One available device and whether it is slow enough (lavapipe, a CPU adapter) that only tiny
/// shapes are worth timing.
pub struct Device {
    pub backend: Arc<dyn Backend>,
    pub slow: bool,
}

impl Device {
    pub fn name(&self) -> &str {
        self.backend.name()
    }
}

/// Threads of the CPU backend: `FOVEATE_BENCH_THREADS`, else rayon's default.
pub fn cpu() -> CpuBackend {
    match std::env::var("FOVEATE_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        Some(n) if n > 0 => CpuBackend::fast_with_threads(n),
        _ => CpuBackend::fast(),
    }
}

/// Whether a GPU adapter name is a CPU rasteriser (Mesa lavapipe / llvmpipe, or a `cpu` adapter).
pub fn is_cpu_rasteriser(adapter: &str) -> bool {
    let a = adapter.to_lowercase();
    a.contains("llvmpipe") || a.contains("lavapipe") || a.contains("cpu")
}

/// Every device available here, printing one line per skipped backend.
/// `FOVEATE_BENCH_BACKENDS=cpu,wgpu` restricts the list.
pub fn available() -> Vec<Device> {
    let only: Option<Vec<String>> = std::env::var("FOVEATE_BENCH_BACKENDS")
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect());
    let wanted = |n: &str| only.as_ref().is_none_or(|o| o.iter().any(|x| x == n));
    let mut out = Vec::new();
    if wanted("cpu") {
        out.push(Device {
            backend: Arc::new(cpu()),
            slow: false,
        });
    }
    if wanted("wgpu") {
        match foveate_wgpu::WgpuBackend::new() {
            Ok(w) => {
                let slow = is_cpu_rasteriser(&w.device_name());
                if slow {
                    eprintln!("bench: wgpu adapter `{}` is a CPU rasteriser (~0.2 GFLOP/s): timing tiny shapes only", w.device_name());
                }
                out.push(Device {
                    backend: Arc::new(w),
                    slow,
                });
            }
            Err(e) => eprintln!("bench: skipping wgpu: {e}"),
        }
    }
    out
}

/// The attention variants `b` registers, in its order; each known variant it lacks is named on
/// stderr, so a bench never drops one silently.
pub fn attention_variants(b: &dyn Backend) -> Vec<&'static str> {
    let variants: Vec<&'static str> =
        b.variants(foveate_core::OpKind::Attention).iter().map(|v| v.name).collect();
    for missing in foveate_core::registry::attention::ALL.iter().filter(|n| !variants.contains(*n)) {
        eprintln!("bench: {} registers no `{missing}` attention variant", b.name());
    }
    variants
}
