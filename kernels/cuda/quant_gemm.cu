// quant_gemm.cu: Gemm with weight-only int8/int4 weights (QBITS 8 or 4; layout in
// quant_core.cuh), activations and output in T (DTYPE), f32 accumulation, the same fused
// epilogue as gemm.cu (bias, activation, residual).
// * qgemm_<act>: gemm_core.cuh's tiles with the W tile dequantised on load (f16/bf16: rounded
//   to T in shared memory, then the mma.sync tile math; f32: the SIMT tile). Grid and block as
//   gemm.cu.
// * qgemv_<act>: skinny M (decode), shaped like gemv.cuh: 8 warps, 8 / ksplit output columns per
//   block, each column's K split over `ksplit` warps; a lane takes one 16-byte chunk of its W row
//   per step (int8: 16 weights, half a group; int4: 32 weights, one group) and its one scale,
//   dequantises it in registers and multiplies every row of A in the block's row tile (A is small
//   and stays in L1/L2; 16-byte loads of A when `vec`). The dot product of a chunk is scaled once.
#include "gemm_core.cuh"
#include "gemv.cuh"

#define QW_CHUNK (128 / QBITS)  // weights per 16-byte chunk

template <int ACT>
__device__ __forceinline__ void qgemv(const GemmArgs& g, int ksplit, int vec) {
    __shared__ float red[8][GV_ROWS];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int cols = 8 / ksplit;
    const int n = blockIdx.x * cols + warp / ksplit;
    const int ks = warp % ksplit;
    const int m0 = blockIdx.y * GV_ROWS;
    const int rows = min(GV_ROWS, g.M - m0);
    float acc[GV_ROWS];
#pragma unroll
    for (int r = 0; r < GV_ROWS; ++r) acc[r] = 0.0f;
    if (n < g.N) {
        const u8* wrow = (const u8*)g.w + (u64)n * g.K * QBITS / 8;
        const u64 g0 = (u64)n * (g.K / 32);
        const T* a0 = g.a + (u64)m0 * g.K;
        const int chunks = g.K / QW_CHUNK;
        const int per = (chunks + ksplit - 1) / ksplit;
        const int c1 = min(chunks, (ks + 1) * per);
        for (int c = ks * per + lane; c < c1; c += 32) {
            const qw_u32x4 v = *(const qw_u32x4*)(wrow + (u64)c * 16);
            const u32 w[4] = {v.x, v.y, v.z, v.w};
            float wf[QW_CHUNK];
#if QBITS == 8
            const float d = qw_scale(g, g0 + c / 2);
#pragma unroll
            for (int e = 0; e < 16; ++e) wf[e] = qw_level(w[e >> 2], e & 3, 0);
#else
            const float d = qw_scale(g, g0 + c);
#pragma unroll
            for (int e = 0; e < 16; ++e) {
                wf[e] = qw_level(w[e >> 2], e & 3, 0);
                wf[e + 16] = qw_level(w[e >> 2], e & 3, 1);
            }
#endif
            const int kb = c * QW_CHUNK;
#pragma unroll
            for (int r = 0; r < GV_ROWS; ++r) {
                if (r < rows) {
                    const T* ar = a0 + (u64)r * g.K + kb;
                    float s = 0.0f;
                    if (vec) {
#pragma unroll
                        for (int e0 = 0; e0 < QW_CHUNK; e0 += GV_VEC) {
                            float av[GV_VEC];
                            gv_load(ar + e0, av);
#pragma unroll
                            for (int e = 0; e < GV_VEC; ++e) s = fmaf(wf[e0 + e], av[e], s);
                        }
                    } else {
#pragma unroll
                        for (int e = 0; e < QW_CHUNK; ++e) s = fmaf(wf[e], to_f(ar[e]), s);
                    }
                    acc[r] = fmaf(s, d, acc[r]);
                }
            }
        }
    }
    gemv_finish<ACT>(g, red, acc, ksplit, rows);
}

#define QGEMV_KERNEL(NAME, ACT_) \
    extern "C" __global__ void __launch_bounds__(256) NAME(GemmArgs g, int ksplit, int vec) { qgemv<ACT_>(g, ksplit, vec); }

GEMM_KERNELS(qgemm, 0)
QGEMV_KERNEL(qgemv_none, ACT_NONE)
QGEMV_KERNEL(qgemv_gelu, ACT_GELU_ERF)
QGEMV_KERNEL(qgemv_gelu_tanh, ACT_GELU_TANH)
QGEMV_KERNEL(qgemv_quick_gelu, ACT_QUICK_GELU)
QGEMV_KERNEL(qgemv_silu, ACT_SILU)
