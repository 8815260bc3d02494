//! Layer helpers every architecture builds from: a linear layer, LayerNorm, the two-layer MLP
//! (one fused op for a GELU), a SwiGLU feed-forward, attention from projections. Each pairs its
//! weights (loaded through a [`TensorSource`]) with its forward.

use crate::vars::{Role, Scope, TensorSource};
use foveate_core::{Activation, GemmSpec, MlpSpec, Op, Result, Tensor};
use foveate_graph::{Buf, Exec};

const fn gemm(bias: bool, residual: bool) -> GemmSpec {
    GemmSpec {
        act: Activation::None,
        bias,
        residual,
    }
}

/// `x wᵀ (+ b)`: weight `[out, in]`, bias `[out]`.
pub struct Linear {
    pub w: Tensor,
    pub b: Option<Tensor>,
}

impl Linear {
    /// `name.weight` (and `name.bias` when `bias`).
    pub fn load(
        s: &Scope,
        src: &mut dyn TensorSource,
        name: &str,
        out: usize,
        inp: usize,
        bias: bool,
    ) -> Result<Linear> {
        let w = s.get(src, &format!("{name}.weight"), &[out, inp], Role::Weight)?;
        let b = if bias {
            Some(s.get(src, &format!("{name}.bias"), &[out], Role::Bias)?)
        } else {
            None
        };
        Ok(Linear { w, b })
    }

    /// A weight that may lack a bias in the checkpoint but is computed with one (zeros).
    pub fn load_zero_bias(
        s: &Scope,
        src: &mut dyn TensorSource,
        name: &str,
        out: usize,
        inp: usize,
        bias: bool,
    ) -> Result<Linear> {
        let mut l = Linear::load(s, src, name, out, inp, bias)?;
        if l.b.is_none() {
            l.b = Some(src.zeros(&[out])?);
        }
        Ok(l)
    }

    pub fn forward(&self, ex: &Exec, x: &Tensor) -> Result<Buf> {
        match &self.b {
            Some(b) => ex.run(&Op::Gemm(gemm(true, false)), &[x, &self.w, b]),
            None => ex.run(&Op::Gemm(gemm(false, false)), &[x, &self.w]),
        }
    }

    /// `x wᵀ (+ b) + residual`.
    pub fn forward_residual(&self, ex: &Exec, x: &Tensor, residual: &Tensor) -> Result<Buf> {
        match &self.b {
            Some(b) => ex.run(&Op::Gemm(gemm(true, true)), &[x, &self.w, b, residual]),
            None => ex.run(&Op::Gemm(gemm(false, true)), &[x, &self.w, residual]),
        }
    }
}

/// Projections of one input (a decoder layer's q, k, v): one product over the weights stacked by
/// rows, then a slice per part, where the source stacks them ([`TensorSource::fuse_rows`]: the cpu
/// backends); otherwise one product per part. Either way each part's output is its own tensor.
pub enum Projections {
    Apart(Vec<Linear>),
    /// The stacked weight (and bias) and each part's rows, in order.
    Stacked(Linear, Vec<usize>),
}

impl Projections {
    /// `parts` stacked when `src` stacks them (their biases too: all present or all absent).
    pub fn new(src: &mut dyn TensorSource, parts: Vec<Linear>) -> Result<Projections> {
        let biases: Option<Vec<&Tensor>> = parts.iter().map(|l| l.b.as_ref()).collect();
        if biases.is_none() && parts.iter().any(|l| l.b.is_some()) {
            return Ok(Projections::Apart(parts));
        }
        let weights: Vec<&Tensor> = parts.iter().map(|l| &l.w).collect();
        let Some(w) = src.fuse_rows(&weights)? else {
            return Ok(Projections::Apart(parts));
        };
        let b = match biases {
            Some(bs) => match src.fuse_rows(&bs)? {
                Some(b) => Some(b),
                None => return Ok(Projections::Apart(parts)),
            },
            None => None,
        };
        let rows = parts.iter().map(|l| l.w.dims()[0]).collect();
        Ok(Projections::Stacked(Linear { w, b }, rows))
    }

    /// Each part's `x wᵀ (+ b)`, in order.
    pub fn forward(&self, ex: &Exec, x: &Tensor) -> Result<Vec<Buf>> {
        match self {
            Projections::Apart(parts) => parts.iter().map(|l| l.forward(ex, x)).collect(),
            Projections::Stacked(l, rows) => {
                let y = l.forward(ex, x)?;
                let axis = y.dims().len() - 1;
                let mut start = 0;
                rows.iter()
                    .map(|&len| {
                        start += len;
                        ex.run(
                            &Op::Slice {
                                axis,
                                start: start - len,
                                len,
                            },
                            &[&y],
                        )
                    })
                    .collect()
            }
        }
    }
}

/// LayerNorm with scale and shift `[d]`.
pub struct LayerNorm {
    pub g: Tensor,
    pub b: Tensor,
    pub eps: f32,
}

impl LayerNorm {
    pub fn load(
        s: &Scope,
        src: &mut dyn TensorSource,
        name: &str,
        d: usize,
        eps: f32,
    ) -> Result<LayerNorm> {
        let g = s.get(src, &format!("{name}.weight"), &[d], Role::Norm)?;
        let b = s.get(src, &format!("{name}.bias"), &[d], Role::NormBias)?;
        Ok(LayerNorm { g, b, eps })
    }
    pub fn forward(&self, ex: &Exec, x: &Tensor) -> Result<Buf> {
        ex.run(&Op::LayerNorm { eps: self.eps }, &[x, &self.g, &self.b])
    }
}

/// RMSNorm with weight `[d]`.
pub struct RmsNorm {
    pub w: Tensor,
    pub eps: f32,
}

impl RmsNorm {
    pub fn load(
        s: &Scope,
        src: &mut dyn TensorSource,
        name: &str,
        d: usize,
        eps: f32,
    ) -> Result<RmsNorm> {
        Ok(RmsNorm {
            w: s.get(src, &format!("{name}.weight"), &[d], Role::Norm)?,
            eps,
        })
    }
    pub fn forward(&self, ex: &Exec, x: &Tensor) -> Result<Buf> {
        ex.run(&Op::RmsNorm { eps: self.eps }, &[x, &self.w])
    }
}

/// `act(x w1ᵀ + b1) w2ᵀ + b2 (+ residual)`: one fused op for a GELU, two GEMMs otherwise. Both
/// layers have biases (the fused op takes them; a checkpoint without them loads zeros).
pub struct Mlp {
    pub fc1: Linear,
    pub fc2: Linear,
    pub act: Activation,
}

impl Mlp {
    pub fn forward(&self, ex: &Exec, x: &Tensor, residual: Option<&Tensor>) -> Result<Buf> {
        let (b1, b2) = (
            self.fc1.b.as_ref().expect("MLP bias"),
            self.fc2.b.as_ref().expect("MLP bias"),
        );
        if Activation::GELUS.contains(&self.act) {
            let spec = MlpSpec {
                act: self.act,
                residual: residual.is_some(),
            };
            let mut ins = vec![x, &self.fc1.w, b1, &self.fc2.w, b2];
            ins.extend(residual);
            return ex.run(&Op::GeluMlp(spec), &ins);
        }
        let h = ex.run(
            &Op::Gemm(GemmSpec {
                act: self.act,
                bias: true,
                residual: false,
            }),
            &[x, &self.fc1.w, b1],
        )?;
        match residual {
            Some(r) => self.fc2.forward_residual(ex, &h, r),
            None => self.fc2.forward(ex, &h),
        }
    }
}

/// `down(silu(gate(x)) · up(x)) + residual` (Llama's MLP, no biases). Gate and up stay two
/// products even on the cpu: stacked, decode ran 3-5 % faster but a 256-token prefill 5 % slower
/// (the two slices of the stacked output are copies), 2026-12-08.
pub struct SwiGlu {
    pub gate: Linear,
    pub up: Linear,
    pub down: Linear,
}

impl SwiGlu {
    pub fn load(s: &Scope, src: &mut dyn TensorSource, d: usize, hidden: usize) -> Result<SwiGlu> {
        Ok(SwiGlu {
            gate: Linear::load(s, src, "gate_proj", hidden, d, false)?,
            up: Linear::load(s, src, "up_proj", hidden, d, false)?,
            down: Linear::load(s, src, "down_proj", d, hidden, false)?,
        })
    }
    pub fn forward_residual(&self, ex: &Exec, x: &Tensor, residual: &Tensor) -> Result<Buf> {
        let g = self.gate.forward(ex, x)?;
        let u = self.up.forward(ex, x)?;
        let s = ex.run(&Op::SwiGlu, &[&g, &u])?;
        drop((g, u));
        self.down.forward_residual(ex, &s, residual)
    }
}
