//! Recording dispatches into the pending batch, flushing it, and the buffers ops use.

use crate::batch::{GroupKey, Recorded, State, SLOTS};
use crate::buffers::{scratch_class, Counters, DevBuf};
use crate::shader::{KernelKey, PARAMS_BYTES};
use crate::device::Gpu;
use crate::WgpuBackend;
use foveate_core::{fmt_bytes, Error, Op, Result};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Number of u32 parameters in the uniform block (`array<vec4<u32>, 8>` in common.wgsl).
pub const PARAMS: usize = 32;

/// One dispatch: kernel, bindings (binding number, buffer), parameters, workgroup grid.
pub struct Dispatch<'a> {
    pub key: KernelKey,
    pub bindings: Vec<(u32, &'a DevBuf)>,
    pub params: Vec<u32>,
    pub grid: [u32; 3],
}

impl<'a> Dispatch<'a> {
    pub fn new(key: KernelKey, grid: [u32; 3]) -> Self {
        Dispatch { key, bindings: Vec::new(), params: Vec::new(), grid }
    }
    pub fn bind(mut self, binding: u32, buffer: &'a DevBuf) -> Self {
        self.bindings.push((binding, buffer));
        self
    }
    pub fn params(mut self, p: &[u32]) -> Self {
        self.params = p.to_vec();
        self
    }
}

/// A 2-D grid of `wg`-sized workgroups covering `n` invocations (65535 per dimension).
pub fn grid_1d(n: usize, wg: usize) -> [u32; 3] {
    let groups = n.div_ceil(wg).max(1);
    let x = groups.min(65535);
    [x as u32, groups.div_ceil(x) as u32, 1]
}

/// A buffer for the duration of one op (scratch, a class table): parked again when dropped.
pub struct Scratch {
    buf: Option<DevBuf>,
    shared: Arc<crate::batch::Shared>,
}

impl std::ops::Deref for Scratch {
    type Target = DevBuf;
    fn deref(&self) -> &DevBuf {
        self.buf.as_ref().expect("live scratch")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(b) = self.buf.take() {
            self.shared.release(b);
        }
    }
}

impl WgpuBackend {
    /// Records the dispatches of `op` into the pending batch (flushing first when it is full).
    /// Everything that can fail on the host (grid and parameter limits, pipeline compilation,
    /// bind groups) is checked before anything is recorded, with the op in the message.
    pub(crate) fn record(&self, op: &Op, dispatches: Vec<Dispatch<'_>>) -> Result<()> {
        let gpu = &self.gpu;
        let max = gpu.limits.max_compute_workgroups_per_dimension;
        let what = |msg: String| Error::device("wgpu", format!("{}: {msg}", op.label()));
        let mut ready = Vec::with_capacity(dispatches.len());
        for d in dispatches {
            if d.grid.iter().any(|&g| g > max) {
                return Err(what(format!("{}: grid {:?} exceeds the adapter's {max} workgroups per dimension", d.key.label(), d.grid)));
            }
            if d.params.len() > PARAMS {
                return Err(what(format!("{}: {} parameters, the block holds {PARAMS}", d.key.label(), d.params.len())));
            }
            if d.grid.contains(&0) {
                continue;
            }
            let slots: Vec<u32> = d.bindings.iter().map(|(b, _)| *b).collect();
            let pipeline = self.pipelines.get(&gpu.device, &d.key, &slots).map_err(|e| what(e.to_string()))?;
            let key = GroupKey { pipeline: pipeline.id, bufs: d.bindings.iter().map(|(b, buf)| (*b, buf.id)).collect() };
            let cached = self.shared.lock().groups.get(&key).cloned();
            let group = match cached {
                Some(g) => g,
                None => {
                    let g = Arc::new(self.bind_group(&pipeline.layout, &d.bindings).map_err(|e| what(format!("binding {}: {e}", pipeline.label)))?);
                    self.shared.lock().cache_group(key, g.clone());
                    g
                }
            };
            let mut params = [0u32; PARAMS];
            params[..d.params.len()].copy_from_slice(&d.params);
            ready.push(Recorded { pipeline, group, params, grid: d.grid });
        }
        let mut st = self.shared.lock();
        if st.dispatches.len() + ready.len() > SLOTS {
            self.flush_locked(&mut st, None)?;
        }
        Counters::bump(&self.shared.counters.launches, ready.len() as u64);
        st.dispatches.extend(ready);
        st.ops.push(op.label());
        if self.sync_each_op {
            self.flush_locked(&mut st, None)?;
        }
        Ok(())
    }

    fn bind_group(&self, layout: &wgpu::BindGroupLayout, bindings: &[(u32, &DevBuf)]) -> std::result::Result<wgpu::BindGroup, wgpu::Error> {
        let device = &self.gpu.device;
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &self.uniforms.buffer,
                offset: 0,
                size: std::num::NonZeroU64::new(PARAMS_BYTES),
            }),
        }];
        for (b, buf) in bindings {
            entries.push(wgpu::BindGroupEntry { binding: *b, resource: buf.buffer.as_entire_binding() });
        }
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let group = device.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout, entries: &entries });
        match pollster::block_on(scope.pop()) {
            Some(e) => Err(e),
            None => Ok(group),
        }
    }

    /// Encodes the pending batch (then `copy`, a download's buffer-to-buffer copy) and submits it
    /// with one validation scope; the batch is empty afterwards, even when the submit failed.
    pub(crate) fn flush_locked(&self, st: &mut State, copy: Option<(&wgpu::Buffer, &wgpu::Buffer, u64)>) -> Result<()> {
        if !st.pending() && copy.is_none() {
            return Ok(());
        }
        let gpu = &self.gpu;
        let stride = self.param_stride;
        if st.pending() {
            let mut arena = vec![0u8; st.dispatches.len() * stride];
            for (i, d) in st.dispatches.iter().enumerate() {
                arena[i * stride..i * stride + PARAMS * 4].copy_from_slice(bytemuck::cast_slice(&d.params));
            }
            gpu.queue.write_buffer(&self.uniforms.buffer, 0, &arena);
        }
        let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut enc = gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("foveate batch") });
        if st.pending() {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes: None });
            for (i, d) in st.dispatches.iter().enumerate() {
                pass.set_pipeline(&d.pipeline.pipeline);
                pass.set_bind_group(0, &*d.group, &[(i * stride) as u32]);
                pass.dispatch_workgroups(d.grid[0], d.grid[1], d.grid[2]);
            }
        }
        if let Some((src, dst, size)) = copy {
            enc.copy_buffer_to_buffer(src, 0, dst, 0, size);
        }
        gpu.queue.submit([enc.finish()]);
        Counters::bump(&self.shared.counters.submits, 1);
        st.unwaited = true;
        let ops = std::mem::take(&mut st.ops);
        st.dispatches.clear();
        st.recycler.submitted();
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::device("wgpu", format!("submitting {}: {e}", State::describe_ops(&ops))));
        }
        Ok(())
    }

    /// A parked buffer of exactly `size` bytes, or a new one. `for_upload`: it will be written
    /// with `write_buffer`, so it must not be one a pending dispatch still uses.
    pub(crate) fn take_buffer(&self, size: u64, label: &str, for_upload: bool) -> Result<DevBuf> {
        if let Some(b) = self.shared.lock().recycler.take(size, for_upload) {
            return Ok(b);
        }
        let buffer = self.create_buffer(size, label, wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST)?;
        Ok(DevBuf { id: self.shared.next_id(), buffer })
    }

    /// A scratch storage buffer for intermediate results inside one op.
    pub(crate) fn scratch(&self, bytes: usize) -> Result<Scratch> {
        let buf = self.take_buffer(self.class_within_limits(bytes), "scratch", false)?;
        Ok(Scratch { buf: Some(buf), shared: self.shared.clone() })
    }

    /// A small table (u32) uploaded for one op.
    pub(crate) fn upload_u32(&self, v: &[u32]) -> Result<Scratch> {
        let data: Vec<u32> = if v.is_empty() { vec![0] } else { v.to_vec() };
        let buf = self.take_buffer(self.class_within_limits(4 * data.len()), "table", true)?;
        self.gpu.queue.write_buffer(&buf.buffer, 0, bytemuck::cast_slice(&data));
        Ok(Scratch { buf: Some(buf), shared: self.shared.clone() })
    }

    /// The size class of `bytes` ([`scratch_class`]), or the exact size where the class would
    /// pass the adapter's buffer limits.
    fn class_within_limits(&self, bytes: usize) -> u64 {
        let class = scratch_class(bytes as u64);
        let lim = self.gpu.limits.max_buffer_size.min(self.gpu.limits.max_storage_buffer_binding_size);
        if class > lim { crate::storage::padded(bytes) } else { class }
    }

    /// A new buffer (see [`new_buffer`]).
    pub(crate) fn create_buffer(&self, size: u64, label: &str, usage: wgpu::BufferUsages) -> Result<wgpu::Buffer> {
        new_buffer(&self.gpu, &self.shared.counters, size, label, usage)
    }

    /// Bytes of device memory parked for reuse.
    pub fn parked_bytes(&self) -> u64 {
        self.shared.lock().recycler.parked_bytes()
    }

    pub(crate) fn device_bytes(&self) -> u64 {
        self.shared.counters.device_bytes.load(Ordering::Relaxed)
    }
}

/// A new buffer of `size` bytes (counted). A size above the adapter's limits is refused before
/// anything is allocated, and a device out of memory is [`Error::OutOfMemory`] (wgpu does not
/// report free memory, so its `free` is [`foveate_core::FREE_UNKNOWN`]).
pub(crate) fn new_buffer(gpu: &Gpu, counters: &Counters, size: u64, label: &str, usage: wgpu::BufferUsages) -> Result<wgpu::Buffer> {
    check_buffer_size(size, label, &gpu.limits)?;
    let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let buffer = gpu.device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size, usage, mapped_at_creation: false });
    if let Some(e) = pollster::block_on(scope.pop()) {
        return Err(match e {
            wgpu::Error::OutOfMemory { .. } => Error::OutOfMemory { backend: "wgpu".into(), requested: size, free: foveate_core::FREE_UNKNOWN },
            other => Error::device("wgpu", format!("creating a {} `{label}` buffer: {other}", fmt_bytes(size))),
        });
    }
    counters.created(size);
    Ok(buffer)
}

/// Refuses a buffer of `size` bytes above the adapter's `max_buffer_size` or
/// `max_storage_buffer_binding_size` (every foveate buffer is bound as one storage array), naming
/// the limit and both sizes.
pub fn check_buffer_size(size: u64, label: &str, limits: &wgpu::Limits) -> Result<()> {
    for (name, lim) in [
        ("max_buffer_size", limits.max_buffer_size),
        ("max_storage_buffer_binding_size", limits.max_storage_buffer_binding_size),
    ] {
        if size > lim {
            return Err(Error::device(
                "wgpu",
                format!("a `{label}` buffer of {} exceeds the adapter's {name} of {}", fmt_bytes(size), fmt_bytes(lim)),
            ));
        }
    }
    Ok(())
}
