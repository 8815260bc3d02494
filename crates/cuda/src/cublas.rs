//! The cuBLAS baseline: the `cublas` Gemm variant, so the kernel benches time NVIDIA's GEMM next to
//! ours on the same shapes, and the matrix checks it like any variant. Plain GEMMs only (no bias,
//! activation or residual: cuBLAS has no such epilogue in `cublasGemmEx`), f32 accumulation
//! (`CUBLAS_COMPUTE_32F`).
//!
//! libcublas is loaded by cudarc at run time, and only when asked: a machine without it gets
//! `supports` = Err with the reason and the variant is skipped, nothing else changes. cudarc (built
//! for CUDA 12.9) looks for `libcublas.so`, `libcublas.so.12`, ...: with CUDA 13 put the toolkit's
//! `lib64` (which has the unversioned `libcublas.so`) on `LD_LIBRARY_PATH` (scripts/cuda-env.sh
//! does). The entry points used (`cublasCreate_v2`, `cublasSetStream_v2`, `cublasGemmEx`) are the
//! same in cuBLAS 12 and 13.

use crate::backend::{dev, CudaBackend, Enqueue};
use cudarc::cublas::{result, sys, CudaBlas};
use foveate_core::{DType, GemmSpec, Result};

/// The variant name.
pub const CUBLAS: &str = "cublas";

/// Why the cuBLAS variant cannot run `spec` (the library itself is checked by the backend).
pub(crate) fn spec_ok(spec: &GemmSpec) -> std::result::Result<(), String> {
    if spec.bias || spec.residual || spec.act != foveate_core::Activation::None {
        return Err(
            "the cuBLAS baseline runs plain GEMMs only (no bias, activation or residual)".into(),
        );
    }
    Ok(())
}

/// A cuBLAS handle on the backend's stream, or why there is none.
pub(crate) fn open(
    be_stream: &std::sync::Arc<cudarc::driver::CudaStream>,
) -> std::result::Result<CudaBlas, String> {
    // SAFETY: only tries to open the shared library.
    if !unsafe { sys::is_culib_present() } {
        return Err("libcublas was not found on the library path (the CUDA toolkit's lib64 has libcublas.so)".into());
    }
    CudaBlas::new(be_stream.clone()).map_err(|e| format!("cublasCreate failed: {e:?}"))
}

fn data_type(dt: DType) -> sys::cudaDataType {
    match dt {
        DType::F16 => sys::cudaDataType::CUDA_R_16F,
        DType::BF16 => sys::cudaDataType::CUDA_R_16BF,
        _ => sys::cudaDataType::CUDA_R_32F,
    }
}

/// out[m, n] = a[m, k] . w[n, k]^T, all row-major: in cuBLAS's column-major terms
/// out^T (n x m) = w (k x n)^T . a^T (k x m), i.e. gemm(T, N, n, m, k, w, lda k, a, ldb k, ldc n).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm(
    be: &CudaBackend,
    q: &Enqueue,
    blas: &CudaBlas,
    dt: DType,
    a: u64,
    w: u64,
    out: u64,
    m: usize,
    n: usize,
    k: usize,
) -> Result<()> {
    if m == 0 || n == 0 {
        return Ok(());
    }
    let (alpha, beta) = (1.0f32, 0.0f32);
    let t = data_type(dt);
    let i =
        |x: usize| i32::try_from(x).map_err(|_| dev(format!("cublas: extent {x} exceeds 32-bit")));
    // SAFETY: a, w and out cover m x k, n x k and m x n elements of `dt` (checked by Op::infer);
    // alpha and beta are host f32 scalars, as CUBLAS_COMPUTE_32F with the default pointer mode wants.
    unsafe {
        result::gemm_ex(
            *blas.handle(),
            sys::cublasOperation_t::CUBLAS_OP_T,
            sys::cublasOperation_t::CUBLAS_OP_N,
            i(n)?,
            i(m)?,
            i(k)?,
            &alpha as *const f32 as *const _,
            w as *const _,
            t,
            i(k)?,
            a as *const _,
            t,
            i(k)?,
            &beta as *const f32 as *const _,
            out as *mut _,
            t,
            i(n)?,
            sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
            sys::cublasGemmAlgo_t::CUBLAS_GEMM_DFALT,
        )
    }
    .map_err(|e| dev(format!("cublasGemmEx {m}x{n}x{k} {dt}: {e:?}")))?;
    be.launched("cublasGemmEx", q)
}
