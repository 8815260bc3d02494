// rope.cu: Llama rotate-half rotary embedding on the first `rot` dims of x [B, S, H, D]; the
// remaining dims are copied. One thread per (token, head, pair i < rot/2) plus the copied tail.
// The angle pos * theta^(-2i/rot) is formed in f64 and reduced to [-pi, pi] before sincosf, so
// large positions keep f32 accuracy.
#include "common.cuh"

extern "C" __global__ void rope(const T* __restrict__ x, const u32* __restrict__ pos, T* __restrict__ out,
                                u64 tokens, u32 heads, u32 dim, u32 rot, float theta) {
    u32 half = rot / 2, tail = dim - rot, per = half + tail;
    for (u64 idx = (u64)blockIdx.x * blockDim.x + threadIdx.x; idx < tokens * heads * per;
         idx += (u64)gridDim.x * blockDim.x) {
        u64 row = idx / per;  // (token, head)
        u32 i = (u32)(idx % per);
        u64 tok = row / heads;
        const T* xr = x + row * dim;
        T* orow = out + row * dim;
        if (i < half) {
            double inv = exp(-(2.0 * (double)i / (double)rot) * log((double)theta));
            double ang = (double)pos[tok] * inv;
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
