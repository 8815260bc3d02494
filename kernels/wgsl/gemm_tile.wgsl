// The tiled GEMM shared by gemm.wgsl, gelu_mlp.wgsl and patch_embed.wgsl:
// acc = A[m0.., :] · B[n0.., :]ᵀ for a 32 x 32 output tile, K streamed in slices of 16 through
// workgroup memory. 64 invocations, each owning a 4 x 4 block of the tile. The including module
// defines `load_a(m, k) -> f32` and `load_b(n, k) -> f32` (this is where patch embedding does its
// implicit im2col) and `store(m, n, acc)`, its epilogue for one finished output element; its entry
// point calls `gemm_tiled`. p(0) = M, p(1) = N, p(2) = K.

const TM: u32 = 32u;
const TN: u32 = 32u;
const TK: u32 = 16u;

var<workgroup> As: array<f32, 512>; // [TK][TM]
var<workgroup> Bs: array<f32, 512>; // [TK][TN]

fn gemm_tile(m0: u32, n0: u32, M: u32, N: u32, K: u32, lid: u32) -> array<f32, 16> {
    var acc: array<f32, 16>;
    let tx = lid % 8u;
    let ty = lid / 8u;
    for (var k0 = 0u; k0 < K; k0 += TK) {
        // 512 elements per operand, 8 per invocation; consecutive invocations read consecutive k.
        for (var e = lid; e < TM * TK; e += 64u) {
            let r = e / TK;
            let kk = e % TK;
            let k = k0 + kk;
            var a = 0.0;
            if m0 + r < M && k < K {
                a = load_a(m0 + r, k);
            }
            As[kk * TM + r] = a;
            var b = 0.0;
            if n0 + r < N && k < K {
                b = load_b(n0 + r, k);
            }
            Bs[kk * TN + r] = b;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            var a: array<f32, 4>;
            var b: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                a[i] = As[kk * TM + ty * 4u + i];
                b[i] = Bs[kk * TN + tx * 4u + i];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i * 4u + j] = fma(a[i], b[j], acc[i * 4u + j]);
                }
            }
        }
        workgroupBarrier();
    }
    return acc;
}

/// The tile of workgroup `wid` (grid: ceil(N/32) x ceil(M/32)): accumulate, then hand each
/// element inside [0, M) x [0, N) to `store`. Invocation `lid` owns the 4x4 block at
/// (m0 + (lid / 8) * 4, n0 + (lid % 8) * 4), element e of `acc` at row e / 4, column e % 4.
fn gemm_tiled(wid: vec3<u32>, lid: u32) {
    let M = p(0);
    let N = p(1);
    let m0 = wid.y * TM;
    let n0 = wid.x * TN;
    var acc = gemm_tile(m0, n0, M, N, p(2), lid);
    for (var e = 0u; e < 16u; e++) {
        let m = m0 + (lid / 8u) * 4u + e / 4u;
        let n = n0 + (lid % 8u) * 4u + e % 4u;
        if m < M && n < N {
            store(m, n, acc[e]);
        }
    }
}
