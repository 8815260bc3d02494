//! The per-role weight-format policy: which format each tensor is stored in on the device when a
//! model is loaded with `--weights` (see docs/ARCHITECTURE.md, "Weight formats").
//!
//! * Decoder linear weights (attention q/k/v/o, MLP gate/up/down) and the multimodal projector's
//!   linears: the `--weights` format. They are ~95 % of a LLaVA-7B's bytes.
//! * The LM head: int8 when `--weights` is int8 or int4, the `--weights` format otherwise. One
//!   matrix whose errors go straight into every logit (llama.cpp keeps `output.weight` at Q6_K /
//!   Q8_0 in its Q4_0 files for the same reason); int8 costs 6 % more bytes than int4 on a 7B.
//! * Token embeddings: the compute dtype, but on the cpu under f32 compute ([`Formats::narrow_host`])
//!   f16 with int8/int4 `--weights` and the `--weights` format with f16/bf16 ones. A row lookup
//!   (the looked-up rows are cast to the compute dtype); f32 it was 0.49 GiB of a LLaVA-1.5-7B
//!   int4 load, and a tied table under 16-bit weights is then one tensor, not an f32 table beside
//!   a 16-bit head.
//! * Norms, biases, position / class embeddings: the compute dtype (vectors or small tables).
//! * The whole vision tower (its patch convolution and layers; for Qwen2-VL also its patch merger,
//!   which is stored inside the tower): never quantised. ~4 % of LLaVA-1.5-7B's parameters, and
//!   the most sensitive to error: its output is 576 image tokens the decoder attends to, not a
//!   distribution it samples from. Its linear (2-D) weights are f16 when the cpu backend loads
//!   int8/int4 `--weights` under an f32 compute dtype ([`Formats::narrow_host`]), else the
//!   compute dtype: in f32 they were 1.2 GB of a LLaVA-1.5-7B int4 load's 5.2 (f32 1.6 GB in
//!   all), more than its whole LM head and embedding table. f16 holds an f16 checkpoint's values
//!   exactly (LLaVA-1.5 ships f16) and a bf16 one's (Qwen2-VL) wherever they are at least 2^-14
//!   in magnitude; an f32 checkpoint's are rounded once (relative 2^-11; measured on easy-VQA,
//!   docs/BENCHMARKS.md). The GPU backends read no 16-bit weight under f32 activations, so they
//!   keep the compute dtype.
//!
//! A quantised format needs rows that are a multiple of [`foveate_core::quant::GROUP`] (32)
//! elements; a tensor whose rows are not keeps the compute dtype ([`Formats::of`] says so through
//! its second value).

use crate::names::Part;
use crate::vars::Role;
use foveate_core::{quant, DType};

/// The format policy of one load: the compute dtype, the `--weights` format and the vision tower's
/// linear weights' format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Formats {
    pub compute: DType,
    pub weights: DType,
    /// The vision tower's 2-D (linear) weights: the compute dtype unless [`Formats::narrow_host`].
    pub vision: DType,
    /// The token embedding table: the compute dtype unless [`Formats::narrow_host`].
    pub embed: DType,
    /// The KV caches (`--kv-dtype`): the compute dtype unless [`Formats::with_kv`].
    pub kv: DType,
}

impl Formats {
    /// Every tensor in `dtype` (no `--weights`).
    pub fn uniform(dtype: DType) -> Self {
        Formats::new(dtype, dtype)
    }

    pub fn new(compute: DType, weights: DType) -> Self {
        Formats {
            compute,
            weights,
            vision: compute,
            embed: compute,
            kv: compute,
        }
    }

    /// KV caches in `kv` (`--kv-dtype`; None keeps the compute dtype).
    pub fn with_kv(self, kv: Option<DType>) -> Self {
        Formats {
            kv: kv.unwrap_or(self.compute),
            ..self
        }
    }

    /// What the cpu backend loads under f32 compute (see the module doc): with int8/int4 weights
    /// the vision tower's linears and the token embedding table in f16; with f16/bf16 weights the
    /// table in that format (a tied LM head then shares it). Otherwise unchanged.
    pub fn narrow_host(self) -> Self {
        if self.compute != DType::F32 || self.weights == DType::F32 {
            return self;
        }
        if self.weights.is_quant() {
            Formats {
                vision: DType::F16,
                embed: DType::F16,
                ..self
            }
        } else {
            Formats {
                embed: self.weights,
                ..self
            }
        }
    }

    /// Is any tensor stored in another format than the compute dtype?
    pub fn mixed(&self) -> bool {
        self.weights != self.compute || self.vision != self.compute || self.embed != self.compute
    }

    /// The LM head's format: int8 for a quantised `--weights`, else the `--weights` format.
    pub fn head(&self) -> DType {
        if self.weights.is_quant() {
            DType::Int8
        } else {
            self.weights
        }
    }

    /// Does a tied LM head need its own tensor (its format differs from the embedding table's)?
    pub fn separate_head(&self) -> bool {
        self.head() != self.embed
    }

    /// The format the policy gives a tensor of `part` and `role`, before the shape check.
    pub fn policy(&self, part: Part, role: Role) -> DType {
        match (part, role) {
            (_, Role::Head) | (Part::LmHead, Role::Weight) => self.head(),
            (Part::Text | Part::Projector, Role::Weight) => self.weights,
            (_, Role::Embedding) => self.embed,
            _ => self.compute,
        }
    }

    /// The format of a tensor of `part`, `role` and `shape`, and whether a quantised format was
    /// refused by the shape (rows not a multiple of 32 elements: it keeps the compute dtype).
    pub fn of(&self, part: Part, role: Role, shape: &[usize]) -> (DType, bool) {
        if (part, role) == (Part::Vision, Role::Weight) {
            // Linear weights only: a patch convolution's weight is read with the pixels' dtype.
            let linear = shape.len() == 2;
            return (if linear { self.vision } else { self.compute }, false);
        }
        let f = self.policy(part, role);
        let numel: usize = shape.iter().product();
        let row = shape.iter().skip(1).product::<usize>();
        if f.is_quant() && (shape.len() < 2 || quant::check_shape(f, numel, row).is_err()) {
            return (self.compute, true);
        }
        (f, false)
    }
}

/// Bytes per format of everything a source provided, in first-seen order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FormatBytes(pub Vec<(DType, usize)>);

impl FormatBytes {
    pub fn add(&mut self, dtype: DType, bytes: usize) {
        match self.0.iter_mut().find(|(d, _)| *d == dtype) {
            Some((_, b)) => *b += bytes,
            None => self.0.push((dtype, bytes)),
        }
    }
    pub fn total(&self) -> usize {
        self.0.iter().map(|(_, b)| b).sum()
    }
    /// `int4 3.52 GiB + f16 0.31 GiB`.
    pub fn summary(&self) -> String {
        let gib = |b: usize| b as f64 / (1u64 << 30) as f64;
        self.0
            .iter()
            .map(|(d, b)| format!("{d} {:.3} GiB", gib(*b)))
            .collect::<Vec<_>>()
            .join(" + ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_per_role() {
        let f = Formats::new(DType::F32, DType::Int4);
        assert_eq!(
            f.of(Part::Text, Role::Weight, &[64, 128]),
            (DType::Int4, false)
        );
        assert_eq!(
            f.of(Part::Projector, Role::Weight, &[64, 128]),
            (DType::Int4, false)
        );
        assert_eq!(
            f.of(Part::LmHead, Role::Weight, &[64, 128]),
            (DType::Int8, false)
        );
        assert_eq!(
            f.of(Part::Text, Role::Head, &[64, 128]),
            (DType::Int8, false)
        );
        assert_eq!(
            f.of(Part::Text, Role::Embedding, &[64, 128]),
            (DType::F32, false)
        );
        assert_eq!(f.of(Part::Text, Role::Norm, &[128]), (DType::F32, false));
        assert_eq!(
            f.of(Part::Vision, Role::Weight, &[64, 128]),
            (DType::F32, false)
        );
        // Rows of 48 elements: not a multiple of 32, kept in the compute dtype.
        assert_eq!(
            f.of(Part::Text, Role::Weight, &[64, 48]),
            (DType::F32, true)
        );
        assert!(f.separate_head());
        let h = Formats::new(DType::F32, DType::F16);
        assert_eq!(
            h.of(Part::LmHead, Role::Weight, &[64, 48]),
            (DType::F16, false)
        );
        assert!(!Formats::uniform(DType::F16).separate_head());
        assert!(!Formats::uniform(DType::F16).mixed());
    }

    /// The vision tower's linears narrow to f16 only under f32 compute with quantised weights;
    /// its convolution, norms and embeddings keep the compute dtype.
    #[test]
    fn vision_linears_narrow_to_f16_under_quantised_weights() {
        let n = Formats::new(DType::F32, DType::Int4).narrow_host();
        assert!(n.mixed());
        assert_eq!(
            n.of(Part::Vision, Role::Weight, &[64, 128]),
            (DType::F16, false)
        );
        assert_eq!(
            n.of(Part::Vision, Role::Weight, &[64, 3, 14, 14]),
            (DType::F32, false)
        );
        assert_eq!(n.of(Part::Vision, Role::Norm, &[64]), (DType::F32, false));
        assert_eq!(
            n.of(Part::Vision, Role::Position, &[577, 64]),
            (DType::F32, false)
        );
        assert_eq!(
            n.of(Part::Text, Role::Weight, &[64, 128]),
            (DType::Int4, false)
        );
        for (c, w) in [
            (DType::F32, DType::F32),
            (DType::F32, DType::F16),
            (DType::F16, DType::Int8),
            (DType::BF16, DType::Int4),
        ] {
            let f = Formats::new(c, w).narrow_host();
            assert_eq!(f.of(Part::Vision, Role::Weight, &[64, 128]).0, c, "{c}/{w}");
        }
    }

    /// The token embedding table narrows on the host under f32 compute: f16 under int8/int4
    /// (the int8 head then is its own tensor), the weights' format under f16/bf16 (a tied head
    /// shares it); f32 weights or a 16-bit compute dtype keep the compute dtype.
    #[test]
    fn embedding_table_narrows_with_the_weights() {
        let emb = |f: Formats| f.of(Part::Text, Role::Embedding, &[64, 128]).0;
        let q = Formats::new(DType::F32, DType::Int4).narrow_host();
        assert_eq!((emb(q), q.head()), (DType::F16, DType::Int8));
        assert!(q.separate_head());
        for w in [DType::F16, DType::BF16] {
            let h = Formats::new(DType::F32, w).narrow_host();
            assert_eq!(emb(h), w);
            assert!(!h.separate_head(), "{w}: a tied head shares the table");
            assert!(Formats::new(DType::F32, w).separate_head(), "{w}: unnarrowed f32 table");
        }
        for (c, w) in [(DType::F32, DType::F32), (DType::BF16, DType::Int8), (DType::F16, DType::F16)] {
            let f = Formats::new(c, w).narrow_host();
            assert_eq!(emb(f), c, "{c}/{w}");
        }
    }

    #[test]
    fn bytes_by_format() {
        let mut b = FormatBytes::default();
        b.add(DType::Int4, 10);
        b.add(DType::F32, 4);
        b.add(DType::Int4, 6);
        assert_eq!(b.0, vec![(DType::Int4, 16), (DType::F32, 4)]);
        assert_eq!(b.total(), 20);
    }
}
