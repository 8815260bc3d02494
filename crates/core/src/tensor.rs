use crate::{DType, Error, Result, Shape, TensorDesc};
use half::{bf16, f16};
use std::any::Any;
use std::sync::Arc;

/// A tensor's bytes on the host, little-endian, row-major, in its own dtype.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    pub desc: TensorDesc,
    pub bytes: Vec<u8>,
}

impl HostTensor {
    /// Raw bytes; checks that the length matches the descriptor.
    pub fn from_bytes(desc: TensorDesc, bytes: Vec<u8>) -> Result<Self> {
        if bytes.len() != desc.size_bytes() {
            return Err(Error::Msg(format!(
                "host tensor {desc}: {} bytes given, {} expected",
                bytes.len(),
                desc.size_bytes()
            )));
        }
        Ok(HostTensor { desc, bytes })
    }

    /// Stores f32 values as `dtype` (rounding to nearest for f16/bf16; int8/int4 quantised in
    /// groups of 32, see [`crate::quant`], so the count must be a multiple of 32).
    pub fn from_f32(dtype: DType, shape: impl Into<Shape>, values: &[f32]) -> Self {
        let shape = shape.into();
        assert_eq!(shape.numel(), values.len(), "HostTensor::from_f32: {} values for shape {shape}", values.len());
        let bytes = match dtype {
            DType::F32 => bytemuck::cast_slice(values).to_vec(),
            DType::F16 => {
                let v: Vec<f16> = values.iter().map(|&x| f16::from_f32(x)).collect();
                bytemuck::cast_slice(&v).to_vec()
            }
            DType::BF16 => {
                let v: Vec<bf16> = values.iter().map(|&x| bf16::from_f32(x)).collect();
                bytemuck::cast_slice(&v).to_vec()
            }
            DType::U32 => {
                let v: Vec<u32> = values.iter().map(|&x| x as u32).collect();
                bytemuck::cast_slice(&v).to_vec()
            }
            DType::Int8 | DType::Int4 => crate::quant::encode(dtype, values),
        };
        HostTensor { desc: TensorDesc { dtype, shape }, bytes }
    }

    /// Elements per chunk of [`HostTensor::from_f32_chunks`] (a multiple of the quantisation
    /// group): the f32 a load holds at a time besides the stored bytes (256 KiB).
    pub const LOAD_CHUNK: usize = 1 << 16;

    /// The f32 bytes [`HostTensor::encode_f32_chunks`] holds at once for `n` values: a chunk (or
    /// all `n`, when fewer) per thread working on it, at most one thread per chunk.
    pub fn load_temporary(n: usize) -> usize {
        let live = n.div_ceil(Self::LOAD_CHUNK).min(rayon::current_num_threads()).max(1);
        4 * n.min(Self::LOAD_CHUNK) * live
    }

    /// As [`HostTensor::from_f32`], with the values produced by `fill(start, chunk)` (elements
    /// `start..start + chunk.len()`) a bounded chunk at a time and stored into the final buffer as
    /// they come: a load of a large weight holds its stored bytes and a chunk of f32 per thread,
    /// never a whole-tensor f32 temporary (a 7B LM head in int8: 133 MB, not 133 + 524 MB).
    pub fn from_f32_chunks(
        dtype: DType,
        shape: impl Into<Shape>,
        fill: impl Fn(usize, &mut [f32]) + Sync,
    ) -> Self {
        let shape = shape.into();
        let mut bytes = vec![0u8; crate::quant::bytes_for(dtype, shape.numel())];
        Self::encode_f32_chunks(dtype, &mut bytes, shape.numel(), fill);
        HostTensor { desc: TensorDesc { dtype, shape }, bytes }
    }

    /// The body of [`HostTensor::from_f32_chunks`]: `n` values of `dtype`, produced by `fill` a
    /// chunk at a time, stored into `bytes` (exactly their size in `dtype`), wherever those live
    /// (a backend's host-memory storage: [`crate::Backend::upload_with`]). The chunks run in
    /// parallel on rayon's pool (each its own part of `bytes`, in no set order), so a load converts
    /// and quantises on every core (and, where `bytes` are fresh pages no one has written, as
    /// `from_f32_chunks`' own buffer, first touches them on every core; the cpu backend's storage
    /// is zeroed when it is allocated, on the allocating thread).
    pub fn encode_f32_chunks(
        dtype: DType,
        bytes: &mut [u8],
        n: usize,
        fill: impl Fn(usize, &mut [f32]) + Sync,
    ) {
        use rayon::prelude::*;
        const CHUNK: usize = HostTensor::LOAD_CHUNK;
        if dtype.is_quant() {
            assert_eq!(n % crate::quant::GROUP, 0, "HostTensor::from_f32_chunks: {n} values is not a multiple of {}", crate::quant::GROUP);
        }
        assert_eq!(bytes.len(), crate::quant::bytes_for(dtype, n), "HostTensor::encode_f32_chunks: {} bytes for {n} {dtype} values", bytes.len());
        // A chunk's f32 buffer, one per thread at a work item (`for_each_init`); chunk `c`'s
        // values are drawn into its front.
        let buf = || vec![0f32; CHUNK.min(n)];
        if dtype.is_quant() {
            let qb = crate::quant::quant_bytes(dtype, n);
            let (quants, scales) = bytes.split_at_mut(qb);
            let qc = crate::quant::quant_bytes(dtype, CHUNK);
            let sc = 2 * CHUNK / crate::quant::GROUP;
            quants.par_chunks_mut(qc).zip(scales.par_chunks_mut(sc)).enumerate().for_each_init(buf, |v, (c, (q, s))| {
                let len = CHUNK.min(n - c * CHUNK);
                fill(c * CHUNK, &mut v[..len]);
                crate::quant::encode_into(dtype, &v[..len], q, s);
            });
            return;
        }
        let size = dtype.size();
        bytes.par_chunks_mut(CHUNK * size).enumerate().for_each_init(buf, |v, (c, out)| {
            let len = out.len() / size;
            fill(c * CHUNK, &mut v[..len]);
            store_plain(dtype, &v[..len], out);
        });
    }

    pub fn from_u32(shape: impl Into<Shape>, values: &[u32]) -> Self {
        let shape = shape.into();
        assert_eq!(shape.numel(), values.len(), "HostTensor::from_u32: {} values for shape {shape}", values.len());
        HostTensor { desc: TensorDesc { dtype: DType::U32, shape }, bytes: bytemuck::cast_slice(values).to_vec() }
    }

    /// A tensor of `dtype` filled with one value (NaN poisons outputs in the tests).
    pub fn filled(dtype: DType, shape: impl Into<Shape>, value: f32) -> Self {
        let shape = shape.into();
        let n = shape.numel();
        if dtype == DType::U32 {
            // NaN has no u32 form: poison ids with u32::MAX.
            let v = if value.is_nan() { u32::MAX } else { value as u32 };
            return Self::from_u32(shape, &vec![v; n]);
        }
        Self::from_f32(dtype, shape, &vec![value; n])
    }

    pub fn dtype(&self) -> DType {
        self.desc.dtype
    }
    pub fn shape(&self) -> &Shape {
        &self.desc.shape
    }
    pub fn numel(&self) -> usize {
        self.desc.numel()
    }

    /// Values widened to f32 (u32 converted by value, int8/int4 dequantised).
    pub fn to_f32(&self) -> Vec<f32> {
        match self.desc.dtype {
            DType::F32 => bytemuck::pod_collect_to_vec::<u8, f32>(&self.bytes),
            DType::F16 => bytemuck::pod_collect_to_vec::<u8, f16>(&self.bytes).iter().map(|x| x.to_f32()).collect(),
            DType::BF16 => bytemuck::pod_collect_to_vec::<u8, bf16>(&self.bytes).iter().map(|x| x.to_f32()).collect(),
            DType::U32 => self.to_u32().iter().map(|&x| x as f32).collect(),
            DType::Int8 | DType::Int4 => crate::quant::decode(self.desc.dtype, &self.bytes, self.numel()),
        }
    }

    /// Values widened to f64 (for the oracle).
    pub fn to_f64(&self) -> Vec<f64> {
        self.to_f32().into_iter().map(f64::from).collect()
    }

    /// u32 values; for a float tensor, each value truncated.
    pub fn to_u32(&self) -> Vec<u32> {
        match self.desc.dtype {
            DType::U32 => bytemuck::pod_collect_to_vec::<u8, u32>(&self.bytes),
            _ => self.to_f32().iter().map(|&x| x as u32).collect(),
        }
    }

    /// Same bytes, new shape with the same element count.
    pub fn reshape(mut self, shape: impl Into<Shape>) -> Result<Self> {
        let shape = shape.into();
        if shape.numel() != self.numel() {
            return Err(Error::Msg(format!("cannot reshape {} to {shape}", self.desc)));
        }
        self.desc.shape = shape;
        Ok(self)
    }
}

/// Backend-owned memory behind a [`Tensor`]. Each backend downcasts to its own type.
pub trait Storage: Any + Send + Sync {
    /// Name of the backend that owns this storage.
    fn backend(&self) -> &'static str;
    /// Size in bytes.
    fn size_bytes(&self) -> usize;
    fn as_any(&self) -> &dyn Any;
}

/// A handle to a tensor on some backend: shared storage plus a descriptor.
/// Cloning is cheap (the storage is reference counted); `reshape` shares storage.
#[derive(Clone)]
pub struct Tensor {
    storage: Arc<dyn Storage>,
    desc: TensorDesc,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor({} on {})", self.desc, self.storage.backend())
    }
}

impl Tensor {
    pub fn new(storage: Arc<dyn Storage>, desc: TensorDesc) -> Self {
        Tensor { storage, desc }
    }
    pub fn desc(&self) -> &TensorDesc {
        &self.desc
    }
    pub fn dtype(&self) -> DType {
        self.desc.dtype
    }
    pub fn shape(&self) -> &Shape {
        &self.desc.shape
    }
    pub fn dims(&self) -> &[usize] {
        self.desc.shape.dims()
    }
    pub fn numel(&self) -> usize {
        self.desc.numel()
    }
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }
    /// The backend storage as its concrete type, or None if it belongs to another backend.
    pub fn storage_as<T: Storage>(&self) -> Option<&T> {
        self.storage.as_any().downcast_ref::<T>()
    }
    /// Do the two tensors share storage?
    pub fn same_storage(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.storage, &other.storage)
    }
    /// A view with another shape of the same element count, sharing storage.
    pub fn reshape(&self, shape: impl Into<Shape>) -> Result<Tensor> {
        let shape = shape.into();
        if shape.numel() != self.numel() {
            return Err(Error::Msg(format!("cannot reshape {} to {shape}", self.desc)));
        }
        Ok(Tensor { storage: self.storage.clone(), desc: TensorDesc { dtype: self.desc.dtype, shape } })
    }
}

/// Plain (not quantised) values `v` as `dtype` into `out` (`v.len()` elements of `dtype`):
/// f32 as it is, f16/bf16 rounded to nearest even (a slice conversion straight into `out` where it
/// is 2-byte aligned: F16C where the CPU has it, the same bits as the per-element `from_f32`),
/// u32 as `x as u32`.
fn store_plain(dtype: DType, v: &[f32], out: &mut [u8]) {
    use half::slice::HalfFloatSliceExt;
    let le = cfg!(target_endian = "little");
    match dtype {
        DType::F32 => out.copy_from_slice(bytemuck::cast_slice(v)),
        DType::F16 => match bytemuck::try_cast_slice_mut::<u8, f16>(out) {
            Ok(h) if le => h.convert_from_f32_slice(v),
            _ => {
                for (o, &x) in out.chunks_exact_mut(2).zip(v) {
                    o.copy_from_slice(&f16::from_f32(x).to_le_bytes());
                }
            }
        },
        DType::BF16 => match bytemuck::try_cast_slice_mut::<u8, bf16>(out) {
            Ok(h) if le => h.convert_from_f32_slice(v),
            _ => {
                for (o, &x) in out.chunks_exact_mut(2).zip(v) {
                    o.copy_from_slice(&bf16::from_f32(x).to_le_bytes());
                }
            }
        },
        DType::U32 => {
            for (o, &x) in out.chunks_exact_mut(4).zip(v) {
                o.copy_from_slice(&(x as u32).to_le_bytes());
            }
        }
        DType::Int8 | DType::Int4 => unreachable!("quantised dtypes are encoded by quant::encode_into"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chunked construction stores exactly what the whole-slice one does, for every dtype, over
    /// several chunks and a partial last one, and hands `fill` each element index exactly once.
    #[test]
    fn from_f32_chunks_matches_from_f32() {
        let n = (1 << 16) * 2 + 96;
        let vals: Vec<f32> = (0..n).map(|i| ((i * 7919 % 1013) as f32 - 506.0) / 37.0).collect();
        for dt in [DType::F32, DType::F16, DType::BF16, DType::U32, DType::Int8, DType::Int4] {
            let want = HostTensor::from_f32(dt, [n / 32, 32], &vals.iter().map(|v| if dt == DType::U32 { v.abs() } else { *v }).collect::<Vec<_>>());
            let seen = std::sync::Mutex::new(vec![0u8; n]);
            let got = HostTensor::from_f32_chunks(dt, [n / 32, 32], |start, out| {
                seen.lock().unwrap()[start..start + out.len()].iter_mut().for_each(|s| *s += 1);
                for (i, o) in out.iter_mut().enumerate() {
                    let v = vals[start + i];
                    *o = if dt == DType::U32 { v.abs() } else { v };
                }
            });
            assert!(seen.into_inner().unwrap().iter().all(|&s| s == 1), "{dt}: an element filled twice or never");
            assert!(got == want, "{dt}: chunked bytes differ");
            // Into storage at an odd address (16-bit values then take the per-element path).
            let mut odd = vec![0u8; want.bytes.len() + 1];
            HostTensor::encode_f32_chunks(dt, &mut odd[1..], n, |start, out| {
                for (i, o) in out.iter_mut().enumerate() {
                    let v = vals[start + i];
                    *o = if dt == DType::U32 { v.abs() } else { v };
                }
            });
            assert!(odd[1..] == want.bytes[..], "{dt}: bytes at an odd address differ");
        }
    }

    #[test]
    fn load_temporary_counts_a_chunk_per_thread() {
        let c = HostTensor::LOAD_CHUNK;
        assert_eq!(HostTensor::load_temporary(100), 400, "one partial chunk: its own values");
        assert_eq!(HostTensor::load_temporary(c), 4 * c, "one chunk: one buffer");
        let threads = rayon::current_num_threads();
        assert_eq!(HostTensor::load_temporary(64 * c), 4 * c * threads.min(64));
    }
}
