// GEMM with a fused epilogue: out = act(a · wᵀ + bias) + residual.
// a [M, K], w [N, K], bias [N], residual [M, N], out [M, N]; p(0) = M, p(1) = N, p(2) = K.
// Specialisation: ACT, HAS_BIAS, HAS_RES. Grid: (ceil(N/32), ceil(M/32)).

@group(0) @binding(1) var<storage, read> A: array<T>;
@group(0) @binding(2) var<storage, read> W: array<T>;
#if HAS_BIAS
@group(0) @binding(3) var<storage, read> BIAS: array<T>;
#endif
#if HAS_RES
@group(0) @binding(4) var<storage, read> RES: array<T>;
#endif
@group(0) @binding(5) var<storage, read_write> O: array<T>;

fn load_a(m: u32, k: u32) -> f32 {
    return f32(A[m * p(2) + k]);
}

fn load_b(n: u32, k: u32) -> f32 {
    return f32(W[n * p(2) + k]);
}

@compute @workgroup_size(64)
fn gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let M = p(0);
    let N = p(1);
    let m0 = wid.y * TM;
    let n0 = wid.x * TN;
    var acc = gemm_tile(m0, n0, M, N, p(2), lid);
    for (var e = 0u; e < 16u; e++) {
        let mn = tile_coord(m0, n0, lid, e);
        let m = mn.x;
        let n = mn.y;
        if m < M && n < N {
            var v = acc[e];
#if HAS_BIAS
            v += f32(BIAS[n]);
#endif
            v = activate(v, ACT);
#if HAS_RES
            v += f32(RES[m * N + n]);
#endif
            O[m * N + n] = T(v);
        }
    }
}
