//! One batch per step: `execute` records dispatches on the host, and the batch is encoded and
//! submitted once, when the host needs a result (`download`, `synchronize`), when the parameter
//! buffer is full ([`SLOTS`] dispatches), or after every op with `FOVEATE_WGPU_SYNC=1`.
//!
//! Each dispatch's parameters take one slot of a per-batch uniform arena, written with one
//! `write_buffer` at the flush and bound with a dynamic offset, so a bind group depends only on
//! the pipeline and the storage buffers and is cached by them. Errors: everything that can be
//! checked on the host is checked when the op is recorded (shapes in `check_launch`, grid and
//! parameter limits, pipeline compilation and bind groups under their own error scope, named
//! after the op); the flush has one validation scope and names the ops of the batch.

use crate::buffers::{Counters, DevBuf, Recycler};
use crate::shader::Pipeline;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Dispatches per batch (uniform slots in the parameter arena).
pub const SLOTS: usize = 4096;
/// Cached bind groups kept at most (the cache is cleared beyond it).
const MAX_GROUPS: usize = 16384;
/// Download staging buffers kept for reuse.
const MAX_STAGING: usize = 16;

/// Bind-group cache key: the pipeline and its storage buffers by binding.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct GroupKey {
    pub pipeline: u64,
    pub bufs: Vec<(u32, u64)>,
}

/// A dispatch waiting for the flush.
pub struct Recorded {
    pub pipeline: Arc<Pipeline>,
    pub group: Arc<wgpu::BindGroup>,
    pub params: [u32; crate::launch::PARAMS],
    pub grid: [u32; 3],
}

/// Everything behind the backend's lock.
#[derive(Default)]
pub struct State {
    pub dispatches: Vec<Recorded>,
    /// Labels of the ops recorded in this batch (for errors).
    pub ops: Vec<String>,
    pub recycler: Recycler,
    pub groups: HashMap<GroupKey, Arc<wgpu::BindGroup>>,
    /// MAP_READ buffers for downloads, by size class.
    pub staging: HashMap<u64, wgpu::Buffer>,
    /// Work was submitted that nobody has waited for yet.
    pub unwaited: bool,
}

impl State {
    pub fn pending(&self) -> bool {
        !self.dispatches.is_empty()
    }

    /// Drops the cached bind groups that hold `id`.
    pub fn forget(&mut self, id: u64) {
        self.groups
            .retain(|k, _| !k.bufs.iter().any(|&(_, b)| b == id));
    }

    pub fn cache_group(&mut self, key: GroupKey, group: Arc<wgpu::BindGroup>) {
        if self.groups.len() >= MAX_GROUPS {
            self.groups.clear();
        }
        self.groups.insert(key, group);
    }

    /// Keeps a staging buffer for the next download of its size class, or returns it to be freed.
    pub fn put_staging(&mut self, class: u64, buf: wgpu::Buffer) -> Option<wgpu::Buffer> {
        if self.staging.len() >= MAX_STAGING && !self.staging.contains_key(&class) {
            return Some(buf);
        }
        self.staging.insert(class, buf);
        None
    }

    /// What the batch holds, for an error message.
    pub fn describe_ops(ops: &[String]) -> String {
        match ops {
            [] => "a copy".into(),
            [one] => one.clone(),
            [first, .., last] => format!(
                "a batch of {} ops ({first} ... {last}; set FOVEATE_WGPU_SYNC=1 to submit op by op and name the one at fault)",
                ops.len()
            ),
        }
    }
}

/// Shared by the backend and its buffers (a dropped tensor parks its buffer here).
#[derive(Default)]
pub struct Shared {
    pub counters: Counters,
    state: Mutex<State>,
    next_id: std::sync::atomic::AtomicU64,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn next_id(&self) -> u64 {
        self.next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// A buffer is no longer used by its owner: parked for reuse, or destroyed.
    pub fn release(&self, b: DevBuf) {
        let mut st = self.lock();
        let pending = st.pending();
        if let Some(b) = st.recycler.park(b, pending) {
            st.forget(b.id);
            self.counters
                .device_bytes
                .fetch_sub(b.size(), std::sync::atomic::Ordering::Relaxed);
        }
    }
}
