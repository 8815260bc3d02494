// decode_attention.cu: flash-decode, one query token per sequence (q_len = 1), -DHEAD_DIM=D (<= 128).
// q_pos = kv_len - 1, so every dense mask is a key range [key_start, kv_len): causal sees all keys,
// a window of w sees keys >= kv_len - w. No per-element mask is needed.
//
// Grid (splits, kv_heads * head_chunks, batch), 128 threads. A block takes one KV head and G query
// heads of its GQA group (decode_g1/g2/g4/g8: the group folded, so K and V are read once for all G
// heads) over one split of the key range. Key tiles of 128 rows are staged in shared memory
// (coalesced loads); lane j of warp w scores key 32w + j for all G heads from shared memory
// (rows padded to an odd word count: conflict-free), then each warp runs an online softmax over its
// keys and accumulates P.V reading V rows straight from global memory (lanes own dims lane + 32t,
// coalesced). The 4 warps merge through shared memory. With one split the block writes the output;
// otherwise it writes the normalised partial output and its log2-sum-exp, and decode_combine
// merges the splits. Splits are chosen on the host so batch x heads x splits fills the device.
// __launch_bounds__(128, 4): without the occupancy hint ptxas (12.9, sm_90) spilled 8 bytes in the
// f32 G=2 kernel at 40 registers; with it no specialisation spills.
#include "common.cuh"

#define DTK 128
#define DTYPE_BYTES (DTYPE == 0 ? 4 : 2)
#define DDPL ((HEAD_DIM + 31) / 32)
#if DTYPE == 0
#define KLD (HEAD_DIM + 1)
#else
#define KLD (HEAD_DIM + ((HEAD_DIM & 3) == 0 ? 2 : ((HEAD_DIM & 1) == 0 ? 0 : 1)))
#endif

struct DecodeArgs {
    const T* q;       // [B, 1, Hq, D]
    const T* k;       // [B, kv_cap, Hkv, D]
    const T* v;
    T* out;           // [B, 1, Hq, D]
    float* part_o;    // [B, Hq, splits, D]   (splits > 1)
    float* part_lse;  // [B, Hq, splits]
    int batch, q_heads, kv_heads, kv_len, kv_cap;
    float scale_log2;
    int key_start;    // first visible key
    int chunk;        // keys per split (multiple of DTK)
    int splits;
};

// Merges the 4 warps' (max, sum, partial output) and writes the output (one split) or the
// split's normalised partial and log2-sum-exp.
template <int G>
__device__ __forceinline__ void decode_write(const DecodeArgs& a, const float* red_o, const float (*red_m)[G],
                                             const float (*red_l)[G], int ng, int h0, int b, int split) {
    for (int c = threadIdx.x; c < ng * HEAD_DIM; c += 128) {
        int gi = c / HEAD_DIM, d = c % HEAD_DIM;
        float M = fmaxf(fmaxf(red_m[0][gi], red_m[1][gi]), fmaxf(red_m[2][gi], red_m[3][gi]));
        float Mu = M == F_NEG_INF ? 0.0f : M;
        float L = 0.0f, O = 0.0f;
#pragma unroll
        for (int w = 0; w < 4; ++w) {
            float sc = exp2f(red_m[w][gi] - Mu);
            L += red_l[w][gi] * sc;
            O += red_o[(w * G + gi) * HEAD_DIM + d] * sc;
        }
        float val = L > 0.0f ? O / L : 0.0f;
        int h = h0 + gi;
        if (a.splits == 1) {
            a.out[((u64)b * a.q_heads + h) * HEAD_DIM + d] = from_f(val);
        } else {
            u64 ps = ((u64)b * a.q_heads + h) * a.splits + split;
            a.part_o[ps * HEAD_DIM + d] = val;
            if (d == 0) a.part_lse[ps] = L > 0.0f ? Mu + log2f(L) : F_NEG_INF;
        }
    }
}

// Where one block works: its KV head, the G query heads it folds, its split of the keys. Also
// stages the block's queries, pre-scaled by scale * log2(e), in Qs.
struct DecodeBlock {
    int b, split, h0, ng, kbeg, kend;
    u64 rstride;
    const T* kb;
    const T* vb;
};
template <int G>
__device__ __forceinline__ DecodeBlock decode_block(const DecodeArgs& a, float (*Qs)[HEAD_DIM]) {
    DecodeBlock d;
    d.split = blockIdx.x;
    d.b = blockIdx.z;
    const int group = a.q_heads / a.kv_heads;
    const int chunks = (group + G - 1) / G;
    const int kh = blockIdx.y / chunks, g0 = (blockIdx.y % chunks) * G;
    d.h0 = kh * group + g0;
    d.ng = min(G, group - g0);
    for (int c = threadIdx.x; c < G * HEAD_DIM; c += 128) {
        int gi = c / HEAD_DIM, e = c % HEAD_DIM;
        Qs[gi][e] = gi < d.ng ? to_f(a.q[((u64)d.b * a.q_heads + d.h0 + gi) * HEAD_DIM + e]) * a.scale_log2 : 0.0f;
    }
    d.kbeg = a.key_start + d.split * a.chunk;
    d.kend = min(a.kv_len, d.kbeg + a.chunk);
    d.rstride = (u64)a.kv_heads * HEAD_DIM;
    d.kb = a.k + ((u64)d.b * a.kv_cap * a.kv_heads + kh) * HEAD_DIM;
    d.vb = a.v + ((u64)d.b * a.kv_cap * a.kv_heads + kh) * HEAD_DIM;
    return d;
}

// One online-softmax step over the warp's 32 keys: scores s (log2 units; invalid keys -inf)
// become probabilities p against the running max m; l and the NS output slots o are rescaled.
template <int G, int NS>
__device__ __forceinline__ void decode_softmax_step(const float* s, bool valid, float* m, float* l, float (*o)[NS], float* p) {
#pragma unroll
    for (int gi = 0; gi < G; ++gi) {
        float x = valid ? s[gi] : F_NEG_INF;
        float mn = fmaxf(m[gi], warp_max(x));
        float mu = mn == F_NEG_INF ? 0.0f : mn;
        float alpha = exp2f(m[gi] - mu);
        p[gi] = exp2f(x - mu);
        l[gi] = l[gi] * alpha + warp_sum(p[gi]);
        m[gi] = mn;
#pragma unroll
        for (int t = 0; t < NS; ++t) o[gi][t] *= alpha;
    }
}

// After the key loop: the 4 warps' (max, sum, outputs) go through shared memory (the tile
// memory, reused as red_o [4][G][HEAD_DIM] f32), then decode_write merges them. `dim(t)` maps
// this lane's output slot t to its head dim.
template <int G, int NS, typename DimOf>
__device__ __forceinline__ void decode_finish(const DecodeArgs& a, const DecodeBlock& d, unsigned char* dsmem, float (*red_m)[G],
                                              float (*red_l)[G], const float* m, const float* l, const float (*o)[NS], DimOf dim) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    __syncthreads();
    float* red_o = (float*)dsmem;
    if (lane == 0) {
#pragma unroll
        for (int gi = 0; gi < G; ++gi) {
            red_m[warp][gi] = m[gi];
            red_l[warp][gi] = l[gi];
        }
    }
#pragma unroll
    for (int gi = 0; gi < G; ++gi)
#pragma unroll
        for (int t = 0; t < NS; ++t) {
            int e = dim(t);
            if (e < HEAD_DIM) red_o[(warp * G + gi) * HEAD_DIM + e] = o[gi][t];
        }
    __syncthreads();
    decode_write<G>(a, red_o, red_m, red_l, d.ng, d.h0, d.b, d.split);
}

template <int G>
__device__ __forceinline__ void decode(const DecodeArgs& a) {
    extern __shared__ __align__(16) unsigned char dsmem[];
    T* Ks = (T*)dsmem;                                   // [DTK][KLD]
    __shared__ float Qs[G][HEAD_DIM];
    __shared__ float red_m[4][G], red_l[4][G];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const DecodeBlock blk = decode_block<G>(a, Qs);
    const int kend = blk.kend;
    const u64 rstride = blk.rstride;
    const T* kb = blk.kb;
    const T* vb = blk.vb;

    float m[G], l[G], o[G][DDPL];
#pragma unroll
    for (int gi = 0; gi < G; ++gi) {
        m[gi] = F_NEG_INF;
        l[gi] = 0.0f;
#pragma unroll
        for (int t = 0; t < DDPL; ++t) o[gi][t] = 0.0f;
    }
    for (int j0 = blk.kbeg; j0 < kend; j0 += DTK) {
        __syncthreads();
        for (int c = threadIdx.x; c < DTK * HEAD_DIM; c += 128) {
            int r = c / HEAD_DIM, d = c % HEAD_DIM;
            Ks[r * KLD + d] = j0 + r < kend ? kb[(u64)(j0 + r) * rstride + d] : from_f(0.0f);
        }
        __syncthreads();
        const int jw = j0 + warp * 32;
        if (jw >= kend) continue;  // warp-uniform; no barrier until the next tile
        const bool valid = jw + lane < kend;
        float s[G];
#pragma unroll
        for (int gi = 0; gi < G; ++gi) s[gi] = 0.0f;
        const T* krow = Ks + (warp * 32 + lane) * KLD;
#pragma unroll 4
        for (int d = 0; d < HEAD_DIM; ++d) {
            float kv = to_f(krow[d]);
#pragma unroll
            for (int gi = 0; gi < G; ++gi) s[gi] = fmaf(Qs[gi][d], kv, s[gi]);
        }
        float p[G];
        decode_softmax_step<G, DDPL>(s, valid, m, l, o, p);
        const int nk = min(32, kend - jw);
        for (int jj = 0; jj < nk; ++jj) {
            const T* vrow = vb + (u64)(jw + jj) * rstride;
            float vv[DDPL];
#pragma unroll
            for (int t = 0; t < DDPL; ++t) {
                int d = lane + 32 * t;
                vv[t] = d < HEAD_DIM ? to_f(vrow[d]) : 0.0f;
            }
#pragma unroll
            for (int gi = 0; gi < G; ++gi) {
                float pj = __shfl_sync(0xffffffffu, p[gi], jj);
#pragma unroll
                for (int t = 0; t < DDPL; ++t) o[gi][t] = fmaf(pj, vv[t], o[gi][t]);
            }
        }
    }
    decode_finish<G, DDPL>(a, blk, dsmem, red_m, red_l, m, l, o, [&](int t) { return lane + 32 * t; });
}

#define DECODE_KERNEL(NAME, G) \
    extern "C" __global__ void __launch_bounds__(128, 4) NAME(DecodeArgs a) { decode<G>(a); }
DECODE_KERNEL(decode_g1, 1)
DECODE_KERNEL(decode_g2, 2)
DECODE_KERNEL(decode_g4, 4)
DECODE_KERNEL(decode_g8, 8)

// ---- decode_v16_g{G} (variant flash-decode-v16) ---------------------------------------------
// The same split, GQA fold, online softmax and merge as decode<G>, but K and V tiles both go
// global -> registers -> shared memory in 16-byte loads (8 halves / 4 floats; HEAD_DIM must be a
// multiple of that), so each thread has whole 16-byte requests in flight instead of 2-byte ones.
// K rows keep the odd-word padding (KLD: lane = key reads are conflict-free) and are stored as
// four 4-byte words; V rows are exactly HEAD_DIM long and stored as one 16-byte word. Scores read
// K two halves at a time; P.V reads V from shared memory, a lane owning dims (2 lane, 2 lane + 1)
// + 64 t for f16/bf16 (one 4-byte word) or lane + 32 t for f32.
#define DVEC (16 / (int)sizeof(T))
#define DCPR (HEAD_DIM / DVEC)
#if DTYPE == 0
#define DSLOTS DDPL
__device__ __forceinline__ int slot_dim(int lane, int t) { return lane + 32 * t; }
#else
#define DSLOTS (2 * ((HEAD_DIM + 63) / 64))
__device__ __forceinline__ int slot_dim(int lane, int t) { return 64 * (t >> 1) + 2 * lane + (t & 1); }
#endif

struct __align__(16) dv_u32x4 {
    u32 x, y, z, w;
};

#if HEAD_DIM % (16 / DTYPE_BYTES) == 0
template <int G>
__device__ __forceinline__ void decode_v16(const DecodeArgs& a) {
    extern __shared__ __align__(16) unsigned char dsmem[];
    T* Ks = (T*)dsmem;                                     // [DTK][KLD]
    T* Vs = (T*)(dsmem + DTK * KLD * sizeof(T));           // [DTK][HEAD_DIM], 16-byte rows
    __shared__ float Qs[G][HEAD_DIM];
    __shared__ float red_m[4][G], red_l[4][G];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const DecodeBlock blk = decode_block<G>(a, Qs);
    const int kend = blk.kend;
    const u64 rstride = blk.rstride;
    const T* kb = blk.kb;
    const T* vb = blk.vb;

    float m[G], l[G], o[G][DSLOTS];
#pragma unroll
    for (int gi = 0; gi < G; ++gi) {
        m[gi] = F_NEG_INF;
        l[gi] = 0.0f;
#pragma unroll
        for (int t = 0; t < DSLOTS; ++t) o[gi][t] = 0.0f;
    }
    for (int j0 = blk.kbeg; j0 < kend; j0 += DTK) {
        __syncthreads();
#pragma unroll 4
        for (int ci = threadIdx.x; ci < DTK * DCPR; ci += 128) {
            const int r = ci / DCPR, c = ci % DCPR;
            dv_u32x4 kv = {0u, 0u, 0u, 0u}, vv = {0u, 0u, 0u, 0u};
            if (j0 + r < kend) {  // rows past the split are zeros: never NaN from unused cache rows
                const u64 off = (u64)(j0 + r) * rstride + (u64)c * DVEC;
                kv = *(const dv_u32x4*)(kb + off);
                vv = *(const dv_u32x4*)(vb + off);
            }
            u32* kd = (u32*)(Ks + r * KLD + c * DVEC);
            kd[0] = kv.x;
            kd[1] = kv.y;
            kd[2] = kv.z;
            kd[3] = kv.w;
            *(dv_u32x4*)(Vs + r * HEAD_DIM + c * DVEC) = vv;
        }
        __syncthreads();
        const int jw = j0 + warp * 32;
        if (jw >= kend) continue;  // warp-uniform; no barrier until the next tile
        const bool valid = jw + lane < kend;
        float s[G];
#pragma unroll
        for (int gi = 0; gi < G; ++gi) s[gi] = 0.0f;
#if DTYPE == 0
        const float* krow = Ks + (warp * 32 + lane) * KLD;
#pragma unroll 4
        for (int d = 0; d < HEAD_DIM; ++d) {
            float kv = krow[d];
#pragma unroll
            for (int gi = 0; gi < G; ++gi) s[gi] = fmaf(Qs[gi][d], kv, s[gi]);
        }
#else
        const u32* krow = (const u32*)(Ks + (warp * 32 + lane) * KLD);
#pragma unroll 4
        for (int d2 = 0; d2 < HEAD_DIM / 2; ++d2) {
            const u32 w = krow[d2];
            const float k0 = to_f((T)(w & 0xffffu)), k1 = to_f((T)(w >> 16));
#pragma unroll
            for (int gi = 0; gi < G; ++gi) s[gi] = fmaf(Qs[gi][2 * d2 + 1], k1, fmaf(Qs[gi][2 * d2], k0, s[gi]));
        }
#endif
        float p[G];
        decode_softmax_step<G, DSLOTS>(s, valid, m, l, o, p);
        const int nk = min(32, kend - jw);
        for (int jj = 0; jj < nk; ++jj) {
            const T* vrow = Vs + (warp * 32 + jj) * HEAD_DIM;
            float vv[DSLOTS];
#if DTYPE == 0
#pragma unroll
            for (int t = 0; t < DSLOTS; ++t) {
                int d = slot_dim(lane, t);
                vv[t] = d < HEAD_DIM ? vrow[d] : 0.0f;
            }
#else
#pragma unroll
            for (int t = 0; t < DSLOTS; t += 2) {
                int d = slot_dim(lane, t);
                u32 w = d < HEAD_DIM ? *(const u32*)(vrow + d) : 0u;
                vv[t] = to_f((T)(w & 0xffffu));
                vv[t + 1] = to_f((T)(w >> 16));
            }
#endif
#pragma unroll
            for (int gi = 0; gi < G; ++gi) {
                float pj = __shfl_sync(0xffffffffu, p[gi], jj);
#pragma unroll
                for (int t = 0; t < DSLOTS; ++t) o[gi][t] = fmaf(pj, vv[t], o[gi][t]);
            }
        }
    }
    decode_finish<G, DSLOTS>(a, blk, dsmem, red_m, red_l, m, l, o, [&](int t) { return slot_dim(lane, t); });
}
#define DECODE_V16_KERNEL(NAME, G) \
    extern "C" __global__ void __launch_bounds__(128, 3) NAME(DecodeArgs a) { decode_v16<G>(a); }
#else
// HEAD_DIM is not a whole number of 16-byte chunks: the host never launches these.
#define DECODE_V16_KERNEL(NAME, G) \
    extern "C" __global__ void NAME(DecodeArgs a) {}
#endif
DECODE_V16_KERNEL(decode_v16_g1, 1)
DECODE_V16_KERNEL(decode_v16_g2, 2)
DECODE_V16_KERNEL(decode_v16_g4, 4)
DECODE_V16_KERNEL(decode_v16_g8, 8)

// One block per (batch, q head): out = sum_s 2^(lse_s - M) o_s / sum_s 2^(lse_s - M).
extern "C" __global__ void __launch_bounds__(128) decode_combine(DecodeArgs a) {
    const u64 bh = blockIdx.x;
    float M = F_NEG_INF;
    for (int s = 0; s < a.splits; ++s) M = fmaxf(M, a.part_lse[bh * a.splits + s]);
    for (int d = threadIdx.x; d < HEAD_DIM; d += 128) {
        float val = 0.0f;
        if (M != F_NEG_INF) {
            float L = 0.0f, O = 0.0f;
            for (int s = 0; s < a.splits; ++s) {
                float w = exp2f(a.part_lse[bh * a.splits + s] - M);
                L += w;
                O += w * a.part_o[(bh * a.splits + s) * HEAD_DIM + d];
            }
            val = O / L;
        }
        a.out[bh * HEAD_DIM + d] = from_f(val);
    }
}
