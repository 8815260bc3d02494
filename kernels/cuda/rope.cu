// rope.cu: Llama rotate-half rotary embedding on the first `rot` dims of x [B, S, H, D]; the
// remaining dims are copied. One thread per (token, head, pair i < rot/2) plus the copied tail.
// Positions are [A, B, S]: pair i's axis is (i >= s1) + (i >= s2), the pair index where sections 1
// and 2 start (rot/2 when absent). Global frequencies (per_section = 0) use theta^(-2i/rot); per-
// section ones restart i at each section: theta^(-2 (i - start) / (2 len)).
// The angle is formed in f64 and reduced to [-pi, pi] before sincosf, so large positions keep
// f32 accuracy.
#include "common.cuh"

extern "C" __global__ void rope(const T* __restrict__ x, const u32* __restrict__ pos, T* __restrict__ out,
                                u64 tokens, u32 heads, u32 dim, u32 rot, float theta, u32 s1, u32 s2,
                                u32 per_section) {
    u32 half = rot / 2, tail = dim - rot, per = half + tail;
    for (u64 idx = (u64)blockIdx.x * blockDim.x + threadIdx.x; idx < tokens * heads * per;
         idx += (u64)gridDim.x * blockDim.x) {
        u64 row = idx / per;  // (token, head)
        u32 i = (u32)(idx % per);
        u64 tok = row / heads;
        const T* xr = x + row * dim;
        T* orow = out + row * dim;
        if (i < half) {
            u32 axis = (u32)(i >= s1) + (u32)(i >= s2);
            u32 local = i, span = rot;
            if (per_section) {
                u32 start = axis == 0 ? 0 : axis == 1 ? s1 : s2;
                u32 end = axis == 0 ? s1 : axis == 1 ? s2 : half;
                local = i - start;
                span = 2 * (end - start);
            }
            double inv = exp(-(2.0 * (double)local / (double)span) * log((double)theta));
            double ang = (double)pos[axis * tokens + tok] * inv;
            ang = ang - 6.283185307179586 * rint(ang / 6.283185307179586);
            float s, c;
            sincosf((float)ang, &s, &c);
            float a = to_f(xr[i]), b = to_f(xr[i + half]);
            orow[i] = from_f(a * c - b * s);
            orow[i + half] = from_f(b * c + a * s);
        } else {
            u32 d = rot + (i - half);
            orow[d] = xr[d];
        }
    }
}
