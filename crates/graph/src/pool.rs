//! The buffer planner: a size-class pool over backend allocations. Every intermediate tensor is a
//! [`Buf`]; when the last handle to it is dropped (its liveness ends) its storage goes back to the
//! pool and the next tensor of the same byte size reuses it. The decode loop allocates the same
//! sizes every step, so after the first step it allocates nothing new.

use foveate_core::{Backend, Result, Storage, Tensor, TensorDesc};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Byte counters of the pool (device memory it holds), plus backend allocations it made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Bytes held by live buffers.
    pub live_bytes: usize,
    /// Bytes parked in the free lists.
    pub free_bytes: usize,
    /// Peak of live + free: the most device memory the activations ever took.
    pub peak_bytes: usize,
    /// Peak of live bytes alone (what a perfect planner would need).
    pub peak_live_bytes: usize,
    /// Allocations that went to the backend.
    pub backend_allocs: usize,
    /// Allocations served from the free lists.
    pub reuses: usize,
}

struct Inner {
    free: HashMap<usize, Vec<Arc<dyn Storage>>>,
    stats: PoolStats,
}

/// Shared by the executor and every buffer it hands out.
#[derive(Clone)]
pub struct Pool {
    backend: Arc<dyn Backend>,
    inner: Arc<Mutex<Inner>>,
}

impl Pool {
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Pool { backend, inner: Arc::new(Mutex::new(Inner { free: HashMap::new(), stats: PoolStats::default() })) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A buffer for `desc`: reused when a free one of the same byte size exists.
    pub fn alloc(&self, desc: &TensorDesc) -> Result<Buf> {
        let bytes = desc.size_bytes();
        let reused = {
            let mut g = self.lock();
            let s = g.free.get_mut(&bytes).and_then(|v| v.pop());
            if s.is_some() {
                g.stats.free_bytes -= bytes;
                g.stats.reuses += 1;
            }
            s
        };
        let tensor = match reused {
            Some(storage) => Tensor::new(storage, desc.clone()),
            None => {
                let t = self.backend.alloc(desc)?;
                self.lock().stats.backend_allocs += 1;
                t
            }
        };
        let mut g = self.lock();
        g.stats.live_bytes += bytes;
        g.stats.peak_live_bytes = g.stats.peak_live_bytes.max(g.stats.live_bytes);
        g.stats.peak_bytes = g.stats.peak_bytes.max(g.stats.live_bytes + g.stats.free_bytes);
        drop(g);
        Ok(Buf { tensor: Some(tensor), bytes, pool: self.inner.clone() })
    }

    pub fn stats(&self) -> PoolStats {
        self.lock().stats
    }

    /// Returns the free lists to the backend (keeps the counters' peaks).
    pub fn trim(&self) {
        let mut g = self.lock();
        g.free.clear();
        g.stats.free_bytes = 0;
    }

    /// Starts a new peak measurement from the current state.
    pub fn reset_peak(&self) {
        let mut g = self.lock();
        g.stats.peak_bytes = g.stats.live_bytes + g.stats.free_bytes;
        g.stats.peak_live_bytes = g.stats.live_bytes;
    }
}

/// A pooled tensor. Deref to [`Tensor`]; views made with `reshape` are plain tensors meant to be
/// used for one op and dropped, so the storage is back to a single owner when the `Buf` dies.
pub struct Buf {
    tensor: Option<Tensor>,
    bytes: usize,
    pool: Arc<Mutex<Inner>>,
}

impl std::ops::Deref for Buf {
    type Target = Tensor;
    fn deref(&self) -> &Tensor {
        self.tensor.as_ref().expect("live buffer")
    }
}

impl std::fmt::Debug for Buf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Buf({:?})", self.tensor)
    }
}

impl Buf {
    /// Same storage under another descriptor of the same byte size, keeping pool ownership.
    pub fn into_shape(mut self, shape: impl Into<foveate_core::Shape>) -> Result<Buf> {
        let t = self.tensor.take().expect("live buffer");
        match t.reshape(shape) {
            Ok(v) => {
                self.tensor = Some(v);
                Ok(self)
            }
            Err(e) => {
                self.tensor = Some(t);
                Err(e)
            }
        }
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        let Some(t) = self.tensor.take() else { return };
        let storage = t.storage().clone();
        drop(t);
        let mut g = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        g.stats.live_bytes -= self.bytes;
        // Only a storage nobody else references can be handed out again.
        if Arc::strong_count(&storage) == 1 {
            g.stats.free_bytes += self.bytes;
            g.free.entry(self.bytes).or_default().push(storage);
        }
    }
}
