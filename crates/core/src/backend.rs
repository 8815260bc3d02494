use crate::{DType, HostTensor, Op, OpKind, Result, Tensor, TensorDesc, VariantInfo};

/// Device memory counters, where the backend can tell.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryStats {
    pub allocated_bytes: u64,
    pub peak_bytes: u64,
}

/// Host-side work a backend has done since it was made, where it counts it: the overheads a
/// decode step must not have (a submit per op, a synchronize per op, an allocation per step).
/// Tests and `foveate bench -o json` read differences between two snapshots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counters {
    /// Kernel launches / dispatches.
    pub launches: u64,
    /// Command submissions to the device queue (wgpu `queue.submit`, CUDA graph launches).
    pub submits: u64,
    /// Times the host waited for the device (synchronize, a blocking download).
    pub host_syncs: u64,
    /// Device buffers created (tensors, scratch, uniforms).
    pub allocations: u64,
}

impl Counters {
    /// `self - earlier`, field by field.
    pub fn since(&self, earlier: &Counters) -> Counters {
        Counters {
            launches: self.launches - earlier.launches,
            submits: self.submits - earlier.submits,
            host_syncs: self.host_syncs - earlier.host_syncs,
            allocations: self.allocations - earlier.allocations,
        }
    }
}

/// A compute device. One dispatch (`execute`) covers every op, so a backend is small and every
/// op goes through the same validation. Implementations call [`Op::infer`] on the inputs and
/// check that `out` matches before launching anything.
///
/// `out` is allocated by the caller (the graph's buffer planner, or the tests, which poison it
/// with NaN so an unwritten element fails). It must not share storage with an input, except for
/// `Op::KvAppend`, whose output is the cache it updates in place.
pub trait Backend: Send + Sync {
    /// Short name: `cpu`, `cpu-oracle`, `wgpu`, `cuda`.
    fn name(&self) -> &str;
    /// The device in words (adapter name, GPU name, CPU threads).
    fn device_name(&self) -> String;
    /// Float dtypes this backend computes in.
    fn dtypes(&self) -> Vec<DType>;
    /// Registered variants of one op family; the first is the default.
    fn variants(&self, op: OpKind) -> Vec<VariantInfo>;
    /// Whether `variant` can run `op` on inputs of `dtype`; the error says why not
    /// (e.g. `flash-decode` needs q_len = 1). An empty variant means the default.
    fn supports(&self, op: &Op, dtype: DType, variant: &str) -> std::result::Result<(), String>;

    /// An uninitialised tensor (contents unspecified).
    fn alloc(&self, desc: &TensorDesc) -> Result<Tensor>;
    fn upload(&self, host: &HostTensor) -> Result<Tensor>;
    /// A tensor of `desc` whose bytes `fill` writes (given zeroed, exactly `desc.size_bytes()`
    /// long). The default fills a host buffer and uploads it; a backend whose tensors live in
    /// host memory lets `fill` write them in place, so a load never holds a tensor twice.
    fn upload_with(&self, desc: &TensorDesc, fill: &mut dyn FnMut(&mut [u8])) -> Result<Tensor> {
        let mut bytes = vec![0u8; desc.size_bytes()];
        fill(&mut bytes);
        self.upload(&HostTensor { desc: desc.clone(), bytes })
    }
    fn download(&self, t: &Tensor) -> Result<HostTensor>;
    /// Does this backend keep its tensors in host memory and compute on the host (the cpu
    /// backends)? What only the host kernels read keys on it: 16-bit weights and embedding tables
    /// under f32 compute (`Formats::narrow_host`), a KV cache in another dtype than the compute
    /// dtype. A test double wrapping a backend forwards it (`foveate_testkit::forward_backend!`).
    fn on_host(&self) -> bool {
        false
    }
    /// Runs `op` on `inputs`, writing `out`. An empty variant means the default.
    fn execute(&self, op: &Op, inputs: &[&Tensor], out: &Tensor, variant: &str) -> Result<()>;
    /// Waits for queued work (timing boundaries).
    fn synchronize(&self) -> Result<()> {
        Ok(())
    }
    fn memory_stats(&self) -> Option<MemoryStats> {
        None
    }
    /// Work counters, where the backend keeps them (`None`: it does not count).
    fn counters(&self) -> Option<Counters> {
        None
    }
}

/// Validates, allocates the output and executes: the convenience form of [`Backend::execute`].
pub fn run(backend: &dyn Backend, op: &Op, inputs: &[&Tensor], variant: &str) -> Result<Tensor> {
    let descs: Vec<&TensorDesc> = inputs.iter().map(|t| t.desc()).collect();
    let out_desc = op.infer(&descs)?;
    let out = backend.alloc(&out_desc)?;
    backend.execute(op, inputs, &out, variant)?;
    Ok(out)
}

/// Shared host-side check for `execute`: infers the output, compares with `out`, and rejects
/// aliasing. Returns the inferred output descriptor.
pub fn check_launch(op: &Op, inputs: &[&Tensor], out: &Tensor) -> Result<TensorDesc> {
    let descs: Vec<&TensorDesc> = inputs.iter().map(|t| t.desc()).collect();
    let want = op.infer(&descs)?;
    // A tensor's storage must hold what its descriptor says, or a kernel would read or write
    // past the end of the buffer.
    for (i, t) in inputs.iter().copied().chain(std::iter::once(out)).enumerate() {
        let (have, need) = (t.storage().size_bytes(), t.desc().size_bytes());
        if have < need {
            let which = if i < inputs.len() { format!("input {i}") } else { "output".into() };
            return Err(crate::Error::shape(
                op.name(),
                format!("{which} {} needs {need} bytes but its buffer holds {have}", t.desc()),
            ));
        }
    }
    if out.desc() != &want {
        return Err(crate::Error::shape(op.name(), format!("output is {}, expected {want}", out.desc())));
    }
    if !matches!(op, Op::KvAppend(_)) {
        if let Some(i) = inputs.iter().position(|t| t.same_storage(out)) {
            return Err(crate::Error::shape(op.name(), format!("output shares storage with input {i}")));
        }
    }
    Ok(want)
}

/// For backends whose kernels read weights in the activations' dtype only: refuses an op whose
/// weight or KV cache is stored in another format (int8/int4 groups, or 16-bit under f32), naming
/// the input.
pub fn refuse_mixed_weights(backend: &str, op: &Op, inputs: &[&Tensor]) -> Result<()> {
    let descs: Vec<&TensorDesc> = inputs.iter().map(|t| t.desc()).collect();
    match op.mixed_weights(&descs) {
        None => Ok(()),
        Some((i, w)) => Err(crate::Error::unsupported(
            backend,
            format!(
                "{} with input {i} stored as {w} under {} activations (weights or a KV cache in \
                 another format than the compute dtype run on the cpu backend: --backend cpu, or \
                 --weights / --kv-dtype {})",
                op.name(),
                descs[0].dtype,
                descs[0].dtype
            ),
        )),
    }
}
