//! foveate-cuda: the CUDA backend. Hand-written kernels in `kernels/cuda/*.cu`, compiled at run
//! time by NVRTC (cudarc, dynamic loading) for the device's `sm_XY`, specialised with `-D`
//! defines and cached on disk (see [`nvrtc`]). [`specs`] lists every specialisation and builds
//! the `cuda-compile` resource report without a GPU. See KERNELS.md for the kernels.
//!
//! Loading: cudarc opens libcuda at run time, [`libs`] opens libnvrtc (12 or 13; see there for
//! the search order and `FOVEATE_NVRTC_PATH`); both are probed before use (cudarc panics on a
//! missing library), so a machine without them gets `Error::Unavailable` with the reason.
//! [`cache`] holds the compiled modules on disk with a manifest, so a GPU machine without NVRTC
//! runs from a cache filled elsewhere (`FOVEATE_CUDA_CACHE`).

mod attn;
pub mod backend;
pub mod cache;
mod cublas;
pub mod libs;
pub mod nvrtc;
mod ops;
pub mod specs;

pub use attn::FLASH_DECODE_V16;
pub use backend::{CudaBackend, CudaStorage, FAULT_ENV, SYNC_ENV};
pub use cublas::CUBLAS;
pub use ops::{GEMV, GEMV_ENV};
