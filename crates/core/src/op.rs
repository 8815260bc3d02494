//! Ops and their specs. An op's inputs are positional; each variant documents its inputs, their
//! shapes and its output. [`Op::infer`] checks the inputs on the host and returns the output
//! descriptor: every backend calls it before a launch, so a shape mismatch is an error, never an
//! out-of-bounds access.
//!
//! Dtype rule: all float inputs of an op share one dtype, which is also the output's (f16/bf16
//! are storage types; kernels accumulate in f32). Token ids and positions are `u32`.
//! Exceptions: `Cast` (output dtype from the spec) and `Argmax` (output `u32`), and the weights
//! of `Gemm` and `GeluMlp` ([`Op::weight_slots`]), which may be stored in a weight format of their
//! own (f16/bf16, int8/int4 groups: [`DType::WEIGHTS`]).

pub use crate::rope::{RopeFreqs, RopeSpec, ROPE_MAX_SECTIONS};
use crate::{DType, Error, Mask, Result, Shape, TensorDesc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Element-wise activations, used standalone and in GEMM/MLP epilogues.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    None,
    /// Exact erf GELU (PyTorch default, HF `gelu`).
    GeluErf,
    /// tanh approximation (HF `gelu_pytorch_tanh`, `gelu_new`).
    GeluTanh,
    /// x * sigmoid(1.702 x) (HF `quick_gelu`, CLIP).
    QuickGelu,
    /// x * sigmoid(x) (HF `silu`).
    Silu,
}

impl Activation {
    pub const ALL: [Activation; 5] =
        [Activation::None, Activation::GeluErf, Activation::GeluTanh, Activation::QuickGelu, Activation::Silu];
    pub const GELUS: [Activation; 3] = [Activation::GeluErf, Activation::GeluTanh, Activation::QuickGelu];

    pub fn name(self) -> &'static str {
        match self {
            Activation::None => "none",
            Activation::GeluErf => "gelu",
            Activation::GeluTanh => "gelu_tanh",
            Activation::QuickGelu => "quick_gelu",
            Activation::Silu => "silu",
        }
    }

    /// Maps an HF config `hidden_act` / `projector_hidden_act` string.
    pub fn from_hf(s: &str) -> Option<Self> {
        Some(match s {
            "gelu" => Activation::GeluErf,
            "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast" => Activation::GeluTanh,
            "quick_gelu" => Activation::QuickGelu,
            "silu" | "swish" => Activation::Silu,
            "linear" | "identity" => Activation::None,
            _ => return None,
        })
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Activation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Activation::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .or_else(|| Activation::from_hf(s))
            .ok_or_else(|| format!("unknown activation `{s}` (supported: none, gelu, gelu_tanh, quick_gelu, silu)"))
    }
}

/// `out = act(a · wᵀ + bias) + residual`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GemmSpec {
    pub act: Activation,
    pub bias: bool,
    pub residual: bool,
}

impl GemmSpec {
    pub fn plain() -> Self {
        GemmSpec { act: Activation::None, bias: false, residual: false }
    }
}

/// Scaled dot-product attention. Layouts are token-major, so projections need no transposes:
/// q `[batch, q_len, q_heads, head_dim]`, k and v `[batch, kv_capacity, kv_heads, head_dim]` of
/// which the first `kv_len` rows are used, output `[batch, q_len, q_heads, head_dim]`.
/// Query head `h` reads KV head `h / (q_heads / kv_heads)` (GQA/MQA). See [`Mask`] for the masks.
#[derive(Clone, Debug, PartialEq)]
pub struct AttentionSpec {
    pub batch: usize,
    pub q_heads: usize,
    pub kv_heads: usize,
    pub q_len: usize,
    pub kv_len: usize,
    /// Rows allocated per batch in k and v (>= kv_len): the KV cache's capacity.
    pub kv_capacity: usize,
    pub head_dim: usize,
    pub scale: f32,
    pub mask: Mask,
}

impl AttentionSpec {
    /// A spec with `kv_capacity = kv_len` and `scale = 1/sqrt(head_dim)`.
    pub fn new(batch: usize, q_heads: usize, kv_heads: usize, q_len: usize, kv_len: usize, head_dim: usize, mask: Mask) -> Self {
        AttentionSpec {
            batch,
            q_heads,
            kv_heads,
            q_len,
            kv_len,
            kv_capacity: kv_len,
            head_dim,
            scale: 1.0 / (head_dim as f32).sqrt(),
            mask,
        }
    }

    pub fn group(&self) -> usize {
        self.q_heads / self.kv_heads.max(1)
    }

    /// FLOPs as reported: 4·B·H·Sq·Sk·D, halved for a causal mask (dense mask otherwise).
    pub fn flops(&self) -> f64 {
        let f = 4.0 * (self.batch * self.q_heads * self.q_len * self.kv_len * self.head_dim) as f64;
        if self.mask.is_causal_like() && self.q_len > 1 { f / 2.0 } else { f }
    }
}

/// Fused MLP: `out = act(x · w1ᵀ + b1) · w2ᵀ + b2 (+ residual)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MlpSpec {
    pub act: Activation,
    pub residual: bool,
}

/// ViT patch embedding: a conv with kernel = stride = `patch`, optional bias, optional CLS row
/// (prepended), optional position embedding (added to every row, CLS included).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PatchEmbedSpec {
    pub patch: usize,
    pub bias: bool,
    pub cls: bool,
    pub pos: bool,
}

/// Writes `new` into the cache at rows `pos..pos+len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KvAppendSpec {
    pub capacity: usize,
    pub pos: usize,
}

/// Every op a LLaVA-family model needs. Inputs are listed in order; `?` marks an input present
/// only when the spec says so.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// a `[.., K]`, w `[N, K]`, bias? `[N]`, residual? `[.., N]` → `[.., N]`.
    Gemm(GemmSpec),
    /// q, k, v (see [`AttentionSpec`]) → `[B, Sq, Hq, D]`.
    Attention(AttentionSpec),
    /// x `[.., D]`, w1 `[H, D]`, b1 `[H]`, w2 `[O, H]`, b2 `[O]`, residual? `[.., O]` → `[.., O]`.
    GeluMlp(MlpSpec),
    /// pixels `[B, C, Hi, Wi]`, w `[E, C, P, P]`, bias? `[E]`, cls? `[E]`, pos? `[T, E]` → `[B, T, E]`
    /// with `T = (Hi/P)·(Wi/P) + cls`.
    PatchEmbed(PatchEmbedSpec),
    /// x `[.., D]`, gamma `[D]`, beta `[D]` → `[.., D]` (biased variance).
    LayerNorm { eps: f32 },
    /// x `[.., D]`, w `[D]` → `x · rsqrt(mean(x²) + eps) · w`.
    RmsNorm { eps: f32 },
    /// x `[B, S, H, D]`, positions u32 `[A, B, S]` (A = sections; `[B, S]` when A = 1) → `[B, S, H, D]`.
    Rope(RopeSpec),
    /// table `[V, D]`, ids u32 `[..]` → `[.., D]`; an id >= V gives a row of zeros.
    Embedding,
    /// a, b (same shape) → a + b.
    Add,
    /// a, b (same shape) → a · b.
    Mul,
    /// gate, up (same shape) → silu(gate) · up.
    SwiGlu,
    /// x → act(x).
    Unary(Activation),
    /// x `[.., D]` → softmax over the last dim.
    Softmax,
    /// x `[.., D]` → u32 `[..]`: index of the max of the last dim (first one on ties; NaN ignored).
    Argmax,
    /// x → x as `to` (round to nearest even).
    Cast { to: DType },
    /// new `[B, len, H, D]`; the output is the cache `[B, capacity, H, D]`, updated in place at rows
    /// `pos..pos+len` (the one op whose output is also state).
    KvAppend(KvAppendSpec),
    /// x → x restricted to `start..start+len` along `axis`.
    Slice { axis: usize, start: usize, len: usize },
    /// a, b → concatenation along `axis` (other dims equal).
    Concat { axis: usize },
}

/// Op families: what variants are registered against and what the matrix groups by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    Gemm,
    Attention,
    GeluMlp,
    PatchEmbed,
    LayerNorm,
    RmsNorm,
    Rope,
    Embedding,
    Add,
    Mul,
    SwiGlu,
    Unary,
    Softmax,
    Argmax,
    Cast,
    KvAppend,
    Slice,
    Concat,
}

impl OpKind {
    pub const ALL: [OpKind; 18] = [
        OpKind::Gemm,
        OpKind::Attention,
        OpKind::GeluMlp,
        OpKind::PatchEmbed,
        OpKind::LayerNorm,
        OpKind::RmsNorm,
        OpKind::Rope,
        OpKind::Embedding,
        OpKind::Add,
        OpKind::Mul,
        OpKind::SwiGlu,
        OpKind::Unary,
        OpKind::Softmax,
        OpKind::Argmax,
        OpKind::Cast,
        OpKind::KvAppend,
        OpKind::Slice,
        OpKind::Concat,
    ];

    pub fn name(self) -> &'static str {
        match self {
            OpKind::Gemm => "gemm",
            OpKind::Attention => "attention",
            OpKind::GeluMlp => "gelu_mlp",
            OpKind::PatchEmbed => "patch_embed",
            OpKind::LayerNorm => "layer_norm",
            OpKind::RmsNorm => "rms_norm",
            OpKind::Rope => "rope",
            OpKind::Embedding => "embedding",
            OpKind::Add => "add",
            OpKind::Mul => "mul",
            OpKind::SwiGlu => "swiglu",
            OpKind::Unary => "unary",
            OpKind::Softmax => "softmax",
            OpKind::Argmax => "argmax",
            OpKind::Cast => "cast",
            OpKind::KvAppend => "kv_append",
            OpKind::Slice => "slice",
            OpKind::Concat => "concat",
        }
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for OpKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        OpKind::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| {
            let names: Vec<_> = OpKind::ALL.iter().map(|k| k.name()).collect();
            format!("unknown op `{s}` (ops: {})", names.join(", "))
        })
    }
}

fn dims_eq(op: &'static str, what: &str, got: &Shape, want: &[usize]) -> Result<()> {
    if got.dims() != want {
        return Err(Error::shape(op, format!("{what} has shape {got}, expected {}", Shape::from(want))));
    }
    Ok(())
}

impl Op {
    pub fn kind(&self) -> OpKind {
        match self {
            Op::Gemm(_) => OpKind::Gemm,
            Op::Attention(_) => OpKind::Attention,
            Op::GeluMlp(_) => OpKind::GeluMlp,
            Op::PatchEmbed(_) => OpKind::PatchEmbed,
            Op::LayerNorm { .. } => OpKind::LayerNorm,
            Op::RmsNorm { .. } => OpKind::RmsNorm,
            Op::Rope(_) => OpKind::Rope,
            Op::Embedding => OpKind::Embedding,
            Op::Add => OpKind::Add,
            Op::Mul => OpKind::Mul,
            Op::SwiGlu => OpKind::SwiGlu,
            Op::Unary(_) => OpKind::Unary,
            Op::Softmax => OpKind::Softmax,
            Op::Argmax => OpKind::Argmax,
            Op::Cast { .. } => OpKind::Cast,
            Op::KvAppend(_) => OpKind::KvAppend,
            Op::Slice { .. } => OpKind::Slice,
            Op::Concat { .. } => OpKind::Concat,
        }
    }

    pub fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// Number of inputs this op expects with its spec.
    pub fn arity(&self) -> usize {
        match self {
            Op::Gemm(s) => 2 + s.bias as usize + s.residual as usize,
            Op::Attention(_) => 3,
            Op::GeluMlp(s) => 5 + s.residual as usize,
            Op::PatchEmbed(s) => 2 + s.bias as usize + s.cls as usize + s.pos as usize,
            Op::LayerNorm { .. } => 3,
            Op::RmsNorm { .. } | Op::Rope(_) | Op::Embedding | Op::Add | Op::Mul | Op::SwiGlu | Op::Concat { .. } => 2,
            Op::Unary(_) | Op::Softmax | Op::Argmax | Op::Cast { .. } | Op::KvAppend(_) | Op::Slice { .. } => 1,
        }
    }

    /// Inputs that are weights: they may be stored in another format than the activations
    /// (f16/bf16 or int8/int4 under f32 activations, see [`DType::WEIGHTS`]); the output takes the
    /// activations' dtype. Backends that cannot read a mixed pair refuse it through
    /// [`Op::mixed_weights`].
    pub fn weight_slots(&self) -> &'static [usize] {
        match self {
            Op::Gemm(_) => &[1],
            Op::GeluMlp(_) => &[1, 3],
            _ => &[],
        }
    }

    /// Inputs that are a KV cache: attention's K and V may be stored in another float dtype than
    /// the queries (both in the same one: an f16 cache under f32 compute); the output takes the
    /// queries' dtype. Backends that cannot read them refuse through [`Op::mixed_weights`].
    pub fn cache_slots(&self) -> &'static [usize] {
        match self {
            Op::Attention(_) => &[1, 2],
            _ => &[],
        }
    }

    /// The first weight or cache input stored in another dtype than the activations (input 0),
    /// if any.
    pub fn mixed_weights(&self, inputs: &[&TensorDesc]) -> Option<(usize, DType)> {
        let act = inputs.first()?.dtype;
        self.weight_slots()
            .iter()
            .chain(self.cache_slots())
            .find_map(|&i| inputs.get(i).filter(|d| d.dtype != act).map(|d| (i, d.dtype)))
    }

    /// Validates the inputs and returns the output descriptor.
    pub fn infer(&self, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
        let op = self.name();
        if inputs.len() != self.arity() {
            return Err(Error::shape(op, format!("{} inputs given, {} expected", inputs.len(), self.arity())));
        }
        // Dtype rule: float inputs share one dtype; u32 only where an op takes ids/positions.
        let u32_slots: &[usize] = match self {
            Op::Rope(_) => &[1],
            Op::Embedding => &[1],
            _ => &[],
        };
        let weight_slots = self.weight_slots();
        let mut float_dtype = None;
        for (i, d) in inputs.iter().enumerate() {
            if weight_slots.contains(&i) {
                // A weight may be stored in any weight format; the activations set the op's dtype.
                if !(d.dtype.is_float() || d.dtype.is_quant()) {
                    return Err(Error::shape(op, format!("weight input {i} must be a float or int8/int4 tensor, got {}", d.dtype)));
                }
                let row = d.shape.dims().last().copied().unwrap_or(0);
                crate::quant::check_shape(d.dtype, d.numel(), row).map_err(|e| Error::shape(op, format!("weight input {i}: {e}")))?;
                continue;
            }
            if self.cache_slots().contains(&i) {
                let first = inputs[self.cache_slots()[0]].dtype;
                if !d.dtype.is_float() || d.dtype != first {
                    return Err(Error::shape(op, format!(
                        "cache input {i} is {}: K and V must share one float dtype (K is {first})",
                        d.dtype
                    )));
                }
                continue;
            }
            if u32_slots.contains(&i) {
                if d.dtype != DType::U32 {
                    return Err(Error::shape(op, format!("input {i} must be u32, got {}", d.dtype)));
                }
                continue;
            }
            let cast_like = matches!(self, Op::Cast { .. } | Op::Slice { .. } | Op::Concat { .. } | Op::KvAppend(_));
            if d.dtype.is_quant() {
                return Err(Error::shape(op, format!("input {i} is {}: int8/int4 are weight formats, read only as the weights of gemm and gelu_mlp", d.dtype)));
            }
            if !d.dtype.is_float() && !cast_like {
                return Err(Error::shape(op, format!("input {i} must be a float tensor, got {}", d.dtype)));
            }
            match float_dtype {
                None => float_dtype = Some(d.dtype),
                Some(t) if t != d.dtype => {
                    return Err(Error::shape(op, format!("input {i} is {}, but input 0 is {t}: float inputs must share one dtype", d.dtype)))
                }
                _ => {}
            }
        }
        let dt = float_dtype.unwrap_or(DType::F32);
        let s = |i: usize| &inputs[i].shape;
        let out = |shape: Vec<usize>| Ok(TensorDesc::new(dt, shape));
        match self {
            Op::Gemm(spec) => {
                let a = s(0);
                if a.rank() < 1 || s(1).rank() != 2 {
                    return Err(Error::shape(op, format!("a {a} must have rank >= 1 and w {} rank 2", s(1))));
                }
                let (n, k) = (s(1).dims()[0], s(1).dims()[1]);
                if a.last() != k {
                    return Err(Error::shape(op, format!("a {a} has K = {}, w {} has K = {k}", a.last(), s(1))));
                }
                let mut o = a.dims().to_vec();
                *o.last_mut().unwrap() = n;
                let mut i = 2;
                if spec.bias {
                    dims_eq(op, "bias", s(i), &[n])?;
                    i += 1;
                }
                if spec.residual {
                    dims_eq(op, "residual", s(i), &o)?;
                }
                out(o)
            }
            Op::Attention(a) => {
                if a.batch == 0 || a.q_heads == 0 || a.kv_heads == 0 || a.head_dim == 0 || a.q_len == 0 || a.kv_len == 0 {
                    return Err(Error::shape(op, "batch, heads, lengths and head_dim must be positive"));
                }
                if a.q_heads % a.kv_heads != 0 {
                    return Err(Error::shape(op, format!("q_heads {} is not a multiple of kv_heads {}", a.q_heads, a.kv_heads)));
                }
                if a.kv_len > a.kv_capacity {
                    return Err(Error::shape(op, format!("kv_len {} exceeds kv_capacity {}", a.kv_len, a.kv_capacity)));
                }
                if a.q_len > a.kv_len && a.mask.is_causal_like() {
                    return Err(Error::shape(op, format!("q_len {} > kv_len {} with a causal mask", a.q_len, a.kv_len)));
                }
                if let Mask::BlockSparse(l) = &a.mask {
                    if l.q_blocks * l.block_q < a.q_len || l.k_blocks * l.block_k < a.kv_len {
                        return Err(Error::shape(op, format!(
                            "block layout {}x{} blocks of {}x{} does not cover q_len {} x kv_len {}",
                            l.q_blocks, l.k_blocks, l.block_q, l.block_k, a.q_len, a.kv_len
                        )));
                    }
                    if a.q_len > a.kv_len && l.base.is_causal_like() {
                        return Err(Error::shape(op, "q_len > kv_len with a causal base mask"));
                    }
                }
                dims_eq(op, "q", s(0), &[a.batch, a.q_len, a.q_heads, a.head_dim])?;
                dims_eq(op, "k", s(1), &[a.batch, a.kv_capacity, a.kv_heads, a.head_dim])?;
                dims_eq(op, "v", s(2), &[a.batch, a.kv_capacity, a.kv_heads, a.head_dim])?;
                out(vec![a.batch, a.q_len, a.q_heads, a.head_dim])
            }
            Op::GeluMlp(spec) => {
                let x = s(0);
                let d = x.last();
                if s(1).rank() != 2 || s(3).rank() != 2 {
                    return Err(Error::shape(op, "w1 and w2 must have rank 2"));
                }
                let h = s(1).dims()[0];
                let o_dim = s(3).dims()[0];
                dims_eq(op, "w1", s(1), &[h, d])?;
                dims_eq(op, "b1", s(2), &[h])?;
                dims_eq(op, "w2", s(3), &[o_dim, h])?;
                dims_eq(op, "b2", s(4), &[o_dim])?;
                let mut o = x.dims().to_vec();
                *o.last_mut().unwrap() = o_dim;
                if spec.residual {
                    dims_eq(op, "residual", s(5), &o)?;
                }
                out(o)
            }
            Op::PatchEmbed(spec) => {
                let px = s(0);
                if px.rank() != 4 {
                    return Err(Error::shape(op, format!("pixels {px} must be [B, C, H, W]")));
                }
                let [b, c, hi, wi] = [px.dims()[0], px.dims()[1], px.dims()[2], px.dims()[3]];
                let p = spec.patch;
                if p == 0 || hi % p != 0 || wi % p != 0 {
                    return Err(Error::shape(op, format!("image {hi}x{wi} is not a multiple of patch {p}")));
                }
                if s(1).rank() != 4 {
                    return Err(Error::shape(op, format!("weight {} must be [E, C, P, P]", s(1))));
                }
                let e = s(1).dims()[0];
                dims_eq(op, "weight", s(1), &[e, c, p, p])?;
                let t = (hi / p) * (wi / p) + spec.cls as usize;
                let mut i = 2;
                if spec.bias {
                    dims_eq(op, "bias", s(i), &[e])?;
                    i += 1;
                }
                if spec.cls {
                    dims_eq(op, "cls", s(i), &[e])?;
                    i += 1;
                }
                if spec.pos {
                    dims_eq(op, "pos", s(i), &[t, e])?;
                }
                out(vec![b, t, e])
            }
            Op::LayerNorm { .. } => {
                let d = s(0).last();
                dims_eq(op, "gamma", s(1), &[d])?;
                dims_eq(op, "beta", s(2), &[d])?;
                out(s(0).dims().to_vec())
            }
            Op::RmsNorm { .. } => {
                dims_eq(op, "weight", s(1), &[s(0).last()])?;
                out(s(0).dims().to_vec())
            }
            Op::Rope(spec) => {
                let x = s(0);
                if x.rank() != 4 {
                    return Err(Error::shape(op, format!("x {x} must be [B, S, H, D]")));
                }
                let d = x.dims()[3];
                let r = spec.rot(d);
                if r == 0 || r % 2 != 0 || r > d {
                    return Err(Error::shape(op, format!("rotary_dim {r} must be even and <= head_dim {d}")));
                }
                let a = spec.axes();
                let used = &spec.sections[..a];
                if a > 1 || used[0] > 0 {
                    if spec.sections[a..].iter().any(|&n| n > 0) {
                        return Err(Error::shape(op, format!("sections {:?}: section {a} is empty", spec.sections)));
                    }
                    let sum: usize = used.iter().sum();
                    if sum != r / 2 {
                        return Err(Error::shape(
                            op,
                            format!("sections {used:?} add up to {sum} pairs, rotary_dim {r} has {}", r / 2),
                        ));
                    }
                }
                let (b, sl) = (x.dims()[0], x.dims()[1]);
                let p = s(1);
                if !(p.dims() == [a, b, sl] || (a == 1 && p.dims() == [b, sl])) {
                    let one = if a == 1 { format!(" or {}", Shape::from(&[b, sl][..])) } else { String::new() };
                    let want = Shape::from(&[a, b, sl][..]);
                    return Err(Error::shape(
                        op,
                        format!("positions have shape {p}, expected [A, B, S] = {want}{one} for {a} section(s)"),
                    ));
                }
                out(x.dims().to_vec())
            }
            Op::Embedding => {
                if s(0).rank() != 2 {
                    return Err(Error::shape(op, format!("table {} must be [V, D]", s(0))));
                }
                let mut o = s(1).dims().to_vec();
                o.push(s(0).dims()[1]);
                out(o)
            }
            Op::Add | Op::Mul | Op::SwiGlu => {
                dims_eq(op, "b", s(1), s(0).dims())?;
                out(s(0).dims().to_vec())
            }
            Op::Unary(_) | Op::Softmax => out(s(0).dims().to_vec()),
            Op::Argmax => {
                let d = s(0).dims();
                let lead = if d.is_empty() { vec![] } else { d[..d.len() - 1].to_vec() };
                Ok(TensorDesc::new(DType::U32, lead))
            }
            Op::Cast { to } if to.is_quant() => {
                Err(Error::shape(op, format!("cannot cast to {to}: weights are quantised on the host (quant::encode)")))
            }
            Op::Cast { to } => Ok(TensorDesc::new(*to, s(0).dims().to_vec())),
            Op::KvAppend(spec) => {
                let n = s(0);
                if n.rank() != 4 {
                    return Err(Error::shape(op, format!("new {n} must be [B, len, H, D]")));
                }
                let [b, len, h, d] = [n.dims()[0], n.dims()[1], n.dims()[2], n.dims()[3]];
                if spec.pos + len > spec.capacity {
                    return Err(Error::shape(op, format!(
                        "rows {}..{} exceed the cache capacity {}", spec.pos, spec.pos + len, spec.capacity
                    )));
                }
                out(vec![b, spec.capacity, h, d])
            }
            Op::Slice { axis, start, len } => {
                let x = s(0);
                if *axis >= x.rank() || start + len > x.dims()[*axis] {
                    return Err(Error::shape(op, format!("slice {start}..{} on axis {axis} is out of {x}", start + len)));
                }
                let mut o = x.dims().to_vec();
                o[*axis] = *len;
                out(o)
            }
            Op::Concat { axis } => {
                let (a, b) = (s(0), s(1));
                if *axis >= a.rank() || a.rank() != b.rank() {
                    return Err(Error::shape(op, format!("cannot concatenate {a} and {b} on axis {axis}")));
                }
                for i in 0..a.rank() {
                    if i != *axis && a.dims()[i] != b.dims()[i] {
                        return Err(Error::shape(op, format!("cannot concatenate {a} and {b} on axis {axis}")));
                    }
                }
                let mut o = a.dims().to_vec();
                o[*axis] += b.dims()[*axis];
                out(o)
            }
        }
    }

    /// Short description for tables, e.g. `gemm[gelu,bias]`.
    pub fn label(&self) -> String {
        match self {
            Op::Gemm(s) => {
                let mut parts = vec![s.act.name().to_string()];
                if s.bias {
                    parts.push("bias".into());
                }
                if s.residual {
                    parts.push("res".into());
                }
                format!("gemm[{}]", parts.join(","))
            }
            Op::Attention(a) => format!("attention[{}]", a.mask.name()),
            Op::GeluMlp(s) => format!("gelu_mlp[{}{}]", s.act.name(), if s.residual { ",res" } else { "" }),
            Op::PatchEmbed(s) => format!(
                "patch_embed[p{}{}{}{}]",
                s.patch,
                if s.bias { ",bias" } else { "" },
                if s.cls { ",cls" } else { "" },
                if s.pos { ",pos" } else { "" }
            ),
            Op::Unary(a) => format!("unary[{}]", a.name()),
            Op::Cast { to } => format!("cast[{to}]"),
            Op::Slice { axis, .. } => format!("slice[axis{axis}]"),
            Op::Concat { axis } => format!("concat[axis{axis}]"),
            other => other.name().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(dt: DType, s: &[usize]) -> TensorDesc {
        TensorDesc::new(dt, s.to_vec())
    }

    #[test]
    fn gemm_infers_and_rejects() {
        let op = Op::Gemm(GemmSpec { act: Activation::GeluErf, bias: true, residual: false });
        let o = op.infer(&[&d(DType::F32, &[2, 3, 8]), &d(DType::F32, &[5, 8]), &d(DType::F32, &[5])]).unwrap();
        assert_eq!(o.shape.dims(), &[2, 3, 5]);
        let e = op.infer(&[&d(DType::F32, &[3, 7]), &d(DType::F32, &[5, 8]), &d(DType::F32, &[5])]).unwrap_err();
        assert!(e.to_string().contains("K = 7"), "{e}");
        let e = op.infer(&[&d(DType::F16, &[3, 8]), &d(DType::F32, &[5, 8]), &d(DType::F32, &[5])]).unwrap_err();
        assert!(e.to_string().contains("share one dtype"), "{e}");
    }

    #[test]
    fn attention_checks_gqa_and_capacity() {
        let mut a = AttentionSpec::new(1, 6, 4, 3, 5, 8, Mask::None);
        let q = d(DType::F32, &[1, 3, 6, 8]);
        let kv = d(DType::F32, &[1, 5, 4, 8]);
        assert!(Op::Attention(a.clone()).infer(&[&q, &kv, &kv]).is_err());
        a.kv_heads = 3;
        a.kv_capacity = 9;
        let kv = d(DType::F32, &[1, 9, 3, 8]);
        assert_eq!(Op::Attention(a.clone()).infer(&[&q, &kv, &kv]).unwrap().shape.dims(), &[1, 3, 6, 8]);
        // A 16-bit KV cache under f32 queries: the output is f32; K and V must agree.
        let op = Op::Attention(a);
        let (k16, v16, vb) = (d(DType::F16, &[1, 9, 3, 8]), d(DType::F16, &[1, 9, 3, 8]), d(DType::BF16, &[1, 9, 3, 8]));
        assert_eq!(op.infer(&[&q, &k16, &v16]).unwrap(), d(DType::F32, &[1, 3, 6, 8]));
        assert_eq!(op.mixed_weights(&[&q, &k16, &v16]), Some((1, DType::F16)));
        assert_eq!(op.mixed_weights(&[&q, &kv, &kv]), None);
        let e = op.infer(&[&q, &k16, &vb]).unwrap_err();
        assert!(e.to_string().contains("K and V must share one float dtype"), "{e}");
        let e = op.infer(&[&q, &d(DType::Int8, &[1, 9, 3, 8]), &d(DType::Int8, &[1, 9, 3, 8])]).unwrap_err();
        assert!(e.to_string().contains("cache input 1 is int8"), "{e}");
    }

    #[test]
    fn kv_append_bounds() {
        let op = Op::KvAppend(KvAppendSpec { capacity: 4, pos: 3 });
        assert!(op.infer(&[&d(DType::F16, &[1, 2, 2, 8])]).is_err());
        assert_eq!(op.infer(&[&d(DType::F16, &[1, 1, 2, 8])]).unwrap().shape.dims(), &[1, 4, 2, 8]);
    }

    #[test]
    fn weight_formats_only_in_weight_slots() {
        let gemm = Op::Gemm(GemmSpec { act: Activation::None, bias: true, residual: false });
        for w in [DType::F16, DType::BF16, DType::Int8, DType::Int4] {
            let out = gemm.infer(&[&d(DType::F32, &[3, 64]), &d(w, &[8, 64]), &d(DType::F32, &[8])]).unwrap();
            assert_eq!(out, d(DType::F32, &[3, 8]), "{w} weight");
            let descs = [&d(DType::F32, &[3, 64]), &d(w, &[8, 64]), &d(DType::F32, &[8])];
            assert_eq!(gemm.mixed_weights(&descs), Some((1, w)));
        }
        // The bias is not a weight slot: it shares the activations' dtype.
        let e = gemm.infer(&[&d(DType::F32, &[3, 64]), &d(DType::Int8, &[8, 64]), &d(DType::F16, &[8])]).unwrap_err();
        assert!(e.to_string().contains("share one dtype"), "{e}");
        // Rows must hold whole groups of 32.
        let e = gemm.infer(&[&d(DType::F32, &[3, 48]), &d(DType::Int4, &[8, 48]), &d(DType::F32, &[8])]).unwrap_err();
        assert!(e.to_string().contains("multiple of 32"), "{e}");
        // A quantised activation, or a cast to a weight format, is refused.
        let e = gemm.infer(&[&d(DType::Int8, &[3, 64]), &d(DType::Int8, &[8, 64]), &d(DType::F32, &[8])]).unwrap_err();
        assert!(e.to_string().contains("weight formats"), "{e}");
        assert!(Op::Slice { axis: 0, start: 0, len: 1 }.infer(&[&d(DType::Int8, &[2, 32])]).is_err());
        assert!(Op::Cast { to: DType::Int4 }.infer(&[&d(DType::F32, &[2, 32])]).is_err());
        let mlp = Op::GeluMlp(MlpSpec { act: Activation::GeluErf, residual: false });
        let descs = [&d(DType::F32, &[2, 32]), &d(DType::F32, &[64, 32]), &d(DType::F32, &[64]), &d(DType::Int4, &[32, 64]), &d(DType::F32, &[32])];
        assert_eq!(mlp.infer(&descs).unwrap(), d(DType::F32, &[2, 32]));
        assert_eq!(mlp.mixed_weights(&descs), Some((3, DType::Int4)));
    }
}
