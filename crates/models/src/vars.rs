//! One weight source for every way a model gets its tensors. An architecture's builder asks a
//! [`TensorSource`] for each tensor by its part, its name inside that part, its shape and its
//! [`Role`]; the source decides where the values come from:
//!
//! * [`CheckpointSource`]: the checkpoint's safetensors (name aliases resolved), converted to the
//!   compute dtype and uploaded tensor by tensor, so host memory stays at one tensor;
//! * [`RandomSource`]: deterministic random values of the right scale (benchmarks of builtin
//!   shapes with no checkpoint);
//! * [`Recorder`]: nothing is read or uploaded, the request is recorded: the list of tensors a
//!   model reads (its manifest), which the tiny-checkpoint writer ([`crate::synth`]) writes.
//!
//! So the assembly of a model from tensor names exists once, in its builder.

use crate::checkpoint::Checkpoint;
use crate::formats::{FormatBytes, Formats};
use crate::names::Part;
use foveate_core::{Backend, DType, HostTensor, Result, Storage, Tensor, TensorDesc};
use std::any::Any;
use std::sync::Arc;

/// What a tensor is for: decides random values, and documents the builder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A projection / conv weight `[out, in...]` (fan-in = the product of the trailing dims).
    Weight,
    Bias,
    /// A norm's scale (LayerNorm gamma, RMSNorm weight).
    Norm,
    /// A LayerNorm's shift.
    NormBias,
    /// Token embeddings.
    Embedding,
    /// Learned position embeddings.
    Position,
    /// A learned token (CLIP's class embedding).
    Class,
    /// The LM head `[vocab, d]` (its own tensor, or the tied embedding table read a second time
    /// as a head when its format differs from the table's: [`TensorSource::separate_head`]).
    Head,
}

/// One tensor a model reads.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub part: Part,
    pub name: String,
    pub shape: Vec<usize>,
    pub role: Role,
}

/// Where a builder's tensors come from.
pub trait TensorSource {
    /// Tensor `name` of `part`, of `shape`, on the device.
    fn tensor(&mut self, part: Part, name: &str, shape: &[usize], role: Role) -> Result<Tensor>;
    /// A zero tensor (a bias the checkpoint does not have).
    fn zeros(&mut self, shape: &[usize]) -> Result<Tensor>;
    /// Bytes of everything provided so far.
    fn bytes(&self) -> usize;
    /// Bytes per stored format of everything provided so far.
    fn bytes_by_format(&self) -> FormatBytes {
        FormatBytes(vec![(DType::F32, self.bytes())])
    }
    /// Does a tied LM head need its own tensor (the head's format differs from the embedding
    /// table's)? Then the builder asks for the table a second time with [`Role::Head`].
    fn separate_head(&self) -> bool {
        false
    }
    /// `parts` (tensors this source gave, one format, equal widths) stacked by rows into one
    /// tensor when its backend computes one product faster than several: the cpu backends (one
    /// parallel region instead of one per part, [`crate::stack`]). `None` keeps them apart: the
    /// default, GPU backends (not measured), and the [`Recorder`] (which notes the group for the
    /// load budget: the stacked copy is made while the parts are alive). A caller drops the parts
    /// once it holds the stack; [`TensorSource::bytes`] keeps counting them once.
    fn fuse_rows(&mut self, _parts: &[&Tensor]) -> Result<Option<Tensor>> {
        Ok(None)
    }
}

/// [`TensorSource::fuse_rows`] of a source uploading to `backend`.
fn fuse_on(backend: &dyn Backend, parts: &[&Tensor]) -> Result<Option<Tensor>> {
    if !backend.on_host() || parts.len() < 2 {
        return Ok(None);
    }
    crate::stack::stack_rows(backend, parts).map(Some)
}

/// A prefix inside a part: `Scope::new(Part::Vision, "encoder.layers.3.")`, then
/// `s.get(src, "mlp.fc1.weight", ..)` asks for `encoder.layers.3.mlp.fc1.weight`.
#[derive(Clone, Debug)]
pub struct Scope {
    pub part: Part,
    pub prefix: String,
}

impl Scope {
    pub fn new(part: Part, prefix: impl Into<String>) -> Self {
        Scope {
            part,
            prefix: prefix.into(),
        }
    }
    /// A sub-scope: `prefix + p + "."`.
    pub fn pp(&self, p: impl std::fmt::Display) -> Scope {
        Scope {
            part: self.part,
            prefix: format!("{}{p}.", self.prefix),
        }
    }
    pub fn get(
        &self,
        src: &mut dyn TensorSource,
        name: &str,
        shape: &[usize],
        role: Role,
    ) -> Result<Tensor> {
        src.tensor(self.part, &format!("{}{name}", self.prefix), shape, role)
    }
}

/// The checkpoint's tensors, uploaded to `backend` in the formats of [`Formats`] (the compute
/// dtype unless [`CheckpointSource::with_formats`]), tensor by tensor: host memory stays at one
/// tensor (and its f32 temporary while it is quantised). A quantised checkpoint's tensors
/// ([`crate::qcheckpoint`]) are uploaded as stored.
pub struct CheckpointSource<'a> {
    pub ck: &'a Checkpoint,
    pub backend: &'a dyn Backend,
    pub dtype: DType,
    pub formats: Formats,
    /// Tensors a quantised format was refused for (rows not a multiple of 32): kept in `dtype`.
    pub kept: Vec<String>,
    bytes: FormatBytes,
}

impl<'a> CheckpointSource<'a> {
    pub fn new(ck: &'a Checkpoint, backend: &'a dyn Backend, dtype: DType) -> Self {
        CheckpointSource {
            ck,
            backend,
            dtype,
            formats: Formats::uniform(dtype),
            kept: Vec::new(),
            bytes: FormatBytes::default(),
        }
    }
    /// Every tensor in the format `formats` gives it (its compute dtype must be this source's).
    pub fn with_formats(mut self, formats: Formats) -> Self {
        debug_assert_eq!(formats.compute, self.dtype);
        self.formats = formats;
        self
    }
}

impl TensorSource for CheckpointSource<'_> {
    fn tensor(&mut self, part: Part, name: &str, shape: &[usize], role: Role) -> Result<Tensor> {
        let (fmt, kept) = self.formats.of(part, role, shape);
        if kept {
            self.kept.push(format!("{}.{name} {shape:?}", part.name()));
        }
        let t = self
            .ck
            .upload_for(part, name, shape, role, fmt, self.backend)?;
        self.bytes.add(fmt, t.desc().size_bytes());
        Ok(t)
    }
    fn zeros(&mut self, shape: &[usize]) -> Result<Tensor> {
        zeros(self.backend, self.dtype, shape, &mut self.bytes)
    }
    fn bytes(&self) -> usize {
        self.bytes.total()
    }
    fn bytes_by_format(&self) -> FormatBytes {
        self.bytes.clone()
    }
    fn separate_head(&self) -> bool {
        self.formats.separate_head()
    }
    fn fuse_rows(&mut self, parts: &[&Tensor]) -> Result<Option<Tensor>> {
        fuse_on(self.backend, parts)
    }
}

fn zeros(
    backend: &dyn Backend,
    dtype: DType,
    shape: &[usize],
    bytes: &mut FormatBytes,
) -> Result<Tensor> {
    let h = HostTensor::filled(dtype, shape.to_vec(), 0.0);
    bytes.add(dtype, h.bytes.len());
    backend.upload(&h)
}

/// Random weights of the right scale, for timing a shape without a checkpoint: weights uniform in
/// ±1/sqrt(fan_in) (activations stay O(1) through the layers), biases and LayerNorm shifts ±0.02,
/// norm scales 1, embeddings ±1, position embeddings ±0.1, class tokens ±0.5. Deterministic: the
/// same seed gives the same weights.
pub struct RandomSource<'a> {
    pub backend: &'a dyn Backend,
    pub dtype: DType,
    pub formats: Formats,
    state: u64,
    bytes: FormatBytes,
}

impl<'a> RandomSource<'a> {
    pub fn new(backend: &'a dyn Backend, dtype: DType, seed: u64) -> Self {
        RandomSource {
            backend,
            dtype,
            formats: Formats::uniform(dtype),
            state: seed ^ GOLDEN,
            bytes: FormatBytes::default(),
        }
    }
    /// Every tensor in the format `formats` gives it (its compute dtype must be this source's).
    pub fn with_formats(mut self, formats: Formats) -> Self {
        debug_assert_eq!(formats.compute, self.dtype);
        self.formats = formats;
        self
    }
}

/// splitmix64's step.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// Draw `i` (from 0) after `state`: splitmix64, uniform in [-1, 1). A counter-based stream, so a
/// tensor's values are drawn in parallel chunks and are the same whatever the chunking.
#[inline(always)]
fn unit_at(state: u64, i: usize) -> f32 {
    let mut z = state.wrapping_add((i as u64).wrapping_add(1).wrapping_mul(GOLDEN));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

/// `out[i] = offset + scale · unit_at(state, start + i)`: on AVX-512 DQ the same loop compiled
/// for its 64-bit lane multiplies and conversions (eight draws at a time, the same values), which
/// halves a random 7B load (drawing was half of it).
fn draw(state: u64, start: usize, offset: f32, scale: f32, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512dq") {
        // SAFETY: the features are present.
        return unsafe { draw_avx512(state, start, offset, scale, out) };
    }
    draw_scalar(state, start, offset, scale, out)
}

#[inline(always)]
fn draw_scalar(state: u64, start: usize, offset: f32, scale: f32, out: &mut [f32]) {
    for (i, o) in out.iter_mut().enumerate() {
        *o = offset + scale * unit_at(state, start + i);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
fn draw_avx512(state: u64, start: usize, offset: f32, scale: f32, out: &mut [f32]) {
    draw_scalar(state, start, offset, scale, out)
}

impl TensorSource for RandomSource<'_> {
    fn tensor(&mut self, part: Part, _: &str, shape: &[usize], role: Role) -> Result<Tensor> {
        let scale = match role {
            Role::Weight | Role::Head => {
                1.0 / (shape[1..].iter().product::<usize>().max(1) as f32).sqrt()
            }
            Role::Bias | Role::NormBias => 0.02,
            Role::Norm => 0.0,
            Role::Embedding => 1.0,
            Role::Position => 0.1,
            Role::Class => 0.5,
        };
        let offset = if role == Role::Norm { 1.0 } else { 0.0 };
        let fmt = self.formats.of(part, role, shape).0;
        // Drawn a chunk at a time straight into the tensor's bytes (no whole-tensor f32
        // temporary; on the cpu no host copy either: `upload_with` writes its storage).
        let desc = TensorDesc::new(fmt, shape.to_vec());
        let n = desc.numel();
        let state = self.state;
        let t = self.backend.upload_with(&desc, &mut |bytes| {
            HostTensor::encode_f32_chunks(fmt, bytes, n, |start, out| {
                draw(state, start, offset, scale, out)
            })
        })?;
        self.state = state.wrapping_add((n as u64).wrapping_mul(GOLDEN));
        self.bytes.add(fmt, desc.size_bytes());
        Ok(t)
    }
    fn zeros(&mut self, shape: &[usize]) -> Result<Tensor> {
        zeros(self.backend, self.dtype, shape, &mut self.bytes)
    }
    fn bytes(&self) -> usize {
        self.bytes.total()
    }
    fn bytes_by_format(&self) -> FormatBytes {
        self.bytes.clone()
    }
    fn separate_head(&self) -> bool {
        self.formats.separate_head()
    }
    fn fuse_rows(&mut self, parts: &[&Tensor]) -> Result<Option<Tensor>> {
        fuse_on(self.backend, parts)
    }
}

/// Records what a builder asks for; hands out placeholder tensors with no device memory (a model
/// built from a recorder can be inspected, never run). With `formats`, a tied LM head whose format
/// differs from the table's is recorded a second time with [`Role::Head`] (what a quantised
/// checkpoint stores).
#[derive(Default)]
pub struct Recorder {
    pub entries: Vec<Entry>,
    pub formats: Option<Formats>,
    /// Shapes of the zero tensors asked for (biases a checkpoint lacks), in the compute dtype.
    pub zeros: Vec<Vec<usize>>,
    /// Groups of entries (indices into `entries`) the builder asked to fuse
    /// ([`TensorSource::fuse_rows`]; recorded, never fused here).
    pub fused: Vec<Vec<usize>>,
}

/// Bytes, and the index of the entry it stands for (None for zeros).
struct Placeholder(usize, Option<usize>);

impl Storage for Placeholder {
    fn backend(&self) -> &'static str {
        "recorder"
    }
    fn size_bytes(&self) -> usize {
        self.0
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Recorder {
    fn placeholder(shape: &[usize], entry: Option<usize>) -> Tensor {
        let desc = TensorDesc::new(DType::F32, shape.to_vec());
        Tensor::new(Arc::new(Placeholder(desc.size_bytes(), entry)), desc)
    }
}

impl TensorSource for Recorder {
    fn tensor(&mut self, part: Part, name: &str, shape: &[usize], role: Role) -> Result<Tensor> {
        self.entries.push(Entry {
            part,
            name: name.to_string(),
            shape: shape.to_vec(),
            role,
        });
        Ok(Self::placeholder(shape, Some(self.entries.len() - 1)))
    }
    fn zeros(&mut self, shape: &[usize]) -> Result<Tensor> {
        self.zeros.push(shape.to_vec());
        Ok(Self::placeholder(shape, None))
    }
    fn bytes(&self) -> usize {
        self.bytes_by_format().total()
    }
    fn bytes_by_format(&self) -> FormatBytes {
        let f = self.formats.unwrap_or(Formats::uniform(DType::F32));
        let mut b = FormatBytes::default();
        for e in &self.entries {
            let fmt = f.of(e.part, e.role, &e.shape).0;
            b.add(
                fmt,
                foveate_core::quant::bytes_for(fmt, e.shape.iter().product()),
            );
        }
        for z in &self.zeros {
            b.add(f.compute, f.compute.size() * z.iter().product::<usize>());
        }
        b
    }
    fn separate_head(&self) -> bool {
        self.formats.is_some_and(|f| f.separate_head())
    }
    fn fuse_rows(&mut self, parts: &[&Tensor]) -> Result<Option<Tensor>> {
        let entries: Option<Vec<usize>> = parts
            .iter()
            .map(|t| t.storage_as::<Placeholder>().and_then(|p| p.1))
            .collect();
        // Zeros (no entry) stay out of the budget's fused groups: a few bias bytes.
        if let Some(group) = entries {
            self.fused.push(group);
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random weights are the sequential splitmix64 stream, tensor after tensor, however a
    /// tensor's chunks are drawn (in parallel, in any order): the same seed gives the same model.
    #[test]
    fn random_weights_are_one_sequential_stream() {
        let cpu = foveate_cpu::CpuBackend::fast();
        let mut src = RandomSource::new(&cpu, DType::F32, 17);
        // Two and a half load chunks, then a small tensor continuing the stream.
        let (rows, k) = (5, HostTensor::LOAD_CHUNK / 2);
        let a = src
            .tensor(Part::Text, "a", &[rows, k], Role::Weight)
            .unwrap();
        let b = src
            .tensor(Part::Text, "b", &[4, 8], Role::Embedding)
            .unwrap();
        let mut state = 17 ^ 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        let scale = 1.0 / (k as f32).sqrt();
        let want_a: Vec<f32> = (0..rows * k).map(|_| scale * next()).collect();
        let want_b: Vec<f32> = (0..32).map(|_| next()).collect();
        assert!(
            cpu.download(&a).unwrap().to_f32() == want_a,
            "weight a: not the stream's values"
        );
        assert!(
            cpu.download(&b).unwrap().to_f32() == want_b,
            "embedding b: the stream does not continue"
        );
    }

    /// The dispatched draw (AVX-512 where present) gives the scalar loop's values at every
    /// length and start.
    #[test]
    fn vector_draws_are_the_scalar_values() {
        #[cfg(target_arch = "x86_64")]
        let vector = is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512dq");
        #[cfg(not(target_arch = "x86_64"))]
        let vector = false;
        if !vector {
            eprintln!("skipped: no AVX-512 DQ on this CPU, draw runs the scalar loop only");
            return;
        }
        for (start, len) in [
            (0, 0),
            (0, 1),
            (5, 7),
            (3, 8),
            (11, 17),
            (1 << 40, 1000),
            (usize::MAX - 64, 60),
        ] {
            let (mut got, mut want) = (vec![0f32; len], vec![0f32; len]);
            draw(0x1234_5678_9abc_def0, start, 1.0, 0.37, &mut got);
            draw_scalar(0x1234_5678_9abc_def0, start, 1.0, 0.37, &mut want);
            assert!(got == want, "start {start}, len {len}");
        }
    }
}
