// norm.cu: row reductions. One block of NORM_THREADS threads per row; f32 accumulation.
// layer_norm (biased variance), rms_norm, softmax (max-subtracted), argmax (first max, NaN ignored).
#include "common.cuh"

extern "C" __global__ void layer_norm(const T* __restrict__ x, const T* __restrict__ gamma, const T* __restrict__ beta,
                                      T* __restrict__ out, u32 dim, float eps) {
    __shared__ float red[32];
    const T* row = x + (u64)blockIdx.x * dim;
    T* orow = out + (u64)blockIdx.x * dim;
    float s = 0.0f;
    for (u32 c = threadIdx.x; c < dim; c += blockDim.x) s += to_f(row[c]);
    float mean = block_sum(s, red) / (float)dim;
    float v = 0.0f;
    for (u32 c = threadIdx.x; c < dim; c += blockDim.x) {
        float d = to_f(row[c]) - mean;
        v += d * d;
    }
    float var = block_sum(v, red) / (float)dim;
    float rs = rsqrtf(var + eps);
    for (u32 c = threadIdx.x; c < dim; c += blockDim.x)
        orow[c] = from_f((to_f(row[c]) - mean) * rs * to_f(gamma[c]) + to_f(beta[c]));
}

extern "C" __global__ void rms_norm(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ out, u32 dim, float eps) {
    __shared__ float red[32];
    const T* row = x + (u64)blockIdx.x * dim;
    T* orow = out + (u64)blockIdx.x * dim;
    float s = 0.0f;
    for (u32 c = threadIdx.x; c < dim; c += blockDim.x) {
        float v = to_f(row[c]);
        s += v * v;
    }
    float rs = rsqrtf(block_sum(s, red) / (float)dim + eps);
    for (u32 c = threadIdx.x; c < dim; c += blockDim.x) orow[c] = from_f(to_f(row[c]) * rs * to_f(w[c]));
}

// Softmax of a row, as the oracle (crates/cpu/src/oracle.rs `softmax`, and torch.softmax):
// exp(x - max) / sum. A row whose max is -inf (every element -inf, or -inf and NaN) has no
// finite max to subtract: the oracle's (-inf) - (-inf) is NaN, so the whole row is NaN; written
// explicitly here rather than left to exp2f(NaN). A +inf or NaN element makes the sum NaN, so
// that row is NaN too (same arithmetic on both sides). fmaxf skips NaN as f64::max does.
extern "C" __global__ void softmax(const T* __restrict__ x, T* __restrict__ out, u32 dim) {
    __shared__ float red[32];
    const T* row = x + (u64)blockIdx.x * dim;
    T* orow = out + (u64)blockIdx.x * dim;
    float m = F_NEG_INF;
    for (u32 c = threadIdx.x; c < dim; c += blockDim.x) m = fmaxf(m, to_f(row[c]));
    m = block_max(m, red);
    if (m == F_NEG_INF) {
        for (u32 c = threadIdx.x; c < dim; c += blockDim.x) orow[c] = from_f(__int_as_float(0x7fc00000));
        return;
    }
    float s = 0.0f;
    for (u32 c = threadIdx.x; c < dim; c += blockDim.x) s += exp2f((to_f(row[c]) - m) * LOG2E);
    float inv = 1.0f / block_sum(s, red);
    for (u32 c = threadIdx.x; c < dim; c += blockDim.x) orow[c] = from_f(exp2f((to_f(row[c]) - m) * LOG2E) * inv);
}

// Index of the first maximum; NaN is skipped; a row of NaN gives 0.
extern "C" __global__ void argmax(const T* __restrict__ x, u32* __restrict__ out, u32 dim) {
    __shared__ float sv[32];
    __shared__ u32 si[32];
    const T* row = x + (u64)blockIdx.x * dim;
    float best = F_NEG_INF;
    u32 bi = 0xffffffffu;
    for (u32 c = threadIdx.x; c < dim; c += blockDim.x) {
        float v = to_f(row[c]);
        if (v != v) continue;
        if (v > best || (v == best && c < bi)) { best = v; bi = c; }
    }
    // warp then block reduction on (value, index)
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, best, o);
        u32 oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (ov > best || (ov == best && oi < bi)) { best = ov; bi = oi; }
    }
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    if (lane == 0) { sv[w] = best; si[w] = bi; }
    __syncthreads();
    if (w == 0) {
        best = lane < nw ? sv[lane] : F_NEG_INF;
        bi = lane < nw ? si[lane] : 0xffffffffu;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            float ov = __shfl_xor_sync(0xffffffffu, best, o);
            u32 oi = __shfl_xor_sync(0xffffffffu, bi, o);
            if (ov > best || (ov == best && oi < bi)) { best = ov; bi = oi; }
        }
        if (lane == 0) out[blockIdx.x] = bi == 0xffffffffu ? 0u : bi;
    }
}
