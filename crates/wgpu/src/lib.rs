//! foveate-wgpu: the WGSL backend on wgpu (Vulkan, Metal, DX12).
//!
//! Hand-written kernels live in `kernels/wgsl/` (one file per family) and are embedded with
//! `include_str!`; pipelines are compiled on first use and cached by (kernel, specialisation).
//! Every op of [`foveate_core::Op`] runs on the device; tensors cross to the host only in
//! `upload` / `download`. Dtypes: f32 everywhere, f16 (stored as f16, computed in f32) when the
//! adapter has shader-f16, u32 for ids/positions and copies; bf16 is not supported
//! (see [`variants::BF16_REASON`]).

mod attention;
mod device;
mod launch;
mod ops;
pub mod shader;
mod storage;
pub mod variants;

pub use attention::MAX_HEAD_DIM;
pub use launch::check_buffer_size;
pub use storage::WgpuStorage;

use device::Gpu;
use foveate_core::{
    check_launch, Backend, DType, Error, HostTensor, MemoryStats, Op, OpKind, Result, Tensor, TensorDesc, VariantInfo,
};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use storage::{padded, Counters};
use wgpu::util::DeviceExt;

/// The wgpu backend. `new()` opens the best adapter; without one it returns
/// `Error::Unavailable` saying what to install.
pub struct WgpuBackend {
    gpu: Gpu,
    pipelines: shader::PipelineCache,
    counters: Arc<Counters>,
}

impl WgpuBackend {
    pub fn new() -> Result<WgpuBackend> {
        let gpu = Gpu::open()?;
        Ok(WgpuBackend { gpu, pipelines: Default::default(), counters: Default::default() })
    }

    /// Whether the adapter has shader-f16 (and so the backend computes in f16).
    pub fn has_f16(&self) -> bool {
        self.gpu.f16
    }

    /// The limits the device was opened with (the adapter's own).
    pub fn limits(&self) -> &wgpu::Limits {
        &self.gpu.limits
    }

    /// Number of compiled pipelines in the cache.
    pub fn cached_pipelines(&self) -> usize {
        self.pipelines.len()
    }

    pub(crate) fn buffer<'t>(&self, t: &'t Tensor, what: &str) -> Result<&'t wgpu::Buffer> {
        t.storage_as::<WgpuStorage>().map(|s| &s.buffer).ok_or_else(|| {
            Error::device("wgpu", format!("{what} lives on backend `{}`, not wgpu", t.storage().backend()))
        })
    }

    pub(crate) fn upload_u32(&self, v: &[u32]) -> Result<wgpu::Buffer> {
        let data: Vec<u32> = if v.is_empty() { vec![0] } else { v.to_vec() };
        Ok(self.gpu.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("table"),
            contents: bytemuck::cast_slice(&data),
            usage: wgpu::BufferUsages::STORAGE,
        }))
    }

    fn wait(&self) -> Result<()> {
        self.gpu
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| Error::device("wgpu", format!("waiting for the device: {e}")))
    }
}

impl Backend for WgpuBackend {
    fn name(&self) -> &str {
        "wgpu"
    }

    fn device_name(&self) -> String {
        self.gpu.describe()
    }

    fn dtypes(&self) -> Vec<DType> {
        self.float_dtypes()
    }

    fn variants(&self, op: OpKind) -> Vec<VariantInfo> {
        self.variant_list(op)
    }

    fn supports(&self, op: &Op, dtype: DType, variant: &str) -> std::result::Result<(), String> {
        self.supports_impl(op, dtype, variant)
    }

    fn alloc(&self, desc: &TensorDesc) -> Result<Tensor> {
        let bytes = desc.size_bytes();
        let buffer = self.create_buffer(padded(bytes), "tensor")?;
        Ok(Tensor::new(Arc::new(WgpuStorage::new(buffer, bytes, self.counters.clone())), desc.clone()))
    }

    fn upload(&self, host: &HostTensor) -> Result<Tensor> {
        if let Err(why) = self.check_dtype(host.dtype()) {
            return Err(Error::unsupported("wgpu", format!("uploading a {} tensor: {why}", host.dtype())));
        }
        let t = self.alloc(&host.desc)?;
        let mut bytes = host.bytes.clone();
        bytes.resize(padded(bytes.len()) as usize, 0);
        self.gpu.queue.write_buffer(self.buffer(&t, "upload")?, 0, &bytes);
        Ok(t)
    }

    fn download(&self, t: &Tensor) -> Result<HostTensor> {
        let src = self.buffer(t, "download")?;
        let logical = t.desc().size_bytes();
        let size = src.size();
        let staging = self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("download"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        enc.copy_buffer_to_buffer(src, 0, &staging, 0, size);
        self.gpu.queue.submit([enc.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        rx.recv()
            .map_err(|_| Error::device("wgpu", "buffer map callback never ran"))?
            .map_err(|e| Error::device("wgpu", format!("mapping a download buffer: {e}")))?;
        let bytes = {
            let view = staging
                .get_mapped_range(..)
                .map_err(|e| Error::device("wgpu", format!("reading a download buffer: {e:?}")))?;
            view[..logical].to_vec()
        };
        staging.unmap();
        HostTensor::from_bytes(t.desc().clone(), bytes)
    }

    fn execute(&self, op: &Op, inputs: &[&Tensor], out: &Tensor, variant: &str) -> Result<()> {
        check_launch(op, inputs, out)?;
        let dt = inputs.first().map_or(DType::F32, |t| t.dtype());
        self.supports_impl(op, dt, variant)
            .map_err(|why| Error::unsupported("wgpu", format!("{} on {dt} (variant `{variant}`): {why}", op.label())))?;
        let ins = inputs
            .iter()
            .enumerate()
            .map(|(i, t)| self.buffer(t, &format!("{} input {i}", op.name())))
            .collect::<Result<Vec<_>>>()?;
        let o = self.buffer(out, &format!("{} output", op.name()))?;
        self.encode(op, dt, inputs, &ins, out, o, variant)
    }

    fn synchronize(&self) -> Result<()> {
        self.wait()
    }

    fn memory_stats(&self) -> Option<MemoryStats> {
        Some(MemoryStats {
            allocated_bytes: self.counters.allocated.load(Ordering::Relaxed),
            peak_bytes: self.counters.peak.load(Ordering::Relaxed),
        })
    }
}
