// Element-wise ops, copies and gathers. T is the input element type, TO the output's (TO = T
// except for Cast); f16 values are widened to f32 for arithmetic. Each invocation writes one
// output element; the grid is 2-D so large tensors fit the 65535-workgroup limit.
// Specialisation: WG (workgroup size), OPK (binary op), ACT (activation).

@group(0) @binding(1) var<storage, read> A: array<T>;
@group(0) @binding(2) var<storage, read> B: array<T>;
@group(0) @binding(3) var<storage, read_write> O: array<TO>;
@group(0) @binding(4) var<storage, read> IDS: array<u32>;

// p(0) = element count. OPK: 0 add, 1 mul, 2 swiglu (silu(a) * b).
@compute @workgroup_size(WG)
fn ew_binary(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid, WG);
    if i >= p(0) {
        return;
    }
    let a = f32(A[i]);
    let b = f32(B[i]);
    var v: f32;
    switch OPK {
        case 0u: { v = a + b; }
        case 1u: { v = a * b; }
        default: { v = a * sigmoid_f32(a) * b; }
    }
    O[i] = TO(v);
}

// p(0) = element count.
@compute @workgroup_size(WG)
fn ew_unary(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid, WG);
    if i >= p(0) {
        return;
    }
    O[i] = TO(activate(f32(A[i]), ACT));
}

// p(0) = element count. Conversion by WGSL's value conversion (f32 -> f16 rounds to nearest).
@compute @workgroup_size(WG)
fn ew_cast(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid, WG);
    if i >= p(0) {
        return;
    }
    O[i] = TO(A[i]);
}

// Slice on one axis, the tensor seen as [outer, dim, inner]:
// p(0) = output count, p(1) = dim, p(2) = inner, p(3) = start, p(4) = len.
@compute @workgroup_size(WG)
fn ew_slice(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid, WG);
    if i >= p(0) {
        return;
    }
    let inner = p(2);
    let len = p(4);
    let c = i % inner;
    let r = (i / inner) % len;
    let o = i / (inner * len);
    O[i] = TO(A[(o * p(1) + p(3) + r) * inner + c]);
}

// Concat on one axis: p(0) = output count, p(1) = dim of a, p(2) = dim of b, p(3) = inner.
@compute @workgroup_size(WG)
fn ew_concat(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid, WG);
    if i >= p(0) {
        return;
    }
    let da = p(1);
    let db = p(2);
    let inner = p(3);
    let c = i % inner;
    let r = (i / inner) % (da + db);
    let o = i / (inner * (da + db));
    if r < da {
        O[i] = TO(A[(o * da + r) * inner + c]);
    } else {
        O[i] = TO(B[(o * db + r - da) * inner + c]);
    }
}

// KV-cache append: new [B, len, H*D] into cache [B, capacity, H*D] at row pos.
// p(0) = count of new, p(1) = len * H * D, p(2) = capacity * H * D, p(3) = pos * H * D.
@compute @workgroup_size(WG)
fn ew_kv_append(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid, WG);
    if i >= p(0) {
        return;
    }
    let b = i / p(1);
    let rem = i % p(1);
    O[b * p(2) + p(3) + rem] = TO(A[i]);
}

// Embedding gather: table A [V, D], ids [N]; an id >= V gives zeros.
// p(0) = output count, p(1) = D, p(2) = V.
@compute @workgroup_size(WG)
fn ew_embedding(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid, WG);
    if i >= p(0) {
        return;
    }
    let d = p(1);
    let id = IDS[i / d];
    if id < p(2) {
        O[i] = TO(A[id * d + i % d]);
    } else {
        O[i] = TO(0.0);
    }
}
