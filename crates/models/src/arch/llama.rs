//! The Llama-family decoder (`llama`, `mistral`, `qwen2` text models): RMSNorm, RoPE, grouped-query
//! attention over a KV cache (causal, or sliding-window per layer), SwiGLU MLP, tied or separate LM
//! head; q/k/v biases for Qwen2; M-RoPE over three position axes when the config has an
//! `mrope_section` (the Qwen2-VL / Qwen2.5-VL decoders). One forward runs a ragged batch: every GEMM, norm and RoPE once
//! over all sequences' rows, attention per sequence over its own cache.

use super::layers::{Linear, Projections, RmsNorm, SwiGlu};
use crate::config::{LayerAttention, TextConfig};
use crate::names::Part;
use crate::vars::{Role, Scope, TensorSource};
use foveate_core::{AttentionSpec, Error, Mask, Op, Result, RopeSpec, Tensor, TensorDesc};
use foveate_graph::{Buf, Exec, KvCache, KvShape, Positions, TextModel};

pub struct LlamaLayer {
    pub in_norm: RmsNorm,
    /// q, k, v (one stacked product on the cpu).
    pub qkv: Projections,
    pub o: Linear,
    pub post_norm: RmsNorm,
    pub mlp: SwiGlu,
}

pub struct Llama {
    pub cfg: TextConfig,
    pub embed: Tensor,
    pub layers: Vec<LlamaLayer>,
    pub norm: RmsNorm,
    /// The LM head, or the embedding table when tied.
    pub lm_head: Tensor,
}

impl Llama {
    /// The decoder (`Part::Text`) and its LM head (`Part::LmHead`, unless tied).
    pub fn load(src: &mut dyn TensorSource, cfg: &TextConfig) -> Result<Llama> {
        let t = cfg;
        let s = Scope::new(Part::Text, "");
        let (d, eps) = (t.hidden_size, t.rms_norm_eps);
        let (qd, kvd) = (t.num_heads * t.head_dim, t.num_kv_heads * t.head_dim);
        let embed = s.get(
            src,
            "embed_tokens.weight",
            &[t.vocab_size, d],
            Role::Embedding,
        )?;
        let mut layers = Vec::with_capacity(t.num_layers);
        for li in 0..t.num_layers {
            let l = s.pp(format!("layers.{li}"));
            let a = l.pp("self_attn");
            let in_norm = RmsNorm::load(&l, src, "input_layernorm", d, eps)?;
            let (q, k, v) = if t.qkv_bias {
                // weights first, then biases: the order HF writes them
                let (qw, kw, vw) = (
                    Linear::load(&a, src, "q_proj", qd, d, false)?,
                    Linear::load(&a, src, "k_proj", kvd, d, false)?,
                    Linear::load(&a, src, "v_proj", kvd, d, false)?,
                );
                let bias = |src: &mut dyn TensorSource, n: &str, rows: usize| {
                    a.get(src, &format!("{n}.bias"), &[rows], Role::Bias)
                };
                (
                    Linear {
                        b: Some(bias(src, "q_proj", qd)?),
                        ..qw
                    },
                    Linear {
                        b: Some(bias(src, "k_proj", kvd)?),
                        ..kw
                    },
                    Linear {
                        b: Some(bias(src, "v_proj", kvd)?),
                        ..vw
                    },
                )
            } else {
                (
                    Linear::load(&a, src, "q_proj", qd, d, false)?,
                    Linear::load(&a, src, "k_proj", kvd, d, false)?,
                    Linear::load(&a, src, "v_proj", kvd, d, false)?,
                )
            };
            let qkv = Projections::new(src, vec![q, k, v])?;
            let o = Linear::load(&a, src, "o_proj", d, qd, false)?;
            let post_norm = RmsNorm::load(&l, src, "post_attention_layernorm", d, eps)?;
            let mlp = SwiGlu::load(&l.pp("mlp"), src, d, t.intermediate_size)?;
            layers.push(LlamaLayer {
                in_norm,
                qkv,
                o,
                post_norm,
                mlp,
            });
        }
        let norm = RmsNorm::load(&s, src, "norm", d, eps)?;
        let lm_head = if !t.tie_word_embeddings {
            Scope::new(Part::LmHead, "").get(src, "weight", &[t.vocab_size, d], Role::Head)?
        } else if src.separate_head() {
            // A tied head in another format than the table (int8 beside an f32 table): its own tensor.
            s.get(src, "embed_tokens.weight", &[t.vocab_size, d], Role::Head)?
        } else {
            embed.clone()
        };
        Ok(Llama {
            cfg: cfg.clone(),
            embed,
            layers,
            norm,
            lm_head,
        })
    }

    /// Appends one sequence's new k, v `[1, len, Hkv, D]` to layer `li` of its cache (at rows
    /// `cache.len..`) and attends q `[1, len, Hq, D]` over the cache; returns `[1, len, Hq, D]`.
    #[allow(clippy::too_many_arguments)]
    fn attend(
        &self,
        ex: &Exec,
        li: usize,
        mask: &Mask,
        cache: &KvCache,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
    ) -> Result<Buf> {
        let c = &self.cfg;
        let (len, past) = (q.dims()[1], cache.len);
        ex.kv_append(&cache.k[li], k, past)?;
        ex.kv_append(&cache.v[li], v, past)?;
        let mut spec = AttentionSpec::new(
            1,
            c.num_heads,
            c.num_kv_heads,
            len,
            past + len,
            c.head_dim,
            mask.clone(),
        );
        spec.kv_capacity = cache.capacity;
        ex.attention(spec, q, &cache.k[li], &cache.v[li])
    }
}

impl TextModel for Llama {
    fn vocab_size(&self) -> usize {
        self.cfg.vocab_size
    }

    fn kv_shape(&self) -> KvShape {
        KvShape {
            layers: self.cfg.num_layers,
            kv_heads: self.cfg.num_kv_heads,
            head_dim: self.cfg.head_dim,
        }
    }

    fn embed(&self, ex: &Exec, ids: &Tensor) -> Result<Buf> {
        ex.embed(&self.embed, ids)
    }

    fn embedding_width(&self) -> usize {
        self.cfg.hidden_size
    }

    fn forward(
        &self,
        ex: &Exec,
        mut x: Buf,
        positions: &Positions,
        seqs: &mut [(&mut KvCache, usize)],
    ) -> Result<Buf> {
        let cfg = &self.cfg;
        let total = x.dims()[1];
        if seqs.is_empty()
            || seqs.iter().map(|s| s.1).sum::<usize>() != total
            || seqs.iter().any(|s| s.1 == 0)
            || positions.len != total
        {
            let lens: Vec<usize> = seqs.iter().map(|s| s.1).collect();
            return Err(Error::Msg(format!(
                "ragged batch: row counts {lens:?} must be positive and add up to the {total} rows of x (and of the {} positions)",
                positions.len
            )));
        }
        for (i, (cache, len)) in seqs.iter().enumerate() {
            let kv_len = cache.len + len;
            if kv_len > cache.capacity {
                let who = if seqs.len() > 1 {
                    format!("sequence {i}: ")
                } else {
                    String::new()
                };
                return Err(Error::Msg(format!(
                    "{who}sequence of {kv_len} tokens exceeds the KV cache capacity {}",
                    cache.capacity
                )));
            }
        }
        // Text RoPE: one position axis (multi-axis positions use their first). M-RoPE (Qwen2-VL):
        // the t/h/w axes, each taking its section of the frequency pairs (one axis is text alone:
        // the same positions on all three).
        let (pos, rope) = match &cfg.mrope_section {
            Some(sections) => {
                let data = match positions.axes {
                    3 => std::borrow::Cow::Borrowed(&positions.data),
                    1 => std::borrow::Cow::Owned(positions.data.repeat(3)),
                    a => {
                        return Err(Error::Msg(format!(
                            "M-RoPE takes 3 position axes (or 1 for text alone), got {a}"
                        )))
                    }
                };
                (
                    ex.upload_u32(&[3, 1, total], &data)?,
                    Op::Rope(RopeSpec::mrope(cfg.rope_theta, None, sections)?),
                )
            }
            None => (
                ex.upload_u32(&[1, total], positions.axis(0))?,
                Op::Rope(RopeSpec::text(cfg.rope_theta, None)),
            ),
        };
        let (hq, hkv, hd) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
        for (li, l) in self.layers.iter().enumerate() {
            let h = l.in_norm.forward(ex, &x)?;
            let [q, k, v]: [Buf; 3] =
                l.qkv.forward(ex, &h)?.try_into().map_err(|_| {
                    Error::Msg("a decoder layer has three projections: q, k, v".into())
                })?;
            drop(h);
            let q = q.into_shape([1, total, hq, hd])?;
            let q = ex.run(&rope, &[&q, &pos])?;
            let k = k.into_shape([1, total, hkv, hd])?;
            let k = ex.run(&rope, &[&k, &pos])?;
            let v = v.into_shape([1, total, hkv, hd])?;
            let mask = match cfg.layers[li] {
                LayerAttention::Full => Mask::Causal,
                LayerAttention::Sliding(window) => Mask::SlidingWindow { window },
            };
            let a = if let [(cache, len)] = seqs {
                self.attend(ex, li, &mask, cache, &q, &k, &v)?
                    .into_shape([1, *len, hq * hd])?
            } else {
                let out = ex
                    .pool
                    .alloc(&TensorDesc::new(ex.dtype, vec![1, total, hq, hd]))?;
                let mut start = 0;
                for (cache, len) in seqs.iter() {
                    let rows = |t: &Tensor| {
                        ex.run(
                            &Op::Slice {
                                axis: 1,
                                start,
                                len: *len,
                            },
                            &[t],
                        )
                    };
                    let (qi, ki, vi) = (rows(&q)?, rows(&k)?, rows(&v)?);
                    let ai = self.attend(ex, li, &mask, cache, &qi, &ki, &vi)?;
                    // KvAppend as a row scatter: rows start..start+len of `out`.
                    ex.kv_append(&out, &ai, start)?;
                    start += len;
                }
                out.into_shape([1, total, hq * hd])?
            };
            drop((q, k, v));
            x = l.o.forward_residual(ex, &a, &x)?;
            drop(a);
            let h = l.post_norm.forward(ex, &x)?;
            x = l.mlp.forward_residual(ex, &h, &x)?;
        }
        for (cache, len) in seqs.iter_mut() {
            cache.len += *len;
        }
        self.norm.forward(ex, &x)
    }

    fn logits(&self, ex: &Exec, h: &Tensor, rows: usize) -> Result<Buf> {
        let len = h.dims()[1];
        let plain = Op::Gemm(foveate_core::GemmSpec::plain());
        if rows == len {
            return ex.run(&plain, &[h, &self.lm_head]);
        }
        let last = ex.run(
            &Op::Slice {
                axis: 1,
                start: len - rows,
                len: rows,
            },
            &[h],
        )?;
        ex.run(&plain, &[&last, &self.lm_head])
    }
}
