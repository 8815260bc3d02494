//! Dtype-agnostic byte moves shared by the oracle and the fast path: Slice, Concat, KvAppend.

use foveate_core::TensorDesc;

/// Split of `dims` around `axis`: (product of dims before, dim, product after).
fn around(dims: &[usize], axis: usize) -> (usize, usize, usize) {
    (
        dims[..axis].iter().product(),
        dims[axis],
        dims[axis + 1..].iter().product(),
    )
}

pub fn slice(src: &[u8], desc: &TensorDesc, axis: usize, start: usize, len: usize, dst: &mut [u8]) {
    let (outer, dim, inner) = around(desc.shape.dims(), axis);
    let row = inner * desc.dtype.size();
    for o in 0..outer {
        let s = (o * dim + start) * row;
        dst[o * len * row..(o + 1) * len * row].copy_from_slice(&src[s..s + len * row]);
    }
}

pub fn concat(a: &[u8], ad: &TensorDesc, b: &[u8], bd: &TensorDesc, axis: usize, dst: &mut [u8]) {
    let (outer, da, inner) = around(ad.shape.dims(), axis);
    let db = bd.shape.dims()[axis];
    let row = inner * ad.dtype.size();
    let (ra, rb) = (da * row, db * row);
    for o in 0..outer {
        let d = o * (ra + rb);
        dst[d..d + ra].copy_from_slice(&a[o * ra..(o + 1) * ra]);
        dst[d + ra..d + ra + rb].copy_from_slice(&b[o * rb..(o + 1) * rb]);
    }
}

/// Writes `new` `[B, len, H, D]` into rows `pos..pos+len` of each batch of `cache` `[B, cap, H, D]`.
pub fn kv_append(new: &[u8], nd: &TensorDesc, cache: &mut [u8], capacity: usize, pos: usize) {
    let d = nd.shape.dims();
    let (b, len) = (d[0], d[1]);
    let row = d[2] * d[3] * nd.dtype.size();
    for bi in 0..b {
        let c = (bi * capacity + pos) * row;
        cache[c..c + len * row].copy_from_slice(&new[bi * len * row..(bi + 1) * len * row]);
    }
}
