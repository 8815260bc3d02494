// gemm_core.cuh: out[m, n] = epilogue(sum_k A[m, k] * W[n, k]) shared by gemm.cu, gelu_mlp.cu and
// patch_embed.cu. A and W are both K-contiguous ("NT"), which is what mma.sync .row.col wants.
//
// f16/bf16 (DTYPE 1/2): tensor cores, mma.sync.m16n8k16 with f32 accumulators.
//   Block tile 128 x 128 x 32, 256 threads = 8 warps as 2 (M) x 4 (N), warp tile 64 x 32
//   (4 x 4 mma tiles, 64 f32 accumulators per thread). A and W tiles are double-buffered in
//   static shared memory (2 x 2 x 128 x 40 halves = 40 KiB): rows padded from 32 to 40 halves
//   (80 bytes) so ldmatrix row addresses stay 16-byte aligned and fall in distinct banks.
//   Tiles stream in with 16-byte cp.async (zero-filling past K and past M/N) when rows are
//   16-byte aligned (K % 8 == 0); otherwise, and for the patch gather, with guarded scalar loads.
// f32 (DTYPE 0): SIMT, block tile 64 x 64 x 16, 256 threads each computing 4 x 4 outputs.
//
// Epilogue (per output element, in f32): + bias[n] (if given), activation ACT (template), +
// residual[m, n] (if given); the patch-embedding mode maps rows to tokens and adds pos.
// QBITS (8 or 4, quant_gemm.cu): w is int8/int4 groups (quant_core.cuh), dequantised in the W
// tile load (f16/bf16: 8 weights per thread rounded to T in shared memory; f32: per element).
#include "common.cuh"

struct GemmArgs {
    const T* a;         // [M, K] (AMODE 0) or pixels [B, C, H, W] (AMODE 1)
    const T* w;         // [N, K]
    const T* bias;      // [N] or null
    const T* residual;  // [M, N] or null (AMODE 0)
    const T* pos;       // [tokens, N] or null (AMODE 1)
    T* out;
    int M, N, K;
    // patch gather (AMODE 1): row m = b * patches + patch, k = (c, py, px)
    int C, H, W, P, gw, patches, cls;
};

// A element (m, k) for the patch gather.
__device__ __forceinline__ T patch_elem(const GemmArgs& g, int m, int k) {
    int b = m / g.patches, pt = m % g.patches;
    int gy = pt / g.gw, gx = pt % g.gw;
    int pp = g.P * g.P;
    int c = k / pp, r = k % pp;
    int py = r / g.P, px = r % g.P;
    return g.a[(((u64)b * g.C + c) * g.H + gy * g.P + py) * g.W + gx * g.P + px];
}

template <int ACT, int AMODE>
__device__ __forceinline__ void gemm_store(const GemmArgs& g, int m, int n, float v) {
    if (m >= g.M || n >= g.N) return;
    if (g.bias) v += to_f(g.bias[n]);
    v = apply_act(ACT, v);
    if (AMODE == 0) {
        u64 o = (u64)m * g.N + n;
        if (g.residual) v += to_f(g.residual[o]);
        g.out[o] = from_f(v);
    } else {
        int b = m / g.patches, tok = m % g.patches + g.cls;
        int T_ = g.patches + g.cls;
        if (g.pos) v += to_f(g.pos[(u64)tok * g.N + n]);
        g.out[((u64)b * T_ + tok) * g.N + n] = from_f(v);
    }
}

#ifdef QBITS
#include "quant_core.cuh"
#endif

#if DTYPE != 0
#define GBM 128
#define GBN 128
#define GBK 32
#define GLD 40  // padded smem row, halves

template <int AMODE>
__device__ __forceinline__ void gemm_load_tile(const GemmArgs& g, u16 (*As)[GLD], u16 (*Bs)[GLD], int bm, int bn, int k0, bool vec) {
    const u16* A = (const u16*)g.a;
    const u16* Wt = (const u16*)g.w;
#pragma unroll
    for (int it = 0; it < 2; ++it) {
        int chunk = threadIdx.x + it * 256;  // 512 chunks of 8 halves per operand
        int r = chunk >> 2, c8 = (chunk & 3) * 8;
        int kk = k0 + c8;
        // A
        {
            int m = bm + r;
            if (AMODE == 0 && vec) {
                int rem = g.K - kk;
                int bytes = (m < g.M && rem > 0) ? (rem >= 8 ? 16 : rem * 2) : 0;
                const u16* src = bytes ? A + (u64)m * g.K + kk : A;
                cp_async16(&As[r][c8], src, bytes);
            } else {
#pragma unroll
                for (int e = 0; e < 8; ++e) {
                    int k = kk + e;
                    u16 v = 0;
                    if (m < g.M && k < g.K) v = AMODE == 0 ? A[(u64)m * g.K + k] : (u16)patch_elem(g, m, k);
                    As[r][c8 + e] = v;
                }
            }
        }
        // W
        {
            int n = bn + r;
#ifdef QBITS
            // Int8/int4 weights (quant_gemm.cu): the 8 weights dequantised into the tile as T.
            (void)Wt;
            qw_tile8(g, &Bs[r][c8], n, kk);
#else
            if (vec) {
                int rem = g.K - kk;
                int bytes = (n < g.N && rem > 0) ? (rem >= 8 ? 16 : rem * 2) : 0;
                const u16* src = bytes ? Wt + (u64)n * g.K + kk : Wt;
                cp_async16(&Bs[r][c8], src, bytes);
            } else {
#pragma unroll
                for (int e = 0; e < 8; ++e) {
                    int k = kk + e;
                    Bs[r][c8 + e] = (n < g.N && k < g.K) ? Wt[(u64)n * g.K + k] : (u16)0;
                }
            }
#endif
        }
    }
}

template <int ACT, int AMODE>
__device__ __forceinline__ void gemm_tc(const GemmArgs& g) {
    __shared__ __align__(16) u16 As[2][GBM][GLD];
    __shared__ __align__(16) u16 Bs[2][GBN][GLD];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int wm = warp >> 2, wn = warp & 3;  // 2 x 4 warps
    const int bm = blockIdx.y * GBM, bn = blockIdx.x * GBN;
    // 16-byte vector loads need 16-byte aligned rows: K % 8 == 0 (base pointers are 256-aligned).
    const bool vec = (g.K % 8) == 0;

    float acc[4][4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

    const int ktiles = (g.K + GBK - 1) / GBK;
    gemm_load_tile<AMODE>(g, As[0], Bs[0], bm, bn, 0, vec);
    cp_async_commit();
    for (int kt = 0; kt < ktiles; ++kt) {
        const int s = kt & 1;
        if (kt + 1 < ktiles) gemm_load_tile<AMODE>(g, As[s ^ 1], Bs[s ^ 1], bm, bn, (kt + 1) * GBK, vec);
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < GBK; kk += 16) {
            u32 af[4][4], bf[4][2];
#pragma unroll
            for (int mt = 0; mt < 4; ++mt)
                ldmatrix_x4(af[mt][0], af[mt][1], af[mt][2], af[mt][3],
                            &As[s][wm * 64 + mt * 16 + (lane & 15)][kk + (lane >> 4) * 8]);
#pragma unroll
            for (int np = 0; np < 2; ++np)
                ldmatrix_x4(bf[np * 2][0], bf[np * 2][1], bf[np * 2 + 1][0], bf[np * 2 + 1][1],
                            &Bs[s][wn * 32 + np * 16 + (lane & 7) + (lane >> 4) * 8][kk + ((lane >> 3) & 1) * 8]);
#pragma unroll
            for (int mt = 0; mt < 4; ++mt)
#pragma unroll
                for (int nt = 0; nt < 4; ++nt) mma16816(acc[mt][nt], af[mt], bf[nt]);
        }
        __syncthreads();
    }
    const int gr = lane >> 2, gc = (lane & 3) * 2;
#pragma unroll
    for (int mt = 0; mt < 4; ++mt)
#pragma unroll
        for (int nt = 0; nt < 4; ++nt) {
            int m = bm + wm * 64 + mt * 16 + gr, n = bn + wn * 32 + nt * 8 + gc;
            gemm_store<ACT, AMODE>(g, m, n, acc[mt][nt][0]);
            gemm_store<ACT, AMODE>(g, m, n + 1, acc[mt][nt][1]);
            gemm_store<ACT, AMODE>(g, m + 8, n, acc[mt][nt][2]);
            gemm_store<ACT, AMODE>(g, m + 8, n + 1, acc[mt][nt][3]);
        }
}
#define GEMM_BODY gemm_tc<ACT, AMODE>(g)
#define GEMM_TILE_M GBM
#define GEMM_TILE_N GBN

#else  // f32 SIMT

#define FBM 64
#define FBN 64
#define FBK 16
template <int ACT, int AMODE>
__device__ __forceinline__ void gemm_f32(const GemmArgs& g) {
    __shared__ float As[FBK][FBM + 4];
    __shared__ float Bs[FBK][FBN + 4];
    const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;  // 16 x 16 threads, 4 x 4 outputs each
    const int bm = blockIdx.y * FBM, bn = blockIdx.x * FBN;
    float acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;
    for (int k0 = 0; k0 < g.K; k0 += FBK) {
#pragma unroll
        for (int it = 0; it < 4; ++it) {  // 64 x 16 elements per operand, 256 threads
            int idx = threadIdx.x + it * 256;
            int r = idx >> 4, c = idx & 15;
            int k = k0 + c;
            int m = bm + r, n = bn + r;
            float av = 0.0f, bv = 0.0f;
            if (m < g.M && k < g.K) av = AMODE == 0 ? g.a[(u64)m * g.K + k] : patch_elem(g, m, k);
#ifdef QBITS
            if (n < g.N && k < g.K) bv = qw_at(g, n, k);
#else
            if (n < g.N && k < g.K) bv = g.w[(u64)n * g.K + k];
#endif
            As[c][r] = av;
            Bs[c][r] = bv;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < FBK; ++kk) {
            float a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) a[i] = As[kk][ty * 4 + i];
#pragma unroll
            for (int j = 0; j < 4; ++j) b[j] = Bs[kk][tx * 4 + j];
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) gemm_store<ACT, AMODE>(g, bm + ty * 4 + i, bn + tx * 4 + j, acc[i][j]);
}
#define GEMM_BODY gemm_f32<ACT, AMODE>(g)
#define GEMM_TILE_M FBM
#define GEMM_TILE_N FBN
#endif

// Instantiates one extern "C" kernel per activation: NAME_none, NAME_gelu, ...
#define GEMM_KERNEL(NAME, ACT_, AMODE_)                                            \
    extern "C" __global__ void __launch_bounds__(256) NAME(GemmArgs g) {          \
        constexpr int ACT = ACT_;                                                 \
        constexpr int AMODE = AMODE_;                                             \
        GEMM_BODY;                                                                \
    }
#define GEMM_KERNELS(PREFIX, AMODE_)                          \
    GEMM_KERNEL(PREFIX##_none, ACT_NONE, AMODE_)              \
    GEMM_KERNEL(PREFIX##_gelu, ACT_GELU_ERF, AMODE_)          \
    GEMM_KERNEL(PREFIX##_gelu_tanh, ACT_GELU_TANH, AMODE_)    \
    GEMM_KERNEL(PREFIX##_quick_gelu, ACT_QUICK_GELU, AMODE_)  \
    GEMM_KERNEL(PREFIX##_silu, ACT_SILU, AMODE_)
