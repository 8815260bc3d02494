// Shared by the attention modules: bindings, layouts, K/V tile staging and the mask.
// q [B, Sq, Hq, D], k and v [B, cap, Hkv, D] (first Skv rows used), out [B, Sq, Hq, D].
// Parameters: p(0) B, p(1) Hq, p(2) Hkv, p(3) Sq, p(4) Skv, p(5) cap, p(6) scale * log2(e)
// (f32 bits; scores live in the exp2 domain), p(7) window, p(8) key blocks of a block layout,
// p(9) block_q, p(10) block_k, p(11) splits (decode), p(12) keys per split (decode),
// p(13) head chunks per KV head (decode).
// Specialisation: D (head dim), MASK (0 none, 1 causal, 2 sliding window; the base mask of a
// block layout), BQ/BK (tile sizes; BK also sizes the K/V tile KVs).

@group(0) @binding(1) var<storage, read> Q: array<T>;
@group(0) @binding(2) var<storage, read> K: array<T>;
@group(0) @binding(3) var<storage, read> V: array<T>;
@group(0) @binding(4) var<storage, read_write> O: array<T>;

fn q_at(b: u32, i: u32, h: u32, d: u32) -> u32 {
    return ((b * p(3) + i) * p(1) + h) * D + d;
}

fn kv_at(b: u32, j: u32, kh: u32, d: u32) -> u32 {
    return ((b * p(5) + j) * p(2) + kh) * D + d;
}

// One K (values = false) or V tile in workgroup memory, as f32: rows [kt, kt + BK) of KV head kh,
// zero from `end` on.
var<workgroup> KVs: array<f32, BK * D>;

fn stage_kv(values: bool, b: u32, kh: u32, kt: u32, end: u32, lid: u32) {
    for (var e = lid; e < BK * D; e += 64u) {
        let j = kt + e / D;
        var v = 0.0;
        if j < end {
            let at = kv_at(b, j, kh, e % D);
            if values {
                v = f32(V[at]);
            } else {
                v = f32(K[at]);
            }
        }
        KVs[e] = v;
    }
}

// Query row i sits at absolute position Skv - Sq + i (bottom-right aligned).
fn visible(i: u32, j: u32) -> bool {
    if MASK == 0u {
        return true;
    }
    let qp = i32(p(4)) - i32(p(3)) + i32(i);
    let jj = i32(j);
    if jj > qp {
        return false;
    }
    if MASK == 2u {
        return qp - jj < i32(p(7));
    }
    return true;
}

// Key range [lo, hi) that any of the query rows [q0, q1) can see, lo rounded down to a multiple of
// `align`; tiles outside it are never loaded.
fn key_range(q0: u32, q1: u32, align: u32) -> vec2<u32> {
    let skv = p(4);
    if MASK == 0u {
        return vec2<u32>(0u, skv);
    }
    let off = i32(skv) - i32(p(3));
    let hi = clamp(off + i32(q1), 0, i32(skv));
    var lo = 0;
    if MASK == 2u {
        lo = clamp(off + i32(q0) - i32(p(7)) + 1, 0, i32(skv));
    }
    let lo_a = (u32(lo) / align) * align;
    return vec2<u32>(lo_a, u32(hi));
}

// Class of the tile rows [q0, q0+BQ) x keys [kt, kt+BK) under the element mask:
// 0 nothing visible, 1 partial, 2 every in-range element visible.
fn dense_class(q0: u32, kt: u32) -> u32 {
    if MASK == 0u {
        return 2u;
    }
    let off = i32(p(4)) - i32(p(3));
    let qlo = off + i32(q0);
    let qhi = off + i32(min(q0 + BQ, p(3))) - 1;
    let jlo = i32(kt);
    let jhi = i32(min(kt + BK, p(4))) - 1;
    if jlo > qhi {
        return 0u;
    }
    let w = i32(p(7));
    if MASK == 2u && qlo - jhi >= w {
        return 0u;
    }
    var full = jhi <= qlo;
    if MASK == 2u {
        full = full && (qhi - jlo < w);
    }
    return select(1u, 2u, full);
}

// The full element mask: with SPARSE also the block layout's keep table (via its class table,
// whose 0 means "not kept, or nothing in the block visible").
fn allowed(i: u32, j: u32) -> bool {
#if SPARSE
    if CLASS[(i / p(9)) * p(8) + j / p(10)] == 0u {
        return false;
    }
#endif
    return visible(i, j);
}
