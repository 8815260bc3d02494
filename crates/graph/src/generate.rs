//! Generation over any [`TextModel`]: prefill (one prompt at a time: embed, splice, forward), then
//! batched decode. Each decode step embeds the last token of every active request as one ragged
//! batch and runs the model's forward once over those rows (its GEMMs once, attention per request
//! over its own KV cache). Requests leave the batch independently when they emit a stop token or
//! reach their token budget. Positions come from the architecture ([`PromptInput::positions`]);
//! generated tokens continue from the prompt's largest position on every axis.

use crate::exec::Exec;
use crate::kv::{KvCache, KvShape};
use crate::pool::Buf;
use crate::prompt::{Positions, PromptInput};
use crate::sample::{self, Rng, SamplingParams};
use foveate_core::{DType, Error, HostTensor, Op, Result, Tensor};
use std::time::Instant;

/// A decoder with a KV cache, as the runtime drives it.
pub trait TextModel: Send + Sync {
    fn vocab_size(&self) -> usize;
    fn kv_shape(&self) -> KvShape;
    /// Token embeddings `[1, n, D]` of ids `[1, n]`.
    fn embed(&self, ex: &Exec, ids: &Tensor) -> Result<Buf>;
    /// Every layer over `x` `[1, Σ len_i, D]`: the new rows of several sequences one after the
    /// other, `seqs[i]` being sequence i's cache and its number of new rows, `positions` their
    /// rotary positions in the same order. Appends to the caches; returns the final-normed hidden
    /// states `[1, Σ len_i, D]`.
    fn forward(&self, ex: &Exec, x: Buf, positions: &Positions, seqs: &mut [(&mut KvCache, usize)]) -> Result<Buf>;
    /// Logits `[1, rows, V]` of the last `rows` rows of `h` `[1, len, D]`.
    fn logits(&self, ex: &Exec, h: &Tensor, rows: usize) -> Result<Buf>;
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

/// One request's timings. In a batch image encode and prefill are the request's own; `decode_ms`
/// is the batch's decode time until this request finished.
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

/// One request's state during generation.
struct Seq {
    cache: KvCache,
    rng: Rng,
    tokens: Vec<u32>,
    /// The token chosen by the last step, not yet appended to `tokens`.
    next: Option<u32>,
    /// Rotary position of the next token fed in (on every axis).
    next_pos: u32,
    axes: usize,
    done: bool,
    stopped: bool,
    prompt_logits: Option<HostTensor>,
    timings: Timings,
}

/// Runs `prompts` (each with its own parameters) to completion: prefill one after another, then
/// batched decode until every request is done. Generations come back in the order of `prompts`;
/// each request's tokens are the ones it gets alone. The pool is trimmed to what this call needed.
pub fn generate_each(ex: &Exec, model: &dyn TextModel, prompts: Vec<PromptInput>, params: &[GenerateParams]) -> Result<Vec<Generation>> {
    if prompts.len() != params.len() {
        return Err(Error::Msg(format!("{} requests but {} parameter sets", prompts.len(), params.len())));
    }
    let mut seqs = Vec::with_capacity(prompts.len());
    for (p, gp) in prompts.into_iter().zip(params) {
        seqs.push(prefill(ex, model, p, gp)?);
    }
    decode(ex, model, &mut seqs, params)?;
    ex.pool.end_request();
    Ok(seqs
        .into_iter()
        .map(|s| Generation { tokens: s.tokens, prompt_logits: s.prompt_logits, timings: s.timings, stopped_on_token: s.stopped })
        .collect())
}

/// Embed, splice and forward one prompt; picks its first token.
fn prefill(ex: &Exec, model: &dyn TextModel, p: PromptInput, params: &GenerateParams) -> Result<Seq> {
    let t1 = Instant::now();
    let prompt_len = p.ids.len();
    if p.positions.len != prompt_len {
        return Err(Error::Msg(format!("{} positions for a prompt of {prompt_len} tokens", p.positions.len)));
    }
    let mut cache = KvCache::new(ex, model.kv_shape(), prompt_len + params.max_new_tokens.max(1))?;
    let idt = ex.upload_u32(&[1, prompt_len], &p.ids)?;
    let emb = model.embed(ex, &idt)?;
    let x = match &p.splice {
        Some(s) => s.apply(ex, &emb)?,
        None => emb,
    };
    drop(p.splice);
    let h = model.forward(ex, x, &p.positions, &mut [(&mut cache, prompt_len)])?;
    let mut rng = Rng::new(params.sampling.seed);
    let mut prompt_logits = None;
    let mut next = None;
    if params.prompt_logits {
        let all = model.logits(ex, &h, prompt_len)?;
        let v = ex.backend.download(&all)?.to_f32();
        let vocab = model.vocab_size();
        if params.max_new_tokens > 0 {
            next = Some(sample::sample(&v[(prompt_len - 1) * vocab..], &params.sampling, &mut rng));
        }
        prompt_logits = Some(HostTensor::from_f32(DType::F32, vec![prompt_len, vocab], &v));
    } else if params.max_new_tokens > 0 {
        let last = model.logits(ex, &h, 1)?;
        next = Some(next_tokens(ex, &last, &mut [(&params.sampling, &mut rng)])?[0]);
    }
    drop(h);
    ex.backend.synchronize()?;
    let timings = Timings { image_encode_ms: p.image_encode_ms, prefill_ms: t1.elapsed().as_secs_f64() * 1e3, ..Timings::default() };
    let (next_pos, axes) = (p.positions.next(), p.positions.axes);
    Ok(Seq { cache, rng, tokens: Vec::new(), next, next_pos, axes, done: false, stopped: false, prompt_logits, timings })
}

/// Batched decode steps until every sequence is done.
fn decode(ex: &Exec, model: &dyn TextModel, seqs: &mut [Seq], params: &[GenerateParams]) -> Result<()> {
    let t0 = Instant::now();
    loop {
        // Take each sequence's pending token; it leaves the batch on a stop token or its budget.
        for (s, p) in seqs.iter_mut().zip(params) {
            if s.done {
                continue;
            }
            match s.next.take() {
                Some(tok) => {
                    s.tokens.push(tok);
                    if p.stop_tokens.contains(&tok) {
                        s.stopped = true;
                        s.done = true;
                    } else if s.tokens.len() >= p.max_new_tokens {
                        s.done = true;
                    }
                }
                None => s.done = true,
            }
            if s.done {
                ex.backend.synchronize()?;
                s.timings.decode_ms = t0.elapsed().as_secs_f64() * 1e3;
            }
        }
        let active: Vec<usize> = (0..seqs.len()).filter(|&i| !seqs[i].done).collect();
        if active.is_empty() {
            return Ok(());
        }
        let n = active.len();
        let ids: Vec<u32> = active.iter().map(|&i| *seqs[i].tokens.last().expect("a token")).collect();
        let runs: Vec<Positions> = active.iter().map(|&i| Positions::linear(seqs[i].axes, seqs[i].next_pos, 1)).collect();
        let positions = Positions::concat(&runs.iter().collect::<Vec<_>>())?;
        let idt = ex.upload_u32(&[1, n], &ids)?;
        let x = model.embed(ex, &idt)?;
        let mut batch: Vec<(&mut KvCache, usize)> = Vec::with_capacity(n);
        let mut samplers = Vec::with_capacity(n);
        for (i, s) in seqs.iter_mut().enumerate() {
            if !s.done {
                s.next_pos += 1;
                batch.push((&mut s.cache, 1));
                samplers.push((&params[i].sampling, &mut s.rng));
            }
        }
        let h = model.forward(ex, x, &positions, &mut batch)?;
        drop(batch);
        let logits = model.logits(ex, &h, n)?;
        drop(h);
        let toks = next_tokens(ex, &logits, &mut samplers)?;
        drop(samplers);
        for (&i, tok) in active.iter().zip(toks) {
            seqs[i].next = Some(tok);
            seqs[i].timings.decode_steps += 1;
        }
    }
}

/// Picks the next token of each row of logits `[1, n, V]`, row i with `samplers[i]`: greedy
/// rows by `Op::Argmax` on the device; when some row samples, the logits come to the host.
pub fn next_tokens(ex: &Exec, logits: &Tensor, samplers: &mut [(&SamplingParams, &mut Rng)]) -> Result<Vec<u32>> {
    if samplers.iter().all(|(p, _)| p.is_greedy()) {
        let id = ex.run(&Op::Argmax, &[logits])?;
        return Ok(ex.backend.download(&id)?.to_u32());
    }
    let host = ex.backend.download(logits)?.to_f32();
    let vocab = *logits.dims().last().expect("logits have a vocab axis");
    Ok(samplers.iter_mut().enumerate().map(|(i, (p, rng))| sample::sample(&host[i * vocab..(i + 1) * vocab], p, rng)).collect())
}
