//! `Words`: a zeroed buffer of `u32` words, the bytes of one cpu tensor. Buffers of 2 MiB and more
//! start on a 2 MiB boundary and ask Linux for transparent huge pages (`madvise`) before they are
//! first touched, so every whole 2 MiB page inside is a huge page.
//!
//! Why: decode streams every weight once per token, and the hardware prefetchers stop at each
//! 4 KiB page. Huge pages were asked for before only where a `Vec<u32>` happened to contain an
//! aligned 2 MiB page, i.e. in buffers of 4 MiB and more, and even there not at the ends: the
//! 2.45 MB int4 MLP weights of Qwen2-0.5B streamed from memory at 24-26 GB/s against 35 for its
//! 145 MB LM head (24 distinct 4,864 x 896 int4 weights in turn, `int8-dot`: 95-102 µs per
//! product). See docs/ARCHITECTURE.md ("CPU kernels").

use std::alloc::{alloc, dealloc, Layout};
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

/// A huge page.
const HUGE: usize = 2 << 20;

pub(crate) struct Words {
    ptr: NonNull<u32>,
    len: usize,
    /// `None` for an empty buffer (a dangling, never freed pointer).
    layout: Option<Layout>,
}

// SAFETY: `Words` owns its allocation like a `Vec<u32>`.
unsafe impl Send for Words {}
// SAFETY: shared access only reads.
unsafe impl Sync for Words {}

impl Words {
    /// `len` zero words.
    pub(crate) fn zeroed(len: usize) -> Words {
        let bytes = len.checked_mul(4).expect("buffer size overflows usize");
        if bytes == 0 {
            return Words { ptr: NonNull::dangling(), len: 0, layout: None };
        }
        let align = if bytes >= HUGE { HUGE } else { 4 };
        let layout = Layout::from_size_align(bytes, align).expect("buffer layout");
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc(layout) };
        let Some(ptr) = NonNull::new(raw as *mut u32) else {
            std::alloc::handle_alloc_error(layout)
        };
        huge_pages(raw, bytes);
        // SAFETY: `raw` is valid for `bytes` writes; zeroing after `madvise` faults the advised
        // ranges in as huge pages.
        unsafe { std::ptr::write_bytes(raw, 0, bytes) };
        Words { ptr, len, layout: Some(layout) }
    }
}

/// Advises every whole 2 MiB page in `[p, p + bytes)` as a transparent huge page (Linux's
/// `madvise` mode leaves that to the program); elsewhere, or where the kernel refuses, nothing
/// changes.
fn huge_pages(p: *mut u8, bytes: usize) {
    #[cfg(target_os = "linux")]
    {
        let start = (p as usize).next_multiple_of(HUGE);
        let end = (p as usize + bytes) / HUGE * HUGE;
        if end > start {
            // SAFETY: [start, end) lies inside the allocation; MADV_HUGEPAGE changes how its
            // pages are backed, never their contents.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
        }
    }
    let _ = (p, bytes);
}

impl Drop for Words {
    fn drop(&mut self) {
        if let Some(layout) = self.layout {
            // SAFETY: allocated in `zeroed` with this layout.
            unsafe { dealloc(self.ptr.as_ptr() as *mut u8, layout) };
        }
    }
}

impl Deref for Words {
    type Target = [u32];
    fn deref(&self) -> &[u32] {
        // SAFETY: `ptr` holds `len` initialised words (or is dangling with `len` 0).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for Words {
    fn deref_mut(&mut self) -> &mut [u32] {
        // SAFETY: as `deref`, and `&mut self` is unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Zeroed, writable, the requested length; large buffers start on a 2 MiB boundary.
    #[test]
    fn zeroed_buffers_of_every_size() {
        for len in [0usize, 1, 1000, HUGE / 4 - 1, HUGE / 4, 3 * HUGE / 4 + 5] {
            let mut w = Words::zeroed(len);
            assert_eq!(w.len(), len);
            assert!(w.iter().all(|&x| x == 0), "len {len}");
            if let Some(last) = w.last_mut() {
                *last = 7;
                assert_eq!(w[len - 1], 7);
            }
            if len * 4 >= HUGE {
                assert_eq!(w.as_ptr() as usize % HUGE, 0, "len {len}");
            }
        }
    }
}
