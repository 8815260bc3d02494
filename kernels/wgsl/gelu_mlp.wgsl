// Fused MLP, two tiled GEMMs (gemm_tile.wgsl) with fused epilogues:
//   stage 1 (UP):   hidden = act(x · w1ᵀ + b1)            (bias + activation epilogue; hidden kept in f32)
//   stage 2 (DOWN): out    = hidden · w2ᵀ + b2 (+ residual) (bias + residual epilogue)
// p(0) = M, p(1) = N, p(2) = K of the stage. Specialisation: UP, ACT, HAS_RES, and WQ / Q4: the
// stage's weight is int8/int4 groups (quant.wgsl, scales from word p(3)), dequantised in the
// B-tile load.

#if UP
@group(0) @binding(1) var<storage, read> X: array<T>;
@group(0) @binding(5) var<storage, read_write> H: array<f32>;
#else
@group(0) @binding(1) var<storage, read> H: array<f32>;
@group(0) @binding(5) var<storage, read_write> O: array<T>;
#endif
#if WQ
@group(0) @binding(2) var<storage, read> W: array<u32>;
#else
@group(0) @binding(2) var<storage, read> W: array<T>;
#endif
@group(0) @binding(3) var<storage, read> BIAS: array<T>;
#if HAS_RES
@group(0) @binding(4) var<storage, read> RES: array<T>;
#endif

fn load_a(m: u32, k: u32) -> f32 {
#if UP
    return f32(X[m * p(2) + k]);
#else
    return H[m * p(2) + k];
#endif
}

fn load_b(n: u32, k: u32) -> f32 {
#if WQ
    return load_wq(n, k);
#else
    return f32(W[n * p(2) + k]);
#endif
}

@compute @workgroup_size(64)
fn gelu_mlp(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    gemm_tiled(wid, lid);
}

fn store(m: u32, n: u32, acc: f32) {
    let N = p(1);
    let v = acc + f32(BIAS[n]);
#if UP
    H[m * N + n] = activate(v, ACT);
#else
#if HAS_RES
    O[m * N + n] = T(v + f32(RES[m * N + n]));
#else
    O[m * N + n] = T(v);
#endif
#endif
}
