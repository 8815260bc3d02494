//! foveate-wgpu: the WGSL backend on wgpu (Vulkan, Metal, DX12).
//!
//! Hand-written kernels live in `kernels/wgsl/` (one file per family) and are embedded with
//! `include_str!`; pipelines are compiled on first use and cached by (kernel, specialisation).
//! Every op of [`foveate_core::Op`] runs on the device; tensors cross to the host only in
//! `upload` / `download`. `execute` only records: a step's dispatches go to the device in one
//! submit when the host needs a result (see `batch.rs`), with parameters in one uniform arena,
//! cached bind groups and recycled buffers (`buffers.rs`), so a warm decode step makes one submit
//! and no allocation ([`Backend::counters`]). Dtypes: f32 everywhere, f16 (stored as f16, computed in f32) when the
//! adapter has shader-f16, u32 for ids/positions and copies; bf16 is not supported
//! (see [`variants::BF16_REASON`]).

mod attention;
mod batch;
mod buffers;
mod device;
mod launch;
mod ops;
pub mod shader;
mod storage;
pub mod variants;

pub use attention::MAX_HEAD_DIM;
pub use batch::SLOTS;
pub use buffers::{PARK_MAX_BUFFER, PARK_MAX_TOTAL};
pub use launch::check_buffer_size;
pub use storage::WgpuStorage;

use batch::Shared;
use buffers::{scratch_class, Counters, DevBuf};
use device::Gpu;
use foveate_core::{
    check_launch, Backend, DType, Error, HostTensor, MemoryStats, Op, OpKind, Result, Tensor, TensorDesc, VariantInfo,
};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use storage::padded;

/// The wgpu backend. `new()` opens the best adapter; without one it returns
/// `Error::Unavailable` saying what to install.
pub struct WgpuBackend {
    gpu: Gpu,
    pipelines: shader::PipelineCache,
    shared: Arc<Shared>,
    /// The parameter arena: one slot of `param_stride` bytes per dispatch of a batch.
    uniforms: DevBuf,
    param_stride: usize,
    /// `FOVEATE_WGPU_SYNC=1`: submit after every op (errors pinned to their op; slow).
    sync_each_op: bool,
}

impl WgpuBackend {
    pub fn new() -> Result<WgpuBackend> {
        let gpu = Gpu::open()?;
        let align = gpu.limits.min_uniform_buffer_offset_alignment.max(1) as usize;
        let param_stride = (shader::PARAMS_BYTES as usize).div_ceil(align) * align;
        let shared = Arc::new(Shared::default());
        let size = (batch::SLOTS * param_stride) as u64;
        let usage = wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST;
        let buffer = launch::new_buffer(&gpu, &shared.counters, size, "params", usage)?;
        let uniforms = DevBuf { id: shared.next_id(), buffer };
        let sync_each_op = std::env::var("FOVEATE_WGPU_SYNC").is_ok_and(|v| matches!(v.trim(), "1" | "true" | "yes"));
        Ok(WgpuBackend { gpu, pipelines: Default::default(), shared, uniforms, param_stride, sync_each_op })
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

    pub(crate) fn buffer<'t>(&self, t: &'t Tensor, what: &str) -> Result<&'t DevBuf> {
        t.storage_as::<WgpuStorage>().map(|s| s.dev()).ok_or_else(|| {
            Error::device("wgpu", format!("{what} lives on backend `{}`, not wgpu", t.storage().backend()))
        })
    }

    /// Waits for everything submitted (one host sync).
    fn wait(&self) -> Result<()> {
        self.gpu
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::device("wgpu", format!("waiting for the device: {e}")))?;
        self.shared.lock().unwaited = false;
        Counters::bump(&self.shared.counters.host_syncs, 1);
        Ok(())
    }

    /// Flushes the batch with a copy of `size` bytes of `src` into `staging`, waits, and reads
    /// the first `logical` bytes.
    fn read_back(&self, src: &wgpu::Buffer, staging: &wgpu::Buffer, size: u64, logical: usize) -> Result<Vec<u8>> {
        {
            let mut st = self.shared.lock();
            self.flush_locked(&mut st, Some((src, staging, size)))?;
        }
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, ..size, move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        rx.recv()
            .map_err(|_| Error::device("wgpu", "buffer map callback never ran"))?
            .map_err(|e| Error::device("wgpu", format!("mapping a download buffer: {e}")))?;
        let bytes = {
            let view = staging
                .get_mapped_range(..size)
                .map_err(|e| Error::device("wgpu", format!("reading a download buffer: {e:?}")))?;
            view[..logical].to_vec()
        };
        staging.unmap();
        Ok(bytes)
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
        let buf = self.take_buffer(padded(bytes), "tensor", false)?;
        Ok(Tensor::new(Arc::new(WgpuStorage::new(buf, bytes, self.shared.clone())), desc.clone()))
    }

    fn upload(&self, host: &HostTensor) -> Result<Tensor> {
        if let Err(why) = self.check_dtype(host.dtype()) {
            return Err(Error::unsupported("wgpu", format!("uploading a {} tensor: {why}", host.dtype())));
        }
        let n = host.bytes.len();
        let buf = self.take_buffer(padded(n), "tensor", true)?;
        if n.is_multiple_of(4) && n > 0 {
            self.gpu.queue.write_buffer(&buf.buffer, 0, &host.bytes);
        } else {
            let mut bytes = host.bytes.clone();
            bytes.resize(padded(n) as usize, 0);
            self.gpu.queue.write_buffer(&buf.buffer, 0, &bytes);
        }
        Ok(Tensor::new(Arc::new(WgpuStorage::new(buf, n, self.shared.clone())), host.desc.clone()))
    }

    fn download(&self, t: &Tensor) -> Result<HostTensor> {
        let src = self.buffer(t, "download")?;
        let size = src.size();
        let class = scratch_class(size);
        let parked = self.shared.lock().staging.remove(&class);
        let staging = match parked {
            Some(b) => b,
            None => self.create_buffer(class, "download", wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST)?,
        };
        let bytes = self.read_back(&src.buffer, &staging, size, t.desc().size_bytes());
        if let Some(b) = self.shared.lock().put_staging(class, staging) {
            self.shared.counters.device_bytes.fetch_sub(b.size(), Ordering::Relaxed);
        }
        HostTensor::from_bytes(t.desc().clone(), bytes?)
    }

    fn execute(&self, op: &Op, inputs: &[&Tensor], out: &Tensor, variant: &str) -> Result<()> {
        check_launch(op, inputs, out)?;
        if !variants::reads_weights(op, inputs) {
            foveate_core::refuse_mixed_weights("wgpu", op, inputs)?;
        }
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

    /// Submits the pending batch and waits for the device (a host sync only when something
    /// submitted is still unwaited for).
    fn synchronize(&self) -> Result<()> {
        let unwaited = {
            let mut st = self.shared.lock();
            self.flush_locked(&mut st, None)?;
            st.unwaited
        };
        if unwaited {
            self.wait()?;
        }
        Ok(())
    }

    /// Device memory the backend holds: tensors, parked buffers, scratch, staging, parameters.
    fn memory_stats(&self) -> Option<MemoryStats> {
        Some(MemoryStats { allocated_bytes: self.device_bytes(), peak_bytes: self.shared.counters.peak_bytes.load(Ordering::Relaxed) })
    }

    fn counters(&self) -> Option<foveate_core::Counters> {
        Some(self.shared.counters.snapshot())
    }
}
