//! Device buffers behind foveate tensors.
//!
//! A buffer holds the tensor's bytes in its own dtype (f16 as 2-byte elements), sized up to a
//! multiple of 4 bytes (and at least 4) because WGSL storage arrays bind in 4-byte units; the
//! logical size stays in the tensor's descriptor. A dropped tensor's buffer is parked for reuse
//! (see `buffers.rs`).

use crate::batch::Shared;
use crate::buffers::DevBuf;
use foveate_core::Storage;
use std::any::Any;
use std::sync::Arc;

pub struct WgpuStorage {
    buf: Option<DevBuf>,
    /// Logical size in bytes (the buffer may be up to 3 bytes larger).
    pub bytes: usize,
    shared: Arc<Shared>,
}

impl WgpuStorage {
    pub(crate) fn new(buf: DevBuf, bytes: usize, shared: Arc<Shared>) -> Self {
        WgpuStorage { buf: Some(buf), bytes, shared }
    }

    pub(crate) fn dev(&self) -> &DevBuf {
        self.buf.as_ref().expect("live storage")
    }

    /// The wgpu buffer.
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.dev().buffer
    }
}

impl Drop for WgpuStorage {
    fn drop(&mut self) {
        if let Some(b) = self.buf.take() {
            self.shared.release(b);
        }
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
