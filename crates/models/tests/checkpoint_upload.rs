//! A checkpoint's tensors load straight into the backend's tensors (`Backend::upload_with`: on the
//! cpu converted into its storage), not through a host copy handed to `Backend::upload`, whether
//! they keep their stored dtype or are converted or quantised on the way.

use foveate_core::{
    Backend, Counters, DType, HostTensor, MemoryStats, Op, OpKind, Result, Tensor, TensorDesc,
    VariantInfo,
};
use foveate_cpu::CpuBackend;
use foveate_graph::AttentionKind;
use foveate_models::arch::layers::Projections;
use foveate_models::arch::llava::Llava;
use foveate_models::{Model, ModelOptions};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Counts the bytes that reach the wrapped backend through `upload` and through `upload_with`.
struct Counting {
    inner: CpuBackend,
    upload: AtomicUsize,
    upload_with: AtomicUsize,
}

impl Backend for Counting {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn device_name(&self) -> String {
        self.inner.device_name()
    }
    fn dtypes(&self) -> Vec<DType> {
        self.inner.dtypes()
    }
    fn variants(&self, op: OpKind) -> Vec<VariantInfo> {
        self.inner.variants(op)
    }
    fn supports(&self, op: &Op, dtype: DType, variant: &str) -> std::result::Result<(), String> {
        self.inner.supports(op, dtype, variant)
    }
    fn alloc(&self, desc: &TensorDesc) -> Result<Tensor> {
        self.inner.alloc(desc)
    }
    fn upload(&self, host: &HostTensor) -> Result<Tensor> {
        self.upload.fetch_add(host.bytes.len(), Ordering::Relaxed);
        self.inner.upload(host)
    }
    fn upload_with(&self, desc: &TensorDesc, fill: &mut dyn FnMut(&mut [u8])) -> Result<Tensor> {
        self.upload_with
            .fetch_add(desc.size_bytes(), Ordering::Relaxed);
        self.inner.upload_with(desc, fill)
    }
    fn download(&self, t: &Tensor) -> Result<HostTensor> {
        self.inner.download(t)
    }
    fn on_host(&self) -> bool {
        self.inner.on_host()
    }
    fn execute(&self, op: &Op, inputs: &[&Tensor], out: &Tensor, variant: &str) -> Result<()> {
        self.inner.execute(op, inputs, out, variant)
    }
    fn memory_stats(&self) -> Option<MemoryStats> {
        self.inner.memory_stats()
    }
    fn counters(&self) -> Option<Counters> {
        self.inner.counters()
    }
}

#[test]
fn checkpoint_tensors_load_in_place() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../eval/models/easyvqa-tiny"
    );
    for weights in [None, Some(DType::BF16), Some(DType::Int8)] {
        let counting = Arc::new(Counting {
            inner: CpuBackend::fast(),
            upload: AtomicUsize::new(0),
            upload_with: AtomicUsize::new(0),
        });
        let m = Model::load(
            dir,
            counting.clone(),
            ModelOptions {
                dtype: DType::F32,
                attention: AttentionKind::Flash,
                weights,
                kv: None,
            },
        )
        .unwrap();
        let (up, with) = (
            counting.upload.load(Ordering::Relaxed),
            counting.upload_with.load(Ordering::Relaxed),
        );
        // Every weight byte arrived one way or the other, and each layer's stacked q, k, v
        // (`crate::stack`, in place as well); the checkpoint's through `upload_with` (`upload`
        // only for tensors made of zeros, if the model has any).
        let llava = m.arch.as_any().downcast_ref::<Llava>().unwrap();
        let stacked: usize = llava
            .text
            .layers
            .iter()
            .map(|l| match &l.qkv {
                Projections::Stacked(p, _) => {
                    p.w.desc().size_bytes() + p.b.as_ref().map_or(0, |b| b.desc().size_bytes())
                }
                Projections::Apart(_) => panic!("{weights:?}: q, k, v not stacked on the cpu"),
            })
            .sum();
        assert_eq!(
            up + with,
            m.weights_bytes + stacked,
            "{weights:?}: {up} + {with}"
        );
        assert!(
            with as f64 >= 0.95 * m.weights_bytes as f64,
            "{weights:?}: only {with} of {} weight bytes loaded in place ({up} through a host copy)",
            m.weights_bytes
        );
        eprintln!("{weights:?}: {with} bytes in place, {up} through upload");
    }
}
