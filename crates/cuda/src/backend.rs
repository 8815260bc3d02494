//! `CudaBackend`: device, stream, module lookup, memory, counters and the `Backend` impl.
//!
//! * One non-blocking stream per backend; every op's launches are enqueued under one lock, so
//!   scratch buffers reused across ops are safe (the stream orders them) and nothing on the hot
//!   path waits for the device: the only host syncs are `synchronize`, `download` and, with
//!   `FOVEATE_CUDA_SYNC=1`, one after every launch.
//! * Memory comes from the device's default pool (stream-ordered alloc and free) with the release
//!   threshold raised, so freed blocks stay in the pool instead of going back to the driver.
//! * Kernels: [`ModuleStore`] (memory, the on-disk cache, NVRTC) gives the CUBIN; modules and
//!   functions are loaded once, and the dynamic shared-memory limit is raised once per function.
//! * `FOVEATE_CUDA_SYNC=1`: synchronize and check after every launch; a fault names the op, its
//!   variant, input shapes and dtype, and the kernel. `FOVEATE_CUDA_FAULT=<op name>` plants an
//!   out-of-bounds store after that op's launches (for the GPU kit's fault check).

use crate::cache::{ModuleStore, Origin};
use crate::{ops, specs::ModuleSpec};
use cudarc::driver::{
    sys, CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, DriverError,
    PushKernelArg,
};
use foveate_core::{
    registry::attention as av, Backend, BlockLayout, Counters, DType, Error, HostTensor,
    MemoryStats, Op, OpKind, Result, Storage, Tensor, TensorDesc, VariantInfo,
};
use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Environment switch: synchronize and check after every launch.
pub const SYNC_ENV: &str = "FOVEATE_CUDA_SYNC";
/// Environment switch: plant an out-of-bounds store after the named op (`rms_norm`, `gemm`, ...).
pub const FAULT_ENV: &str = "FOVEATE_CUDA_FAULT";

pub(crate) fn dev(msg: impl std::fmt::Display) -> Error {
    Error::device("cuda", msg.to_string())
}

fn unavailable(reason: impl Into<String>) -> Error {
    Error::Unavailable {
        backend: "cuda".into(),
        reason: reason.into(),
    }
}

fn env_on(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
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
        self.stats
            .allocated
            .fetch_sub(self.bytes as u64, Ordering::Relaxed);
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

#[derive(Default)]
struct WorkCounter {
    launches: AtomicU64,
    host_syncs: AtomicU64,
    allocations: AtomicU64,
}

/// A loaded kernel and its name (for fault reports).
#[derive(Clone)]
pub(crate) struct Kernel {
    pub f: CudaFunction,
    pub name: &'static str,
}

/// Host tables uploaded once per (layout, shape): the sparse tile / block class tables.
pub(crate) type TableKey = (usize, usize, usize, usize, usize);

/// The state one op's enqueue holds: scratch buffers by purpose and cached tables.
#[derive(Default)]
pub(crate) struct Enqueue {
    scratch: HashMap<&'static str, CudaStorage>,
    tables: HashMap<TableKey, (Arc<BlockLayout>, Tensor)>,
    /// The op being enqueued, in words (sync mode only).
    current: String,
}

/// Loaded kernels by (module, name), with the dynamic shared memory their attribute allows.
type FunctionCache = HashMap<(ModuleSpec, &'static str), (Kernel, u32)>;

/// The CUDA backend on one device.
pub struct CudaBackend {
    pub(crate) ctx: Arc<CudaContext>,
    pub(crate) stream: Arc<CudaStream>,
    pub(crate) arch: String,
    pub(crate) sms: u32,
    /// The most shared memory one block may opt in to (bytes).
    smem_optin: u32,
    name: String,
    store: ModuleStore,
    modules: Mutex<HashMap<ModuleSpec, Arc<CudaModule>>>,
    functions: Mutex<FunctionCache>,
    enqueue: Mutex<Enqueue>,
    sync_each: bool,
    fault_after: Option<String>,
    planted: std::sync::atomic::AtomicBool,
    /// The op during or after which the device faulted (a sticky fault: every later call fails).
    faulted: Mutex<Option<String>>,
    blas: OnceLock<std::result::Result<cudarc::cublas::CudaBlas, String>>,
    stats: Arc<MemCounter>,
    work: WorkCounter,
}

impl CudaBackend {
    /// Opens device `ordinal`. Returns `Error::Unavailable` (never panics) when libcuda or a GPU
    /// is missing, when the GPU is older than sm_80 (the kernels use cp.async, ldmatrix and bf16
    /// mma), or when NVRTC is missing and the kernel cache lacks a module for this GPU's arch.
    /// NVRTC is not needed when the cache (`FOVEATE_CUDA_CACHE`) holds every module.
    pub fn new(ordinal: usize) -> Result<CudaBackend> {
        // SAFETY: only tries to open the shared library.
        if !unsafe { sys::is_culib_present() } {
            return Err(unavailable("the CUDA driver library (libcuda.so) was not found: no NVIDIA driver on this machine"));
        }
        let count = CudaContext::device_count()
            .map_err(|e| unavailable(format!("cuInit / cuDeviceGetCount failed: {e:?}")))?;
        if count <= 0 {
            return Err(unavailable("the CUDA driver reports no GPU"));
        }
        if ordinal >= count as usize {
            return Err(unavailable(format!(
                "GPU ordinal {ordinal} requested, {count} present"
            )));
        }
        let ctx = CudaContext::new(ordinal)
            .map_err(|e| unavailable(format!("cannot create a context on GPU {ordinal}: {e:?}")))?;
        let (maj, min) = ctx.compute_capability().map_err(dev)?;
        if maj < 8 {
            return Err(unavailable(format!("GPU {ordinal} has compute capability {maj}.{min}; foveate's CUDA kernels need 8.0+")));
        }
        let arch = format!("sm_{maj}{min}");
        let store = ModuleStore::from_env(&arch);
        store.ready(&crate::specs::all_modules())?;
        let sms = ctx
            .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(dev)? as u32;
        let smem_optin = ctx
            .attribute(
                sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
            )
            .map_err(dev)? as u32;
        // One stream: ordering is the stream's, so cudarc's per-buffer events are not needed.
        // SAFETY: no other stream touches these buffers.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx
            .new_stream()
            .map_err(|e| dev(format!("cannot create a stream: {e:?}")))?;
        keep_pool_memory(&ctx);
        let name = ctx.name().unwrap_or_else(|_| "unknown NVIDIA GPU".into());
        Ok(CudaBackend {
            ctx,
            stream,
            name: format!("{name} ({arch}, {sms} SMs)"),
            arch,
            sms,
            smem_optin,
            store,
            modules: Mutex::new(HashMap::new()),
            functions: Mutex::new(HashMap::new()),
            enqueue: Mutex::new(Enqueue::default()),
            sync_each: env_on(SYNC_ENV),
            fault_after: std::env::var(FAULT_ENV).ok().filter(|v| !v.is_empty()),
            planted: std::sync::atomic::AtomicBool::new(false),
            faulted: Mutex::new(None),
            blas: OnceLock::new(),
            stats: Arc::new(MemCounter::default()),
            work: WorkCounter::default(),
        })
    }

    /// The device's NVRTC target, e.g. `sm_90`.
    pub fn arch(&self) -> &str {
        &self.arch
    }

    /// The cuBLAS handle of the `cublas` baseline variant (opened on first use), or why not.
    pub(crate) fn blas(&self) -> std::result::Result<&cudarc::cublas::CudaBlas, String> {
        self.blas
            .get_or_init(|| crate::cublas::open(&self.stream))
            .as_ref()
            .map_err(|e| e.clone())
    }

    /// The module lookup (memory, cache folder, NVRTC) this backend uses.
    pub fn modules(&self) -> &ModuleStore {
        &self.store
    }

    fn load_module(&self, spec: &ModuleSpec) -> Result<Arc<CudaModule>> {
        let mut m = self.modules.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(x) = m.get(spec) {
            return Ok(x.clone());
        }
        let (cubin, origin) = self.store.cubin(spec)?;
        let load = |b: &[u8]| {
            self.ctx
                .load_module(cudarc::nvrtc::Ptx::from_binary(b.to_vec()))
        };
        let module = match load(&cubin) {
            Ok(x) => x,
            // A cached CUBIN the driver refuses (e.g. made by a newer NVRTC than the driver):
            // compile it again here when NVRTC is present.
            Err(e) if origin != Origin::Compiled => {
                let made_by = self
                    .store
                    .entry(spec)
                    .map(|e| format!(" (cached, made by NVRTC {})", e.nvrtc_version))
                    .unwrap_or_default();
                let fresh = self.store.compile(spec).map_err(|c| {
                    dev(format!(
                        "loading {}{made_by}: {e:?}; recompiling: {c}",
                        spec.label()
                    ))
                })?;
                load(&fresh).map_err(|e| dev(format!("loading {}: {e:?}", spec.label())))?
            }
            Err(e) => return Err(dev(format!("loading {}: {e:?}", spec.label()))),
        };
        m.insert(spec.clone(), module.clone());
        Ok(module)
    }

    /// A kernel, loaded once; its dynamic shared-memory limit raised to at least `smem`.
    pub(crate) fn function(
        &self,
        spec: &ModuleSpec,
        kernel: &'static str,
        smem: u32,
    ) -> Result<Kernel> {
        let key = (spec.clone(), kernel);
        let mut fns = self.functions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((k, set)) = fns.get_mut(&key) {
            if *set >= smem {
                return Ok(k.clone());
            }
        }
        let k = match fns.get(&key) {
            Some((k, _)) => k.clone(),
            None => {
                let module = self.load_module(spec)?;
                let f = module.load_function(kernel).map_err(|e| {
                    dev(format!("{} has no kernel `{kernel}`: {e:?}", spec.label()))
                })?;
                Kernel { f, name: kernel }
            }
        };
        // Raise the opt-in limit to what the launch asks (static + dynamic may pass 48 KiB even
        // when the dynamic part alone does not).
        if smem > 0 {
            k.f.set_attribute(
                sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                smem as i32,
            )
            .map_err(|e| {
                dev(format!(
                    "{kernel}: cannot raise dynamic shared memory to {smem} bytes: {e:?}"
                ))
            })?;
        }
        fns.insert(key, (k.clone(), smem));
        Ok(k)
    }

    /// Counts one launch; in sync mode waits for it and names the op and kernel on a fault.
    pub(crate) fn launched(&self, kernel: &str, q: &Enqueue) -> Result<()> {
        self.work.launches.fetch_add(1, Ordering::Relaxed);
        if self.sync_each {
            self.work.host_syncs.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = self.stream.synchronize() {
                let first = self.record_fault(&q.current);
                return Err(dev(format!(
                    "{}: kernel `{kernel}` faulted ({SYNC_ENV}=1): {e:?}{first}",
                    q.current
                )));
            }
        }
        Ok(())
    }

    /// Remembers the op of the first fault; returns a note naming it when an earlier op faulted.
    fn record_fault(&self, op: &str) -> String {
        let mut f = self.faulted.lock().unwrap_or_else(|e| e.into_inner());
        match &*f {
            Some(first) if first != op => format!(" (after the fault in {first})"),
            Some(_) => String::new(),
            None => {
                *f = Some(op.to_string());
                String::new()
            }
        }
    }

    /// A device error after a sticky fault names the op that faulted: the context is lost, so
    /// every later call fails with the same code, whatever it does.
    fn after_fault(&self, e: Error) -> Error {
        let f = self.faulted.lock().unwrap_or_else(|e| e.into_inner());
        match (e, &*f) {
            (Error::Device { backend, msg }, Some(first)) if !msg.contains(first.as_str()) => Error::Device {
                backend,
                msg: format!("{msg} (the context was lost to a device fault in {first}; run with selftest --isolate)"),
            },
            (e, _) => e,
        }
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
        self.work.allocations.fetch_add(1, Ordering::Relaxed);
        let now = self
            .stats
            .allocated
            .fetch_add(bytes as u64, Ordering::Relaxed)
            + bytes as u64;
        self.stats.peak.fetch_max(now, Ordering::Relaxed);
        Ok(CudaStorage {
            buf,
            ptr,
            bytes,
            stats: self.stats.clone(),
        })
    }

    /// A scratch buffer of at least `bytes` for `purpose` (the MLP hidden, decode partials),
    /// kept for the next op: it grows, it is not allocated again per call. Valid until the next
    /// `scratch` call for the same purpose; the stream orders its reuse after earlier launches.
    pub(crate) fn scratch(
        &self,
        q: &mut Enqueue,
        purpose: &'static str,
        bytes: usize,
    ) -> Result<u64> {
        if let Some(s) = q.scratch.get(purpose) {
            if s.bytes >= bytes {
                return Ok(s.ptr);
            }
        }
        // The old buffer (if any) is freed stream-ordered, after the launches that use it.
        let s = self.alloc_bytes(bytes)?;
        let p = s.ptr;
        q.scratch.insert(purpose, s);
        Ok(p)
    }

    /// A u32 table built by `make` and uploaded once per `key` (layout identity and shape); the
    /// layout is kept alive with it so its address cannot be reused by another layout.
    pub(crate) fn table(
        &self,
        q: &mut Enqueue,
        layout: &Arc<BlockLayout>,
        key: TableKey,
        make: impl FnOnce() -> Vec<u32>,
    ) -> Result<u64> {
        if let Some((l, t)) = q.tables.get(&key) {
            if Arc::ptr_eq(l, layout) {
                return ptr(t);
            }
        }
        if q.tables.len() >= 256 {
            q.tables.clear();
        }
        let v = make();
        let t = self.upload(&HostTensor::from_u32(vec![v.len()], &v))?;
        let p = ptr(&t)?;
        q.tables.insert(key, (layout.clone(), t));
        Ok(p)
    }

    fn plant_fault(&self, out: &Tensor, q: &Enqueue) -> Result<()> {
        let spec = crate::specs::ModuleSpec::new(
            crate::specs::Family::Elementwise,
            "elementwise.cu",
            &[("DTYPE", "0".into())],
        );
        let k = self.function(&spec, "fault_oob", 0)?;
        let p = ptr(out)?;
        let cfg = cudarc::driver::LaunchConfig {
            grid_dim: (1, 1, 1),
            block_dim: (32, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut b = self.stream.launch_builder(&k.f);
        b.arg(&p);
        // SAFETY: deliberately out of bounds (FOVEATE_CUDA_FAULT): the store faults on the device.
        unsafe { b.launch(cfg) }.map_err(|e| dev(format!("launch: {e:?}")))?;
        self.launched(k.name, q)
    }
}

/// Raises the default memory pool's release threshold so freed memory stays pooled across
/// synchronizes (stream-ordered allocations then cost no driver call in steady state).
fn keep_pool_memory(ctx: &Arc<CudaContext>) {
    if !ctx.has_async_alloc() {
        return;
    }
    let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
    // SAFETY: valid device handle and out-pointer; the attribute takes a u64.
    unsafe {
        if sys::cuDeviceGetDefaultMemPool(&mut pool, ctx.cu_device()) == sys::CUresult::CUDA_SUCCESS
        {
            let mut threshold: u64 = u64::MAX;
            let _ = sys::cuMemPoolSetAttribute(
                pool,
                sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                &mut threshold as *mut u64 as *mut std::ffi::c_void,
            );
        }
    }
}

/// `rms_norm (variant ``, bf16) inputs [2, 7, 896], [896]`: the op in words for fault reports.
pub(crate) fn describe(op: &Op, inputs: &[&Tensor], variant: &str, dtype: DType) -> String {
    let shapes: Vec<String> = inputs.iter().map(|t| format!("{:?}", t.dims())).collect();
    format!(
        "{} (variant `{variant}`, {dtype}) inputs {}",
        op.label(),
        shapes.join(", ")
    )
}

/// The error for a failed `cuMemAlloc` of `requested` bytes: CUDA_ERROR_OUT_OF_MEMORY becomes
/// [`Error::OutOfMemory`] with the free memory `cuMemGetInfo` reported (`None`: it failed too),
/// anything else a device error naming the result code.
pub(crate) fn alloc_error(requested: u64, e: &DriverError, free: Option<u64>) -> Error {
    if e.0 == sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY {
        Error::OutOfMemory {
            backend: "cuda".into(),
            requested,
            free: free.unwrap_or(foveate_core::FREE_UNKNOWN),
        }
    } else {
        dev(format!(
            "allocating {}: {:?}",
            foveate_core::fmt_bytes(requested),
            e.0
        ))
    }
}

pub(crate) fn storage(t: &Tensor) -> Result<&CudaStorage> {
    t.storage_as::<CudaStorage>().ok_or_else(|| {
        dev(format!(
            "tensor {} lives on backend `{}`, not cuda",
            t.desc(),
            t.storage().backend()
        ))
    })
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
                VariantInfo::new(op, av::FLASH, &FLOATS, "default; tensor-core (mma.sync m16n8k16) flash for f16/bf16, head_dim % 8 == 0 and <= 128; SIMT flash for f32; none/causal/window masks. The empty variant follows registry::pick_attention: flash-decode for q_len 1, block-sparse for sparse masks, flash, naive where none fits"),
                VariantInfo::new(op, av::NAIVE, &FLOATS, "one warp per query row, keys one by one, online softmax; any mask, head_dim <= 256"),
                VariantInfo::new(op, av::FLASH_DECODE, &FLOATS, "q_len 1: split-KV across blocks + LSE combine, GQA group folded; head_dim <= 128; dense masks"),
                VariantInfo::new(op, crate::attn::FLASH_DECODE_V16, &FLOATS, "flash-decode with K and V tiles staged in shared memory by 16-byte loads; head_dim in 16-byte chunks; not a default until checked on a GPU"),
                VariantInfo::new(op, av::BLOCK_SPARSE, &FLOATS, "block-sparse masks: flash tiles driven by the tile class table (empty skipped, full unmasked)"),
            ],
            OpKind::Gemm => vec![
                VariantInfo::new(op, "tiled", &FLOATS, "default; f16/bf16 mma.sync 128x128x32 cp.async double buffer; f32 SIMT 64x64; fused bias/act/residual epilogue; int8/int4 weights (quant_gemm.cu qgemm_*): W tile dequantised on load"),
                VariantInfo::new(op, ops::GEMV, &FLOATS, "M <= 16: one warp per output column and K slice (split-K inside the block), 16-byte loads of W, every row of A per load; same epilogue; int8/int4 weights (qgemv_*): one 16-byte chunk (16 int8 / 32 int4 weights, one scale) per lane per step"),
                VariantInfo::new(op, crate::cublas::CUBLAS, &FLOATS, "baseline: NVIDIA cuBLAS cublasGemmEx (f32 accumulation), plain GEMMs only; needs libcublas"),
            ],
            OpKind::GeluMlp => vec![VariantInfo::new(op, "two-gemm", &FLOATS, "up GEMM with bias+activation epilogue, down GEMM with bias+residual epilogue; int8/int4 weights dequantised in the W tile load (gelu_mlp.cu with QBITS)")],
            OpKind::PatchEmbed => vec![VariantInfo::new(op, "implicit-gemm", &FLOATS, "im2col gathered in the tile load; bias, pos and CLS fused")],
            _ => vec![VariantInfo::new(op, "default", &FLOATS, "hand-written CUDA kernel")],
        }
    }
    fn supports(&self, op: &Op, dtype: DType, variant: &str) -> std::result::Result<(), String> {
        ops::supports(op, dtype, variant)?;
        if matches!(op, Op::Gemm(_)) && variant == crate::cublas::CUBLAS {
            self.blas()?;
        }
        if let Op::Attention(a) = op {
            if variant == crate::attn::FLASH_DECODE_V16 {
                let g = crate::attn::decode_split(a, self.sms as usize, a.kv_len).0;
                let need =
                    crate::specs::decode_v16_smem(a.head_dim, dtype == DType::F32, 1 << g) as u32;
                if need > self.smem_optin {
                    return Err(format!(
                        "needs {need} bytes of shared memory per block, this GPU allows {}",
                        self.smem_optin
                    ));
                }
            }
        }
        Ok(())
    }
    fn alloc(&self, desc: &TensorDesc) -> Result<Tensor> {
        let s = self
            .alloc_bytes(desc.size_bytes())
            .map_err(|e| self.after_fault(e))?;
        Ok(Tensor::new(Arc::new(s), desc.clone()))
    }
    fn upload(&self, host: &HostTensor) -> Result<Tensor> {
        // Pageable host memory: the copy is staged before this returns, so `host` may go.
        let mut s = self
            .alloc_bytes(host.bytes.len())
            .map_err(|e| self.after_fault(e))?;
        if !host.bytes.is_empty() {
            let mut view = s.buf.slice_mut(0..host.bytes.len());
            self.stream
                .memcpy_htod(&host.bytes, &mut view)
                .map_err(|e| self.after_fault(dev(format!("upload: {e:?}"))))?;
        }
        Ok(Tensor::new(Arc::new(s), host.desc.clone()))
    }
    fn download(&self, t: &Tensor) -> Result<HostTensor> {
        let s = storage(t)?;
        let n = t.desc().size_bytes();
        let mut bytes = vec![0u8; n];
        if n > 0 {
            self.stream
                .memcpy_dtoh(&s.buf.slice(0..n), &mut bytes)
                .map_err(|e| self.after_fault(dev(format!("download: {e:?}"))))?;
        }
        self.work.host_syncs.fetch_add(1, Ordering::Relaxed);
        self.stream
            .synchronize()
            .map_err(|e| self.after_fault(dev(format!("download of {}: {e:?}", t.desc()))))?;
        HostTensor::from_bytes(t.desc().clone(), bytes)
    }
    fn execute(&self, op: &Op, inputs: &[&Tensor], out: &Tensor, variant: &str) -> Result<()> {
        foveate_core::check_launch(op, inputs, out)?;
        // Gemm and GeluMlp read int8/int4 weights themselves (quant_gemm.cu, gelu_mlp.cu with
        // QBITS); other mixed weights (16-bit under f32, ...) are refused by name.
        let act = inputs.first().map(|t| t.dtype());
        let slots = op.weight_slots();
        let reads_quant = !slots.is_empty()
            && slots.iter().all(|&i| {
                inputs.get(i).is_some_and(|w| Some(w.dtype()) == act || w.dtype().is_quant())
            });
        if !reads_quant {
            foveate_core::refuse_mixed_weights("cuda", op, inputs)?;
        }
        let dtype = inputs.first().map(|t| t.dtype()).unwrap_or(DType::F32);
        if let Err(why) = self.supports(op, dtype, variant) {
            return Err(Error::unsupported(
                "cuda",
                format!("{} ({dtype}, variant `{variant}`): {why}", op.label()),
            ));
        }
        for t in inputs.iter().copied().chain(std::iter::once(out)) {
            storage(t)?;
        }
        let mut q = self.enqueue.lock().unwrap_or_else(|e| e.into_inner());
        if self.sync_each {
            q.current = describe(op, inputs, variant, dtype);
        }
        let named = |e: Error| match e {
            Error::Device { backend, msg } if !msg.contains(" faulted (") => Error::Device {
                backend,
                msg: format!("{}: {msg}", describe(op, inputs, variant, dtype)),
            },
            e => e,
        };
        ops::execute(self, &mut q, op, inputs, out, variant)
            .map_err(|e| self.after_fault(named(e)))?;
        // The planted fault: once per process, after the first execution of the named op.
        if self.fault_after.as_deref() == Some(op.name())
            && !self.planted.swap(true, Ordering::Relaxed)
        {
            q.current = describe(op, inputs, variant, dtype);
            self.record_fault(&q.current);
            self.plant_fault(out, &q)?;
        }
        // Errors cudarc recorded (it sees no kernel faults: those need FOVEATE_CUDA_SYNC=1).
        self.ctx.check_err().map_err(|e| {
            self.after_fault(dev(format!(
                "{}: {e:?}",
                describe(op, inputs, variant, dtype)
            )))
        })
    }
    fn synchronize(&self) -> Result<()> {
        self.work.host_syncs.fetch_add(1, Ordering::Relaxed);
        self.stream
            .synchronize()
            .map_err(|e| self.after_fault(dev(format!("synchronize: {e:?}"))))
    }
    fn counters(&self) -> Option<Counters> {
        Some(Counters {
            launches: self.work.launches.load(Ordering::Relaxed),
            // No CUDA graphs yet: launches go to the stream one by one.
            submits: 0,
            host_syncs: self.work.host_syncs.load(Ordering::Relaxed),
            allocations: self.work.allocations.load(Ordering::Relaxed),
        })
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
        assert!(
            matches!(e, Error::OutOfMemory { requested, free, .. } if requested == 3 << 30 && free == 1 << 30)
        );
        assert_eq!(
            e.to_string(),
            "backend `cuda`: out of memory: asked for 3221225472 bytes (3.00 GiB), 1073741824 bytes (1.00 GiB) free"
        );
        let e = alloc_error(4096, &oom, None);
        assert!(
            e.to_string()
                .contains("asked for 4096 bytes (4.00 KiB), free memory unknown"),
            "{e}"
        );
        let other = DriverError(sys::CUresult::CUDA_ERROR_INVALID_VALUE);
        let e = alloc_error(10, &other, Some(5)).to_string();
        assert!(
            e.starts_with("backend `cuda`: allocating 10 bytes: ") && e.contains("INVALID_VALUE"),
            "{e}"
        );
    }
}
