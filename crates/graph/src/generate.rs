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
    /// `D`, the width of the embeddings.
    fn embedding_width(&self) -> usize;
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

/// A request handed to [`run_batched`]: its prompt and parameters.
pub struct Admitted {
    pub prompt: PromptInput,
    pub params: GenerateParams,
}

/// One request's state during generation.
struct Seq {
    /// Index in admission order.
    index: usize,
    params: GenerateParams,
    cache: KvCache,
    rng: Rng,
    tokens: Vec<u32>,
    /// The token chosen by the last step, not yet appended to `tokens`.
    next: Option<u32>,
    /// Rotary position of the next token fed in (on every axis).
    next_pos: u32,
    axes: usize,
    stopped: bool,
    prompt_logits: Option<HostTensor>,
    timings: Timings,
    /// When this request's decode started.
    decode_start: Instant,
}

impl Seq {
    fn new(index: usize, p: &PromptInput, params: GenerateParams, cache: KvCache) -> Seq {
        let timings = Timings { image_encode_ms: p.image_encode_ms, ..Timings::default() };
        let rng = Rng::new(params.sampling.seed);
        let (next_pos, axes) = (p.positions.next(), p.positions.axes);
        Seq { index, params, cache, rng, tokens: Vec::new(), next: None, next_pos, axes, stopped: false, prompt_logits: None, timings, decode_start: Instant::now() }
    }

    /// Takes the pending token; true when the request is done (a stop token, its budget, or a
    /// budget of 0). Without a pending token (taken already, no decode step since) nothing changes.
    fn take_next(&mut self) -> bool {
        match self.next.take() {
            Some(tok) => {
                self.tokens.push(tok);
                if self.params.stop_tokens.contains(&tok) {
                    self.stopped = true;
                    true
                } else {
                    self.tokens.len() >= self.params.max_new_tokens
                }
            }
            None => self.params.max_new_tokens == 0,
        }
    }

    fn finish(self) -> (usize, Generation) {
        let g = Generation { tokens: self.tokens, prompt_logits: self.prompt_logits, timings: self.timings, stopped_on_token: self.stopped };
        (self.index, g)
    }
}

/// Runs `prompts` (each with its own parameters) to completion: prefill one after another, then
/// batched decode until every request is done. Generations come back in the order of `prompts`;
/// each request's tokens are the ones it gets alone. The pool is trimmed to what this call needed.
pub fn generate_each(ex: &Exec, model: &dyn TextModel, prompts: Vec<PromptInput>, params: &[GenerateParams]) -> Result<Vec<Generation>> {
    if prompts.len() != params.len() {
        return Err(Error::Msg(format!("{} requests but {} parameter sets", prompts.len(), params.len())));
    }
    let mut active = Vec::with_capacity(prompts.len());
    for (i, (p, gp)) in prompts.into_iter().zip(params).enumerate() {
        active.push(prefill_one(ex, model, i, p, gp.clone())?);
    }
    let mut out: Vec<Option<Generation>> = (0..active.len()).map(|_| None).collect();
    let t0 = Instant::now();
    for s in active.iter_mut() {
        s.decode_start = t0;
    }
    while !active.is_empty() {
        for (i, g) in retire(ex, &mut active)? {
            out[i] = Some(g);
        }
        if !active.is_empty() {
            decode_step(ex, model, &mut active)?;
        }
    }
    ex.pool.end_request();
    Ok(out.into_iter().map(|g| g.expect("every request finishes")).collect())
}

/// Continuous batching: at most `max_batch` requests decode together. Whenever slots are free,
/// `admit(free)` is asked for up to that many new requests (an empty answer: there are no more);
/// they are prefilled together (one ragged forward over all their prompts; their images are the
/// architecture's business) and join the decode batch, where each request leaves as soon as it
/// is done and `done(index, generation)` is called (index: admission order). Each request gets
/// the tokens it would get alone. The pool is trimmed at the end.
pub fn run_batched(
    ex: &Exec,
    model: &dyn TextModel,
    max_batch: usize,
    admit: &mut dyn FnMut(usize) -> Result<Vec<Admitted>>,
    done: &mut dyn FnMut(usize, Generation) -> Result<()>,
) -> Result<()> {
    struct Closures<'a> {
        admit: &'a mut dyn FnMut(usize) -> Result<Vec<Admitted>>,
        done: &'a mut dyn FnMut(usize, Generation) -> Result<()>,
    }
    impl Scheduler for Closures<'_> {
        fn admit(&mut self, free: usize, _idle: bool) -> Result<Option<Vec<Admitted>>> {
            let new = (self.admit)(free)?;
            Ok(if new.is_empty() { None } else { Some(new) })
        }
        fn done(&mut self, index: usize, g: Generation) -> Result<()> {
            (self.done)(index, g)
        }
    }
    run_continuous(ex, model, max_batch, &mut Closures { admit, done })
}

/// The other side of [`run_continuous`]: where requests come from and where their tokens go.
/// A server implements it over its request queue; [`run_batched`] over a fixed list.
pub trait Scheduler {
    /// Up to `free` new requests. `Some(empty)`: none right now (decoding goes on; asked again
    /// after the next step); `None`: none will ever come (the loop ends when the batch is empty).
    /// `idle` says nothing is running, so an implementation may block until a request comes.
    fn admit(&mut self, free: usize, idle: bool) -> Result<Option<Vec<Admitted>>>;
    /// After every step, for each request still running: its tokens so far (the newest last).
    /// Returning false drops it from the batch at once (its cache freed, `done` not called): a
    /// client that went away, or a stop condition the scheduler checks itself.
    fn progress(&mut self, _index: usize, _tokens: &[u32]) -> bool {
        true
    }
    /// Request `index` (admission order) finished: a stop token or its token budget.
    fn done(&mut self, index: usize, g: Generation) -> Result<()>;
}

/// Continuous batching over a [`Scheduler`]: whenever slots are free and requests may come, it is
/// asked for up to that many; they are prefilled together (one ragged forward) and join the
/// decode batch, one step for every running request at a time; a request leaves as soon as it
/// is done (or the scheduler drops it) and a new one takes its slot at the next admission. Each
/// request gets the tokens it would get alone. The pool is trimmed at the end.
pub fn run_continuous(ex: &Exec, model: &dyn TextModel, max_batch: usize, sched: &mut dyn Scheduler) -> Result<()> {
    let max_batch = max_batch.max(1);
    let mut active: Vec<Seq> = Vec::with_capacity(max_batch);
    let (mut admitted, mut closed) = (0usize, false);
    loop {
        // Nothing waiting right now (asked this round): decode instead of asking again.
        let mut none_now = false;
        if !closed && active.len() < max_batch {
            let free = max_batch - active.len();
            if active.is_empty() && admitted > 0 {
                // Idle (a server may wait here for long): keep only what the busy spell needed.
                ex.pool.end_request();
            }
            match sched.admit(free, active.is_empty())? {
                None => closed = true,
                Some(new) if new.is_empty() => none_now = true,
                Some(new) => {
                    if new.len() > free {
                        return Err(Error::Msg(format!("admitted {} requests into {free} free slots", new.len())));
                    }
                    let n = new.len();
                    active.extend(prefill_group(ex, model, admitted, new)?);
                    admitted += n;
                }
            }
        }
        for (i, g) in retire(ex, &mut active)? {
            sched.done(i, g)?;
        }
        active.retain(|s| sched.progress(s.index, &s.tokens));
        if active.is_empty() {
            if closed {
                break;
            }
            continue;
        }
        // Refill before decoding when a slot is free and requests may wait.
        if !closed && !none_now && active.len() < max_batch {
            continue;
        }
        decode_step(ex, model, &mut active)?;
    }
    ex.pool.end_request();
    Ok(())
}

/// Moves each active sequence's pending token into its output; removes and returns the ones that
/// are done.
fn retire(ex: &Exec, active: &mut Vec<Seq>) -> Result<Vec<(usize, Generation)>> {
    let mut finished = Vec::new();
    let mut i = 0;
    while i < active.len() {
        if active[i].take_next() {
            ex.backend.synchronize()?;
            let mut s = active.remove(i);
            s.timings.decode_ms = s.decode_start.elapsed().as_secs_f64() * 1e3;
            finished.push(s.finish());
        } else {
            i += 1;
        }
    }
    Ok(finished)
}

/// Embed, splice and forward one prompt; picks its first token.
fn prefill_one(ex: &Exec, model: &dyn TextModel, index: usize, p: PromptInput, params: GenerateParams) -> Result<Seq> {
    let t1 = Instant::now();
    let prompt_len = check_prompt(&p)?;
    let cache = KvCache::new(ex, model.kv_shape(), prompt_len + params.max_new_tokens.max(1))?;
    let mut s = Seq::new(index, &p, params, cache);
    let x = spliced_embeddings(ex, model, &p)?;
    drop(p.splice);
    let h = model.forward(ex, x, &p.positions, &mut [(&mut s.cache, prompt_len)])?;
    let params = &s.params;
    if params.prompt_logits {
        let all = model.logits(ex, &h, prompt_len)?;
        let v = ex.backend.download(&all)?.to_f32();
        let vocab = model.vocab_size();
        if params.max_new_tokens > 0 {
            s.next = Some(sample::sample(&v[(prompt_len - 1) * vocab..], &params.sampling, &mut s.rng));
        }
        s.prompt_logits = Some(HostTensor::from_f32(DType::F32, vec![prompt_len, vocab], &v));
    } else if params.max_new_tokens > 0 {
        let last = model.logits(ex, &h, 1)?;
        s.next = Some(next_tokens(ex, &last, &mut [(&s.params.sampling, &mut s.rng)])?[0]);
    }
    drop(h);
    ex.backend.synchronize()?;
    s.timings.prefill_ms = t1.elapsed().as_secs_f64() * 1e3;
    s.decode_start = Instant::now();
    Ok(s)
}

/// Several prompts prefilled by one forward over all their rows (each attends over its own cache);
/// the first token of each from its last row. Prompts that want their prefill logits (or a group of
/// one) go through [`prefill_one`].
fn prefill_group(ex: &Exec, model: &dyn TextModel, first: usize, group: Vec<Admitted>) -> Result<Vec<Seq>> {
    if group.len() == 1 || group.iter().any(|a| a.params.prompt_logits || a.params.max_new_tokens == 0) {
        return group.into_iter().enumerate().map(|(i, a)| prefill_one(ex, model, first + i, a.prompt, a.params)).collect();
    }
    let t1 = Instant::now();
    let mut lens = Vec::with_capacity(group.len());
    for a in &group {
        lens.push(check_prompt(&a.prompt)?);
    }
    let total: usize = lens.iter().sum();
    let d = model.embedding_width();
    // Each prompt's spliced embeddings, written into its rows of one [1, Σ T, D] input.
    let x = ex.pool.alloc(&foveate_core::TensorDesc::new(ex.dtype, vec![1, total, 1, d]))?;
    let mut seqs = Vec::with_capacity(group.len());
    let mut start = 0;
    for (i, (a, &len)) in group.iter().zip(&lens).enumerate() {
        let xi = spliced_embeddings(ex, model, &a.prompt)?.into_shape([1, len, 1, d])?;
        ex.kv_append(&x, &xi, start)?;
        start += len;
        let cache = KvCache::new(ex, model.kv_shape(), len + a.params.max_new_tokens.max(1))?;
        seqs.push(Seq::new(first + i, &a.prompt, a.params.clone(), cache));
    }
    let x = x.into_shape([1, total, d])?;
    let runs: Vec<&Positions> = group.iter().map(|a| &a.prompt.positions).collect();
    let positions = Positions::concat(&runs)?;
    drop(group);
    let h = {
        let mut batch: Vec<(&mut KvCache, usize)> = seqs.iter_mut().zip(&lens).map(|(s, &l)| (&mut s.cache, l)).collect();
        model.forward(ex, x, &positions, &mut batch)?
    };
    // The last row of every prompt, gathered, through the LM head at once.
    let mut last = Vec::with_capacity(lens.len());
    let mut end = 0u32;
    for &l in &lens {
        end += l as u32;
        last.push(end - 1);
    }
    let table = h.into_shape([total, d])?;
    let rows = ex.upload_u32(&[1, last.len()], &last)?;
    let hl = ex.run(&Op::Embedding, &[&table, &rows])?;
    drop(table);
    let logits = model.logits(ex, &hl, last.len())?;
    let toks = {
        let mut samplers: Vec<(&SamplingParams, &mut Rng)> = seqs.iter_mut().map(|s| (&s.params.sampling, &mut s.rng)).collect();
        next_tokens(ex, &logits, &mut samplers)?
    };
    ex.backend.synchronize()?;
    let ms = t1.elapsed().as_secs_f64() * 1e3;
    for (s, t) in seqs.iter_mut().zip(toks) {
        s.next = Some(t);
        s.timings.prefill_ms = ms;
        s.decode_start = Instant::now();
    }
    Ok(seqs)
}

/// The prompt's length, checked against its positions.
fn check_prompt(p: &PromptInput) -> Result<usize> {
    if p.positions.len != p.ids.len() || p.ids.is_empty() {
        return Err(Error::Msg(format!("{} positions for a prompt of {} tokens", p.positions.len, p.ids.len())));
    }
    Ok(p.ids.len())
}

/// Token embeddings of the prompt with its image features spliced in: `[1, T, D]`.
fn spliced_embeddings(ex: &Exec, model: &dyn TextModel, p: &PromptInput) -> Result<Buf> {
    let idt = ex.upload_u32(&[1, p.ids.len()], &p.ids)?;
    let emb = model.embed(ex, &idt)?;
    match &p.splice {
        Some(s) => s.apply(ex, &emb),
        None => Ok(emb),
    }
}

/// One decode step over every active sequence: its last token in, its next token chosen.
fn decode_step(ex: &Exec, model: &dyn TextModel, active: &mut [Seq]) -> Result<()> {
    let n = active.len();
    let ids: Vec<u32> = active.iter().map(|s| *s.tokens.last().expect("a token")).collect();
    let runs: Vec<Positions> = active.iter().map(|s| Positions::linear(s.axes, s.next_pos, 1)).collect();
    let positions = Positions::concat(&runs.iter().collect::<Vec<_>>())?;
    let idt = ex.upload_u32(&[1, n], &ids)?;
    let x = model.embed(ex, &idt)?;
    for s in active.iter_mut() {
        s.next_pos += 1;
    }
    let h = {
        let mut batch: Vec<(&mut KvCache, usize)> = active.iter_mut().map(|s| (&mut s.cache, 1)).collect();
        model.forward(ex, x, &positions, &mut batch)?
    };
    let logits = model.logits(ex, &h, n)?;
    drop(h);
    let toks = {
        let mut samplers: Vec<(&SamplingParams, &mut Rng)> = active.iter_mut().map(|s| (&s.params.sampling, &mut s.rng)).collect();
        next_tokens(ex, &logits, &mut samplers)?
    };
    for (s, tok) in active.iter_mut().zip(toks) {
        s.next = Some(tok);
        s.timings.decode_steps += 1;
    }
    Ok(())
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
