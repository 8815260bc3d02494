// attention.cu: prefill / general attention. Two builds of this file:
//  * without HEAD_DIM: the `naive` kernels (any head dim <= 256, every dtype, every mask), one warp
//    per (batch, query row, head), keys visited one by one with an online softmax in f32. The
//    reference the fast kernels are checked against on the device.
//  * with -DHEAD_DIM=D: the `flash` kernels flash_none / flash_causal / flash_window: tensor cores
//    (mma.sync m16n8k16) for f16/bf16, SIMT for f32. See attention_core.cuh.
#include "attention_core.cuh"

#ifndef HEAD_DIM
#define NAIVE_MAXD 256
template <int MASK, bool SPARSE>
__device__ __forceinline__ void naive(const AttnArgs& a) {
    const int lane = threadIdx.x & 31;
    const u64 row = (u64)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);  // (b, i, h)
    const u64 rows = (u64)a.batch * a.q_len * a.q_heads;
    if (row >= rows) return;
    const int h = (int)(row % a.q_heads), i = (int)((row / a.q_heads) % a.q_len), b = (int)(row / ((u64)a.q_heads * a.q_len));
    const int kh = h / (a.q_heads / a.kv_heads), D = a.head_dim;
    float q[NAIVE_MAXD / 32], o[NAIVE_MAXD / 32];
#pragma unroll
    for (int t = 0; t < NAIVE_MAXD / 32; ++t) {
        int d = lane + 32 * t;
        q[t] = d < D ? to_f(a.q[row * D + d]) * a.scale_log2 : 0.0f;
        o[t] = 0.0f;
    }
    float m = F_NEG_INF, l = 0.0f;
    for (int j = 0; j < a.kv_len; ++j) {
        if (!elem_visible<MASK, SPARSE>(a, i, j)) continue;  // uniform across the warp
        const u64 kbase = (((u64)b * a.kv_cap + j) * a.kv_heads + kh) * D;
        float s = 0.0f;
#pragma unroll
        for (int t = 0; t < NAIVE_MAXD / 32; ++t) {
            int d = lane + 32 * t;
            if (d < D) s = fmaf(q[t], to_f(a.k[kbase + d]), s);
        }
        s = warp_sum(s);
        float mn = fmaxf(m, s);
        float alpha = exp2f(m - mn), p = exp2f(s - mn);
        m = mn;
        l = l * alpha + p;
#pragma unroll
        for (int t = 0; t < NAIVE_MAXD / 32; ++t) {
            int d = lane + 32 * t;
            if (d < D) o[t] = o[t] * alpha + p * to_f(a.v[kbase + d]);
        }
    }
    float inv = l > 0.0f ? 1.0f / l : 0.0f;
#pragma unroll
    for (int t = 0; t < NAIVE_MAXD / 32; ++t) {
        int d = lane + 32 * t;
        if (d < D) a.out[row * D + d] = from_f(o[t] * inv);
    }
}
#define NAIVE_KERNEL(NAME, MASK_, SPARSE_) \
    extern "C" __global__ void __launch_bounds__(128) NAME(AttnArgs a) { naive<MASK_, SPARSE_>(a); }
NAIVE_KERNEL(naive_none, MASK_NONE, false)
NAIVE_KERNEL(naive_causal, MASK_CAUSAL, false)
NAIVE_KERNEL(naive_window, MASK_WINDOW, false)
NAIVE_KERNEL(naive_sparse_none, MASK_NONE, true)
NAIVE_KERNEL(naive_sparse_causal, MASK_CAUSAL, true)
NAIVE_KERNEL(naive_sparse_window, MASK_WINDOW, true)
#else
FLASH_KERNEL(flash_none, MASK_NONE, false)
FLASH_KERNEL(flash_causal, MASK_CAUSAL, false)
FLASH_KERNEL(flash_window, MASK_WINDOW, false)
#endif
