// Rotary embedding (Llama rotate-half, non-interleaved) on the first `r` dims of each head;
// the remaining dims are copied. One invocation per output element of x [B, S, H, D].
// Positions are [A, B, S]: pair k's axis is (k >= s1) + (k >= s2), the pair index where
// sections 1 and 2 start (r/2 when absent); per-section frequencies restart k at each section.
// p(0) = element count, p(1) = H * D, p(2) = D, p(3) = r, p(4) = log2(theta) (f32 bits),
// p(5) = s1, p(6) = s2, p(7) = 1 for per-section frequencies, p(8) = tokens (B * S).

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
    let s1 = p(5);
    let s2 = p(6);
    let axis = u32(k >= s1) + u32(k >= s2);
    var local = k;
    var span = r;
    if p(7) != 0u {
        let start = select(select(0u, s1, axis == 1u), s2, axis == 2u);
        let end = select(select(s1, s2, axis == 1u), hr, axis == 2u);
        local = k - start;
        span = 2u * (end - start);
    }
    let pos = f32(POS[axis * p(8) + i / hd]);
    // angle = pos * theta^(-2 local / span)
    let inv_freq = exp2(-(f32(2u * local) / f32(span)) * pf(4));
    let ang = pos * inv_freq;
    let c = cos(ang);
    let s = sin(ang);
    if d < hr {
        O[i] = T(x * c - f32(X[i + hr]) * s);
    } else {
        O[i] = T(x * c + f32(X[i - hr]) * s);
    }
}
