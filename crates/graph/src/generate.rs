//! Generation: request checks, prefill (one request at a time: image encode, prompt forward), then
//! batched decode. Each decode step embeds the last token of every active request as one ragged
//! batch and runs the decoder's GEMMs (QKV, O, MLP, LM head) once over those rows, attention per
//! request over its own KV cache ([`decoder::forward_ragged`]). Requests leave the batch
//! independently when they emit a stop token or reach their token budget.

use crate::decoder::{self, KvCache};
use crate::model::{GenerateParams, Generation, LlavaModel, Request, Timings};
use crate::sample::{self, Rng};
use foveate_core::{DType, Error, HostTensor, Op, Result};
use std::time::Instant;

/// One request's state during generation.
struct Seq {
    cache: KvCache,
    rng: Rng,
    tokens: Vec<u32>,
    /// The token chosen by the last step, not yet appended to `tokens`.
    next: Option<u32>,
    done: bool,
    stopped: bool,
    prompt_logits: Option<HostTensor>,
    timings: Timings,
}

impl LlavaModel {
    /// Refuses a request the model cannot run as asked: an empty prompt, or a prompt (image tokens
    /// expanded) plus `max_new_tokens` longer than the context window
    /// (`text_config.max_position_embeddings`). Called by every generate method.
    pub fn check_request(&self, req: &Request, max_new_tokens: usize) -> Result<()> {
        if req.input_ids.is_empty() {
            return Err(Error::Msg("empty prompt: the request has no input ids (give a non-empty prompt)".into()));
        }
        let window = self.checkpoint.config.text.max_position_embeddings;
        let (prompt, total) = (req.input_ids.len(), req.input_ids.len().saturating_add(max_new_tokens));
        if total > window {
            let n_img = req.input_ids.iter().filter(|&&i| i == self.checkpoint.config.image_token_id).count();
            // A prompt that leaves no room for even one new token must be shortened whatever the budget.
            let advice = if prompt >= window {
                format!("the prompt alone leaves no room for a new token: shorten it to at most {} tokens", window - 1)
            } else {
                format!("shorten the prompt or lower max_new_tokens to at most {}", window - prompt)
            };
            return Err(Error::Msg(format!(
                "prompt of {prompt} tokens ({n_img} of them image tokens) + max_new_tokens {max_new_tokens} = {total} tokens \
                 exceeds the model's context window of {window} tokens (text_config.max_position_embeddings); {advice}"
            )));
        }
        Ok(())
    }

    /// Runs one request: image encode, prefill, decode loop.
    pub fn generate_one(&self, req: &Request, params: &GenerateParams) -> Result<Generation> {
        let mut out = self.generate_each(std::slice::from_ref(req), std::slice::from_ref(params))?;
        Ok(out.pop().expect("one generation per request"))
    }

    /// A batch of requests with different prompt lengths and one set of parameters; see
    /// [`LlavaModel::generate_each`].
    pub fn generate(&self, reqs: &[Request], params: &GenerateParams) -> Result<Vec<Generation>> {
        let each = vec![params.clone(); reqs.len()];
        self.generate_each(reqs, &each)
    }

    /// A batch of requests, each with its own parameters (token budget, stop tokens, sampling):
    /// prefill one after another, then batched decode steps until every request is done. The
    /// generations come back in the order of `reqs`; each request's tokens are the ones it gets
    /// alone. Per-request timings: its own image encode and prefill; `decode_ms` is the batch's
    /// decode time until that request finished.
    pub fn generate_each(&self, reqs: &[Request], params: &[GenerateParams]) -> Result<Vec<Generation>> {
        if reqs.len() != params.len() {
            return Err(Error::Msg(format!("{} requests but {} parameter sets", reqs.len(), params.len())));
        }
        for (i, (r, p)) in reqs.iter().zip(params).enumerate() {
            self.check_request(r, p.max_new_tokens)
                .map_err(|e| if reqs.len() > 1 { Error::Msg(format!("request {i}: {e}")) } else { e })?;
        }
        let mut seqs = Vec::with_capacity(reqs.len());
        for (r, p) in reqs.iter().zip(params) {
            seqs.push(self.prefill(r, p)?);
        }
        self.decode(&mut seqs, params)?;
        Ok(seqs
            .into_iter()
            .map(|s| Generation { tokens: s.tokens, prompt_logits: s.prompt_logits, timings: s.timings, stopped_on_token: s.stopped })
            .collect())
    }

    /// Image encode and prompt forward of one request; picks its first token.
    fn prefill(&self, req: &Request, params: &GenerateParams) -> Result<Seq> {
        let cfg = &self.checkpoint.config;
        let sync = || self.ex.backend.synchronize();
        let mut timings = Timings::default();
        let t0 = Instant::now();
        let feats = match &req.pixels {
            Some(px) => Some(self.encode(px)?),
            None => None,
        };
        sync()?;
        timings.image_encode_ms = t0.elapsed().as_secs_f64() * 1e3;

        let t1 = Instant::now();
        let prompt_len = req.input_ids.len();
        let mut cache = KvCache::new(&self.ex, &cfg.text, prompt_len + params.max_new_tokens.max(1))?;
        let x = self.embed(&req.input_ids, feats.as_ref())?;
        drop(feats);
        let h = decoder::forward(&self.ex, &cfg.text, &self.w.text, x, &mut cache)?;
        let mut rng = Rng::new(params.sampling.seed);
        let mut prompt_logits = None;
        let mut next = None;
        if params.prompt_logits {
            let all = decoder::logits(&self.ex, &self.w.text, &h, prompt_len)?;
            let v = self.ex.backend.download(&all)?.to_f32();
            let vocab = cfg.text.vocab_size;
            if params.max_new_tokens > 0 {
                next = Some(sample::sample(&v[(prompt_len - 1) * vocab..], &params.sampling, &mut rng));
            }
            prompt_logits = Some(HostTensor::from_f32(DType::F32, vec![prompt_len, vocab], &v));
        } else if params.max_new_tokens > 0 {
            let last = decoder::logits(&self.ex, &self.w.text, &h, 1)?;
            next = Some(self.next_tokens(&last, &mut [(&params.sampling, &mut rng)])?[0]);
        }
        drop(h);
        sync()?;
        timings.prefill_ms = t1.elapsed().as_secs_f64() * 1e3;
        Ok(Seq { cache, rng, tokens: Vec::new(), next, done: false, stopped: false, prompt_logits, timings })
    }

    /// Batched decode steps until every sequence is done.
    fn decode(&self, seqs: &mut [Seq], params: &[GenerateParams]) -> Result<()> {
        let cfg = &self.checkpoint.config;
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
                    self.ex.backend.synchronize()?;
                    s.timings.decode_ms = t0.elapsed().as_secs_f64() * 1e3;
                }
            }
            let active: Vec<usize> = (0..seqs.len()).filter(|&i| !seqs[i].done).collect();
            if active.is_empty() {
                return Ok(());
            }
            let n = active.len();
            let ids: Vec<u32> = active.iter().map(|&i| *seqs[i].tokens.last().expect("a token")).collect();
            let idt = self.ex.upload_u32(&[1, n], &ids)?;
            let x = self.ex.run(&Op::Embedding, &[&self.w.text.embed, &idt])?;
            let mut batch: Vec<(&mut KvCache, usize)> = Vec::with_capacity(n);
            let mut samplers = Vec::with_capacity(n);
            for (i, s) in seqs.iter_mut().enumerate() {
                if !s.done {
                    batch.push((&mut s.cache, 1));
                    samplers.push((&params[i].sampling, &mut s.rng));
                }
            }
            let h = decoder::forward_ragged(&self.ex, &cfg.text, &self.w.text, x, &mut batch)?;
            drop(batch);
            let logits = decoder::logits(&self.ex, &self.w.text, &h, n)?;
            drop(h);
            let toks = self.next_tokens(&logits, &mut samplers)?;
            drop(samplers);
            for (&i, tok) in active.iter().zip(toks) {
                seqs[i].next = Some(tok);
                seqs[i].timings.decode_steps += 1;
            }
        }
    }

    /// Picks the next token of each row of logits `[1, n, V]`, row i with `samplers[i]`: greedy
    /// rows by `Op::Argmax` on the device; when some row samples, the logits come to the host.
    fn next_tokens(&self, logits: &foveate_core::Tensor, samplers: &mut [(&crate::SamplingParams, &mut Rng)]) -> Result<Vec<u32>> {
        if samplers.iter().all(|(p, _)| p.is_greedy()) {
            let id = self.ex.run(&Op::Argmax, &[logits])?;
            return Ok(self.ex.backend.download(&id)?.to_u32());
        }
        let host = self.ex.backend.download(logits)?.to_f32();
        let vocab = *logits.dims().last().expect("logits have a vocab axis");
        Ok(samplers.iter_mut().enumerate().map(|(i, (p, rng))| sample::sample(&host[i * vocab..(i + 1) * vocab], p, rng)).collect())
    }
}
