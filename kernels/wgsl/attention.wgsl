// Prefill attention, two variants (attention_mask.wgsl holds bindings and masks):
//
// * attn_naive: one workgroup per (query row, head, batch); any mask (SPARSE: the class table). Scores for the whole row go to a
//   scratch buffer S [B, Hq, Sq, Skv], then max, sum and the weighted sum of V. The reference.
// * attn_flash: one workgroup per tile of BQ query rows of one head; K and V stream through
//   workgroup memory in tiles of BK keys with an online softmax in f32 (exp2, log2(e) folded
//   into the scale, one rescale per tile, one division at the end). TPR = 64 / BQ invocations
//   share a row: each scores BK / TPR keys of the tile against the whole row and owns D / TPR
//   output dims. Tiles the mask hides entirely are never loaded; tiles it keeps entirely skip the
//   element test. With SPARSE the tile classes come from a block layout's class table
//   (sparse_attention.wgsl), which needs BQ | block_q and BK | block_k.
// GQA: query head h reads KV head h / (Hq / Hkv). Rows that see no key output zeros.

@group(0) @binding(5) var<storage, read_write> S: array<f32>;

var<workgroup> red: array<f32, 64>;

fn wg_reduce(v: f32, lid: u32, is_max: bool) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = 32u; s > 0u; s = s / 2u) {
        if lid < s {
            if is_max {
                red[lid] = max(red[lid], red[lid + s]);
            } else {
                red[lid] = red[lid] + red[lid + s];
            }
        }
        workgroupBarrier();
    }
    return workgroupUniformLoad(&red[0]);
}

@compute @workgroup_size(64)
fn attn_naive(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = wid.x;
    let h = wid.y;
    let b = wid.z;
    let skv = p(4);
    let kh = h / (p(1) / p(2));
    let scale = pf(6);
    let base = ((b * p(1) + h) * p(3) + i) * skv;
    var mx = NEG;
    for (var j = lid; j < skv; j += 64u) {
        var s = NEG;
        if allowed(i, j) {
            var sdot = 0.0;
            for (var d = 0u; d < D; d++) {
                sdot = fma(f32(Q[q_at(b, i, h, d)]), f32(K[kv_at(b, j, kh, d)]), sdot);
            }
            s = sdot * scale;
        }
        S[base + j] = s;
        mx = max(mx, s);
    }
    let m = wg_reduce(mx, lid, true);
    var sum = 0.0;
    for (var j = lid; j < skv; j += 64u) {
        let s = S[base + j];
        if s != NEG {
            sum += exp2(s - m);
        }
    }
    let l = wg_reduce(sum, lid, false);
    // Make every invocation's scores visible to the whole workgroup.
    storageBarrier();
    for (var d = lid; d < D; d += 64u) {
        var acc = 0.0;
        for (var j = 0u; j < skv; j++) {
            let s = S[base + j];
            if s != NEG {
                acc = fma(exp2(s - m), f32(V[kv_at(b, j, kh, d)]), acc);
            }
        }
        var o = 0.0;
        if l > 0.0 {
            o = acc / l;
        }
        O[q_at(b, i, h, d)] = T(o);
    }
}

const TPR: u32 = 64u / BQ;
const DPT: u32 = (D + TPR - 1u) / TPR;

var<workgroup> Qs: array<f32, BQ * D>;
var<workgroup> Ss: array<f32, BQ * BK>;
var<workgroup> cls_u: u32;

fn tile_class(q0: u32, kt: u32) -> u32 {
#if SPARSE
    return sparse_class(q0, kt);
#else
    return dense_class(q0, kt);
#endif
}

@compute @workgroup_size(64)
fn attn_flash(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let q0 = wid.x * BQ;
    let h = wid.y;
    let b = wid.z;
    let sq = p(3);
    let skv = p(4);
    let kh = h / (p(1) / p(2));
    let r = lid / TPR;
    let t = lid % TPR;
    let i = q0 + r;
    let scale = pf(6);

    for (var e = lid; e < BQ * D; e += 64u) {
        let rr = e / D;
        var v = 0.0;
        if q0 + rr < sq {
            v = f32(Q[q_at(b, q0 + rr, h, e % D)]) * scale;
        }
        Qs[e] = v;
    }

    var m = NEG;
    var l = 0.0;
    var acc: array<f32, DPT>;
    let range = key_range(q0, min(q0 + BQ, sq), BK);
    for (var kt = range.x; kt < range.y; kt += BK) {
        if lid == 0u {
            cls_u = tile_class(q0, kt);
        }
        // Also orders the previous tile's reads of KVs and Ss before this tile's writes.
        let cls = workgroupUniformLoad(&cls_u);
        if cls == 0u {
            continue;
        }
        stage_kv(false, b, kh, kt, skv, lid);
        workgroupBarrier();
        for (var jj = t; jj < BK; jj += TPR) {
            let j = kt + jj;
            var s = NEG;
            if i < sq && j < skv && (cls == 2u || visible(i, j)) {
                var sdot = 0.0;
                for (var d = 0u; d < D; d++) {
                    sdot = fma(Qs[r * D + d], KVs[jj * D + d], sdot);
                }
                s = sdot;
            }
            Ss[r * BK + jj] = s;
        }
        workgroupBarrier();
        stage_kv(true, b, kh, kt, skv, lid);
        var mt = m;
        for (var jj = 0u; jj < BK; jj++) {
            mt = max(mt, Ss[r * BK + jj]);
        }
        let alpha = exp2(m - mt);
        l *= alpha;
        for (var c = 0u; c < DPT; c++) {
            acc[c] *= alpha;
        }
        workgroupBarrier();
        for (var jj = 0u; jj < BK; jj++) {
            let s = Ss[r * BK + jj];
            if s != NEG {
                let pj = exp2(s - mt);
                l += pj;
                for (var c = 0u; c < DPT; c++) {
                    let d = t + c * TPR;
                    if d < D {
                        acc[c] = fma(pj, KVs[jj * D + d], acc[c]);
                    }
                }
            }
        }
        m = mt;
    }
    if i < sq {
        for (var c = 0u; c < DPT; c++) {
            let d = t + c * TPR;
            if d < D {
                var o = 0.0;
                if l > 0.0 {
                    o = acc[c] / l;
                }
                O[q_at(b, i, h, d)] = T(o);
            }
        }
    }
}
