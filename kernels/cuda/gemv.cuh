// gemv.cuh: the skinny-M GEMM (decode: M = batch rows, 1..16), out[m, n] = epilogue(sum_k
// A[m, k] * W[n, k]) with gemm_core.cuh's GemmArgs and epilogue (bias, activation, residual).
//
// At M <= 16 the work is reading W once (N x K), so a GEMM tile of 128 x 128 wastes the block
// and launches only ceil(N / 128) blocks. Here: 256 threads = 8 warps; a block covers 8 / ksplit
// output columns, each column taken by `ksplit` warps that split K between them (ksplit 1, 2, 4
// or 8, chosen on the host so the grid has >= 2 blocks per SM). A lane streams 16-byte chunks of
// its W row (8 halves / 4 floats) and, for every row of A in the block's row tile (16 rows,
// grid.y covers larger M), the same chunk of A (A is small and stays in L1/L2). f32 accumulation;
// each warp reduces its 16 partial sums with shuffles, the `ksplit` warps of a column add theirs
// in shared memory, and gemm_store applies the epilogue. `vec` = 0 (K not a multiple of the
// 16-byte chunk, or an unaligned row) takes the scalar path.
#pragma once

#define GV_ROWS 16
#define GV_VEC (16 / (int)sizeof(T))

struct __align__(16) gv_u32x4 {
    u32 x, y, z, w;
};

// 16 bytes at p (16-byte aligned) as GV_VEC floats.
__device__ __forceinline__ void gv_load(const T* p, float* f) {
    gv_u32x4 v = *(const gv_u32x4*)p;
#if DTYPE == 0
    f[0] = __uint_as_float(v.x);
    f[1] = __uint_as_float(v.y);
    f[2] = __uint_as_float(v.z);
    f[3] = __uint_as_float(v.w);
#else
    const u32 w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        f[2 * i] = to_f((T)(w[i] & 0xffffu));
        f[2 * i + 1] = to_f((T)(w[i] >> 16));
    }
#endif
}

// The end of a GEMV block: each warp reduces its partial sums with shuffles, the `ksplit` warps of
// a column add theirs in shared memory (`red`), and gemm_store applies the epilogue.
template <int ACT>
__device__ __forceinline__ void gemv_finish(const GemmArgs& g, float (*red)[GV_ROWS], const float* acc, int ksplit, int rows) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int cols = 8 / ksplit;
    const int m0 = blockIdx.y * GV_ROWS;
#pragma unroll
    for (int r = 0; r < GV_ROWS; ++r) {
        if (r < rows) {
            float v = warp_sum(acc[r]);
            if (lane == 0) red[warp][r] = v;
        }
    }
    __syncthreads();
    if (threadIdx.x < cols * GV_ROWS) {
        const int cl = threadIdx.x / GV_ROWS, r = threadIdx.x % GV_ROWS;
        const int nn = blockIdx.x * cols + cl;
        if (r < rows && nn < g.N) {
            float s = 0.0f;
            for (int j = 0; j < ksplit; ++j) s += red[cl * ksplit + j][r];
            gemm_store<ACT, 0>(g, m0 + r, nn, s);
        }
    }
}

template <int ACT>
__device__ __forceinline__ void gemv(const GemmArgs& g, int ksplit, int vec) {
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
        const T* wrow = g.w + (u64)n * g.K;
        const T* a0 = g.a + (u64)m0 * g.K;
        if (vec) {
            const int chunks = g.K / GV_VEC;
            const int per = (chunks + ksplit - 1) / ksplit;
            const int c1 = min(chunks, (ks + 1) * per);
#pragma unroll 2
            for (int c = ks * per + lane; c < c1; c += 32) {
                float wv[GV_VEC];
                gv_load(wrow + (u64)c * GV_VEC, wv);
#pragma unroll
                for (int r = 0; r < GV_ROWS; ++r) {
                    if (r < rows) {
                        float av[GV_VEC];
                        gv_load(a0 + (u64)r * g.K + (u64)c * GV_VEC, av);
#pragma unroll
                        for (int e = 0; e < GV_VEC; ++e) acc[r] = fmaf(wv[e], av[e], acc[r]);
                    }
                }
            }
        } else {
            const int per = (g.K + ksplit - 1) / ksplit;
            const int k1 = min(g.K, (ks + 1) * per);
            for (int k = ks * per + lane; k < k1; k += 32) {
                float wk = to_f(wrow[k]);
#pragma unroll
                for (int r = 0; r < GV_ROWS; ++r)
                    if (r < rows) acc[r] = fmaf(wk, to_f(a0[(u64)r * g.K + k]), acc[r]);
            }
        }
    }
    gemv_finish<ACT>(g, red, acc, ksplit, rows);
}

#define GEMV_KERNEL(NAME, ACT_) \
    extern "C" __global__ void __launch_bounds__(256) NAME(GemmArgs g, int ksplit, int vec) { gemv<ACT_>(g, ksplit, vec); }
#define GEMV_KERNELS(PREFIX)                        \
    GEMV_KERNEL(PREFIX##_none, ACT_NONE)            \
    GEMV_KERNEL(PREFIX##_gelu, ACT_GELU_ERF)        \
    GEMV_KERNEL(PREFIX##_gelu_tanh, ACT_GELU_TANH)  \
    GEMV_KERNEL(PREFIX##_quick_gelu, ACT_QUICK_GELU) \
    GEMV_KERNEL(PREFIX##_silu, ACT_SILU)
