//! The host memory a load will take, estimated before anything is allocated, and the budget it
//! must fit (`--max-memory`, MemAvailable): `run`, `eval`, `serve` and `bench` refuse a load over
//! budget with [`Error::OverBudget`] instead of ending in the kernel's OOM killer.
//!
//! [`LoadPlan::estimate`] is the one estimate. It counts, on the host (cpu backends):
//!
//! * every weight in its per-role format ([`Formats`]), from the builder's own requests recorded
//!   by a [`Recorder`] (a tied LM head kept in another format counted twice, as it is loaded);
//! * the largest per-tensor load temporary: the host tensor beside its uploaded copy, plus, for a
//!   tensor converted on load, its chunks of f32 in flight (`HostTensor::from_f32_chunks`:
//!   converted and quantised a chunk per thread at a time, no whole-tensor f32 copy)
//!   ([`temporary`]); or, where the builder stacks tensors into one (a layer's q, k, v on the
//!   cpu, [`crate::stack`]), the stacked copy beside its parts and one part read back;
//! * the KV caches of the workload (pool size classes, capacity rounded to
//!   [`foveate_graph::CAPACITY_STEP`] tokens, capped at the context window);
//! * a bound on the activations: per row every output of the widest layer live at once, plus the
//!   logits, one layer's cache widened to f32 for a 16-bit compute dtype and naive attention's
//!   score matrices, plus a quarter for size classes.
//!
//! A GPU backend keeps the weights, caches and activations on the device: the host then needs the
//! temporaries only. Not counted: the process itself (binary, tokenizer: tens of MiB) and the
//! checkpoint's memory-mapped pages (page cache, which the kernel reclaims and MemAvailable counts
//! as available).

use crate::arch::qwen2_vl_config::QwenVlConfig;
use crate::arch::ArchConfig;
use crate::checkpoint::Checkpoint;
use crate::config::{LlavaConfig, TextConfig};
use crate::formats::{FormatBytes, Formats};
use crate::names::Part;
use crate::qcheckpoint::stored_name;
use crate::vars::{Entry, Recorder, Role};
use crate::weights::StoredDType;
use foveate_core::{fmt_bytes, quant, DType, Error, HostTensor, Result};
use foveate_graph::{size_class, AttentionKind, CAPACITY_STEP};

pub use crate::budget_size::{mem_available, parse_size, short, Budget};

/// The image a Qwen2-VL / Qwen2.5-VL load is planned for (dynamic resolution: the tokens depend on
/// the image, unknown before the load): 448x448, 1024 patch rows, 256 image tokens.
pub const PLANNED_QWEN_IMAGE: usize = 448;

/// Where a tensor's values come from at load: decides its temporaries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    /// Random values generated as f32 (a builtin shape).
    Random,
    /// Stored in the checkpoint as this dtype.
    File(StoredDType),
    /// Stored bytes uploaded as they are (a quantised checkpoint's tensor).
    AsIs,
}

/// The decoder's sizes the KV cache and the activations depend on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TextDims {
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub width: usize,
    pub vocab: usize,
    /// The context window in tokens.
    pub context: usize,
}

impl TextDims {
    pub fn of(t: &TextConfig) -> Self {
        TextDims {
            layers: t.num_layers,
            heads: t.num_heads,
            kv_heads: t.num_kv_heads,
            head_dim: t.head_dim,
            width: t.hidden_size,
            vocab: t.vocab_size,
            context: t.max_position_embeddings,
        }
    }
}

/// A model's sizes besides its tensors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dims {
    /// None: no decoder.
    pub text: Option<TextDims>,
    /// Rows the vision tower runs per image (0: no tower).
    pub vision_rows: usize,
    /// Tokens one image adds to a prompt.
    pub image_tokens: usize,
}

/// What the loaded model will run, for the KV cache and the activations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Workload {
    /// Sequences decoding together (their caches live at once).
    pub sequences: usize,
    /// Text tokens of each prompt (chat template included).
    pub text_tokens: usize,
    /// Tokens generated per sequence.
    pub new_tokens: usize,
    /// Images in each prompt (each adds [`Dims::image_tokens`]).
    pub images_per_sequence: usize,
    /// Images through the vision tower at once.
    pub images_at_once: usize,
}

/// Everything a load reads, recorded before anything is allocated.
pub struct LoadPlan {
    /// The model's name in messages.
    pub model: String,
    /// Every tensor the builder asks for (a tied LM head also as [`Role::Head`]) and its source.
    pub entries: Vec<(Entry, Stored)>,
    /// Shapes of the zero tensors the builder asks for (in the compute dtype).
    pub zeros: Vec<Vec<usize>>,
    pub dims: Dims,
    /// A quantised checkpoint's format: the only `--weights` it loads with.
    pub fixed_weights: Option<DType>,
    /// Groups of `entries` (indices) the builder stacks into one tensor on a host backend
    /// ([`crate::vars::TensorSource::fuse_rows`]).
    pub fused: Vec<Vec<usize>>,
}

/// The estimate of one load and its workload; [`Estimate::host_bytes`] is what must fit.
#[derive(Clone, Debug)]
pub struct Estimate {
    pub model: String,
    pub formats: Formats,
    /// Weights on the host (cpu backends) or on the device.
    pub on_host: bool,
    pub attention: AttentionKind,
    pub workload: Workload,
    pub weights: FormatBytes,
    /// The largest per-tensor load temporary and the tensor it is for.
    pub temporary: usize,
    pub temporary_of: String,
    pub kv_cache: usize,
    /// Rows of each sequence's cache (capacity).
    pub kv_tokens: usize,
    pub activations: usize,
}

impl Estimate {
    /// Everything, wherever it lives.
    pub fn total(&self) -> u64 {
        (self.weights.total() + self.temporary + self.kv_cache + self.activations) as u64
    }

    /// What the host must hold: everything on a cpu backend, the load temporaries on a GPU one.
    pub fn host_bytes(&self) -> u64 {
        if self.on_host {
            self.total()
        } else {
            self.temporary as u64
        }
    }

    /// `weights int4 3.52 GiB + f32 1.57 GiB; load temporaries 1.0 GiB (...); ...`.
    pub fn breakdown(&self) -> String {
        let w = &self.workload;
        let place = if self.on_host { "" } else { ", on the device" };
        let weights = self
            .weights
            .0
            .iter()
            .map(|(d, b)| format!("{d} {}", short(*b as u64)))
            .collect::<Vec<_>>()
            .join(" + ");
        format!(
            "weights {weights}{place}; load temporaries {} (the largest tensor's, {}); KV cache {} ({} x {} tokens{place}); activations about {}{place}",
            short(self.temporary as u64),
            self.temporary_of,
            short(self.kv_cache as u64),
            w.sequences,
            self.kv_tokens,
            short(self.activations as u64),
        )
    }
}

/// Host bytes a tensor of `n` elements, stored as `stored`, takes at load besides its uploaded
/// copy when loaded as `fmt` (`out` bytes): the host tensor; a converted one (another format, or
/// random values) also its f32 chunks in flight ([`HostTensor::load_temporary`]: one chunk of
/// [`HostTensor::LOAD_CHUNK`] elements per thread converting it).
pub fn temporary(stored: Stored, fmt: DType, n: usize, out: usize) -> usize {
    let same = matches!(
        (stored, fmt),
        (Stored::AsIs, _)
            | (Stored::File(StoredDType::F32), DType::F32)
            | (Stored::File(StoredDType::F16), DType::F16)
            | (Stored::File(StoredDType::BF16), DType::BF16)
    );
    if same {
        return out;
    }
    out + HostTensor::load_temporary(n)
}

/// Widths of one part's layers: the most output elements of one layer's weights together, the
/// widest and the narrowest output.
#[derive(Default)]
struct Widths {
    layer: usize,
    widest: usize,
    narrowest: usize,
}

/// `encoder.layers.3.mlp.fc1.weight` -> `encoder.layers.3` (None outside numbered layers).
fn layer_of(name: &str) -> Option<&str> {
    let mut end = 0;
    for seg in name.split('.') {
        end += seg.len();
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            return Some(&name[..end]);
        }
        end += 1;
    }
    None
}

fn widths(entries: &[(Entry, Stored)], parts: &[Part]) -> Widths {
    let mut w = Widths::default();
    let mut sums: Vec<(&str, usize)> = Vec::new();
    for (e, _) in entries {
        if !parts.contains(&e.part) || e.role != Role::Weight || e.shape.len() != 2 {
            continue;
        }
        let out = e.shape[0];
        w.widest = w.widest.max(out);
        if let Some(l) = layer_of(&e.name) {
            w.narrowest = if w.narrowest == 0 {
                out
            } else {
                w.narrowest.min(out)
            };
            match sums.iter_mut().find(|(n, _)| *n == l) {
                Some((_, s)) => *s += out,
                None => sums.push((l, out)),
            }
        }
    }
    w.layer = sums.iter().map(|(_, s)| *s).max().unwrap_or(0);
    w
}

impl LoadPlan {
    /// The plan of a checkpoint: its builder run over a [`Recorder`] (nothing is read or
    /// allocated), each tensor's stored dtype from the safetensors headers.
    pub fn checkpoint(ck: &Checkpoint) -> Result<LoadPlan> {
        let mut rec = recorder();
        ck.config.build(&mut rec, false)?;
        let entries = rec
            .entries
            .into_iter()
            .map(|e| {
                let quantised = ck.quant.as_ref().is_some_and(|q| {
                    stored_name(ck, e.part, &e.name, e.role)
                        .is_some_and(|n| q.tensors.contains_key(&n))
                });
                let s = if quantised {
                    Stored::AsIs
                } else {
                    // A missing tensor fails the load by name; here it counts as converted.
                    ck.resolve(e.part, &e.name)
                        .and_then(|n| ck.weights.info(&n).map(|i| Stored::File(i.dtype)))
                        .unwrap_or(Stored::Random)
                };
                (e, s)
            })
            .collect();
        let model = ck
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| ck.dir.display().to_string());
        Ok(LoadPlan {
            model,
            entries,
            zeros: rec.zeros,
            fused: rec.fused,
            dims: config_dims(ck.config.as_ref()),
            fixed_weights: ck.quant.as_ref().map(|q| q.weights),
        })
    }

    /// The estimate of loading this plan in `formats` (on the host when `on_host`) and running
    /// `w` with `attention`.
    pub fn estimate(
        &self,
        formats: Formats,
        on_host: bool,
        attention: AttentionKind,
        w: &Workload,
    ) -> Estimate {
        let mut weights = FormatBytes::default();
        let (mut temp, mut temp_of) = (0usize, String::from("none"));
        let mut note = |t: usize, what: String| {
            if t > temp {
                (temp, temp_of) = (t, what);
            }
        };
        // An entry's format in `formats`, its values and their stored bytes.
        let stored_as = |e: &Entry| {
            let fmt = formats.of(e.part, e.role, &e.shape).0;
            let n: usize = e.shape.iter().product();
            (fmt, n, quant::bytes_for(fmt, n))
        };
        for (e, stored) in &self.entries {
            // A tied head read as its own tensor only when its format differs from the table's.
            if e.role == Role::Head && e.part == Part::Text && !formats.separate_head() {
                continue;
            }
            let (fmt, n, out) = stored_as(e);
            weights.add(fmt, out);
            let how = if temporary(*stored, fmt, n, out) == out {
                "copied"
            } else {
                "converted a chunk at a time"
            };
            note(
                temporary(*stored, fmt, n, out),
                format!("{}.{} {:?} as {fmt}, {how}", e.part.name(), e.name, e.shape),
            );
        }
        if on_host {
            // A stack is made while its parts are alive: the stacked copy and one part read back.
            for group in &self.fused {
                let parts: Vec<usize> = group
                    .iter()
                    .map(|&i| stored_as(&self.entries[i].0).2)
                    .collect();
                let (sum, max) = (
                    parts.iter().sum::<usize>(),
                    parts.iter().copied().max().unwrap_or(0),
                );
                let e = &self.entries[group[0]].0;
                note(
                    sum + max,
                    format!(
                        "{}.{} and {} more stacked into one tensor",
                        e.part.name(),
                        e.name,
                        group.len() - 1
                    ),
                );
            }
        }
        let c = formats.compute;
        for z in &self.zeros {
            let n: usize = z.iter().product();
            weights.add(c, n * c.size());
            note(
                temporary(Stored::Random, c, n, n * c.size()),
                format!("zeros {z:?}"),
            );
        }
        let (sequences, images) = (w.sequences.max(1), w.images_at_once);
        let (mut kv_cache, mut kv_tokens, mut acts) = (0usize, 0usize, 0usize);
        if let Some(t) = self.dims.text {
            let tokens = (w.images_per_sequence * self.dims.image_tokens
                + w.text_tokens
                + w.new_tokens.max(1))
            .min(t.context.max(1));
            kv_tokens = tokens.div_ceil(CAPACITY_STEP) * CAPACITY_STEP;
            let kvd = t.kv_heads * t.head_dim;
            kv_cache = sequences * t.layers * 2 * size_class(kv_tokens * kvd * formats.kv.size());
            let tw = widths(&self.entries, &[Part::Text]);
            let rows = sequences * tokens;
            acts += 4 * rows * (tw.layer + tw.widest + 4 * t.width);
            acts += 2 * 4 * sequences * t.vocab;
            if formats.kv != DType::F32 {
                // Prefill attention reads a 16-bit cache converted to f32.
                acts += 2 * 4 * sequences * kv_tokens * kvd;
            }
            if attention == AttentionKind::Naive {
                acts += 2 * 4 * sequences * t.heads.max(1) * tokens * tokens;
            }
        }
        if self.dims.vision_rows > 0 && images > 0 {
            let vw = widths(&self.entries, &[Part::Vision, Part::Projector]);
            let rows = images * self.dims.vision_rows;
            acts += 4 * rows * (vw.layer + vw.widest + 4 * vw.narrowest);
            if attention == AttentionKind::Naive {
                let heads = (vw.narrowest / 64).max(1);
                acts += 2 * 4 * images * heads * self.dims.vision_rows * self.dims.vision_rows;
            }
        }
        Estimate {
            model: self.model.clone(),
            formats,
            on_host,
            attention,
            workload: *w,
            weights,
            temporary: temp,
            temporary_of: temp_of,
            kv_cache,
            kv_tokens,
            activations: acts + acts / 4,
        }
    }

    /// Refuses `est` (an estimate of this plan) when its host bytes exceed `budget`: an
    /// [`Error::OverBudget`] naming the model, the need (broken down), the budget and where it
    /// came from, and what would fit. Nothing is allocated either way.
    pub fn check(&self, est: &Estimate, budget: &Budget) -> Result<()> {
        let (Some(limit), need) = (budget.bytes(), est.host_bytes()) else {
            return Ok(());
        };
        if need <= limit {
            return Ok(());
        }
        let msg = format!(
            "{}: the load needs about {} of host memory, more than the budget of {} {}; \
             the need: {}; nothing was allocated. {}",
            est.model,
            fmt_bytes(need),
            fmt_bytes(limit),
            budget.source(),
            est.breakdown(),
            self.hint(est, budget, limit)
        );
        Err(Error::OverBudget {
            need,
            budget: limit,
            msg,
        })
    }

    /// What would fit: a smaller weight format, a larger `--max-memory`, or less at once.
    fn hint(&self, est: &Estimate, budget: &Budget, limit: u64) -> String {
        let f = est.formats;
        if self.fixed_weights.is_none() {
            for q in [DType::Int8, DType::Int4] {
                let smaller =
                    !f.weights.is_quant() || (f.weights == DType::Int8 && q == DType::Int4);
                if !smaller {
                    continue;
                }
                // As the load would resolve it: on the cpu (`on_host`, `model::formats_for`) an
                // int8/int4 load keeps the vision linears in f16.
                let alt_f = Formats { weights: q, ..f };
                let alt = self.estimate(
                    if est.on_host {
                        alt_f.narrow_host()
                    } else {
                        alt_f
                    },
                    est.on_host,
                    est.attention,
                    &est.workload,
                );
                if alt.host_bytes() <= limit {
                    return format!(
                        "--weights {q} would need about {}, which fits",
                        short(alt.host_bytes())
                    );
                }
            }
        }
        match (budget.flag, budget.available) {
            (Some(flag), avail) if flag == limit && avail.is_none_or(|a| est.host_bytes() <= a) => {
                format!(
                    "Raise --max-memory to at least {}M",
                    est.host_bytes().div_ceil(1 << 20)
                )
            }
            _ => "Free memory, or load less: --weights int4, a smaller --batch-size or context, or a smaller model".into(),
        }
    }
}

/// A recorder that also records a tied LM head as [`Role::Head`] (a plan keeps it, an estimate
/// counts it only when the head's format differs from the table's).
pub fn recorder() -> Recorder {
    Recorder {
        formats: Some(Formats::new(DType::F32, DType::Int8)),
        ..Default::default()
    }
}

/// A checkpoint config's sizes: the decoder's, and the vision tower's rows and image tokens per
/// image (Qwen2-VL: of a [`PLANNED_QWEN_IMAGE`] square image).
pub fn config_dims(cfg: &dyn ArchConfig) -> Dims {
    if let Some(c) = cfg.as_any().downcast_ref::<LlavaConfig>() {
        return Dims {
            text: Some(TextDims::of(&c.text)),
            vision_rows: c.vision.num_positions(),
            image_tokens: cfg.image_tokens_per_image(),
        };
    }
    if let Some(c) = cfg.as_any().downcast_ref::<QwenVlConfig>() {
        let rows = (PLANNED_QWEN_IMAGE / c.vision.patch_size.max(1)).pow(2);
        return Dims {
            text: Some(TextDims::of(&c.text)),
            vision_rows: rows,
            image_tokens: rows / c.vision.merge_unit().max(1),
        };
    }
    Dims::default()
}

#[cfg(test)]
#[path = "budget_tests.rs"]
mod tests;
