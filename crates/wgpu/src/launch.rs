//! One op = one command buffer of one or more dispatches; nothing is read back between ops.

use crate::shader::KernelKey;
use crate::WgpuBackend;
use foveate_core::{fmt_bytes, Error, Result};
use wgpu::util::DeviceExt;

/// Number of u32 parameters in the uniform block (`array<vec4<u32>, 8>` in common.wgsl).
pub const PARAMS: usize = 32;

/// One dispatch: kernel, bindings (binding number, buffer), parameters, workgroup grid.
pub struct Dispatch<'a> {
    pub key: KernelKey,
    pub bindings: Vec<(u32, &'a wgpu::Buffer)>,
    pub params: Vec<u32>,
    pub grid: [u32; 3],
}

impl<'a> Dispatch<'a> {
    pub fn new(key: KernelKey, grid: [u32; 3]) -> Self {
        Dispatch { key, bindings: Vec::new(), params: Vec::new(), grid }
    }
    pub fn bind(mut self, binding: u32, buffer: &'a wgpu::Buffer) -> Self {
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

impl WgpuBackend {
    /// Encodes the dispatches in order into one command buffer and submits it.
    pub(crate) fn submit(&self, dispatches: Vec<Dispatch<'_>>) -> Result<()> {
        let gpu = &self.gpu;
        let max = gpu.limits.max_compute_workgroups_per_dimension;
        let mut prepared = Vec::with_capacity(dispatches.len());
        for d in &dispatches {
            if d.grid.iter().any(|&g| g > max) {
                return Err(Error::device(
                    "wgpu",
                    format!("{}: grid {:?} exceeds the adapter's {max} workgroups per dimension", d.key.label(), d.grid),
                ));
            }
            if d.params.len() > PARAMS {
                return Err(Error::device("wgpu", format!("{}: too many parameters", d.key.label())));
            }
            let pipeline = self.pipelines.get(&gpu.device, &d.key)?;
            let mut params = [0u32; PARAMS];
            params[..d.params.len()].copy_from_slice(&d.params);
            let pbuf = gpu.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("params"),
                contents: bytemuck::cast_slice(&params),
                usage: wgpu::BufferUsages::UNIFORM,
            });
            let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: pbuf.as_entire_binding() }];
            for (b, buf) in &d.bindings {
                entries.push(wgpu::BindGroupEntry { binding: *b, resource: buf.as_entire_binding() });
            }
            let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
            let group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &pipeline.get_bind_group_layout(0),
                entries: &entries,
            });
            if let Some(e) = pollster::block_on(scope.pop()) {
                return Err(Error::device("wgpu", format!("binding {}: {e}", d.key.label())));
            }
            prepared.push((pipeline, group, d.grid));
        }
        let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut enc = gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes: None });
            for (pipeline, group, grid) in &prepared {
                if grid.iter().any(|&g| g == 0) {
                    continue;
                }
                pass.set_pipeline(pipeline);
                pass.set_bind_group(0, group, &[]);
                pass.dispatch_workgroups(grid[0], grid[1], grid[2]);
            }
        }
        gpu.queue.submit([enc.finish()]);
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::device("wgpu", format!("submitting {}: {e}", dispatches[0].key.label())));
        }
        Ok(())
    }

    /// A scratch storage buffer for intermediate results inside one op.
    pub(crate) fn scratch(&self, bytes: usize) -> Result<wgpu::Buffer> {
        self.create_buffer(crate::storage::padded(bytes), "scratch")
    }

    /// A storage buffer of `size` bytes. A size above the adapter's limits is refused before
    /// anything is allocated, and a device out of memory is [`Error::OutOfMemory`] (wgpu does not
    /// report free memory, so its `free` is [`foveate_core::FREE_UNKNOWN`]).
    pub(crate) fn create_buffer(&self, size: u64, label: &str) -> Result<wgpu::Buffer> {
        check_buffer_size(size, label, &self.gpu.limits)?;
        let scope = self.gpu.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let buffer = self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(match e {
                wgpu::Error::OutOfMemory { .. } => {
                    Error::OutOfMemory { backend: "wgpu".into(), requested: size, free: foveate_core::FREE_UNKNOWN }
                }
                other => Error::device("wgpu", format!("creating a {} `{label}` buffer: {other}", fmt_bytes(size))),
            });
        }
        Ok(buffer)
    }
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
