//! Encoding of every op: picks the kernel and its specialisation, binds, dispatches.

use crate::buffers::DevBuf;
use crate::launch::{grid_1d, Dispatch};
use crate::shader::KernelKey;
use crate::WgpuBackend;
use foveate_core::{Activation, DType, Error, Op, Result, RopeFreqs, Tensor};

fn act_code(a: Activation) -> u32 {
    match a {
        Activation::None => 0,
        Activation::GeluErf => 1,
        Activation::GeluTanh => 2,
        Activation::QuickGelu => 3,
        Activation::Silu => 4,
    }
}

fn u(n: usize, what: &str) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::device("wgpu", format!("{what} = {n} does not fit the kernels' 32-bit indices")))
}

/// First u32 word of the scales of an int8/int4 weight [n, k] (0 for a float weight).
fn scale_word(w: DType, n: usize, k: usize) -> Result<u32> {
    if !w.is_quant() {
        return Ok(0);
    }
    // The kernels index elements n * K + k in 32 bits.
    let elems = u(n.saturating_mul(k), "weight elements")? as usize;
    u(foveate_core::quant::quant_bytes(w, elems) / 4, "weight words")
}

const EW_WG: usize = 256;
/// GEMMs with at most this many rows take the `gemv` kernel (GV_ROWS in gemm.wgsl).
const GEMV_MAX_ROWS: usize = 8;

/// Key of an elementwise.wgsl entry: T in, TO out, binary op code, activation.
fn ew(entry: &'static str, t: DType, to: DType, opk: u32, act: u32) -> KernelKey {
    KernelKey::new(&["elementwise.wgsl"], entry)
        .ty("T", t)
        .ty("TO", to)
        .u("WG", EW_WG as u32)
        .u("OPK", opk)
        .u("ACT", act)
}

/// Splits a shape around `axis` into (outer, dim, inner).
fn around(dims: &[usize], axis: usize) -> (usize, usize, usize) {
    (dims[..axis].iter().product(), dims[axis], dims[axis + 1..].iter().product())
}

impl WgpuBackend {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn encode(
        &self,
        op: &Op,
        dt: DType,
        inputs: &[&Tensor],
        ins: &[&DevBuf],
        out: &Tensor,
        o: &DevBuf,
        variant: &str,
    ) -> Result<()> {
        let n_out = out.numel();
        if n_out == 0 {
            return Ok(());
        }
        let n = u(n_out, "output size")?;
        let flat = |entry: &'static str, to: DType, opk: u32, act: u32| Dispatch::new(ew(entry, dt, to, opk, act), grid_1d(n_out, EW_WG));
        match op {
            Op::Add | Op::Mul | Op::SwiGlu => {
                let opk = match op {
                    Op::Add => 0,
                    Op::Mul => 1,
                    _ => 2,
                };
                let d = flat("ew_binary", dt, opk, 0).bind(1, ins[0]).bind(2, ins[1]).bind(3, o).params(&[n]);
                self.record(op, vec![d])
            }
            Op::Unary(a) => {
                let d = flat("ew_unary", dt, 0, act_code(*a)).bind(1, ins[0]).bind(3, o).params(&[n]);
                self.record(op, vec![d])
            }
            Op::Cast { to } => {
                let d = flat("ew_cast", *to, 0, 0).bind(1, ins[0]).bind(3, o).params(&[n]);
                self.record(op, vec![d])
            }
            Op::Slice { axis, start, len } => {
                let (_, dim, inner) = around(inputs[0].dims(), *axis);
                let p = [n, u(dim, "dim")?, u(inner, "inner")?, u(*start, "start")?, u(*len, "len")?];
                self.record(op, vec![flat("ew_slice", dt, 0, 0).bind(1, ins[0]).bind(3, o).params(&p)])
            }
            Op::Concat { axis } => {
                let (_, da, inner) = around(inputs[0].dims(), *axis);
                let db = inputs[1].dims()[*axis];
                let p = [n, u(da, "dim")?, u(db, "dim")?, u(inner, "inner")?];
                let d = flat("ew_concat", dt, 0, 0).bind(1, ins[0]).bind(2, ins[1]).bind(3, o).params(&p);
                self.record(op, vec![d])
            }
            Op::KvAppend(spec) => {
                let nd = inputs[0].dims();
                let row = nd[2] * nd[3];
                let count = inputs[0].numel();
                if count == 0 {
                    return Ok(());
                }
                let p = [u(count, "new")?, u(nd[1] * row, "len")?, u(spec.capacity * row, "capacity")?, u(spec.pos * row, "pos")?];
                let d = Dispatch::new(ew("ew_kv_append", dt, dt, 0, 0), grid_1d(count, EW_WG)).bind(1, ins[0]).bind(3, o).params(&p);
                self.record(op, vec![d])
            }
            Op::Embedding => {
                let (v, dim) = (inputs[0].dims()[0], inputs[0].dims()[1]);
                let p = [n, u(dim, "D")?, u(v, "V")?];
                let d = flat("ew_embedding", dt, 0, 0).bind(1, ins[0]).bind(4, ins[1]).bind(3, o).params(&p);
                self.record(op, vec![d])
            }
            Op::LayerNorm { eps } | Op::RmsNorm { eps } => {
                let rows = inputs[0].shape().rows();
                let dim = inputs[0].shape().last();
                let layer = matches!(op, Op::LayerNorm { .. });
                let key = KernelKey::new(&["norm.wgsl"], if layer { "layer_norm" } else { "rms_norm" }).ty("T", dt);
                let mut d = Dispatch::new(key, grid_1d(rows, 1)).bind(1, ins[0]).bind(2, ins[1]).bind(4, o);
                if layer {
                    d = d.bind(3, ins[2]);
                }
                self.record(op, vec![d.params(&[u(rows, "rows")?, u(dim, "D")?, eps.to_bits()])])
            }
            Op::Softmax | Op::Argmax => {
                let rows = inputs[0].shape().rows();
                let dim = inputs[0].shape().last();
                if dim == 0 {
                    return Err(Error::shape(op.name(), "last dimension is empty"));
                }
                let sm = matches!(op, Op::Softmax);
                let key = KernelKey::new(&["norm.wgsl"], if sm { "softmax" } else { "argmax" }).ty("T", dt);
                let d = Dispatch::new(key, grid_1d(rows, 1)).bind(1, ins[0]).bind(if sm { 4 } else { 5 }, o);
                self.record(op, vec![d.params(&[u(rows, "rows")?, u(dim, "D")?, 0])])
            }
            Op::Rope(spec) => {
                let dims = inputs[0].dims();
                let (h, dh) = (dims[2], dims[3]);
                let r = spec.rot(dh);
                let [s1, s2] = spec.section_starts(dh);
                let per_section = (spec.freqs == RopeFreqs::PerSection) as u32;
                let key = KernelKey::new(&["rope.wgsl"], "rope").ty("T", dt);
                let p = [
                    n,
                    u(h * dh, "H*D")?,
                    u(dh, "D")?,
                    u(r, "rotary_dim")?,
                    spec.theta.log2().to_bits(),
                    u(s1, "section 1 start")?,
                    u(s2, "section 2 start")?,
                    per_section,
                    u(dims[0] * dims[1], "B*S")?,
                ];
                let d = Dispatch::new(key, grid_1d(n_out, 256)).bind(1, ins[0]).bind(2, ins[1]).bind(3, o).params(&p);
                self.record(op, vec![d])
            }
            Op::Gemm(spec) => {
                let (nn, k) = (inputs[1].dims()[0], inputs[1].dims()[1]);
                let m = inputs[0].shape().rows();
                // Skinny M (decode): one workgroup per output column, w read once (gemm.wgsl `gemv`).
                let skinny = m <= GEMV_MAX_ROWS;
                // Int8/int4 weights (read as u32 words): scales start at word `scale_word`.
                let wq = inputs[1].dtype();
                let quant = wq.is_quant();
                let scale_word = scale_word(wq, nn, k)?;
                let entry = match (skinny, quant) {
                    (true, true) => "gemv_q",
                    (true, false) => "gemv",
                    _ => "gemm",
                };
                let key = KernelKey::new(&["gemm_tile.wgsl", "quant.wgsl", "gemm.wgsl"], entry)
                    .ty("T", dt)
                    .u("ACT", act_code(spec.act))
                    .flag("HAS_BIAS", spec.bias)
                    .flag("HAS_RES", spec.residual)
                    .flag("WQ", quant)
                    .flag("Q4", wq == DType::Int4);
                let grid = if skinny { grid_1d(nn, 1) } else { [u(nn.div_ceil(32), "N")?, u(m.div_ceil(32), "M")?, 1] };
                let mut d = Dispatch::new(key, grid).bind(1, ins[0]).bind(2, ins[1]);
                let mut i = 2;
                if spec.bias {
                    d = d.bind(3, ins[i]);
                    i += 1;
                }
                if spec.residual {
                    d = d.bind(4, ins[i]);
                }
                let d = d.bind(5, o).params(&[u(m, "M")?, u(nn, "N")?, u(k, "K")?, scale_word]);
                self.record(op, vec![d])
            }
            Op::GeluMlp(spec) => {
                let m = inputs[0].shape().rows();
                let dm = inputs[0].shape().last();
                let hdim = inputs[1].dims()[0];
                let od = inputs[3].dims()[0];
                let hidden = self.scratch(4 * m * hdim)?;
                let (w1, w2) = (inputs[1].dtype(), inputs[3].dtype());
                let key = |up: bool| {
                    let wq = if up { w1 } else { w2 };
                    KernelKey::new(&["gemm_tile.wgsl", "quant.wgsl", "gelu_mlp.wgsl"], "gelu_mlp")
                        .ty("T", dt)
                        .flag("UP", up)
                        .u("ACT", if up { act_code(spec.act) } else { 0 })
                        .flag("HAS_RES", !up && spec.residual)
                        .flag("WQ", wq.is_quant())
                        .flag("Q4", wq == DType::Int4)
                };
                let up = Dispatch::new(key(true), [u(hdim.div_ceil(32), "H")?, u(m.div_ceil(32), "M")?, 1])
                    .bind(1, ins[0])
                    .bind(2, ins[1])
                    .bind(3, ins[2])
                    .bind(5, &hidden)
                    .params(&[u(m, "M")?, u(hdim, "H")?, u(dm, "D")?, scale_word(w1, hdim, dm)?]);
                let mut down = Dispatch::new(key(false), [u(od.div_ceil(32), "O")?, u(m.div_ceil(32), "M")?, 1])
                    .bind(1, &hidden)
                    .bind(2, ins[3])
                    .bind(3, ins[4])
                    .bind(5, o);
                if spec.residual {
                    down = down.bind(4, ins[5]);
                }
                let down = down.params(&[u(m, "M")?, u(od, "O")?, u(hdim, "H")?, scale_word(w2, od, hdim)?]);
                self.record(op, vec![up, down])
            }
            Op::PatchEmbed(spec) => {
                let pd = inputs[0].dims();
                let (b, c, hi, wi) = (pd[0], pd[1], pd[2], pd[3]);
                let e = inputs[1].dims()[0];
                let pp = spec.patch;
                let (npw, np) = (wi / pp, (hi / pp) * (wi / pp));
                let t = np + spec.cls as usize;
                let m = b * np;
                let key = KernelKey::new(&["gemm_tile.wgsl", "patch_embed.wgsl"], "patch_embed")
                    .ty("T", dt)
                    .flag("HAS_BIAS", spec.bias)
                    .flag("HAS_CLS", spec.cls)
                    .flag("HAS_POS", spec.pos);
                let p = [
                    u(m, "M")?,
                    u(e, "E")?,
                    u(c * pp * pp, "K")?,
                    u(pp, "patch")?,
                    u(hi, "H")?,
                    u(wi, "W")?,
                    u(npw, "patches per row")?,
                    u(np, "patches")?,
                    u(t, "tokens")?,
                    u(c, "C")?,
                ];
                let mut slot = 2;
                let mut bias = None;
                let mut cls = None;
                let mut pos = None;
                if spec.bias {
                    bias = Some(ins[slot]);
                    slot += 1;
                }
                if spec.cls {
                    cls = Some(ins[slot]);
                    slot += 1;
                }
                if spec.pos {
                    pos = Some(ins[slot]);
                }
                let mut main = Dispatch::new(key.clone(), [u(e.div_ceil(32), "E")?, u(m.div_ceil(32), "M")?, 1])
                    .bind(1, ins[0])
                    .bind(2, ins[1])
                    .bind(6, o);
                if let Some(bb) = bias {
                    main = main.bind(3, bb);
                }
                if let Some(pb) = pos {
                    main = main.bind(5, pb);
                }
                let mut ds = vec![main.params(&p)];
                if let Some(cb) = cls {
                    let mut k2 = key;
                    k2.entry = "cls_row";
                    let mut d = Dispatch::new(k2, [u((b * e).div_ceil(64), "B*E")?, 1, 1]).bind(4, cb).bind(6, o);
                    if let Some(pb) = pos {
                        d = d.bind(5, pb);
                    }
                    ds.push(d.params(&p));
                }
                self.record(op, ds)
            }
            Op::Attention(spec) => self.attention(op, spec, dt, [ins[0], ins[1], ins[2]], o, variant),
        }
    }
}
