//! A loaded LLaVA model on one backend: image encoding, prefill, decode, generation.

use crate::exec::{AttentionKind, Exec};
use crate::pool::{Buf, PoolStats};
use crate::sample::SamplingParams;
use crate::vision;
use crate::weights::{self, ModelWeights};
use foveate_core::{Backend, DType, Error, HostTensor, Op, Result, Tensor};
use foveate_models::image::{decode_file, preprocess, DecodeOptions};
use foveate_models::Checkpoint;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone, Copy, Debug)]
pub struct ModelOptions {
    pub dtype: DType,
    pub attention: AttentionKind,
}

impl Default for ModelOptions {
    fn default() -> Self {
        ModelOptions { dtype: DType::F32, attention: AttentionKind::Naive }
    }
}

/// Preprocessed image: CHW f32 (what HF calls `pixel_values` for one image).
#[derive(Clone, Debug, PartialEq)]
pub struct PixelValues {
    pub data: Vec<f32>,
    pub height: usize,
    pub width: usize,
}

/// One generation request: prompt ids (image tokens expanded) and its image.
#[derive(Clone, Debug)]
pub struct Request {
    pub input_ids: Vec<u32>,
    pub pixels: Option<PixelValues>,
}

#[derive(Clone, Debug)]
pub struct GenerateParams {
    pub max_new_tokens: usize,
    pub sampling: SamplingParams,
    /// Generation stops after emitting one of these (it is kept in the output).
    pub stop_tokens: Vec<u32>,
    /// Also return the prefill logits at every prompt position.
    pub prompt_logits: bool,
}

/// One request's timings. In a batch ([`LlavaModel::generate_each`]) image encode and prefill are
/// the request's own; `decode_ms` is the batch's decode time until this request finished.
#[derive(Clone, Copy, Debug, Default)]
pub struct Timings {
    pub image_encode_ms: f64,
    pub prefill_ms: f64,
    pub decode_ms: f64,
    /// Tokens produced by decode steps (the first token comes from the prefill).
    pub decode_steps: usize,
}

impl Timings {
    pub fn decode_tokens_per_s(&self) -> f64 {
        if self.decode_ms > 0.0 {
            self.decode_steps as f64 / (self.decode_ms / 1e3)
        } else {
            0.0
        }
    }
}

#[derive(Clone, Debug)]
pub struct Generation {
    pub tokens: Vec<u32>,
    /// f32 `[prompt_len, vocab]` when asked for.
    pub prompt_logits: Option<HostTensor>,
    pub timings: Timings,
    pub stopped_on_token: bool,
}

/// Device memory in bytes: weights, and the pool (activations + KV caches).
#[derive(Clone, Copy, Debug)]
pub struct MemoryReport {
    pub weights_bytes: usize,
    pub pool: PoolStats,
}

pub struct LlavaModel {
    pub checkpoint: Checkpoint,
    pub(crate) ex: Exec,
    pub(crate) w: ModelWeights,
    pub load_ms: f64,
}

impl LlavaModel {
    pub fn load(dir: impl AsRef<Path>, backend: Arc<dyn Backend>, opts: ModelOptions) -> Result<Self> {
        let t0 = Instant::now();
        if !backend.dtypes().contains(&opts.dtype) {
            return Err(Error::unsupported(backend.name(), format!("dtype {} (it computes in {:?})", opts.dtype, backend.dtypes())));
        }
        let checkpoint = Checkpoint::open(dir)?;
        let ex = Exec::new(backend, opts.dtype, opts.attention);
        let w = weights::load(&checkpoint, ex.backend.as_ref(), opts.dtype)?;
        ex.backend.synchronize()?;
        Ok(LlavaModel { checkpoint, ex, w, load_ms: t0.elapsed().as_secs_f64() * 1e3 })
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.ex.backend
    }

    pub fn dtype(&self) -> DType {
        self.ex.dtype
    }

    pub fn memory(&self) -> MemoryReport {
        MemoryReport { weights_bytes: self.w.bytes, pool: self.ex.pool.stats() }
    }

    /// Decodes and preprocesses an image file with the checkpoint's image processor.
    pub fn load_image(&self, path: impl AsRef<Path>) -> Result<PixelValues> {
        let img = decode_file(path, &DecodeOptions::default())?;
        self.preprocess(&img)
    }

    pub fn preprocess(&self, img: &foveate_models::image::RgbImage) -> Result<PixelValues> {
        let pcfg = self.checkpoint.image_processor()?;
        let (data, height, width) = preprocess(&pcfg, img)?;
        Ok(PixelValues { data, height, width })
    }

    /// Prompt ids: verbatim or through the chat template, `<image>` expanded. An empty (or
    /// all-whitespace) prompt is refused.
    pub fn tokenize(&self, prompt: &str, chat: bool, with_image: bool) -> Result<Vec<u32>> {
        if prompt.trim().is_empty() {
            return Err(Error::Msg("empty prompt: the prompt text is empty (give a question or an instruction)".into()));
        }
        let p = &self.checkpoint.prompt;
        if chat {
            p.encode(&p.apply_chat_template(prompt, with_image)?)
        } else {
            p.encode(prompt)
        }
    }

    fn upload_pixels(&self, px: &PixelValues) -> Result<Tensor> {
        let v = &self.checkpoint.config.vision;
        if px.height != v.image_size || px.width != v.image_size || px.data.len() != v.num_channels * px.height * px.width {
            return Err(Error::Msg(format!(
                "pixel values are {}x{} ({} values) but the vision tower takes {c}x{s}x{s}",
                px.height,
                px.width,
                px.data.len(),
                c = v.num_channels,
                s = v.image_size
            )));
        }
        self.ex.upload_f32(&[1, v.num_channels, px.height, px.width], &px.data)
    }

    pub(crate) fn encode(&self, px: &PixelValues) -> Result<Buf> {
        let pixels = self.upload_pixels(px)?;
        vision::image_features(&self.ex, &self.checkpoint.config, &self.w.vision, &self.w.projector, &pixels)
    }

    /// The vision tower's patch embeddings `[T, E]` (CLS row first for CLIP, position embedding
    /// added), as f32 on the host: the input of its first layer.
    pub fn patch_embeddings(&self, px: &PixelValues) -> Result<HostTensor> {
        let pixels = self.upload_pixels(px)?;
        let x = vision::patch_embed(&self.ex, &self.checkpoint.config, &self.w.vision, &pixels)?;
        let h = self.ex.backend.download(&x)?;
        let dims = h.shape().dims().to_vec();
        Ok(HostTensor::from_f32(DType::F32, vec![dims[1], dims[2]], &h.to_f32()))
    }

    /// Projected image features `[N, D_text]`, as f32 on the host.
    pub fn image_features(&self, px: &PixelValues) -> Result<HostTensor> {
        let f = self.encode(px)?;
        let h = self.ex.backend.download(&f)?;
        let dims = h.shape().dims().to_vec();
        HostTensor::from_f32(DType::F32, vec![dims[1], dims[2]], &h.to_f32()).reshape(vec![dims[1], dims[2]])
    }

    /// Prompt embeddings `[1, T, D]` with the image features spliced in at the image tokens.
    pub(crate) fn embed(&self, ids: &[u32], feats: Option<&Buf>) -> Result<Buf> {
        let cfg = &self.checkpoint.config;
        let idt = self.ex.upload_u32(&[1, ids.len()], ids)?;
        let emb = self.ex.run(&Op::Embedding, &[&self.w.text.embed, &idt])?;
        let n_img = ids.iter().filter(|&&i| i == cfg.image_token_id).count();
        let Some(feats) = feats else {
            if n_img > 0 {
                return Err(Error::Msg(format!("the prompt has {n_img} image tokens but no image was given")));
            }
            return Ok(emb);
        };
        let n_feat = feats.dims()[1];
        if n_img != n_feat {
            return Err(Error::Msg(format!(
                "the prompt has {n_img} image tokens but the image gives {n_feat} features (write `<image>` once in the prompt)"
            )));
        }
        // Runs of text and image tokens, concatenated along the sequence axis.
        let mut out: Option<Buf> = None;
        let (mut i, mut f) = (0usize, 0usize);
        while i < ids.len() {
            let is_img = ids[i] == cfg.image_token_id;
            let mut j = i;
            while j < ids.len() && (ids[j] == cfg.image_token_id) == is_img {
                j += 1;
            }
            let piece = if is_img {
                let p = self.slice_seq(feats, f, j - i)?;
                f += j - i;
                p
            } else {
                self.slice_seq(&emb, i, j - i)?
            };
            out = Some(match out {
                None => piece,
                Some(prev) => self.ex.run(&Op::Concat { axis: 1 }, &[&prev, &piece])?,
            });
            i = j;
        }
        out.ok_or_else(|| Error::Msg("empty prompt".into()))
    }

    fn slice_seq(&self, t: &Buf, start: usize, len: usize) -> Result<Buf> {
        self.ex.run(&Op::Slice { axis: 1, start, len }, &[t])
    }

    /// Default generation parameters: greedy, the checkpoint's stop tokens.
    pub fn default_params(&self, max_new_tokens: usize) -> GenerateParams {
        GenerateParams {
            max_new_tokens,
            sampling: SamplingParams::default(),
            stop_tokens: self.checkpoint.eos_token_ids.clone(),
            prompt_logits: false,
        }
    }

    pub fn decode_text(&self, ids: &[u32]) -> Result<String> {
        self.checkpoint.prompt.decode(ids)
    }
}
