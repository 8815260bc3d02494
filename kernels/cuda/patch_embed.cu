// patch_embed.cu: ViT patch embedding (conv with kernel = stride = P) as an implicit-im2col GEMM:
// row m = (image b, patch), k = (channel, py, px) gathered straight from the pixels in the tile
// load, w [E, C*P*P]; the epilogue adds bias and pos[token] and writes token = patch + cls.
// patch_cls writes the CLS rows: cls + pos[0] (no bias, as the conv bias is not applied to CLS).
#include "gemm_core.cuh"
GEMM_KERNEL(patch_embed, ACT_NONE, 1)

extern "C" __global__ void patch_cls(const T* __restrict__ cls, const T* __restrict__ pos, T* __restrict__ out,
                                     int batch, int tokens, int E) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < batch * E; i += gridDim.x * blockDim.x) {
        int b = i / E, e = i % E;
        float v = to_f(cls[e]);
        if (pos) v += to_f(pos[e]);
        out[(u64)b * tokens * E + e] = from_f(v);
    }
}
