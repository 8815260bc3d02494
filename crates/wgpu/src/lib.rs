//! foveate-wgpu (in progress)
