//! foveate-cuda: the CUDA backend. Hand-written kernels in `kernels/cuda/*.cu`, compiled at run
//! time by NVRTC (cudarc, dynamic loading) for the device's `sm_XY`, specialised with `-D`
//! defines and cached on disk (see [`nvrtc`]). [`specs`] lists every specialisation and builds
//! the `cuda-compile` resource report without a GPU. See KERNELS.md for the kernels.
//!
//! Loading: cudarc opens libcuda and libnvrtc at run time; both are probed before any cudarc
//! call (cudarc panics on a missing library), so a machine without them gets
//! `Error::Unavailable` with the reason. With the PyPI NVRTC wheel, add
//! `.../site-packages/nvidia/cuda_nvrtc/lib` to `LD_LIBRARY_PATH`.

pub mod backend;
pub mod nvrtc;
mod ops;
pub mod specs;

pub use backend::{CudaBackend, CudaStorage};
