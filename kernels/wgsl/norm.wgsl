// Row-wise reductions: LayerNorm, RMSNorm, softmax and argmax over the last dimension.
// One workgroup of 64 invocations per row (rows spread over a 2-D grid); statistics in f32.
// p(0) = rows, p(1) = D, p(2) = eps (f32 bits).

@group(0) @binding(1) var<storage, read> X: array<T>;
@group(0) @binding(2) var<storage, read> G: array<T>;
@group(0) @binding(3) var<storage, read> BT: array<T>;
@group(0) @binding(4) var<storage, read_write> O: array<T>;
@group(0) @binding(5) var<storage, read_write> OI: array<u32>;

const NT: u32 = 64u;
var<workgroup> red: array<f32, 64>;
var<workgroup> red_i: array<u32, 64>;

fn row_sum(v: f32, lid: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = NT / 2u; s > 0u; s = s / 2u) {
        if lid < s {
            red[lid] = red[lid] + red[lid + s];
        }
        workgroupBarrier();
    }
    return workgroupUniformLoad(&red[0]);
}

fn row_max(v: f32, lid: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = NT / 2u; s > 0u; s = s / 2u) {
        if lid < s {
            red[lid] = max(red[lid], red[lid + s]);
        }
        workgroupBarrier();
    }
    return workgroupUniformLoad(&red[0]);
}

fn row_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

@compute @workgroup_size(64)
fn layer_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = row_index(wid, nwg);
    if row >= p(0) {
        return;
    }
    let d = p(1);
    let base = row * d;
    var s = 0.0;
    for (var j = lid; j < d; j += NT) {
        s += f32(X[base + j]);
    }
    let mean = row_sum(s, lid) / f32(d);
    var q = 0.0;
    for (var j = lid; j < d; j += NT) {
        let c = f32(X[base + j]) - mean;
        q += c * c;
    }
    let inv = inverseSqrt(row_sum(q, lid) / f32(d) + pf(2));
    for (var j = lid; j < d; j += NT) {
        O[base + j] = T((f32(X[base + j]) - mean) * inv * f32(G[j]) + f32(BT[j]));
    }
}

@compute @workgroup_size(64)
fn rms_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = row_index(wid, nwg);
    if row >= p(0) {
        return;
    }
    let d = p(1);
    let base = row * d;
    var q = 0.0;
    for (var j = lid; j < d; j += NT) {
        let x = f32(X[base + j]);
        q += x * x;
    }
    let inv = inverseSqrt(row_sum(q, lid) / f32(d) + pf(2));
    for (var j = lid; j < d; j += NT) {
        O[base + j] = T(f32(X[base + j]) * inv * f32(G[j]));
    }
}

@compute @workgroup_size(64)
fn softmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = row_index(wid, nwg);
    if row >= p(0) {
        return;
    }
    let d = p(1);
    let base = row * d;
    var m = NEG;
    for (var j = lid; j < d; j += NT) {
        m = max(m, f32(X[base + j]));
    }
    let mx = row_max(m, lid);
    var s = 0.0;
    for (var j = lid; j < d; j += NT) {
        s += exp(f32(X[base + j]) - mx);
    }
    let inv = 1.0 / row_sum(s, lid);
    for (var j = lid; j < d; j += NT) {
        O[base + j] = T(exp(f32(X[base + j]) - mx) * inv);
    }
}

// First index of the maximum; NaN is ignored. A row of NaN only gives index 0.
const NO_INDEX: u32 = 0xffffffffu;

@compute @workgroup_size(64)
fn argmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = row_index(wid, nwg);
    if row >= p(0) {
        return;
    }
    let d = p(1);
    let base = row * d;
    var best = 0.0;
    var bi = NO_INDEX;
    for (var j = lid; j < d; j += NT) {
        let x = f32(X[base + j]);
        // NaN test on the bits (a compiler may fold x == x to true).
        let is_nan = (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
        if !is_nan && (bi == NO_INDEX || x > best) {
            best = x;
            bi = j;
        }
    }
    red[lid] = best;
    red_i[lid] = bi;
    workgroupBarrier();
    for (var s = NT / 2u; s > 0u; s = s / 2u) {
        if lid < s {
            let ob = red[lid + s];
            let oi = red_i[lid + s];
            let mi = red_i[lid];
            let take = oi != NO_INDEX && (mi == NO_INDEX || ob > red[lid] || (ob == red[lid] && oi < mi));
            if take {
                red[lid] = ob;
                red_i[lid] = oi;
            }
        }
        workgroupBarrier();
    }
    if lid == 0u {
        let r = red_i[0];
        OI[row] = select(r, 0u, r == NO_INDEX);
    }
}
