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

pub(crate) fn f16_scale(d: f32) -> (f32, f32) {
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
/// can be encoded a chunk of groups at a time with no whole-tensor f32 temporary. On x86-64 with
/// AVX2 the groups are quantised eight lanes at a time (`quant_x86`: the same bits).
pub fn encode_into(dtype: DType, values: &[f32], quants: &mut [u8], scales: &mut [u8]) {
    assert!(dtype.is_quant(), "quant::encode_into: {dtype} is not a quantised dtype");
    assert_eq!(values.len() % GROUP, 0, "quant::encode_into: {} values is not a multiple of {GROUP}", values.len());
    let groups = values.len() / GROUP;
    assert!(quants.len() == quant_bytes(dtype, values.len()) && scales.len() == 2 * groups);
    #[cfg(target_arch = "x86_64")]
    if crate::quant_x86::available() {
        // SAFETY: AVX2 is present; the sizes are checked above.
        return unsafe { crate::quant_x86::encode(dtype == DType::Int4, values, quants, scales) };
    }
    encode_scalar(dtype, values, quants, scales)
}

/// [`encode_into`] one group at a time in scalar code: the definition of the levels (what the
/// vector groups must equal; public for the tests and the `load` bench).
pub fn encode_scalar(dtype: DType, values: &[f32], quants: &mut [u8], scales: &mut [u8]) {
    let int4 = dtype == DType::Int4;
    let qg = if int4 { GROUP / 2 } else { GROUP };
    for (g, x) in values.chunks_exact(GROUP).enumerate() {
        let d = encode_group(int4, x, &mut quants[g * qg..(g + 1) * qg]);
        scales[2 * g..2 * g + 2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
    }
}

/// One group's quants into `q` (32 bytes for int8, 16 for int4); returns its scale (an f16 value).
pub(crate) fn encode_group(int4: bool, x: &[f32], q: &mut [u8]) -> f32 {
    if !int4 {
        let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        let (d, id) = f16_scale(amax / 127.0);
        for (q, &v) in q.iter_mut().zip(x) {
            *q = ((v * id).round().clamp(-127.0, 127.0) as i8) as u8;
        }
        return d;
    }
    let m = x.iter().fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
    let (d, id) = f16_scale(m / -8.0);
    let level = |v: f32| (v * id + 8.5).floor().clamp(0.0, 15.0) as u8;
    for i in 0..16 {
        q[i] = level(x[i]) | (level(x[i + 16]) << 4);
    }
    d
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

    /// Groups that separate a near miss from the scalar definition: halves (int8 rounds them
    /// away from zero), magnitude ties of both signs, zero and negative-zero groups, scales that
    /// underflow or overflow f16, NaN and infinity, and random values over 30 decades.
    fn awkward_groups() -> Vec<f32> {
        let mut v = Vec::new();
        let mut g = |f: &dyn Fn(usize) -> f32| v.extend((0..GROUP).map(f));
        g(&|i| if i == 0 { 127.0 } else { (i as f32 - 16.0) + 0.5 }); // int8: d = 1, every tie
        g(&|i| if i == 3 { -8.0 } else { (i as f32 - 16.0) / 2.0 - 0.5 }); // int4: d = 1
        g(&|i| match i { 2 => -3.0, 5 => 3.0, _ => 1.0 }); // first of two extremes: negative
        g(&|i| match i { 2 => 3.0, 5 => -3.0, _ => -1.0 });
        g(&|_| 0.0);
        g(&|_| -0.0);
        g(&|i| if i % 2 == 0 { -0.0 } else { 0.0 });
        g(&|i| i as f32 * 1e-9); // scale underflows f16
        g(&|i| i as f32 * 1e9 - 3e9); // scale overflows f16
        g(&|i| if i == 7 { f32::NAN } else { i as f32 });
        g(&|i| if i == 9 { f32::NEG_INFINITY } else { i as f32 });
        g(&|i| if i == 1 { f32::INFINITY } else { -(i as f32) });
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..4096 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let scale = 10f32.powi((state % 31) as i32 - 15);
            g(&|i| {
                let h = (state ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)).wrapping_mul(0xff51_afd7_ed55_8ccd);
                ((h >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            });
        }
        v
    }

    #[test]
    fn vector_groups_are_the_scalar_bits() {
        let x = awkward_groups();
        #[cfg(target_arch = "x86_64")]
        let vector = crate::quant_x86::available();
        #[cfg(not(target_arch = "x86_64"))]
        let vector = false;
        if !vector {
            eprintln!("skipped: no AVX2 on this CPU, encode_into runs the scalar groups only");
            return;
        }
        for dt in [DType::Int8, DType::Int4] {
            let qb = quant_bytes(dt, x.len());
            let mut want = vec![0u8; bytes_for(dt, x.len())];
            let (q, sc) = want.split_at_mut(qb);
            encode_scalar(dt, &x, q, sc);
            let got = encode(dt, &x);
            let qg = qb / (x.len() / GROUP);
            for g in 0..x.len() / GROUP {
                assert_eq!(
                    (&got[g * qg..(g + 1) * qg], &got[qb + 2 * g..qb + 2 * g + 2]),
                    (&want[g * qg..(g + 1) * qg], &want[qb + 2 * g..qb + 2 * g + 2]),
                    "{dt} group {g}: {:?}",
                    &x[g * GROUP..(g + 1) * GROUP]
                );
            }
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
