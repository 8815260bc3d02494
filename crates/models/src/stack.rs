//! Tensors stacked by rows (`[r0, k] + [r1, k] + ... -> [r0 + r1 + ..., k]`), in any stored
//! format: what a builder fuses when its backend runs one product faster than several (a decoder
//! layer's q, k and v projections on the cpu: one parallel region per token instead of three).
//!
//! A stacked int8 / int4 tensor keeps the planar layout (every quant, then every f16 scale): the
//! parts' quants one after the other, then their scales one after the other. Groups run along a
//! row, so this is exactly the tensor that quantising the stacked f32 rows would give.

use foveate_core::quant::quant_bytes;
use foveate_core::{Backend, Error, Result, Tensor, TensorDesc};

/// The descriptor of `parts` stacked along axis 0: one dtype, one rank, equal trailing dims.
pub fn stacked_desc(parts: &[&TensorDesc]) -> Result<TensorDesc> {
    let Some(first) = parts.first() else {
        return Err(Error::Msg("cannot stack no tensors".into()));
    };
    let tail = first
        .shape
        .dims()
        .get(1..)
        .ok_or_else(|| Error::Msg(format!("cannot stack a scalar ({})", first.shape)))?;
    let mut rows = 0;
    for (i, d) in parts.iter().enumerate() {
        if d.dtype != first.dtype || d.shape.dims().get(1..) != Some(tail) {
            return Err(Error::Msg(format!(
                "cannot stack part {i} ({} {}) under part 0 ({} {}): rows must share a dtype and a width",
                d.dtype, d.shape, first.dtype, first.shape
            )));
        }
        rows += d.shape.dims()[0];
    }
    let mut shape = vec![rows];
    shape.extend_from_slice(tail);
    Ok(TensorDesc::new(first.dtype, shape))
}

/// `parts` (on `backend`) stacked by rows into one new tensor on `backend`. Each part is read back
/// one at a time, so the load holds the parts, the stacked tensor and one part's host copy.
pub fn stack_rows(backend: &dyn Backend, parts: &[&Tensor]) -> Result<Tensor> {
    let descs: Vec<&TensorDesc> = parts.iter().map(|t| t.desc()).collect();
    let desc = stacked_desc(&descs)?;
    let mut failed = None;
    let stacked = backend.upload_with(&desc, &mut |dst| {
        let mut at = Regions::new(&desc);
        for p in parts {
            match backend.download(p) {
                Ok(h) => at.put(&h.desc, &h.bytes, dst),
                Err(e) => {
                    failed = Some(e);
                    return;
                }
            }
        }
    })?;
    match failed {
        Some(e) => Err(e),
        None => Ok(stacked),
    }
}

/// Where the next part's bytes go in a stacked tensor: its leading region (the values, or an
/// int8 / int4 tensor's quants) after the previous parts' and its trailing region (the scales;
/// empty for float dtypes) after theirs.
struct Regions {
    lead: usize,
    trail: usize,
}

impl Regions {
    fn new(stacked: &TensorDesc) -> Self {
        Regions {
            lead: 0,
            trail: quant_bytes(stacked.dtype, stacked.numel()),
        }
    }

    fn put(&mut self, part: &TensorDesc, bytes: &[u8], dst: &mut [u8]) {
        let (lead, trail) = bytes.split_at(quant_bytes(part.dtype, part.numel()));
        dst[self.lead..self.lead + lead.len()].copy_from_slice(lead);
        dst[self.trail..self.trail + trail.len()].copy_from_slice(trail);
        self.lead += lead.len();
        self.trail += trail.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foveate_core::{DType, HostTensor};

    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
            })
            .collect()
    }

    /// Stacking stored parts gives the bytes of the stacked values stored at once, in every
    /// format (int8 / int4: each part's quants and scales land in the stacked planar regions),
    /// for rank 2 weights and rank 1 biases.
    #[test]
    fn stacked_parts_are_the_stacked_values_stored() {
        let cpu = foveate_cpu::CpuBackend::fast();
        for dtype in [
            DType::F32,
            DType::F16,
            DType::BF16,
            DType::Int8,
            DType::Int4,
        ] {
            for (rows, k) in [(vec![64, 32, 32], 96), (vec![8, 40], 64), (vec![5], 32)] {
                let parts: Vec<Vec<f32>> = rows
                    .iter()
                    .enumerate()
                    .map(|(i, r)| values(r * k, 7 + i as u32))
                    .collect();
                let up: Vec<Tensor> = parts
                    .iter()
                    .zip(&rows)
                    .map(|(v, &r)| cpu.upload(&HostTensor::from_f32(dtype, [r, k], v)).unwrap())
                    .collect();
                let refs: Vec<&Tensor> = up.iter().collect();
                let got = cpu.download(&stack_rows(&cpu, &refs).unwrap()).unwrap();
                let all: Vec<f32> = parts.concat();
                let want = HostTensor::from_f32(dtype, [rows.iter().sum::<usize>(), k], &all);
                assert_eq!(got.desc, want.desc, "{dtype} {rows:?}");
                assert!(
                    got.bytes == want.bytes,
                    "{dtype} {rows:?} x {k}: bytes differ"
                );
            }
        }
        let biases = [vec![0.5f32; 3], vec![-1.0; 2]];
        let up: Vec<Tensor> = biases
            .iter()
            .map(|b| {
                cpu.upload(&HostTensor::from_f32(DType::F32, [b.len()], b))
                    .unwrap()
            })
            .collect();
        let got = stack_rows(&cpu, &[&up[0], &up[1]]).unwrap();
        assert_eq!(cpu.download(&got).unwrap().to_f32(), biases.concat());
    }

    /// Parts of another dtype or width are refused by index, as is nothing at all.
    #[test]
    fn mismatched_parts_are_refused() {
        let d = |dt: DType, s: &[usize]| TensorDesc::new(dt, s.to_vec());
        let (a, b, c) = (
            d(DType::Int4, &[32, 64]),
            d(DType::Int8, &[32, 64]),
            d(DType::Int4, &[32, 96]),
        );
        for bad in [vec![&a, &b], vec![&a, &a, &c]] {
            let e = stacked_desc(&bad).unwrap_err().to_string();
            assert!(e.contains(&format!("part {}", bad.len() - 1)), "{e}");
        }
        assert!(stacked_desc(&[]).is_err());
        assert_eq!(stacked_desc(&[&a, &a]).unwrap().shape.dims(), &[64, 64]);
    }
}
