//! Runs ops on a backend with outputs from the pool, and picks the attention kernel variant.

use crate::pool::{Buf, Pool};
use foveate_core::{registry::attention, AttentionSpec, Backend, BlockLayout, DType, Error, HostTensor, Mask, Op, Result, Tensor};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

/// Which attention kernel family the graph uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionKind {
    Naive,
    Flash,
    /// Block-sparse kernels with a layout that keeps every block the model's own mask needs
    /// (dense for causal/full attention, the window's blocks for sliding-window layers).
    BlockSparse,
}

impl AttentionKind {
    pub fn name(self) -> &'static str {
        match self {
            AttentionKind::Naive => attention::NAIVE,
            AttentionKind::Flash => attention::FLASH,
            AttentionKind::BlockSparse => attention::BLOCK_SPARSE,
        }
    }
}

impl FromStr for AttentionKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "naive" => Ok(AttentionKind::Naive),
            "flash" => Ok(AttentionKind::Flash),
            "block-sparse" | "block_sparse" => Ok(AttentionKind::BlockSparse),
            other => Err(format!("unknown attention `{other}` (supported: naive, flash, block-sparse)")),
        }
    }
}

/// Block size of the block-sparse layouts the graph builds.
pub const SPARSE_BLOCK: usize = 16;

/// The key of a block layout: the attention shape and the element mask it stands for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct LayoutKey {
    q_len: usize,
    kv_len: usize,
    /// 0: dense over `None`, 1: dense over `Causal`, w + 2: sliding window `w`.
    mask: usize,
}

/// How many layouts a model keeps (the shapes of the current request's prefill and decode steps).
const LAYOUT_CACHE: usize = 64;

pub struct Exec {
    pub backend: Arc<dyn Backend>,
    pub pool: Pool,
    pub dtype: DType,
    /// The KV caches' dtype: the compute dtype unless [`Exec::with_kv_dtype`].
    pub kv_dtype: DType,
    pub attention: AttentionKind,
    /// Block-sparse layouts by shape: built once and shared by every layer (and by every later
    /// request of the same shape), so a layer never rebuilds its table on the host.
    layouts: Mutex<HashMap<LayoutKey, Arc<BlockLayout>>>,
}

impl Exec {
    pub fn new(backend: Arc<dyn Backend>, dtype: DType, attention: AttentionKind) -> Self {
        Exec { pool: Pool::new(backend.clone()), backend, dtype, kv_dtype: dtype, attention, layouts: Mutex::new(HashMap::new()) }
    }

    /// KV caches in `kv` (f32, f16 or bf16) whatever the compute dtype: appended rows are cast to
    /// it, attention reads it as stored (`Op::cache_slots`). A cache in another dtype than the
    /// compute dtype runs on the cpu backends only (the GPU kernels read K and V in the queries'
    /// dtype); elsewhere it is refused here, before anything is allocated.
    pub fn with_kv_dtype(mut self, kv: DType) -> Result<Self> {
        if !kv.is_float() {
            return Err(Error::Msg(format!("--kv-dtype {kv}: a KV cache is f32, f16 or bf16")));
        }
        if kv != self.dtype && !self.backend.on_host() {
            return Err(Error::unsupported(
                self.backend.name(),
                format!(
                    "a KV cache in {kv} under {} compute runs on the cpu backend only (--kv-dtype {}, or --dtype {kv})",
                    self.dtype, self.dtype
                ),
            ));
        }
        self.kv_dtype = kv;
        Ok(self)
    }

    /// Runs `op` into a fresh pooled output.
    pub fn run(&self, op: &Op, inputs: &[&Tensor]) -> Result<Buf> {
        self.run_variant(op, inputs, "")
    }

    pub fn run_variant(&self, op: &Op, inputs: &[&Tensor], variant: &str) -> Result<Buf> {
        let descs: Vec<_> = inputs.iter().map(|t| t.desc()).collect();
        let out_desc = op.infer(&descs)?;
        let out = self.pool.alloc(&out_desc)?;
        self.backend.execute(op, inputs, &out, variant)?;
        Ok(out)
    }

    /// Rows `ids` of the token embedding table `table`, in the compute dtype: a table stored in
    /// another float format (f16 under f32 compute on the cpu, `Formats::narrow_host`) gives rows
    /// in its own dtype, cast here (only the looked-up rows).
    pub fn embed(&self, table: &Tensor, ids: &Tensor) -> Result<Buf> {
        let rows = self.run(&Op::Embedding, &[table, ids])?;
        if rows.dtype() == self.dtype {
            return Ok(rows);
        }
        self.run(&Op::Cast { to: self.dtype }, &[&rows])
    }

    /// Writes `new` into `cache` in place (cast to the cache's dtype first where they differ).
    pub fn kv_append(&self, cache: &Tensor, new: &Tensor, pos: usize) -> Result<()> {
        let capacity = cache.dims()[1];
        let op = Op::KvAppend(foveate_core::KvAppendSpec { capacity, pos });
        if new.dtype() != cache.dtype() {
            let cast = self.run(&Op::Cast { to: cache.dtype() }, &[new])?;
            return self.backend.execute(&op, &[&cast], cache, "");
        }
        self.backend.execute(&op, &[new], cache, "")
    }

    pub fn upload(&self, host: &HostTensor) -> Result<Tensor> {
        self.backend.upload(host)
    }

    /// Uploads f32 values in the compute dtype.
    pub fn upload_f32(&self, shape: &[usize], v: &[f32]) -> Result<Tensor> {
        self.backend.upload(&HostTensor::from_f32(self.dtype, shape.to_vec(), v))
    }

    pub fn upload_u32(&self, shape: &[usize], v: &[u32]) -> Result<Tensor> {
        self.backend.upload(&HostTensor::from_u32(shape.to_vec(), v))
    }

    /// Attention with the model's mask `base` (`None`, `Causal` or `SlidingWindow`), using the
    /// chosen kernel family; block-sparse gets a layout equivalent to `base`, from the cache.
    pub fn attention(&self, mut spec: AttentionSpec, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Buf> {
        if self.attention == AttentionKind::BlockSparse {
            spec.mask = Mask::BlockSparse(self.layout(spec.q_len, spec.kv_len, &spec.mask)?);
        }
        let op = Op::Attention(spec.clone());
        let variant = self.attention_variant(&op, &spec)?;
        self.run_variant(&op, &[q, k, v], variant)
    }

    /// The block layout equivalent to `base` for this shape, built on first use.
    fn layout(&self, q_len: usize, kv_len: usize, base: &Mask) -> Result<Arc<BlockLayout>> {
        let mask = match base {
            Mask::None => 0,
            Mask::Causal => 1,
            Mask::SlidingWindow { window } => window + 2,
            Mask::BlockSparse(l) => return Ok(l.clone()),
        };
        let key = LayoutKey { q_len, kv_len, mask };
        let mut cache = self.layouts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(l) = cache.get(&key) {
            return Ok(l.clone());
        }
        let l = Arc::new(match base {
            Mask::SlidingWindow { window } => BlockLayout::sliding_window(SPARSE_BLOCK, q_len, kv_len, *window),
            _ => BlockLayout::dense(SPARSE_BLOCK, q_len, kv_len, base.clone()),
        });
        if cache.len() >= LAYOUT_CACHE {
            cache.clear();
        }
        cache.insert(key, l.clone());
        Ok(l)
    }

    /// Layouts built so far (for tests: a layer must not build its own).
    pub fn layouts_built(&self) -> usize {
        self.layouts.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The registered variant for this launch: the chosen family through the one policy
    /// (`registry::pick_attention`: decode goes to `flash-decode` where a backend has it).
    fn attention_variant(&self, op: &Op, spec: &AttentionSpec) -> Result<&'static str> {
        foveate_core::registry::pick_attention(self.attention.name(), spec, &|v| self.backend.supports(op, self.dtype, v))
            .map_err(|why| Error::unsupported(self.backend.name(), format!("attention `{}` for {} in {}: {why}", self.attention.name(), op.label(), self.dtype)))
    }
}
