//! The buffer pool: size-class buckets over backend allocations, trimmed between requests.
//!
//! Every intermediate tensor is a [`Buf`]. Its storage comes from a size class (a few classes per
//! power of two, so at most 25% above the tensor's bytes); when the last handle to it is dropped
//! the storage goes back to its class's free list and the next tensor of that class reuses it,
//! whatever its exact shape. A decode step allocates the same classes every step, so after the
//! first step it allocates nothing new; prompts of nearby lengths share classes too.
//!
//! Trimming: [`Pool::end_request`] (the generate loop calls it after every call) gives back to the
//! backend every free buffer the request just served did not need: per class, at most as many
//! buffers stay as the request had live at once. So the pool never holds more than the largest
//! single request needs, however many distinct prompt lengths an eval sees.

use foveate_core::{Backend, DType, Result, Storage, Tensor, TensorDesc};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Byte counters of the pool (device memory it holds), plus backend allocations it made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Bytes (of size classes) held by live buffers.
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
    /// Buffers given back to the backend by trimming.
    pub trimmed: usize,
}

/// The size class of a tensor of `bytes` bytes: 256 bytes at least, then the next of
/// `2^k · {1, 1.25, 1.5, 1.75}` (a multiple of 64 bytes, so of every element size).
pub fn size_class(bytes: usize) -> usize {
    if bytes <= 256 {
        return 256;
    }
    let k = usize::BITS - 1 - (bytes - 1).leading_zeros(); // 2^k < bytes <= 2^(k+1)
    let base = 1usize << k;
    for q in 5..=8 {
        let c = base / 4 * q;
        if c >= bytes {
            return c;
        }
    }
    base * 2
}

#[derive(Default)]
struct Class {
    free: Vec<Arc<dyn Storage>>,
    live: usize,
    /// Most buffers of this class live at once since the last `end_request`.
    request_peak: usize,
}

#[derive(Default)]
struct Inner {
    classes: HashMap<usize, Class>,
    stats: PoolStats,
}

/// Shared by the executor and every buffer it hands out.
#[derive(Clone)]
pub struct Pool {
    backend: Arc<dyn Backend>,
    inner: Arc<Mutex<Inner>>,
}

fn lock(m: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Pool {
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Pool { backend, inner: Arc::new(Mutex::new(Inner::default())) }
    }

    /// A buffer for `desc`, from its size class's free list when one is there.
    pub fn alloc(&self, desc: &TensorDesc) -> Result<Buf> {
        let class = size_class(desc.size_bytes());
        let reused = {
            let mut g = lock(&self.inner);
            let s = g.classes.entry(class).or_default().free.pop();
            if s.is_some() {
                g.stats.free_bytes -= class;
                g.stats.reuses += 1;
            }
            s
        };
        let storage = match reused {
            Some(s) => s,
            None => {
                // A u32 tensor of the class's bytes: any dtype's tensor fits in it.
                let t = self.backend.alloc(&TensorDesc::new(DType::U32, vec![class / 4]))?;
                lock(&self.inner).stats.backend_allocs += 1;
                t.storage().clone()
            }
        };
        let mut g = lock(&self.inner);
        let c = g.classes.entry(class).or_default();
        c.live += 1;
        c.request_peak = c.request_peak.max(c.live);
        g.stats.live_bytes += class;
        g.stats.peak_live_bytes = g.stats.peak_live_bytes.max(g.stats.live_bytes);
        g.stats.peak_bytes = g.stats.peak_bytes.max(g.stats.live_bytes + g.stats.free_bytes);
        drop(g);
        Ok(Buf { tensor: Some(Tensor::new(storage, desc.clone())), class, pool: self.inner.clone() })
    }

    pub fn stats(&self) -> PoolStats {
        lock(&self.inner).stats
    }

    /// Gives back every free buffer the request since the last call did not need (per class, at
    /// most its peak of simultaneously live buffers stays, counting the ones still live), and
    /// starts the next request's count.
    pub fn end_request(&self) {
        let mut g = lock(&self.inner);
        let mut trimmed = (0usize, 0usize);
        g.classes.retain(|&bytes, c| {
            let keep = c.request_peak.saturating_sub(c.live);
            while c.free.len() > keep {
                c.free.pop();
                trimmed.0 += 1;
                trimmed.1 += bytes;
            }
            c.request_peak = c.live;
            c.live > 0 || !c.free.is_empty()
        });
        g.stats.trimmed += trimmed.0;
        g.stats.free_bytes -= trimmed.1;
    }

    /// Gives every free buffer back to the backend (keeps the counters' peaks).
    pub fn trim(&self) {
        let mut g = lock(&self.inner);
        let mut n = 0;
        for c in g.classes.values_mut() {
            n += c.free.len();
            c.free.clear();
        }
        g.classes.retain(|_, c| c.live > 0);
        g.stats.trimmed += n;
        g.stats.free_bytes = 0;
    }

    /// Starts a new peak measurement from the current state.
    pub fn reset_peak(&self) {
        let mut g = lock(&self.inner);
        g.stats.peak_bytes = g.stats.live_bytes + g.stats.free_bytes;
        g.stats.peak_live_bytes = g.stats.live_bytes;
    }
}

/// A pooled tensor. Deref to [`Tensor`]; views made with `reshape` are plain tensors meant to be
/// used for one op and dropped, so the storage is back to a single owner when the `Buf` dies.
pub struct Buf {
    tensor: Option<Tensor>,
    class: usize,
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
    /// Same storage under another descriptor of the same element count, keeping pool ownership.
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
        let mut g = lock(&self.pool);
        g.stats.live_bytes -= self.class;
        let only_owner = Arc::strong_count(&storage) == 1;
        let c = g.classes.entry(self.class).or_default();
        c.live -= 1;
        // Only a storage nobody else references can be handed out again.
        if only_owner {
            c.free.push(storage);
            g.stats.free_bytes += self.class;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn size_classes_waste_at_most_a_quarter() {
        assert_eq!(size_class(1), 256);
        assert_eq!(size_class(256), 256);
        assert_eq!(size_class(257), 320);
        assert_eq!(size_class(512), 512);
        assert_eq!(size_class(513), 640);
        assert_eq!(size_class(4096 * 3), 4096 * 3);
        for b in (1..200_000).step_by(37) {
            let c = size_class(b);
            assert!(c >= b && c % 64 == 0, "{b} -> {c}");
            assert!(b <= 256 || (c as f64) < 1.25 * b as f64 + 1.0, "{b} -> {c}");
        }
    }
}
