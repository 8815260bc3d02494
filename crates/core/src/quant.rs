//! Weight-only quantisation formats: [`DType::Int8`] and [`DType::Int4`].
//!
//! Both are symmetric, in groups of [`GROUP`] = 32 consecutive elements of the flattened tensor
//! (a weight `[N, K]` with `K % 32 == 0`, so a group never crosses a row), one f16 scale per
//! group. The levels are GGUF's Q8_0 and Q4_0 (ggml `quantize_row_q8_0_ref` /
//! `quantize_row_q4_0_ref`), so accuracy can be compared with llama.cpp at equal bits:
//!
//! * int8: `d = amax / 127`, `q = round(x / d)` in `-127..=127`, value `q · d`.
//! * int4: `m` = the element of largest magnitude (with its sign), `d = m / -8`,
//!   `q = min(15, floor(x / d + 8.5))` in `0..=15`, value `(q - 8) · d`. The extreme element maps to
//!   level 0 (value `-8 d = m`) exactly; the other side reaches `+7 d`.
//!
//! One difference from ggml: the scale is rounded to f16 *before* the quants are chosen, so the
//! quants are the nearest levels of the scale that is actually stored (ggml picks them with the
//! unrounded scale). The rounding error this removes is up to 2^-11 of a group's range.
//!
//! Why these and not AWQ/GPTQ: those choose the same kind of grouped int4 levels with
//! calibration data (activation-aware scales, second-order error feedback); the storage a kernel
//! reads is the same groups + scales, so the kernels here serve them too, but quantising at load
//! without data is the round-to-nearest of Q8_0/Q4_0. Groups of 32 (not per-channel): per-channel
//! int4 loses too much on outlier channels; 32 is what Q4_0 and most int4 GEMV kernels use.
//!
//! Layout is planar, so GPU kernels read aligned words: all quants first (int8: one byte per
//! element; int4: 16 bytes per group, byte `i` = element `i` in the low nibble and element
//! `i + 16` in the high nibble, as in Q4_0), then the `numel / 32` scales as little-endian f16.

use crate::{DType, Error, Result};
use half::f16;

/// Elements per scale.
pub const GROUP: usize = 32;

/// Bytes of quant data (before the scales) for `numel` elements.
pub fn quant_bytes(dtype: DType, numel: usize) -> usize {
    match dtype {
        DType::Int8 => numel,
        DType::Int4 => numel / 2,
        other => numel * other.size(),
    }
}

/// Total bytes (quants + scales) of `numel` elements of `dtype`; plain dtypes: `numel · size`.
pub fn bytes_for(dtype: DType, numel: usize) -> usize {
    match dtype {
        DType::Int8 | DType::Int4 => quant_bytes(dtype, numel) + 2 * (numel / GROUP),
        other => numel * other.size(),
    }
}

/// Checks that a tensor of `numel` elements whose rows have `row` elements can be quantised.
pub fn check_shape(dtype: DType, numel: usize, row: usize) -> Result<()> {
    if dtype.is_quant() && (row % GROUP != 0 || numel % GROUP != 0) {
        return Err(Error::Msg(format!(
            "{dtype} weights need rows that are a multiple of {GROUP} elements, got rows of {row}"
        )));
    }
    Ok(())
}

fn f16_scale(d: f32) -> (f32, f32) {
    let d = f16::from_f32(d).to_f32();
    (d, if d != 0.0 { 1.0 / d } else { 0.0 })
}

/// Quantises `values` (length a multiple of [`GROUP`]) to `dtype` (Int8 or Int4) in the planar
/// layout above.
pub fn encode(dtype: DType, values: &[f32]) -> Vec<u8> {
    assert!(dtype.is_quant(), "quant::encode: {dtype} is not a quantised dtype");
    let qb = quant_bytes(dtype, values.len());
    let mut out = vec![0u8; bytes_for(dtype, values.len())];
    let (quants, scales) = out.split_at_mut(qb);
    encode_into(dtype, values, quants, scales);
    out
}

/// Quantises `values` (a multiple of [`GROUP`]) into `quants` (`quant_bytes(dtype, len)` bytes)
/// and `scales` (2 bytes per group): a slice of a planar tensor's two regions, so a large tensor
/// can be encoded a chunk of groups at a time with no whole-tensor f32 temporary.
pub fn encode_into(dtype: DType, values: &[f32], quants: &mut [u8], scales: &mut [u8]) {
    assert!(dtype.is_quant(), "quant::encode_into: {dtype} is not a quantised dtype");
    assert_eq!(values.len() % GROUP, 0, "quant::encode_into: {} values is not a multiple of {GROUP}", values.len());
    let groups = values.len() / GROUP;
    assert!(quants.len() == quant_bytes(dtype, values.len()) && scales.len() == 2 * groups);
    for (g, x) in values.chunks_exact(GROUP).enumerate() {
        let d = if dtype == DType::Int8 {
            let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
            let (d, id) = f16_scale(amax / 127.0);
            for (q, &v) in quants[g * GROUP..(g + 1) * GROUP].iter_mut().zip(x) {
                *q = ((v * id).round().clamp(-127.0, 127.0) as i8) as u8;
            }
            d
        } else {
            let m = x.iter().fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
            let (d, id) = f16_scale(m / -8.0);
            let level = |v: f32| (v * id + 8.5).floor().clamp(0.0, 15.0) as u8;
            let dst = &mut quants[g * 16..(g + 1) * 16];
            for i in 0..16 {
                dst[i] = level(x[i]) | (level(x[i + 16]) << 4);
            }
            d
        };
        scales[2 * g..2 * g + 2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
    }
}

/// The values `bytes` (planar Int8/Int4, `numel` elements) stand for.
pub fn decode(dtype: DType, bytes: &[u8], numel: usize) -> Vec<f32> {
    assert!(dtype.is_quant(), "quant::decode: {dtype} is not a quantised dtype");
    assert_eq!(bytes.len(), bytes_for(dtype, numel), "quant::decode: byte length for {numel} {dtype} values");
    let qb = quant_bytes(dtype, numel);
    let (quants, scales) = bytes.split_at(qb);
    let mut out = Vec::with_capacity(numel);
    for g in 0..numel / GROUP {
        let d = f16::from_le_bytes([scales[2 * g], scales[2 * g + 1]]).to_f32();
        if dtype == DType::Int8 {
            out.extend(quants[g * GROUP..(g + 1) * GROUP].iter().map(|&q| q as i8 as f32 * d));
        } else {
            let src = &quants[g * 16..(g + 1) * 16];
            out.extend(src.iter().map(|&b| ((b & 15) as f32 - 8.0) * d));
            out.extend(src.iter().map(|&b| ((b >> 4) as f32 - 8.0) * d));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(n: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0).collect()
    }

    #[test]
    fn int8_levels_and_layout() {
        let mut x = ramp(64);
        x[5] = 10.0; // group 0's amax
        let b = encode(DType::Int8, &x);
        assert_eq!(b.len(), 64 + 4);
        let d = f16::from_f32(10.0 / 127.0).to_f32();
        assert_eq!(b[5] as i8, (10.0 / d).round() as i8);
        assert_eq!(f16::from_le_bytes([b[64], b[65]]).to_f32(), d);
        let y = decode(DType::Int8, &b, 64);
        for (g, (a, r)) in x.chunks(32).zip(y.chunks(32)).enumerate() {
            let amax = a.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (u, v) in a.iter().zip(r) {
                assert!((u - v).abs() <= amax / 127.0 * 0.51, "group {g}: {u} -> {v}");
            }
        }
    }

    #[test]
    fn int4_levels_nibbles_and_extreme() {
        let mut x = ramp(32);
        x[3] = -9.0; // the largest magnitude, negative: maps to level 0 exactly
        x[20] = 4.5;
        let b = encode(DType::Int4, &x);
        assert_eq!(b.len(), 16 + 2);
        let d = f16::from_f32(-9.0 / -8.0).to_f32();
        assert_eq!(b[3] & 15, 0, "the extreme element is level 0");
        assert_eq!(b[4] >> 4, ((4.5 / d + 8.5f32).floor()) as u8, "element 20 is byte 4's high nibble");
        let y = decode(DType::Int4, &b, 32);
        assert_eq!(y[3], -9.0);
        for (u, v) in x.iter().zip(&y) {
            assert!((u - v).abs() <= d * 0.5 + 1e-6, "{u} -> {v}");
        }
    }

    #[test]
    fn zeros_and_sizes() {
        assert_eq!(decode(DType::Int4, &encode(DType::Int4, &[0.0; 32]), 32), vec![0.0; 32]);
        assert_eq!(bytes_for(DType::Int4, 4096 * 4096), 4096 * 4096 / 2 + 4096 * 4096 / 16);
        assert_eq!(bytes_for(DType::F16, 10), 20);
        assert!(check_shape(DType::Int8, 64, 48).is_err());
        assert!(check_shape(DType::Int8, 64, 64).is_ok());
    }
}
