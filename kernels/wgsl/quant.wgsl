// Weight-only int8/int4 weights (specialisation WQ; Q4: int4, else int8), for gemm.wgsl and
// gelu_mlp.wgsl, whose W (binding 2) is then `array<u32>`. Layout: crates/core/src/quant.rs,
// planar, groups of 32 consecutive elements of the flattened [N, K] weight (K % 32 == 0, so each
// region starts on a u32 word):
// * the quants: int8 one signed byte per element, value q d; int4 16 bytes per group, byte i =
//   element i (low nibble) | element i + 16 (high nibble), value (q - 8) d;
// * then one f16 scale d per group, two per word (unpack2x16float), from word p(3).

#if WQ
// Scale of group g.
fn wscale(g: u32) -> f32 {
    return unpack2x16float(W[p(3) + g / 2u])[g % 2u];
}

// Weight (n, k) of the [N, K] weight, K = p(2).
fn load_wq(n: u32, k: u32) -> f32 {
    let i = n * p(2) + k;
    let g = i / 32u;
#if Q4
    let j = i % 32u;
    let byte = g * 16u + j % 16u;
    let q = extractBits(W[byte / 4u], (byte % 4u) * 8u + (j / 16u) * 4u, 4u);
    return (f32(q) - 8.0) * wscale(g);
#else
    let q = extractBits(bitcast<i32>(W[i / 4u]), (i % 4u) * 8u, 8u);
    return f32(q) * wscale(g);
#endif
}
#endif
