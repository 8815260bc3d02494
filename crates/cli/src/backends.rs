//! Opening backends by name. To wire in a backend crate, replace its placeholder arm in `open`
//! with the constructor (e.g. `"wgpu" => Ok(Box::new(foveate_wgpu::WgpuBackend::new()?))`);
//! `probe_all` probes every name in `NAMES` through `open`, so a new backend also needs its name there.

use foveate_core::{Backend, Error, Result};
use foveate_cpu::CpuBackend;
use serde::Serialize;

/// Every backend name the CLI knows, in the order `foveate info` lists them.
pub const NAMES: &[&str] = &["cpu", "cpu-oracle", "wgpu", "cuda"];

/// The backend every selftest compares against.
pub const ORACLE: &str = "cpu-oracle";

/// Whether a backend can be opened here: its device, or why not.
#[derive(Clone, Debug, Serialize)]
pub struct BackendProbe {
    pub name: String,
    pub available: bool,
    pub device_or_reason: String,
}

/// Opens a backend by name. Unknown names get an error listing the known ones; a known backend
/// that cannot run here gives `Error::Unavailable` with the reason.
pub fn open(name: &str) -> Result<Box<dyn Backend>> {
    match name {
        "cpu" => Ok(Box::new(CpuBackend::fast())),
        "cpu-oracle" => Ok(Box::new(CpuBackend::oracle())),
        "cuda" => Ok(Box::new(foveate_cuda::CudaBackend::new(0)?)),
        "wgpu" => Ok(Box::new(foveate_wgpu::WgpuBackend::new()?)),
        other => Err(Error::Msg(format!(
            "unknown backend `{other}` (backends: {})",
            NAMES.join(", ")
        ))),
    }
}

/// Tries to open every known backend.
pub fn probe_all() -> Vec<BackendProbe> {
    NAMES
        .iter()
        .map(|&name| match open(name) {
            Ok(b) => BackendProbe {
                name: name.into(),
                available: true,
                device_or_reason: b.device_name(),
            },
            Err(Error::Unavailable { reason, .. }) => BackendProbe {
                name: name.into(),
                available: false,
                device_or_reason: reason,
            },
            Err(e) => BackendProbe {
                name: name.into(),
                available: false,
                device_or_reason: e.to_string(),
            },
        })
        .collect()
}
