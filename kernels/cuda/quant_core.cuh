// quant_core.cuh: reading weight-only int8/int4 weights (crates/core/src/quant.rs, planar layout)
// for quant_gemm.cu; spliced into gemm_core.cuh after GemmArgs when QBITS is defined.
//   QBITS 8: one signed byte per element, value q * d.
//   QBITS 4: 16 bytes per group of 32; byte i = element i (low nibble) | element i + 16 (high
//            nibble), value (q - 8) * d.
// Then one f16 scale d per group of 32 consecutive elements (little-endian), starting at byte
// N * K * QBITS / 8. Rows hold whole groups (K % 32 == 0, checked by Op::infer), so a row starts
// on a 16-byte boundary (int8: 32 K bytes, int4: 16 K bytes) and 8 consecutive weights from a
// k that is a multiple of 8 are 8 aligned bytes (int8) or 8 aligned nibbles of one half-group.
#pragma once

#if QBITS != 8 && QBITS != 4
#error "QBITS must be 8 or 4"
#endif

typedef unsigned char u8;

struct __align__(8) qw_u32x2 {
    u32 x, y;
};
struct __align__(16) qw_u32x4 {
    u32 x, y, z, w;
};

// Scale of group `grp` (flat index over the N x K weight).
__device__ __forceinline__ float qw_scale(const GemmArgs& g, u64 grp) {
    const u16* s = (const u16*)((const u8*)g.w + (u64)g.N * g.K * QBITS / 8);
    return h2f(s[grp]);
}

// Quant level of byte/nibble `e` (0..3) of word `w`, as a float (int4: `hi` picks the high nibble).
__device__ __forceinline__ float qw_level(u32 w, int e, int hi) {
#if QBITS == 8
    (void)hi;
    return (float)(signed char)(w >> (e * 8));
#else
    return (float)((int)((w >> (e * 8 + hi * 4)) & 15u) - 8);
#endif
}

// Weight (n, k) as a float.
__device__ __forceinline__ float qw_at(const GemmArgs& g, int n, int k) {
    const u8* q = (const u8*)g.w;
    const u64 i = (u64)n * g.K + k;
    const float d = qw_scale(g, i / 32);
#if QBITS == 8
    return (float)(signed char)q[i] * d;
#else
    const int j = (int)(i % 32);
    return qw_level(q[(i / 32) * 16 + (j & 15)], 0, j >> 4) * d;
#endif
}

#if DTYPE != 0
// Weights (n, kk .. kk + 7), kk % 8 == 0, dequantised and rounded to T into dst (8 u16,
// 16-byte aligned); zeros past N or K.
__device__ __forceinline__ void qw_tile8(const GemmArgs& g, u16* dst, int n, int kk) {
    qw_u32x4 o = {0u, 0u, 0u, 0u};
    if (n < g.N && kk < g.K) {
        const u8* q = (const u8*)g.w;
        const u64 i = (u64)n * g.K + kk;
        const float d = qw_scale(g, i / 32);
#if QBITS == 8
        const qw_u32x2 v = *(const qw_u32x2*)(q + i);
        const int hi = 0;
#else
        const int j = (int)(i % 32);
        const qw_u32x2 v = *(const qw_u32x2*)(q + (i / 32) * 16 + (j & 15));
        const int hi = j >> 4;
#endif
        o.x = pack2(qw_level(v.x, 0, hi) * d, qw_level(v.x, 1, hi) * d);
        o.y = pack2(qw_level(v.x, 2, hi) * d, qw_level(v.x, 3, hi) * d);
        o.z = pack2(qw_level(v.y, 0, hi) * d, qw_level(v.y, 1, hi) * d);
        o.w = pack2(qw_level(v.y, 2, hi) * d, qw_level(v.y, 3, hi) * d);
    }
    *(qw_u32x4*)dst = o;
}
#endif
