//! `CpuStorage`: a tensor's bytes in its own dtype, behind a lock so `execute` can write the
//! output while reading the inputs. The bytes live in `u32` words ([`Words`]) so that f32/u32
//! data is 4-byte aligned and can be viewed in place without copying.
//!
//! The fast path computes in f32: f32 tensors are read in place, 16-bit activations are widened
//! per read, and the weights of products are read in their stored format (`fast::weight`), so no
//! tensor is ever kept a second time in another format.

use foveate_core::{DType, Error, Result, Storage, Tensor, TensorDesc};
use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};
use std::any::Any;
use std::ops::Deref;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::words::Words;

pub struct CpuStorage {
    words: RwLock<Words>,
    bytes: usize,
}

/// Values as f32: borrowed (f32 storage) or converted for this read.
pub(crate) enum F32s<'a> {
    Borrowed(&'a [f32]),
    Owned(Vec<f32>),
}

impl Deref for F32s<'_> {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        match self {
            F32s::Borrowed(s) => s,
            F32s::Owned(v) => v,
        }
    }
}

impl CpuStorage {
    /// Zero-filled storage of `bytes` bytes.
    pub fn zeroed(bytes: usize) -> Self {
        let words = Words::zeroed(bytes.div_ceil(4));
        CpuStorage {
            words: RwLock::new(words),
            bytes,
        }
    }

    pub fn from_bytes(src: &[u8]) -> Self {
        let s = Self::zeroed(src.len());
        {
            let mut w = s.write();
            bytemuck::cast_slice_mut::<u32, u8>(&mut w)[..src.len()].copy_from_slice(src);
        }
        s
    }

    /// The raw bytes (a copy).
    pub fn to_bytes(&self) -> Vec<u8> {
        let r = self.read();
        bytemuck::cast_slice::<u32, u8>(&r)[..self.bytes].to_vec()
    }

    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Words> {
        self.words.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The words, for writing.
    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, Words> {
        self.words.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl Storage for CpuStorage {
    fn backend(&self) -> &'static str {
        "cpu"
    }
    fn size_bytes(&self) -> usize {
        self.bytes
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The CPU storage behind `t`, or an error naming the backend that owns it.
pub(crate) fn cpu_storage<'a>(backend: &str, t: &'a Tensor) -> Result<&'a CpuStorage> {
    t.storage_as::<CpuStorage>().ok_or_else(|| {
        Error::device(
            backend,
            format!(
                "tensor {} lives on backend `{}`, not on the CPU",
                t.desc(),
                t.storage().backend()
            ),
        )
    })
}

/// Read guards on the inputs of one launch, one per distinct storage (an op may get the same
/// tensor twice, e.g. `Add(x, x)`).
pub(crate) struct Inputs<'a> {
    guards: Vec<RwLockReadGuard<'a, Words>>,
    slot: Vec<usize>,
    descs: Vec<&'a TensorDesc>,
}

impl<'a> Inputs<'a> {
    pub(crate) fn lock(backend: &str, inputs: &[&'a Tensor]) -> Result<Self> {
        let mut owners: Vec<&'a CpuStorage> = Vec::new();
        let mut slot = Vec::with_capacity(inputs.len());
        for t in inputs {
            let s = cpu_storage(backend, t)?;
            match owners.iter().position(|o| std::ptr::eq(*o, s)) {
                Some(i) => slot.push(i),
                None => {
                    slot.push(owners.len());
                    owners.push(s);
                }
            }
        }
        let guards = owners.iter().map(|s| s.read()).collect();
        Ok(Inputs {
            guards,
            slot,
            descs: inputs.iter().map(|t| t.desc()).collect(),
        })
    }

    pub(crate) fn desc(&self, i: usize) -> &TensorDesc {
        self.descs[i]
    }
    pub(crate) fn words(&self, i: usize) -> &[u32] {
        &self.guards[self.slot[i]]
    }
    /// Input `i` as f32 values (borrowed when it is f32 already, else converted for this read).
    pub(crate) fn f32(&self, i: usize) -> F32s<'_> {
        words_as_f32(self.words(i), self.descs[i])
    }
    /// Input `i` widened to f64.
    pub(crate) fn f64(&self, i: usize) -> Vec<f64> {
        words_as_f64(self.words(i), self.descs[i])
    }
    /// Input `i` as u32 values (token ids, positions).
    pub(crate) fn u32(&self, i: usize) -> &[u32] {
        &self.words(i)[..self.descs[i].numel()]
    }
    /// Input `i`'s raw bytes.
    pub(crate) fn bytes(&self, i: usize) -> &[u8] {
        &bytemuck::cast_slice::<u32, u8>(self.words(i))[..self.descs[i].size_bytes()]
    }
}

fn halves(words: &[u32], n: usize) -> &[u16] {
    &bytemuck::cast_slice::<u32, u16>(words)[..n]
}

pub(crate) fn words_as_f32<'a>(words: &'a [u32], desc: &TensorDesc) -> F32s<'a> {
    let n = desc.numel();
    match desc.dtype {
        DType::F32 => F32s::Borrowed(&bytemuck::cast_slice::<u32, f32>(words)[..n]),
        // Slice conversions (F16C eight at a time where the CPU has it): a 16-bit KV cache is
        // read whole by prefill attention.
        DType::F16 => {
            let mut v = vec![0f32; n];
            bytemuck::cast_slice::<u16, f16>(halves(words, n)).convert_to_f32_slice(&mut v);
            F32s::Owned(v)
        }
        DType::BF16 => {
            let mut v = vec![0f32; n];
            bytemuck::cast_slice::<u16, bf16>(halves(words, n)).convert_to_f32_slice(&mut v);
            F32s::Owned(v)
        }
        DType::U32 => F32s::Owned(words[..n].iter().map(|&x| x as f32).collect()),
        DType::Int8 | DType::Int4 => F32s::Owned(quant_values(words, desc)),
    }
}

pub(crate) fn words_as_f64(words: &[u32], desc: &TensorDesc) -> Vec<f64> {
    let n = desc.numel();
    match desc.dtype {
        DType::F32 => bytemuck::cast_slice::<u32, f32>(words)[..n]
            .iter()
            .map(|&x| x as f64)
            .collect(),
        DType::F16 => halves(words, n)
            .iter()
            .map(|&h| f16::from_bits(h).to_f64())
            .collect(),
        DType::BF16 => halves(words, n)
            .iter()
            .map(|&h| bf16::from_bits(h).to_f64())
            .collect(),
        DType::U32 => words[..n].iter().map(|&x| x as f64).collect(),
        DType::Int8 | DType::Int4 => quant_values(words, desc)
            .into_iter()
            .map(f64::from)
            .collect(),
    }
}

/// The values an int8/int4 tensor stands for (dequantised: the oracle's and the tests' view).
fn quant_values(words: &[u32], desc: &TensorDesc) -> Vec<f32> {
    let bytes = &bytemuck::cast_slice::<u32, u8>(words)[..desc.size_bytes()];
    foveate_core::quant::decode(desc.dtype, bytes, desc.numel())
}

/// Rounds f64 values to `dtype` (nearest even) into `words`. For u32: rounded, saturated, NaN -> 0.
pub(crate) fn store_f64(words: &mut [u32], dtype: DType, vals: &[f64]) {
    let n = vals.len();
    match dtype {
        DType::F32 => {
            for (o, &v) in bytemuck::cast_slice_mut::<u32, f32>(words)[..n]
                .iter_mut()
                .zip(vals)
            {
                *o = v as f32;
            }
        }
        DType::F16 => {
            for (o, &v) in bytemuck::cast_slice_mut::<u32, u16>(words)[..n]
                .iter_mut()
                .zip(vals)
            {
                *o = f16::from_f64(v).to_bits();
            }
        }
        DType::BF16 => {
            for (o, &v) in bytemuck::cast_slice_mut::<u32, u16>(words)[..n]
                .iter_mut()
                .zip(vals)
            {
                *o = bf16::from_f64(v).to_bits();
            }
        }
        DType::U32 => {
            for (o, &v) in words[..n].iter_mut().zip(vals) {
                *o = v.round_ties_even() as u32; // `as` saturates and maps NaN to 0
            }
        }
        DType::Int8 | DType::Int4 => unreachable!("no op writes a weight-only {dtype} tensor"),
    }
}

/// Rounds f32 values to `dtype` into `words` (f32 is a plain copy).
pub(crate) fn store_f32(words: &mut [u32], dtype: DType, vals: &[f32]) {
    let n = vals.len();
    match dtype {
        DType::F32 => bytemuck::cast_slice_mut::<u32, f32>(words)[..n].copy_from_slice(vals),
        DType::F16 => {
            for (o, &v) in bytemuck::cast_slice_mut::<u32, u16>(words)[..n]
                .iter_mut()
                .zip(vals)
            {
                *o = f16::from_f32(v).to_bits();
            }
        }
        DType::BF16 => {
            for (o, &v) in bytemuck::cast_slice_mut::<u32, u16>(words)[..n]
                .iter_mut()
                .zip(vals)
            {
                *o = bf16::from_f32(v).to_bits();
            }
        }
        DType::U32 => {
            for (o, &v) in words[..n].iter_mut().zip(vals) {
                *o = v.round_ties_even() as u32;
            }
        }
        DType::Int8 | DType::Int4 => unreachable!("no op writes a weight-only {dtype} tensor"),
    }
}

/// Runs `f` on an f32 view of the output: in place for f32, through a temporary otherwise.
pub(crate) fn with_out_f32(words: &mut [u32], desc: &TensorDesc, f: impl FnOnce(&mut [f32])) {
    let n = desc.numel();
    if desc.dtype == DType::F32 {
        f(&mut bytemuck::cast_slice_mut::<u32, f32>(words)[..n]);
    } else {
        let mut tmp = vec![0f32; n];
        f(&mut tmp);
        store_f32(words, desc.dtype, &tmp);
    }
}

/// The output's raw bytes.
pub(crate) fn out_bytes<'a>(words: &'a mut [u32], desc: &TensorDesc) -> &'a mut [u8] {
    &mut bytemuck::cast_slice_mut::<u32, u8>(words)[..desc.size_bytes()]
}
