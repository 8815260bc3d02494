// gemm.cu: every linear layer. out = act(a . w^T + bias) + residual, a [M, K], w [N, K].
// Kernels gemm_<act> (act: none, gelu, gelu_tanh, quick_gelu, silu); bias and residual are
// optional pointers. Grid (ceil(N / tile_n), ceil(M / tile_m)), 256 threads. See gemm_core.cuh.
// gemv_<act>: the same op for skinny M (the `gemv` variant; see gemv.cuh).
#include "gemm_core.cuh"
#include "gemv.cuh"
GEMM_KERNELS(gemm, 0)
GEMV_KERNELS(gemv)
