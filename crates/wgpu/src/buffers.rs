//! Device buffers and their recycling, so a decode step allocates nothing once warm.
//!
//! Every buffer the backend makes is a [`DevBuf`] with its own id (the bind-group cache's key).
//! A released buffer (a dropped tensor, a finished scratch, an upload's staging) is parked in a
//! free list by size class and handed out again, within limits ([`PARK_MAX_BUFFER`],
//! [`PARK_MAX_TOTAL`]); beyond them it is destroyed and its cached bind groups dropped.
//!
//! Reuse inside one recorded batch is safe for dispatches (they run in order, wgpu inserts the
//! barriers) but not for `queue.write_buffer`, which lands at the start of the next submit, before
//! every recorded dispatch. So a buffer released while a batch is pending is *retiring*: free for
//! scratch and outputs at once, free for uploads only after the batch is submitted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Largest buffer parked for reuse (larger ones are destroyed when released).
pub const PARK_MAX_BUFFER: u64 = 64 << 20;
/// Most bytes parked at once.
pub const PARK_MAX_TOTAL: u64 = 512 << 20;

/// A device buffer with a backend-unique id.
pub struct DevBuf {
    pub id: u64,
    pub buffer: wgpu::Buffer,
}

impl DevBuf {
    pub fn size(&self) -> u64 {
        self.buffer.size()
    }
}

/// Work counters (foveate_core::Counters) and device memory held, shared by the backend and
/// its buffers.
#[derive(Default)]
pub struct Counters {
    pub launches: AtomicU64,
    pub submits: AtomicU64,
    pub host_syncs: AtomicU64,
    pub allocations: AtomicU64,
    /// Bytes of every buffer the backend holds (tensors, parked, scratch, staging, uniforms).
    pub device_bytes: AtomicU64,
    pub peak_bytes: AtomicU64,
}

impl Counters {
    pub fn bump(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// A buffer of `n` bytes was created.
    pub fn created(&self, n: u64) {
        Self::bump(&self.allocations, 1);
        let now = self.device_bytes.fetch_add(n, Ordering::Relaxed) + n;
        self.peak_bytes.fetch_max(now, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> foveate_core::Counters {
        foveate_core::Counters {
            launches: self.launches.load(Ordering::Relaxed),
            submits: self.submits.load(Ordering::Relaxed),
            host_syncs: self.host_syncs.load(Ordering::Relaxed),
            allocations: self.allocations.load(Ordering::Relaxed),
        }
    }
}

/// Size class of a scratch buffer, so scratch whose size drifts with the sequence length keeps
/// hitting the same parked buffers: the next power of two up to 1 MiB (at least 256 bytes),
/// above it the next multiple of an eighth of the next power of two (at most 12.5% more).
pub fn scratch_class(bytes: u64) -> u64 {
    let b = bytes.max(256);
    let p = b.next_power_of_two();
    if p <= 1 << 20 {
        p
    } else {
        b.div_ceil(p / 8) * (p / 8)
    }
}

/// The parked buffers.
#[derive(Default)]
pub struct Recycler {
    /// Safe for anything, uploads included.
    free: HashMap<u64, Vec<DevBuf>>,
    /// Released while a batch was pending: safe for dispatches only until it is submitted.
    retiring: HashMap<u64, Vec<DevBuf>>,
    parked: u64,
}

impl Recycler {
    /// A parked buffer of exactly `size` bytes; `for_upload` takes only clean ones.
    pub fn take(&mut self, size: u64, for_upload: bool) -> Option<DevBuf> {
        let b = self.free.get_mut(&size).and_then(Vec::pop);
        let b = match b {
            Some(b) => Some(b),
            None if !for_upload => self.retiring.get_mut(&size).and_then(Vec::pop),
            None => None,
        };
        if let Some(b) = &b {
            self.parked -= b.size();
        }
        b
    }

    /// Parks `b` (as retiring when a batch is pending); returns it when it must be destroyed.
    pub fn park(&mut self, b: DevBuf, batch_pending: bool) -> Option<DevBuf> {
        let size = b.size();
        if size > PARK_MAX_BUFFER || self.parked + size > PARK_MAX_TOTAL {
            return Some(b);
        }
        self.parked += size;
        let list = if batch_pending {
            &mut self.retiring
        } else {
            &mut self.free
        };
        list.entry(size).or_default().push(b);
        None
    }

    /// The pending batch was submitted: retiring buffers are clean.
    pub fn submitted(&mut self) {
        for (size, mut v) in self.retiring.drain() {
            self.free.entry(size).or_default().append(&mut v);
        }
    }

    pub fn parked_bytes(&self) -> u64 {
        self.parked
    }
}
