//! Device buffers behind foveate tensors.
//!
//! A buffer holds the tensor's bytes in its own dtype (f16 as 2-byte elements), sized up to a
//! multiple of 4 bytes (and at least 4) because WGSL storage arrays bind in 4-byte units; the
//! logical size stays in the tensor's descriptor.

use foveate_core::Storage;
use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Allocation counters shared by a backend and its buffers.
#[derive(Default)]
pub struct Counters {
    pub allocated: AtomicU64,
    pub peak: AtomicU64,
}

impl Counters {
    pub fn add(&self, n: u64) {
        let now = self.allocated.fetch_add(n, Ordering::Relaxed) + n;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }
}

pub struct WgpuStorage {
    pub buffer: wgpu::Buffer,
    /// Logical size in bytes (the buffer may be up to 3 bytes larger).
    pub bytes: usize,
    counters: Arc<Counters>,
}

impl WgpuStorage {
    pub fn new(buffer: wgpu::Buffer, bytes: usize, counters: Arc<Counters>) -> Self {
        counters.add(buffer.size());
        WgpuStorage { buffer, bytes, counters }
    }
}

impl Drop for WgpuStorage {
    fn drop(&mut self) {
        self.counters.allocated.fetch_sub(self.buffer.size(), Ordering::Relaxed);
    }
}

impl Storage for WgpuStorage {
    fn backend(&self) -> &'static str {
        "wgpu"
    }
    fn size_bytes(&self) -> usize {
        self.bytes
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Buffer size for `bytes` logical bytes: a multiple of 4, at least 4.
pub fn padded(bytes: usize) -> u64 {
    (bytes.max(4).div_ceil(4) * 4) as u64
}
