// ViT patch embedding as a GEMM (gemm_tile.wgsl) with the patch gathered in the tile load
// (implicit im2col): row m = (image b, patch index), column k = (channel, py, px) matches the
// conv weight [E, C, P, P] read as [E, K]. Epilogue: bias, position embedding, and the row offset
// that leaves room for the CLS token, whose row `cls_row` writes (cls + pos[0]).
// p(0) = M = B * patches, p(1) = E, p(2) = K = C*P*P, p(3) = patch P, p(4) = Hi, p(5) = Wi,
// p(6) = patches per image row, p(7) = patches per image, p(8) = tokens T, p(9) = C.
// Specialisation: HAS_BIAS, HAS_CLS, HAS_POS.

@group(0) @binding(1) var<storage, read> PX: array<T>;
@group(0) @binding(2) var<storage, read> W: array<T>;
#if HAS_BIAS
@group(0) @binding(3) var<storage, read> BIAS: array<T>;
#endif
#if HAS_CLS
@group(0) @binding(4) var<storage, read> CLS: array<T>;
#endif
#if HAS_POS
@group(0) @binding(5) var<storage, read> POS: array<T>;
#endif
@group(0) @binding(6) var<storage, read_write> O: array<T>;

fn load_a(m: u32, k: u32) -> f32 {
    let pp = p(3);
    let np = p(7);
    let b = m / np;
    let pi = m % np;
    let ph = pi / p(6);
    let pw = pi % p(6);
    let c = k / (pp * pp);
    let r = k % (pp * pp);
    let y = ph * pp + r / pp;
    let x = pw * pp + r % pp;
    return f32(PX[((b * p(9) + c) * p(4) + y) * p(5) + x]);
}

fn load_b(n: u32, k: u32) -> f32 {
    return f32(W[n * p(2) + k]);
}

@compute @workgroup_size(64)
fn patch_embed(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    gemm_tiled(wid, lid);
}

// Patch row m (image m / p(7), patch m % p(7)) lands after the image's CLS row, if any.
fn store(m: u32, n: u32, acc: f32) {
    let E = p(1);
    var v = acc;
#if HAS_BIAS
    v += f32(BIAS[n]);
#endif
    let b = m / p(7);
    let t = m % p(7) + p(8) - p(7);
#if HAS_POS
    v += f32(POS[t * E + n]);
#endif
    O[(b * p(8) + t) * E + n] = T(v);
}

#if HAS_CLS
// One invocation per (image, channel): row 0 of each image is cls (+ pos[0]).
@compute @workgroup_size(64)
fn cls_row(@builtin(global_invocation_id) gid: vec3<u32>) {
    let E = p(1);
    let i = gid.x;
    if i >= (p(0) / p(7)) * E {
        return;
    }
    let b = i / E;
    let n = i % E;
    var v = f32(CLS[n]);
#if HAS_POS
    v += f32(POS[n]);
#endif
    O[b * p(8) * E + n] = T(v);
}
#endif
