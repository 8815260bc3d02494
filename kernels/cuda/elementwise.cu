// elementwise.cu: add, mul, swiglu, unary activations, embedding lookup, cast and the byte moves
// (slice, concat, kv_append). Defines: DTYPE; CAST_SRC / CAST_DST (0 f32, 1 f16, 2 bf16, 3 u32)
// for the cast kernel. Grid-stride loops; 64-bit indices throughout.
#include "common.cuh"

#define GRID_STRIDE(i, n) for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (u64)gridDim.x * blockDim.x)

extern "C" __global__ void ew_add(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out, u64 n) {
    GRID_STRIDE(i, n) out[i] = from_f(to_f(a[i]) + to_f(b[i]));
}

extern "C" __global__ void ew_mul(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out, u64 n) {
    GRID_STRIDE(i, n) out[i] = from_f(to_f(a[i]) * to_f(b[i]));
}

// silu(gate) * up
extern "C" __global__ void ew_swiglu(const T* __restrict__ g, const T* __restrict__ u, T* __restrict__ out, u64 n) {
    GRID_STRIDE(i, n) {
        float x = to_f(g[i]);
        out[i] = from_f(x / (1.0f + expf(-x)) * to_f(u[i]));
    }
}

extern "C" __global__ void ew_unary(const T* __restrict__ x, T* __restrict__ out, u64 n, int act) {
    GRID_STRIDE(i, n) out[i] = from_f(apply_act(act, to_f(x[i])));
}

// table [V, D], ids [n_ids] -> out [n_ids, D]; an id >= V gives zeros.
extern "C" __global__ void embedding(const T* __restrict__ table, const u32* __restrict__ ids, T* __restrict__ out,
                                     u64 n_ids, u32 vocab, u32 dim) {
    GRID_STRIDE(i, n_ids * dim) {
        u64 r = i / dim, c = i % dim;
        u32 id = ids[r];
        out[i] = id < vocab ? table[(u64)id * dim + c] : from_f(0.0f);
    }
}

// ---- cast ----
#ifndef CAST_SRC
#define CAST_SRC DTYPE
#endif
#ifndef CAST_DST
#define CAST_DST DTYPE
#endif
#if CAST_SRC == 0
typedef float SrcT;
__device__ __forceinline__ float src_f(SrcT x) { return x; }
#elif CAST_SRC == 1
typedef u16 SrcT;
__device__ __forceinline__ float src_f(SrcT x) { return h2f(x); }
#elif CAST_SRC == 2
typedef u16 SrcT;
__device__ __forceinline__ float src_f(SrcT x) { return bf2f(x); }
#else
typedef u32 SrcT;
#endif
#if CAST_DST == 0
typedef float DstT;
__device__ __forceinline__ DstT dst_f(float x) { return x; }
#elif CAST_DST == 1
typedef u16 DstT;
__device__ __forceinline__ DstT dst_f(float x) { return f2h(x); }
#elif CAST_DST == 2
typedef u16 DstT;
__device__ __forceinline__ DstT dst_f(float x) { return f2bf(x); }
#else
typedef u32 DstT;
#endif

// Values convert by value, rounding to nearest even. Float -> u32 truncates toward zero and
// saturates (NaN -> 0), as Rust's `as u32`. u32 -> f32 rounds to nearest even.
extern "C" __global__ void cast(const SrcT* __restrict__ x, DstT* __restrict__ out, u64 n) {
    GRID_STRIDE(i, n) {
#if CAST_SRC == 3 && CAST_DST == 3
        out[i] = x[i];
#elif CAST_SRC == 3
        out[i] = dst_f(__uint2float_rn(x[i]));
#elif CAST_DST == 3
        float v = src_f(x[i]);
        out[i] = v != v ? 0u : (v <= 0.0f ? 0u : (v >= 4294967295.0f ? 0xffffffffu : (u32)v));
#else
        out[i] = dst_f(src_f(x[i]));
#endif
    }
}

// ---- byte moves: slice, concat, kv_append -------------------------------------------------
// For o in 0..outer, copy `rows * inner` elements from src + (o * src_rows + src_off) * inner
// to dst + (o * dst_rows + dst_off) * inner. Elements are 16-bit (b2) or 32-bit (b4).
#define COPY_ROWS(NAME, E)                                                                         \
    extern "C" __global__ void NAME(const E* __restrict__ src, E* __restrict__ dst, u64 outer, u64 rows, \
                                    u64 inner, u64 src_rows, u64 src_off, u64 dst_rows, u64 dst_off) { \
        u64 per = rows * inner;                                                                    \
        GRID_STRIDE(i, outer * per) {                                                              \
            u64 o = i / per, r = i % per;                                                          \
            dst[(o * dst_rows + dst_off) * inner + r] = src[(o * src_rows + src_off) * inner + r]; \
        }                                                                                          \
    }
COPY_ROWS(copy_rows_b2, u16)
COPY_ROWS(copy_rows_b4, u32)

// ---- planted fault (FOVEATE_CUDA_FAULT=<op>, for the GPU kit) ------------------------------
// Writes one word 2^40 bytes past `p`: an out-of-bounds store the driver reports as an illegal
// address (sticky for the context), so the kit can check that FOVEATE_CUDA_SYNC=1 names the op
// that faulted and that `selftest --isolate` runs the next op in a fresh process.
extern "C" __global__ void fault_oob(u32* p) {
    if (threadIdx.x == 0 && blockIdx.x == 0) p[(1ull << 40) / sizeof(u32)] = 0xdeadbeefu;
}
