// Decode attention (q_len = 1), split-K ("flash-decoding"):
//
// * decode_split: one workgroup per (KV split, KV head x head chunk, batch). It loads the GH query
//   heads of one GQA group that share a KV head, so each K/V tile is read once for all of them,
//   streams its slice of keys through workgroup memory in tiles of BK with an online softmax, and
//   writes a normalised partial output PO [B, Hq, splits, D] and its log2-sum-exp PL [B, Hq, splits].
// * decode_combine: one workgroup per (query head, batch) merges the splits.
// Bindings and mask from attention_mask.wgsl; p(11) splits, p(12) keys per split, p(13) head
// chunks per KV head. Specialisation: D, GH (query heads per workgroup), BK, MASK.

@group(0) @binding(7) var<storage, read_write> PO: array<f32>;
@group(0) @binding(8) var<storage, read_write> PL: array<f32>;

const OPT: u32 = (GH * D + 63u) / 64u;

var<workgroup> Qs: array<f32, GH * D>;
var<workgroup> Ss: array<f32, GH * BK>;
var<workgroup> Ms: array<f32, GH>;
var<workgroup> Ls: array<f32, GH>;
var<workgroup> Al: array<f32, GH>;

@compute @workgroup_size(64)
fn decode_split(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let split = wid.x;
    let hchunks = p(13);
    let kh = wid.y / hchunks;
    let hc = wid.y % hchunks;
    let b = wid.z;
    let grp = p(1) / p(2);
    let h0 = kh * grp + hc * GH;
    let nh = min(GH, grp - hc * GH);
    let skv = p(4);
    let scale = pf(6);
    let splits = p(11);

    for (var e = lid; e < GH * D; e += 64u) {
        let g = e / D;
        var v = 0.0;
        if g < nh {
            v = f32(Q[q_at(b, 0u, h0 + g, e % D)]) * scale;
        }
        Qs[e] = v;
    }
    if lid < GH {
        Ms[lid] = NEG;
        Ls[lid] = 0.0;
    }
    var acc: array<f32, OPT>;

    let range = key_range(0u, 1u, BK);
    let js = max(split * p(12), range.x);
    let je = min((split + 1u) * p(12), range.y);
    for (var kt = js; kt < je; kt += BK) {
        workgroupBarrier();
        stage_kv(false, b, kh, kt, je, lid);
        workgroupBarrier();
        for (var e = lid; e < GH * BK; e += 64u) {
            let g = e / BK;
            let jj = e % BK;
            let j = kt + jj;
            var s = NEG;
            if g < nh && j < je && allowed(0u, j) {
                var sdot = 0.0;
                for (var d = 0u; d < D; d++) {
                    sdot = fma(Qs[g * D + d], KVs[jj * D + d], sdot);
                }
                s = sdot;
            }
            Ss[e] = s;
        }
        workgroupBarrier();
        stage_kv(true, b, kh, kt, je, lid);
        if lid < GH {
            let m = Ms[lid];
            var mt = m;
            for (var jj = 0u; jj < BK; jj++) {
                mt = max(mt, Ss[lid * BK + jj]);
            }
            var sum = 0.0;
            for (var jj = 0u; jj < BK; jj++) {
                let s = Ss[lid * BK + jj];
                var pj = 0.0;
                if s != NEG {
                    pj = exp2(s - mt);
                }
                Ss[lid * BK + jj] = pj;
                sum += pj;
            }
            let alpha = exp2(m - mt);
            Al[lid] = alpha;
            Ls[lid] = Ls[lid] * alpha + sum;
            Ms[lid] = mt;
        }
        workgroupBarrier();
        for (var c = 0u; c < OPT; c++) {
            let o = lid + c * 64u;
            if o < GH * D {
                let g = o / D;
                let d = o % D;
                var a = acc[c] * Al[g];
                for (var jj = 0u; jj < BK; jj++) {
                    a = fma(Ss[g * BK + jj], KVs[jj * D + d], a);
                }
                acc[c] = a;
            }
        }
    }
    workgroupBarrier();
    for (var c = 0u; c < OPT; c++) {
        let o = lid + c * 64u;
        if o < GH * D {
            let g = o / D;
            if g < nh {
                let l = Ls[g];
                var v = 0.0;
                if l > 0.0 {
                    v = acc[c] / l;
                }
                PO[((b * p(1) + h0 + g) * splits + split) * D + o % D] = v;
            }
        }
    }
    if lid < nh {
        let l = Ls[lid];
        var lse = NEG;
        if l > 0.0 {
            lse = Ms[lid] + log2(l);
        }
        PL[(b * p(1) + h0 + lid) * splits + split] = lse;
    }
}

@compute @workgroup_size(64)
fn decode_combine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let b = wid.y;
    let splits = p(11);
    let row = b * p(1) + h;
    var m = NEG;
    for (var s = 0u; s < splits; s++) {
        m = max(m, PL[row * splits + s]);
    }
    var wsum = 0.0;
    for (var s = 0u; s < splits; s++) {
        let lse = PL[row * splits + s];
        if lse != NEG {
            wsum += exp2(lse - m);
        }
    }
    for (var d = lid; d < D; d += 64u) {
        var acc = 0.0;
        for (var s = 0u; s < splits; s++) {
            let lse = PL[row * splits + s];
            if lse != NEG {
                acc = fma(exp2(lse - m), PO[(row * splits + s) * D + d], acc);
            }
        }
        var o = 0.0;
        if wsum > 0.0 {
            o = acc / wsum;
        }
        O[q_at(b, 0u, h, d)] = T(o);
    }
}
