//! The CPU backend.
//!
//! * [`CpuBackend::oracle`] (`cpu-oracle`): every op in plain f64 loops, rounded to the output dtype
//!   once at the end. Slow and obviously right: the reference every other backend is checked against.
//! * [`CpuBackend::fast`] (`cpu`): the default CPU backend. f32 compute (f16/bf16 converted on the
//!   fly), rayon over rows/heads, the `gemm` crate for the matrix products with fused epilogues, and
//!   three attention variants (`flash`, `naive`, `block-sparse`).
//!
//! Both use [`CpuStorage`], so tensors move freely between the two.

mod act;
mod copy_ops;
mod fast;
mod oracle;
mod storage;
mod variants;
mod words;

pub use fast::{bf16_dot_unavailable, f16_dot_available};
pub use fast::isa::{runnable as runnable_isas, selected as selected_isa, Isa};
pub use storage::CpuStorage;

use foveate_core::{
    check_launch, Backend, DType, Error, HostTensor, Op, OpKind, Result, Tensor, TensorDesc,
    VariantInfo,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use storage::{cpu_storage, out_bytes, store_f64, Inputs};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Oracle,
    Fast,
}

pub struct CpuBackend {
    mode: Mode,
    /// Own thread pool (`fast_with_threads`); None uses rayon's global pool.
    pool: Option<Arc<rayon::ThreadPool>>,
    /// `Backend::counters`: ops executed and tensors created (nothing is submitted or waited for).
    launches: AtomicU64,
    allocations: AtomicU64,
}

impl CpuBackend {
    /// The f64 reference implementation (`cpu-oracle`).
    pub fn oracle() -> Self {
        CpuBackend {
            mode: Mode::Oracle,
            pool: None,
            launches: AtomicU64::new(0),
            allocations: AtomicU64::new(0),
        }
    }

    /// The fast f32 path on rayon's global pool (`cpu`).
    pub fn fast() -> Self {
        CpuBackend {
            mode: Mode::Fast,
            pool: None,
            launches: AtomicU64::new(0),
            allocations: AtomicU64::new(0),
        }
    }

    /// The fast path on its own pool of `n` threads (at least 1).
    pub fn fast_with_threads(n: usize) -> Self {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .thread_name(|i| format!("foveate-cpu-{i}"))
            .build()
            .expect("foveate-cpu: cannot build a rayon thread pool");
        CpuBackend {
            mode: Mode::Fast,
            pool: Some(Arc::new(pool)),
            launches: AtomicU64::new(0),
            allocations: AtomicU64::new(0),
        }
    }

    /// Threads the fast path runs on.
    pub fn threads(&self) -> usize {
        match (&self.mode, &self.pool) {
            (Mode::Oracle, _) => 1,
            (_, Some(p)) => p.current_num_threads(),
            (_, None) => rayon::current_num_threads(),
        }
    }

    fn launch(&self, op: &Op, inputs: &[&Tensor], out: &Tensor, variant: &str) -> Result<()> {
        let out_desc = check_launch(op, inputs, out)?;
        let dtype = inputs[0].dtype();
        let variant = variants::default_for_weights(self.mode == Mode::Oracle, op, inputs, variant);
        let variant = variants::resolve(self.mode == Mode::Oracle, op, dtype, variant)
            .map_err(|why| Error::unsupported(self.name(), why))?;
        let out_store = cpu_storage(self.name(), out)?;

        // KvAppend's output is the cache itself (and may be read by nobody else): copy `new` out
        // first so a caller passing the cache as input too cannot deadlock us.
        if let Op::KvAppend(spec) = op {
            let new = cpu_storage(self.name(), inputs[0])?.to_bytes();
            let mut w = out_store.write();
            copy_ops::kv_append(
                &new,
                inputs[0].desc(),
                out_bytes(&mut w, &out_desc),
                spec.capacity,
                spec.pos,
            );
            return Ok(());
        }

        let ins = Inputs::lock(self.name(), inputs)?;
        let mut w = out_store.write();
        if out_desc.numel() == 0 {
            return Ok(());
        }
        match op {
            Op::Slice { axis, start, len } => {
                copy_ops::slice(
                    ins.bytes(0),
                    ins.desc(0),
                    *axis,
                    *start,
                    *len,
                    out_bytes(&mut w, &out_desc),
                );
            }
            Op::Concat { axis } => {
                copy_ops::concat(
                    ins.bytes(0),
                    ins.desc(0),
                    ins.bytes(1),
                    ins.desc(1),
                    *axis,
                    out_bytes(&mut w, &out_desc),
                );
            }
            Op::Argmax if ins.desc(0).shape.last() == 0 => {
                store_f64(&mut w, DType::U32, &vec![0.0; out_desc.numel()])
            }
            _ if self.mode == Mode::Oracle => {
                let vals = oracle::compute(op, &ins);
                store_f64(&mut w, out_desc.dtype, &vals);
            }
            _ => {
                let words: &mut [u32] = &mut w;
                if fast::work(op, &ins, &out_desc) < fast::SERIAL_WORK {
                    fast::serially(|| fast::execute(op, &ins, words, &out_desc, variant));
                } else {
                    match &self.pool {
                        Some(p) => p.install(|| fast::execute(op, &ins, words, &out_desc, variant)),
                        None => fast::execute(op, &ins, words, &out_desc, variant),
                    }
                }
            }
        }
        Ok(())
    }
}

impl Default for CpuBackend {
    fn default() -> Self {
        Self::fast()
    }
}

impl Backend for CpuBackend {
    fn name(&self) -> &str {
        match self.mode {
            Mode::Oracle => "cpu-oracle",
            Mode::Fast => "cpu",
        }
    }

    fn device_name(&self) -> String {
        match self.mode {
            Mode::Oracle => "CPU (f64 reference, 1 thread)".into(),
            Mode::Fast => format!(
                "CPU ({} threads, {} kernels{})",
                self.threads(),
                fast::isa::selected().name(),
                if fast::bf16_dot_available() { ", bf16-dot" } else { "" }
            ),
        }
    }

    fn dtypes(&self) -> Vec<DType> {
        DType::FLOATS.to_vec()
    }

    fn variants(&self, op: OpKind) -> Vec<VariantInfo> {
        variants::list(self.mode == Mode::Oracle, op)
    }

    fn supports(&self, op: &Op, dtype: DType, variant: &str) -> std::result::Result<(), String> {
        variants::resolve(self.mode == Mode::Oracle, op, dtype, variant).map(|_| ())
    }

    fn alloc(&self, desc: &TensorDesc) -> Result<Tensor> {
        self.allocations.fetch_add(1, Ordering::Relaxed);
        Ok(Tensor::new(
            Arc::new(CpuStorage::zeroed(desc.size_bytes())),
            desc.clone(),
        ))
    }

    fn upload(&self, host: &HostTensor) -> Result<Tensor> {
        if host.bytes.len() != host.desc.size_bytes() {
            return Err(Error::Msg(format!(
                "upload {}: {} bytes given, {} expected",
                host.desc,
                host.bytes.len(),
                host.desc.size_bytes()
            )));
        }
        self.allocations.fetch_add(1, Ordering::Relaxed);
        Ok(Tensor::new(
            Arc::new(CpuStorage::from_bytes(&host.bytes)),
            host.desc.clone(),
        ))
    }

    fn upload_with(&self, desc: &TensorDesc, fill: &mut dyn FnMut(&mut [u8])) -> Result<Tensor> {
        self.allocations.fetch_add(1, Ordering::Relaxed);
        let store = CpuStorage::zeroed(desc.size_bytes());
        {
            let mut w = store.write();
            fill(&mut bytemuck::cast_slice_mut::<u32, u8>(&mut w)[..desc.size_bytes()]);
        }
        Ok(Tensor::new(Arc::new(store), desc.clone()))
    }

    fn on_host(&self) -> bool {
        true
    }

    fn download(&self, t: &Tensor) -> Result<HostTensor> {
        // The storage may be larger than the tensor (a pooled buffer of a size class).
        let mut bytes = cpu_storage(self.name(), t)?.to_bytes();
        bytes.truncate(t.desc().size_bytes());
        HostTensor::from_bytes(t.desc().clone(), bytes)
    }

    fn execute(&self, op: &Op, inputs: &[&Tensor], out: &Tensor, variant: &str) -> Result<()> {
        self.launch(op, inputs, out, variant)?;
        self.launches.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn counters(&self) -> Option<foveate_core::Counters> {
        Some(foveate_core::Counters {
            launches: self.launches.load(Ordering::Relaxed),
            submits: 0,
            host_syncs: 0,
            allocations: self.allocations.load(Ordering::Relaxed),
        })
    }
}
