//! `CudaBackend`: device, stream, module cache, memory, and the `Backend` impl.

use crate::{nvrtc, ops, specs::ModuleSpec};
use cudarc::driver::{sys, CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, DriverError};
use foveate_core::{
    registry::attention as av, Backend, DType, Error, HostTensor, MemoryStats, Op, OpKind, Result, Storage, Tensor,
    TensorDesc, VariantInfo,
};
use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub(crate) fn dev(msg: impl std::fmt::Display) -> Error {
    Error::device("cuda", msg.to_string())
}

fn unavailable(reason: impl Into<String>) -> Error {
    Error::Unavailable { backend: "cuda".into(), reason: reason.into() }
}

/// Device memory behind a [`Tensor`].
pub struct CudaStorage {
    pub(crate) buf: CudaSlice<u8>,
    pub(crate) ptr: u64,
    pub(crate) bytes: usize,
    stats: Arc<MemCounter>,
}

impl Drop for CudaStorage {
    fn drop(&mut self) {
        self.stats.allocated.fetch_sub(self.bytes as u64, Ordering::Relaxed);
    }
}

impl Storage for CudaStorage {
    fn backend(&self) -> &'static str {
        "cuda"
    }
    fn size_bytes(&self) -> usize {
        self.bytes
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[derive(Default)]
struct MemCounter {
    allocated: AtomicU64,
    peak: AtomicU64,
}

/// The CUDA backend on one device.
pub struct CudaBackend {
    pub(crate) ctx: Arc<CudaContext>,
    pub(crate) stream: Arc<CudaStream>,
    pub(crate) arch: String,
    pub(crate) sms: u32,
    name: String,
    modules: Mutex<HashMap<ModuleSpec, Arc<CudaModule>>>,
    stats: Arc<MemCounter>,
}

impl CudaBackend {
    /// Opens device `ordinal`. Returns `Error::Unavailable` (never panics) when libcuda, a GPU or
    /// NVRTC is missing, or the GPU is older than sm_80 (the kernels use cp.async, ldmatrix and
    /// bf16 mma).
    pub fn new(ordinal: usize) -> Result<CudaBackend> {
        // SAFETY: only tries to open the shared library.
        if !unsafe { sys::is_culib_present() } {
            return Err(unavailable("the CUDA driver library (libcuda.so) was not found: no NVIDIA driver on this machine"));
        }
        nvrtc::nvrtc_status().map_err(unavailable)?;
        let count = CudaContext::device_count().map_err(|e| unavailable(format!("cuInit / cuDeviceGetCount failed: {e:?}")))?;
        if count <= 0 {
            return Err(unavailable("the CUDA driver reports no GPU"));
        }
        if ordinal >= count as usize {
            return Err(unavailable(format!("GPU ordinal {ordinal} requested, {count} present")));
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| unavailable(format!("cannot create a context on GPU {ordinal}: {e:?}")))?;
        let (maj, min) = ctx.compute_capability().map_err(dev)?;
        if maj < 8 {
            return Err(unavailable(format!("GPU {ordinal} has compute capability {maj}.{min}; foveate's CUDA kernels need 8.0+")));
        }
        let sms = ctx
            .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(dev)? as u32;
        // One stream: ordering is the stream's, so cudarc's per-buffer events are not needed.
        // SAFETY: no other stream touches these buffers.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.default_stream();
        let name = ctx.name().unwrap_or_else(|_| "unknown NVIDIA GPU".into());
        Ok(CudaBackend {
            ctx,
            stream,
            arch: format!("sm_{maj}{min}"),
            sms,
            name: format!("{name} (sm_{maj}{min}, {sms} SMs)"),
            modules: Mutex::new(HashMap::new()),
            stats: Arc::new(MemCounter::default()),
        })
    }

    /// The device's NVRTC target, e.g. `sm_90`.
    pub fn arch(&self) -> &str {
        &self.arch
    }

    /// A kernel from a module, compiling (or reading the disk cache) on first use.
    pub(crate) fn function(&self, spec: &ModuleSpec, kernel: &str) -> Result<CudaFunction> {
        let module = {
            let mut m = self.modules.lock().unwrap_or_else(|e| e.into_inner());
            match m.get(spec) {
                Some(x) => x.clone(),
                None => {
                    let cubin = nvrtc::compile_cached(spec.file, &self.arch, &spec.defines)?;
                    let module = self
                        .ctx
                        .load_module(cudarc::nvrtc::Ptx::from_binary(cubin))
                        .map_err(|e| dev(format!("loading {}: {e:?}", spec.label())))?;
                    m.insert(spec.clone(), module.clone());
                    module
                }
            }
        };
        module.load_function(kernel).map_err(|e| dev(format!("{} has no kernel `{kernel}`: {e:?}", spec.label())))
    }

    pub(crate) fn alloc_bytes(&self, bytes: usize) -> Result<CudaStorage> {
        let n = bytes.max(4);
        // SAFETY: the contents are unspecified until written, as `Backend::alloc` documents.
        let buf = unsafe { self.stream.alloc::<u8>(n) }.map_err(|e| {
            let free = self.ctx.mem_get_info().ok().map(|(f, _)| f as u64);
            alloc_error(n as u64, &e, free)
        })?;
        let ptr = {
            let (p, _sync) = buf.device_ptr(&self.stream);
            p
        };
        let now = self.stats.allocated.fetch_add(bytes as u64, Ordering::Relaxed) + bytes as u64;
        self.stats.peak.fetch_max(now, Ordering::Relaxed);
        Ok(CudaStorage { buf, ptr, bytes, stats: self.stats.clone() })
    }

    /// A scratch tensor (decode partials, the MLP hidden, sparse tables).
    pub(crate) fn scratch(&self, desc: TensorDesc) -> Result<Tensor> {
        self.alloc(&desc)
    }
}

/// The error for a failed `cuMemAlloc` of `requested` bytes: CUDA_ERROR_OUT_OF_MEMORY becomes
/// [`Error::OutOfMemory`] with the free memory `cuMemGetInfo` reported (`None`: it failed too),
/// anything else a device error naming the result code.
pub(crate) fn alloc_error(requested: u64, e: &DriverError, free: Option<u64>) -> Error {
    if e.0 == sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY {
        Error::OutOfMemory { backend: "cuda".into(), requested, free: free.unwrap_or(foveate_core::FREE_UNKNOWN) }
    } else {
        dev(format!("allocating {}: {:?}", foveate_core::fmt_bytes(requested), e.0))
    }
}

pub(crate) fn storage(t: &Tensor) -> Result<&CudaStorage> {
    t.storage_as::<CudaStorage>()
        .ok_or_else(|| dev(format!("tensor {} lives on backend `{}`, not cuda", t.desc(), t.storage().backend())))
}

pub(crate) fn ptr(t: &Tensor) -> Result<u64> {
    Ok(storage(t)?.ptr)
}

const FLOATS: [DType; 3] = [DType::F32, DType::F16, DType::BF16];

impl Backend for CudaBackend {
    fn name(&self) -> &str {
        "cuda"
    }
    fn device_name(&self) -> String {
        self.name.clone()
    }
    fn dtypes(&self) -> Vec<DType> {
        FLOATS.to_vec()
    }
    fn variants(&self, op: OpKind) -> Vec<VariantInfo> {
        match op {
            OpKind::Attention => vec![
                VariantInfo::new(op, av::FLASH, &FLOATS, "default; tensor-core (mma.sync m16n8k16) flash for f16/bf16, head_dim % 8 == 0 and <= 128; SIMT flash for f32; none/causal/window masks. The empty variant picks flash-decode for q_len 1, block-sparse for sparse masks, naive otherwise"),
                VariantInfo::new(op, av::NAIVE, &FLOATS, "one warp per query row, keys one by one, online softmax; any mask, head_dim <= 256"),
                VariantInfo::new(op, av::FLASH_DECODE, &FLOATS, "q_len 1: split-KV across blocks + LSE combine, GQA group folded; head_dim <= 128; dense masks"),
                VariantInfo::new(op, av::BLOCK_SPARSE, &FLOATS, "block-sparse masks: flash tiles driven by the tile class table (empty skipped, full unmasked)"),
            ],
            OpKind::Gemm => vec![VariantInfo::new(op, "tiled", &FLOATS, "f16/bf16 mma.sync 128x128x32 cp.async double buffer; f32 SIMT 64x64; fused bias/act/residual epilogue")],
            OpKind::GeluMlp => vec![VariantInfo::new(op, "two-gemm", &FLOATS, "up GEMM with bias+activation epilogue, down GEMM with bias+residual epilogue")],
            OpKind::PatchEmbed => vec![VariantInfo::new(op, "implicit-gemm", &FLOATS, "im2col gathered in the tile load; bias, pos and CLS fused")],
            _ => vec![VariantInfo::new(op, "default", &FLOATS, "hand-written CUDA kernel")],
        }
    }
    fn supports(&self, op: &Op, dtype: DType, variant: &str) -> std::result::Result<(), String> {
        ops::supports(op, dtype, variant)
    }
    fn alloc(&self, desc: &TensorDesc) -> Result<Tensor> {
        let s = self.alloc_bytes(desc.size_bytes())?;
        Ok(Tensor::new(Arc::new(s), desc.clone()))
    }
    fn upload(&self, host: &HostTensor) -> Result<Tensor> {
        let mut s = self.alloc_bytes(host.bytes.len())?;
        if !host.bytes.is_empty() {
            let mut view = s.buf.slice_mut(0..host.bytes.len());
            self.stream.memcpy_htod(&host.bytes, &mut view).map_err(|e| dev(format!("upload: {e:?}")))?;
        }
        Ok(Tensor::new(Arc::new(s), host.desc.clone()))
    }
    fn download(&self, t: &Tensor) -> Result<HostTensor> {
        let s = storage(t)?;
        let n = t.desc().size_bytes();
        let mut bytes = vec![0u8; n];
        if n > 0 {
            self.stream.memcpy_dtoh(&s.buf.slice(0..n), &mut bytes).map_err(|e| dev(format!("download: {e:?}")))?;
        }
        self.stream.synchronize().map_err(|e| dev(format!("synchronize: {e:?}")))?;
        HostTensor::from_bytes(t.desc().clone(), bytes)
    }
    fn execute(&self, op: &Op, inputs: &[&Tensor], out: &Tensor, variant: &str) -> Result<()> {
        foveate_core::check_launch(op, inputs, out)?;
        let dtype = inputs.first().map(|t| t.dtype()).unwrap_or(DType::F32);
        if let Err(why) = ops::supports(op, dtype, variant) {
            return Err(Error::unsupported("cuda", format!("{} ({dtype}, variant `{variant}`): {why}", op.label())));
        }
        for t in inputs.iter().copied().chain(std::iter::once(out)) {
            storage(t)?;
        }
        ops::execute(self, op, inputs, out, variant)?;
        // Launch errors surface here rather than at some later call.
        self.ctx.check_err().map_err(|e| dev(format!("{}: {e:?}", op.label())))
    }
    fn synchronize(&self) -> Result<()> {
        self.stream.synchronize().map_err(|e| dev(format!("synchronize: {e:?}")))
    }
    fn memory_stats(&self) -> Option<MemoryStats> {
        Some(MemoryStats {
            allocated_bytes: self.stats.allocated.load(Ordering::Relaxed),
            peak_bytes: self.stats.peak.load(Ordering::Relaxed),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_memory_from_alloc_says_asked_and_free() {
        let oom = DriverError(sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY);
        let e = alloc_error(3 << 30, &oom, Some(1 << 30));
        assert!(matches!(e, Error::OutOfMemory { requested, free, .. } if requested == 3 << 30 && free == 1 << 30));
        assert_eq!(
            e.to_string(),
            "backend `cuda`: out of memory: asked for 3221225472 bytes (3.00 GiB), 1073741824 bytes (1.00 GiB) free"
        );
        let e = alloc_error(4096, &oom, None);
        assert!(e.to_string().contains("asked for 4096 bytes (4.00 KiB), free memory unknown"), "{e}");
        let other = DriverError(sys::CUresult::CUDA_ERROR_INVALID_VALUE);
        let e = alloc_error(10, &other, Some(5)).to_string();
        assert!(e.starts_with("backend `cuda`: allocating 10 bytes: ") && e.contains("INVALID_VALUE"), "{e}");
    }
}
