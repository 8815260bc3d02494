//! Adapter and device selection.

use foveate_core::{Error, Result};
use std::sync::Arc;

pub const INSTALL_HINT: &str = "install a Vulkan driver (on Debian/Ubuntu: apt-get install mesa-vulkan-drivers \
libvulkan1 for the lavapipe CPU driver, or your GPU vendor's driver); on macOS Metal and on Windows DX12 need no setup";

/// The opened device and what it offers.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub f16: bool,
}

fn unavailable(reason: String) -> Error {
    Error::Unavailable { backend: "wgpu".into(), reason }
}

impl Gpu {
    /// Picks the high-performance adapter and opens it with the adapter's own limits and
    /// SHADER_F16 when present. Never panics: no adapter is `Error::Unavailable` with a next step.
    pub fn open() -> Result<Gpu> {
        // wgpu may panic deep inside a broken driver stack; report that as unavailable too.
        match std::panic::catch_unwind(Self::open_inner) {
            Ok(r) => r,
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".into());
                Err(unavailable(format!("wgpu failed while opening an adapter ({msg}); {INSTALL_HINT}")))
            }
        }
    }

    fn open_inner() -> Result<Gpu> {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        if std::env::var_os("WGPU_BACKEND").is_none() {
            desc.backends = wgpu::Backends::PRIMARY;
        }
        let instance = wgpu::Instance::new(desc);
        let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            force_fallback_adapter: false,
            compatible_surface: None,
            apply_limit_buckets: false,
        }))
        .map_err(|e| unavailable(format!("no Vulkan/Metal/DX12 adapter found ({e}); {INSTALL_HINT}")))?;
        let info = adapter.get_info();
        let features = adapter.features();
        let f16 = features.contains(wgpu::Features::SHADER_F16);
        let mut required = wgpu::Features::empty();
        if f16 {
            required |= wgpu::Features::SHADER_F16;
        }
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("foveate"),
            required_features: required,
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| unavailable(format!("adapter {} refused a device ({e}); {INSTALL_HINT}", info.name)))?;
        device.on_uncaptured_error(Arc::new(|e: wgpu::Error| {
            eprintln!("foveate-wgpu: uncaptured device error: {e}");
        }));
        let limits = device.limits();
        Ok(Gpu { device, queue, info, limits, f16 })
    }

    pub fn describe(&self) -> String {
        format!("{} ({:?}, {:?})", self.info.name, self.info.backend, self.info.device_type)
    }
}
