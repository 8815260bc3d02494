// attention_core.cuh: the flash-attention tile loops shared by attention.cu (dense masks) and
// sparse_attention.cu (block-sparse). Defines: DTYPE, HEAD_DIM (any multiple of 8 up to 128 on the
// tensor-core path, up to 128 on the f32 path).
//
// Semantics (crates/core/src/mask.rs): query row i sits at q_pos = kv_len - q_len + i; key j is
// visible when j < kv_len and: None always; Causal j <= q_pos; Window j <= q_pos && q_pos - j <
// window; BlockSparse: layout class of (i / block_q, j / block_k) != Empty and the base mask allows.
// A row that sees no key writes zeros. Scores are scaled by scale * log2(e) so softmax uses exp2.
#include "common.cuh"

#define MASK_NONE 0
#define MASK_CAUSAL 1
#define MASK_WINDOW 2

struct AttnArgs {
    const T* q;           // [B, q_len, Hq, D]
    const T* k;           // [B, kv_cap, Hkv, D]
    const T* v;           // [B, kv_cap, Hkv, D]
    T* out;               // [B, q_len, Hq, D]
    const u32* tile_cls;  // sparse: kernel-tile classes [q_tiles][k_tiles] (0 empty, 1 partial, 2 full)
    const u32* blk_cls;   // sparse: layout classes [q_blocks][k_blocks] (BlockLayout::class_table)
    int batch, q_heads, kv_heads, q_len, kv_len, kv_cap;
    float scale_log2;     // scale * log2(e)
    int window;
    int k_tiles;          // sparse: columns of tile_cls
    int block_q, block_k, k_blocks;
    int head_dim;         // naive kernel (runtime head dim); the flash kernels use HEAD_DIM
};

template <int MASK>
__device__ __forceinline__ bool base_visible(int window, int qpos, int j) {
    if (MASK == MASK_NONE) return true;
    if (j > qpos) return false;
    if (MASK == MASK_WINDOW) return qpos - j < window;
    return true;
}

// Full visibility test of element (i, j), including the key range and the sparse layout.
template <int MASK, bool SPARSE>
__device__ __forceinline__ bool elem_visible(const AttnArgs& a, int i, int j) {
    if (j >= a.kv_len || i >= a.q_len) return false;
    if (SPARSE && a.blk_cls[(i / a.block_q) * a.k_blocks + j / a.block_k] == 0) return false;
    return base_visible<MASK>(a.window, a.kv_len - a.q_len + i, j);
}

// Range of key tiles [begin, end) that rows [r0, r1] (r1 clamped to q_len-1) can see, from the
// dense (base) mask alone.
template <int MASK>
__device__ __forceinline__ void tile_range(const AttnArgs& a, int r0, int r1, int tile, int& begin, int& end) {
    r1 = min(r1, a.q_len - 1);
    int off = a.kv_len - a.q_len;
    int last = MASK == MASK_NONE ? a.kv_len - 1 : min(a.kv_len - 1, off + r1);
    int first = MASK == MASK_WINDOW ? max(0, off + r0 - a.window + 1) : 0;
    begin = first / tile;
    end = last < first ? begin : last / tile + 1;
}

// Is every (row in [r0, r0+rows), key in [j0, j0+cols)) visible by the dense mask and in range?
template <int MASK>
__device__ __forceinline__ bool tile_full(const AttnArgs& a, int r0, int rows, int j0, int cols) {
    if (j0 + cols > a.kv_len) return false;
    int off = a.kv_len - a.q_len;
    if (MASK == MASK_NONE) return true;
    if (j0 + cols - 1 > off + r0) return false;  // the first row must see the last key
    if (MASK == MASK_WINDOW && (off + r0 + rows - 1) - j0 >= a.window) return false;  // the last row, the first key
    return true;
}

#ifdef HEAD_DIM
#if DTYPE != 0
// =============================== tensor-core flash (f16 / bf16) ===============================
// Block: 64 query rows of one (batch, q head), 4 warps x 16 rows. Key/value tiles of 64 rows are
// double-buffered through dynamic shared memory with cp.async. Head dims are padded to DP, the
// next multiple of 16 (72 -> 80, 80 -> 80, 96 -> 96): the pad columns [HEAD_DIM, DP) of the Q, K
// and V tiles are zero-filled once and never written by cp.async, so they add 0 to Q.K^T and only
// feed output columns that are never stored. Rows past q_len / kv_len are zero-filled by cp.async
// (src-size 0), so no garbage (or NaN) from the KV cache's unused capacity reaches P.V.
#define BQ 64
#define BKV 64
#define DP ((HEAD_DIM + 15) / 16 * 16)
#define LDS (DP + 8)  // smem row stride in halves: an odd multiple of 16 bytes -> conflict-free ldmatrix
#define CH (HEAD_DIM / 8)  // 16-byte chunks per row

__device__ __forceinline__ void load_rows(u16* dst, const u16* base, int row0, int nrows_valid, u64 row_stride) {
    for (int c = threadIdx.x; c < BKV * CH; c += 128) {
        int r = c / CH, c8 = (c % CH) * 8;
        bool ok = row0 + r < nrows_valid;
        const u16* src = ok ? base + (u64)(row0 + r) * row_stride + c8 : base;
        cp_async16(dst + r * LDS + c8, src, ok ? 16 : 0);
    }
}

template <int MASK, bool SPARSE>
__device__ __forceinline__ void flash_tc(const AttnArgs& a) {
    extern __shared__ __align__(16) u16 smem[];
    u16* Qs = smem;
    u16* Ks = smem + BQ * LDS;             // [2][BKV][LDS]
    u16* Vs = smem + (BQ + 2 * BKV) * LDS;  // [2][BKV][LDS]
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int qt = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int q0 = qt * BQ;
    const int kh = h / (a.q_heads / a.kv_heads);
    const int g = lane >> 2, tq = lane & 3;
    const int r0 = q0 + warp * 16 + g, r1 = r0 + 8;  // this thread's two rows
    const int off = a.kv_len - a.q_len;

    int t_begin, t_end;
    tile_range<MASK>(a, q0, q0 + BQ - 1, BKV, t_begin, t_end);
    auto next_tile = [&](int t) {
        if (SPARSE)
            while (t < t_end && a.tile_cls[qt * a.k_tiles + t] == 0) ++t;
        return t;
    };
    int t = next_tile(t_begin);

    float o[DP / 8][4];
#pragma unroll
    for (int i = 0; i < DP / 8; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
    float m0 = F_NEG_INF, m1 = F_NEG_INF, l0 = 0.0f, l1 = 0.0f;

    if (t < t_end) {
        const u64 qstride = (u64)a.q_heads * HEAD_DIM, kstride = (u64)a.kv_heads * HEAD_DIM;
        const u16* qb = (const u16*)a.q + ((u64)b * a.q_len * a.q_heads + h) * HEAD_DIM;
        const u16* kb = (const u16*)a.k + ((u64)b * a.kv_cap * a.kv_heads + kh) * HEAD_DIM;
        const u16* vb = (const u16*)a.v + ((u64)b * a.kv_cap * a.kv_heads + kh) * HEAD_DIM;
        if (DP != HEAD_DIM) {  // zero the pad columns of all five tiles once
            for (int r = threadIdx.x; r < (BQ + 4 * BKV); r += 128)
#pragma unroll
                for (int c = HEAD_DIM; c < DP; ++c) smem[r * LDS + c] = 0;
        }
        load_rows(Qs, qb, q0, a.q_len, qstride);
        load_rows(Ks, kb, t * BKV, a.kv_len, kstride);
        load_rows(Vs, vb, t * BKV, a.kv_len, kstride);
        cp_async_commit();

        u32 qf[DP / 16][4];
        int stage = 0;
        bool first = true;
        while (t < t_end) {
            const int tn = next_tile(t + 1);
            if (tn < t_end) {
                load_rows(Ks + (stage ^ 1) * BKV * LDS, kb, tn * BKV, a.kv_len, kstride);
                load_rows(Vs + (stage ^ 1) * BKV * LDS, vb, tn * BKV, a.kv_len, kstride);
            }
            cp_async_commit();
            cp_async_wait<1>();
            __syncthreads();
            if (first) {
#pragma unroll
                for (int kk = 0; kk < DP / 16; ++kk)
                    ldmatrix_x4(qf[kk][0], qf[kk][1], qf[kk][2], qf[kk][3], Qs + (warp * 16 + (lane & 15)) * LDS + kk * 16 + (lane >> 4) * 8);
                first = false;
            }
            const u16* Kt = Ks + stage * BKV * LDS;
            const u16* Vt = Vs + stage * BKV * LDS;
            // S = Q K^T for 16 rows x 64 keys
            float s[8][4];
#pragma unroll
            for (int i = 0; i < 8; ++i) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.0f;
#pragma unroll
            for (int kk = 0; kk < DP / 16; ++kk)
#pragma unroll
                for (int np = 0; np < 4; ++np) {
                    u32 b0[2], b1[2];
                    ldmatrix_x4(b0[0], b0[1], b1[0], b1[1], Kt + (np * 16 + (lane & 7) + (lane >> 4) * 8) * LDS + kk * 16 + ((lane >> 3) & 1) * 8);
                    mma16816(s[np * 2], qf[kk], b0);
                    mma16816(s[np * 2 + 1], qf[kk], b1);
                }
            const int j0 = t * BKV;
            bool full;
            if (SPARSE) full = a.tile_cls[qt * a.k_tiles + t] == 2 && j0 + BKV <= a.kv_len;
            else full = tile_full<MASK>(a, q0, BQ, j0, BKV);
            float mx0 = F_NEG_INF, mx1 = F_NEG_INF;
#pragma unroll
            for (int nt = 0; nt < 8; ++nt)
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    int j = j0 + nt * 8 + tq * 2 + (e & 1);
                    int i = e < 2 ? r0 : r1;
                    float x = s[nt][e] * a.scale_log2;
                    if (!full && !elem_visible<MASK, SPARSE>(a, i, j)) x = F_NEG_INF;
                    s[nt][e] = x;
                    if (e < 2) mx0 = fmaxf(mx0, x); else mx1 = fmaxf(mx1, x);
                }
            mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
            mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
            mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
            mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
            const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
            // a row with nothing visible yet keeps max -inf: use 0 so exp2(-inf - 0) = 0, no NaN
            const float mu0 = mn0 == F_NEG_INF ? 0.0f : mn0, mu1 = mn1 == F_NEG_INF ? 0.0f : mn1;
            const float al0 = exp2f(m0 - mu0), al1 = exp2f(m1 - mu1);
            m0 = mn0;
            m1 = mn1;
            float ps0 = 0.0f, ps1 = 0.0f;
#pragma unroll
            for (int nt = 0; nt < 8; ++nt) {
                s[nt][0] = exp2f(s[nt][0] - mu0);
                s[nt][1] = exp2f(s[nt][1] - mu0);
                s[nt][2] = exp2f(s[nt][2] - mu1);
                s[nt][3] = exp2f(s[nt][3] - mu1);
                ps0 += s[nt][0] + s[nt][1];
                ps1 += s[nt][2] + s[nt][3];
            }
            l0 = l0 * al0 + ps0;  // per-thread partial row sums; the quad is summed at the end
            l1 = l1 * al1 + ps1;
#pragma unroll
            for (int i = 0; i < DP / 8; ++i) {
                o[i][0] *= al0;
                o[i][1] *= al0;
                o[i][2] *= al1;
                o[i][3] *= al1;
            }
            // O += P V: the S accumulators of key tiles 2kt, 2kt+1 are the A fragment of k-step kt
#pragma unroll
            for (int kt = 0; kt < 4; ++kt) {
                u32 pa[4];
                pa[0] = pack2(s[2 * kt][0], s[2 * kt][1]);
                pa[1] = pack2(s[2 * kt][2], s[2 * kt][3]);
                pa[2] = pack2(s[2 * kt + 1][0], s[2 * kt + 1][1]);
                pa[3] = pack2(s[2 * kt + 1][2], s[2 * kt + 1][3]);
#pragma unroll
                for (int dn = 0; dn < DP / 16; ++dn) {
                    u32 b0[2], b1[2];
                    ldmatrix_x4_trans(b0[0], b0[1], b1[0], b1[1], Vt + (kt * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LDS + dn * 16 + (lane >> 4) * 8);
                    mma16816(o[dn * 2], pa, b0);
                    mma16816(o[dn * 2 + 1], pa, b1);
                }
            }
            __syncthreads();  // the stage just read is refilled by the next iteration's prefetch
            stage ^= 1;
            t = tn;
        }
        cp_async_wait<0>();
    }
    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    const float inv0 = l0 > 0.0f ? 1.0f / l0 : 0.0f, inv1 = l1 > 0.0f ? 1.0f / l1 : 0.0f;
    (void)off;
#pragma unroll
    for (int nt = 0; nt < DP / 8; ++nt) {
        int d = nt * 8 + tq * 2;
        if (d < HEAD_DIM) {  // HEAD_DIM is a multiple of 8: d and d+1 are both in range
            if (r0 < a.q_len)
                *(u32*)(a.out + (((u64)b * a.q_len + r0) * a.q_heads + h) * HEAD_DIM + d) = pack2(o[nt][0] * inv0, o[nt][1] * inv0);
            if (r1 < a.q_len)
                *(u32*)(a.out + (((u64)b * a.q_len + r1) * a.q_heads + h) * HEAD_DIM + d) = pack2(o[nt][2] * inv1, o[nt][3] * inv1);
        }
    }
}
#define FLASH_THREADS 128
#define FLASH_BODY flash_tc<MASK, SPARSE>(a)

#else
// =============================== SIMT flash (f32) ===============================
// Block: 8 warps, one query row each; key/value tiles of 32 rows in shared memory (f32, rows
// padded by one word). Lane j scores key j of the tile; lanes own output dims d = lane + 32t.
#define SQ 8
#define SKV 32
#define SLD (HEAD_DIM + 1)
#define DPL ((HEAD_DIM + 31) / 32)

template <int MASK, bool SPARSE>
__device__ __forceinline__ void flash_simt(const AttnArgs& a) {
    __shared__ float Qs[SQ][HEAD_DIM];
    __shared__ float Ks[SKV][SLD];
    __shared__ float Vs[SKV][SLD];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int qt = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int q0 = qt * SQ, i = q0 + warp;
    const int kh = h / (a.q_heads / a.kv_heads);
    for (int c = threadIdx.x; c < SQ * HEAD_DIM; c += 256) {
        int r = c / HEAD_DIM, d = c % HEAD_DIM;
        Qs[r][d] = q0 + r < a.q_len ? a.q[(((u64)b * a.q_len + q0 + r) * a.q_heads + h) * HEAD_DIM + d] * a.scale_log2 : 0.0f;
    }
    int t_begin, t_end;
    tile_range<MASK>(a, q0, q0 + SQ - 1, SKV, t_begin, t_end);
    float o[DPL];
#pragma unroll
    for (int t = 0; t < DPL; ++t) o[t] = 0.0f;
    float m = F_NEG_INF, l = 0.0f;
    for (int t = t_begin; t < t_end; ++t) {
        int cls = 1;
        if (SPARSE) {
            cls = a.tile_cls[qt * a.k_tiles + t];
            if (cls == 0) continue;  // uniform across the block: empty tiles are never loaded
        }
        const int j0 = t * SKV;
        __syncthreads();
        for (int c = threadIdx.x; c < SKV * HEAD_DIM; c += 256) {
            int r = c / HEAD_DIM, d = c % HEAD_DIM;
            bool ok = j0 + r < a.kv_len;
            u64 idx = (((u64)b * a.kv_cap + j0 + r) * a.kv_heads + kh) * HEAD_DIM + d;
            Ks[r][d] = ok ? a.k[idx] : 0.0f;
            Vs[r][d] = ok ? a.v[idx] : 0.0f;
        }
        __syncthreads();
        bool full = SPARSE ? (cls == 2 && j0 + SKV <= a.kv_len) : tile_full<MASK>(a, q0, SQ, j0, SKV);
        float sc = 0.0f;
#pragma unroll 8
        for (int d = 0; d < HEAD_DIM; ++d) sc = fmaf(Qs[warp][d], Ks[lane][d], sc);
        if (!full && !elem_visible<MASK, SPARSE>(a, i, j0 + lane)) sc = F_NEG_INF;
        float mn = fmaxf(m, warp_max(sc));
        float mu = mn == F_NEG_INF ? 0.0f : mn;
        float alpha = exp2f(m - mu);
        float p = exp2f(sc - mu);
        m = mn;
        l = l * alpha + warp_sum(p);
#pragma unroll
        for (int t2 = 0; t2 < DPL; ++t2) o[t2] *= alpha;
        for (int jj = 0; jj < SKV; ++jj) {
            float pj = __shfl_sync(0xffffffffu, p, jj);
#pragma unroll
            for (int t2 = 0; t2 < DPL; ++t2) {
                int d = lane + 32 * t2;
                if (d < HEAD_DIM) o[t2] = fmaf(pj, Vs[jj][d], o[t2]);
            }
        }
    }
    if (i < a.q_len) {
        float inv = l > 0.0f ? 1.0f / l : 0.0f;
#pragma unroll
        for (int t2 = 0; t2 < DPL; ++t2) {
            int d = lane + 32 * t2;
            if (d < HEAD_DIM) a.out[(((u64)b * a.q_len + i) * a.q_heads + h) * HEAD_DIM + d] = o[t2] * inv;
        }
    }
}
#define FLASH_THREADS 256
#define FLASH_BODY flash_simt<MASK, SPARSE>(a)
#endif
#endif  // HEAD_DIM

#define FLASH_KERNEL(NAME, MASK_, SPARSE_)                                        \
    extern "C" __global__ void __launch_bounds__(FLASH_THREADS) NAME(AttnArgs a) { \
        constexpr int MASK = MASK_;                                              \
        constexpr bool SPARSE = SPARSE_;                                         \
        FLASH_BODY;                                                              \
    }
