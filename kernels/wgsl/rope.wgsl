// Rotary embedding (Llama rotate-half, non-interleaved) on the first `r` dims of each head;
// the remaining dims are copied. One invocation per output element of x [B, S, H, D].
// p(0) = element count, p(1) = H * D, p(2) = D, p(3) = r, p(4) = log2(theta) (f32 bits).

@group(0) @binding(1) var<storage, read> X: array<T>;
@group(0) @binding(2) var<storage, read> POS: array<u32>;
@group(0) @binding(3) var<storage, read_write> O: array<T>;

@compute @workgroup_size(256)
fn rope(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid, 256u);
    if i >= p(0) {
        return;
    }
    let hd = p(1);
    let dh = p(2);
    let r = p(3);
    let hr = r / 2u;
    let d = i % dh;
    let x = f32(X[i]);
    if d >= r {
        O[i] = T(x);
        return;
    }
    let k = select(d - hr, d, d < hr);
    let pos = f32(POS[i / hd]);
    // angle = pos * theta^(-2k/r)
    let inv_freq = exp2(-(f32(2u * k) / f32(r)) * pf(4));
    let ang = pos * inv_freq;
    let c = cos(ang);
    let s = sin(ang);
    if d < hr {
        O[i] = T(x * c - f32(X[i + hr]) * s);
    } else {
        O[i] = T(x * c + f32(X[i - hr]) * s);
    }
}
