// GEMM with a fused epilogue: out = act(a · wᵀ + bias) + residual.
// a [M, K], w [N, K], bias [N], residual [M, N], out [M, N]; p(0) = M, p(1) = N, p(2) = K.
// Specialisation: ACT, HAS_BIAS, HAS_RES.
// * gemm: 32x32 output tiles (gemm_tile.wgsl). Grid: (ceil(N/32), ceil(M/32)).
// * gemv: skinny M (decode, M <= GV_ROWS). A 32-row tile would waste 31/32 of its work at M = 1 and
//   launch only N/32 workgroups; here one workgroup owns one output column n: its 64 invocations
//   stride over K reading the row w[n, :] with consecutive invocations on consecutive addresses,
//   each keeping M partial sums, and a workgroup tree reduction finishes them. w, the bytes that
//   bound decode, is read exactly once. Grid: N workgroups spread over (x, y) (65535 per dimension).

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

// out[m, n] from the accumulated dot product.
fn store(m: u32, n: u32, acc: f32) {
    let N = p(1);
    var v = acc;
#if HAS_BIAS
    v += f32(BIAS[n]);
#endif
    v = activate(v, ACT);
#if HAS_RES
    v += f32(RES[m * N + n]);
#endif
    O[m * N + n] = T(v);
}

@compute @workgroup_size(64)
fn gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    gemm_tiled(wid, lid);
}

const GV_ROWS: u32 = 8u;

var<workgroup> part: array<f32, 512>; // [GV_ROWS][64]

@compute @workgroup_size(64)
fn gemv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let M = p(0);
    let N = p(1);
    let K = p(2);
    // Workgroup-uniform: the early exit keeps every barrier below in uniform control flow.
    let n = wid.x + wid.y * nwg.x;
    if n >= N {
        return;
    }
    var acc: array<f32, 8>;
    for (var k = lid; k < K; k += 64u) {
        let w = f32(W[n * K + k]);
        for (var m = 0u; m < M; m++) {
            acc[m] = fma(f32(A[m * K + k]), w, acc[m]);
        }
    }
    for (var m = 0u; m < GV_ROWS; m++) {
        part[m * 64u + lid] = acc[m];
    }
    workgroupBarrier();
    for (var s = 32u; s > 0u; s >>= 1u) {
        if lid < s {
            for (var m = 0u; m < M; m++) {
                part[m * 64u + lid] += part[m * 64u + lid + s];
            }
        }
        workgroupBarrier();
    }
    if lid < M {
        store(lid, n, part[lid * 64u]);
    }
}
