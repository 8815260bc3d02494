// GEMM with a fused epilogue: out = act(a · wᵀ + bias) + residual.
// a [M, K], w [N, K], bias [N], residual [M, N], out [M, N]; p(0) = M, p(1) = N, p(2) = K.
// Specialisation: ACT, HAS_BIAS, HAS_RES, WQ (w is int8/int4 groups, see below), Q4 (int4, else int8).
// * gemm: 32x32 output tiles (gemm_tile.wgsl). Grid: (ceil(N/32), ceil(M/32)).
// * gemv: skinny M (decode, M <= GV_ROWS). A 32-row tile would waste 31/32 of its work at M = 1 and
//   launch only N/32 workgroups; here one workgroup owns one output column n: its 64 invocations
//   stride over K reading the row w[n, :] with consecutive invocations on consecutive addresses,
//   each keeping M partial sums, and a workgroup tree reduction finishes them. w, the bytes that
//   bound decode, is read exactly once. Grid: N workgroups spread over (x, y) (65535 per dimension).
// * WQ: w holds weight-only int8/int4 groups (quant.wgsl), scales from word p(3). `gemm`
//   dequantises in its B-tile load; `gemv_q` (skinny M) reads one u32 word per step: 4 int8 or
//   8 int4 weights sharing one scale, accumulating in f32.

@group(0) @binding(1) var<storage, read> A: array<T>;
#if WQ
@group(0) @binding(2) var<storage, read> W: array<u32>;
#else
@group(0) @binding(2) var<storage, read> W: array<T>;
#endif
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

#if WQ
fn load_b(n: u32, k: u32) -> f32 {
    return load_wq(n, k);
}
#else
fn load_b(n: u32, k: u32) -> f32 {
    return f32(W[n * p(2) + k]);
}
#endif

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

// The cross-invocation sum of `acc` (M rows), stored for column n.
fn gemv_finish(acc: array<f32, 8>, M: u32, n: u32, lid: u32) {
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

#if !WQ
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
    gemv_finish(acc, M, n, lid);
}
#endif

#if WQ
fn a4(m: u32, k: u32) -> vec4<f32> {
    let i = m * p(2) + k;
    return vec4<f32>(f32(A[i]), f32(A[i + 1u]), f32(A[i + 2u]), f32(A[i + 3u]));
}

// Skinny M over quantised w: invocation lid takes words lid, lid + 64, ... of row n.
@compute @workgroup_size(64)
fn gemv_q(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let M = p(0);
    let N = p(1);
    let K = p(2);
    let n = wid.x + wid.y * nwg.x;
    if n >= N {
        return;
    }
    var acc: array<f32, 8>;
#if Q4
    // 4 words per group; word w % 4 of a group holds its bytes 4w..4w+3, i.e. elements
    // 4w..4w+3 (low nibbles) and 16+4w..16+4w+3 (high nibbles).
    let words = K / 8u;
    let row0 = n * words;
    for (var w = lid; w < words; w += 64u) {
        let word = W[row0 + w];
        let d = wscale((row0 + w) / 4u);
        let lo = vec4<f32>(f32(extractBits(word, 0u, 4u)), f32(extractBits(word, 8u, 4u)),
                           f32(extractBits(word, 16u, 4u)), f32(extractBits(word, 24u, 4u))) - 8.0;
        let hi = vec4<f32>(f32(extractBits(word, 4u, 4u)), f32(extractBits(word, 12u, 4u)),
                           f32(extractBits(word, 20u, 4u)), f32(extractBits(word, 28u, 4u))) - 8.0;
        let k = (w / 4u) * 32u + (w % 4u) * 4u;
        for (var m = 0u; m < M; m++) {
            acc[m] = fma(dot(a4(m, k), lo) + dot(a4(m, k + 16u), hi), d, acc[m]);
        }
    }
#else
    let words = K / 4u;
    let row0 = n * words;
    for (var w = lid; w < words; w += 64u) {
        let word = bitcast<i32>(W[row0 + w]);
        let d = wscale((row0 + w) / 8u);
        let q = vec4<f32>(f32(extractBits(word, 0u, 8u)), f32(extractBits(word, 8u, 8u)),
                          f32(extractBits(word, 16u, 8u)), f32(extractBits(word, 24u, 8u)));
        for (var m = 0u; m < M; m++) {
            acc[m] = fma(dot(a4(m, 4u * w), q), d, acc[m]);
        }
    }
#endif
    gemv_finish(acc, M, n, lid);
}
#endif
