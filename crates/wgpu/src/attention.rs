//! Attention variants: tile planning (what fits the adapter) and encoding.

use crate::launch::Dispatch;
use crate::shader::KernelKey;
use crate::WgpuBackend;
use foveate_core::registry::attention as names;
use crate::buffers::DevBuf;
use foveate_core::{AttentionSpec, BlockLayout, DType, Mask, Op, Result};

/// Largest head dim the kernels take (private accumulators scale with it).
pub const MAX_HEAD_DIM: usize = 256;

/// A variant with its tile sizes for one spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttnPlan {
    Naive,
    /// Flash tiles; `sparse` reads the class table.
    Flash { bq: u32, bk: u32, sparse: bool },
    /// Split-K decode: `gh` query heads per workgroup, `bk` keys per tile.
    Decode { gh: u32, bk: u32, sparse: bool },
}

fn mask_code(m: &Mask) -> u32 {
    match m {
        Mask::None => 0,
        Mask::Causal => 1,
        Mask::SlidingWindow { .. } => 2,
        Mask::BlockSparse(l) => mask_code(&l.base),
    }
}

fn window(m: &Mask) -> u32 {
    match m {
        Mask::SlidingWindow { window } => (*window).min(u32::MAX as usize) as u32,
        Mask::BlockSparse(l) => window(&l.base),
        _ => 0,
    }
}

fn layout(m: &Mask) -> Option<&BlockLayout> {
    match m {
        Mask::BlockSparse(l) => Some(l),
        _ => None,
    }
}

/// Largest power of two <= cap dividing n.
fn pow2_divisor(n: usize, cap: usize) -> usize {
    let mut t = 1;
    while t * 2 <= cap && n % (t * 2) == 0 {
        t *= 2;
    }
    t
}

/// Chooses tiles for `variant` on this adapter, or says why it cannot run.
pub fn plan(be: &WgpuBackend, spec: &AttentionSpec, variant: &str) -> Result<AttnPlan, String> {
    let d = spec.head_dim;
    if d > MAX_HEAD_DIM {
        return Err(format!("head_dim {d} exceeds the wgpu kernels' maximum of {MAX_HEAD_DIM}"));
    }
    let wg_mem = be.gpu.limits.max_compute_workgroup_storage_size as usize;
    let lay = layout(&spec.mask);
    match variant {
        names::NAIVE => {
            let scratch = 4 * spec.batch * spec.q_heads * spec.q_len * spec.kv_len;
            let lim = be.gpu.limits.max_storage_buffer_binding_size as usize;
            if scratch > lim {
                return Err(format!("naive needs a {scratch}-byte score buffer, the adapter binds at most {lim}"));
            }
            Ok(AttnPlan::Naive)
        }
        names::FLASH | names::BLOCK_SPARSE => {
            if variant == names::BLOCK_SPARSE && lay.is_none() {
                return Err("block-sparse needs a BlockSparse mask (use flash for dense masks)".into());
            }
            // BQ: rows per workgroup (64 / BQ invocations per row); with a layout it must divide
            // block_q and BK must divide block_k, so each kernel tile lies in one layout block.
            let mut bq = spec.q_len.next_power_of_two().min(16);
            let mut bk_cap = 32;
            if let Some(l) = lay {
                bq = pow2_divisor(l.block_q, bq);
                bk_cap = pow2_divisor(l.block_k, 32);
            }
            let need = |bk: usize| 4 * (bq * d + bk * d + bq * bk + 1) + 256;
            let mut bk = bk_cap;
            while bk > 1 && need(bk) > wg_mem {
                bk /= 2;
            }
            if need(bk) > wg_mem {
                return Err(format!(
                    "{variant} with head_dim {d} needs {} bytes of workgroup memory, the adapter gives {wg_mem}",
                    need(bk)
                ));
            }
            Ok(AttnPlan::Flash { bq: bq as u32, bk: bk as u32, sparse: lay.is_some() })
        }
        names::FLASH_DECODE => {
            if spec.q_len != 1 {
                return Err(format!("flash-decode needs q_len = 1 (got {}); use flash", spec.q_len));
            }
            let gh = spec.group().min((2048 / d).max(1)).max(1);
            let bk_cap = lay.map_or(32, |l| pow2_divisor(l.block_k, 32));
            let need = |bk: usize| 4 * (gh * d + bk * d + gh * bk + 3 * gh);
            let mut bk = bk_cap;
            while bk > 1 && need(bk) > wg_mem {
                bk /= 2;
            }
            if need(bk) > wg_mem {
                return Err(format!(
                    "flash-decode with head_dim {d} needs {} bytes of workgroup memory, the adapter gives {wg_mem}",
                    need(bk)
                ));
            }
            Ok(AttnPlan::Decode { gh: gh as u32, bk: bk as u32, sparse: lay.is_some() })
        }
        other => Err(format!("unknown attention variant `{other}` (wgpu has naive, flash, flash-decode, block-sparse)")),
    }
}

impl WgpuBackend {
    pub(crate) fn attention(&self, op: &Op, spec: &AttentionSpec, dt: DType, [q, k, v]: [&DevBuf; 3], out: &DevBuf, variant: &str) -> Result<()> {
        let variant = self.attention_variant(spec, variant).map_err(|why| foveate_core::Error::unsupported("wgpu", why))?;
        let plan = plan(self, spec, variant).map_err(|why| foveate_core::Error::unsupported("wgpu", why))?;
        let scale = spec.scale * std::f32::consts::LOG2_E;
        let lay = layout(&spec.mask);
        let (kb, bq_l, bk_l) = lay.map_or((0, 1, 1), |l| (l.k_blocks as u32, l.block_q as u32, l.block_k as u32));
        let mut params = vec![
            spec.batch as u32,
            spec.q_heads as u32,
            spec.kv_heads as u32,
            spec.q_len as u32,
            spec.kv_len as u32,
            spec.kv_capacity as u32,
            scale.to_bits(),
            window(&spec.mask),
            kb,
            bq_l,
            bk_l,
        ];
        let class_buf = match lay {
            Some(l) => Some(self.upload_u32(&l.class_table(spec.q_len, spec.kv_len))?),
            None => None,
        };
        let base = |file: &'static str, entry: &'static str, sparse: bool| {
            let mut files = vec!["attention_mask.wgsl", file];
            if sparse {
                files.push("sparse_attention.wgsl");
            }
            KernelKey::new(&files, entry)
                .ty("T", dt)
                .u("D", spec.head_dim as u32)
                .u("MASK", mask_code(&spec.mask))
                .flag("SPARSE", sparse)
        };
        let (b, hq, sq) = (spec.batch as u32, spec.q_heads as u32, spec.q_len as u32);
        match plan {
            AttnPlan::Naive => {
                let scratch = self.scratch(4 * spec.batch * spec.q_heads * spec.q_len * spec.kv_len)?;
                let key = base("attention.wgsl", "attn_naive", lay.is_some()).u("BQ", 1).u("BK", 1);
                let mut d = Dispatch::new(key, [sq, hq, b]).bind(1, q).bind(2, k).bind(3, v).bind(4, out).bind(5, &scratch);
                if let Some(c) = &class_buf {
                    d = d.bind(6, c);
                }
                self.record(op, vec![d.params(&params)])
            }
            AttnPlan::Flash { bq, bk, sparse } => {
                let key = base("attention.wgsl", "attn_flash", sparse).u("BQ", bq).u("BK", bk);
                let mut d = Dispatch::new(key, [sq.div_ceil(bq), hq, b]).bind(1, q).bind(2, k).bind(3, v).bind(4, out);
                if let Some(c) = &class_buf {
                    d = d.bind(6, c);
                }
                self.record(op, vec![d.params(&params)])
            }
            AttnPlan::Decode { gh, bk, sparse } => {
                let group = spec.group() as u32;
                let hchunks = group.div_ceil(gh);
                let hkv = spec.kv_heads as u32;
                // Enough splits to give the device ~128 workgroups, each a whole number of tiles.
                let others = (b * hkv * hchunks).max(1);
                let want = 128u32.div_ceil(others).max(1);
                let kv = spec.kv_len as u32;
                let chunk = kv.div_ceil(want).div_ceil(bk).max(1) * bk;
                let splits = kv.div_ceil(chunk).max(1);
                params.extend_from_slice(&[splits, chunk, hchunks]);
                // Partials sized for the most splits any length up to the capacity takes
                // (splits <= want and <= ceil(capacity / bk)), so a decode that grows the cache
                // keeps reusing the same scratch.
                let most = want.min((spec.kv_capacity as u32).div_ceil(bk)).max(splits);
                let rows = spec.batch * spec.q_heads * most as usize;
                let po = self.scratch(4 * rows * spec.head_dim)?;
                let pl = self.scratch(4 * rows)?;
                let key = base("decode_attention.wgsl", "decode_split", sparse).u("GH", gh).u("BK", bk).u("BQ", 1);
                let mut d1 = Dispatch::new(key.clone(), [splits, hkv * hchunks, b])
                    .bind(1, q)
                    .bind(2, k)
                    .bind(3, v)
                    .bind(7, &po)
                    .bind(8, &pl);
                if let Some(c) = &class_buf {
                    d1 = d1.bind(6, c);
                }
                let mut key2 = key;
                key2.entry = "decode_combine";
                let d2 = Dispatch::new(key2, [hq, b, 1]).bind(4, out).bind(7, &po).bind(8, &pl);
                self.record(op, vec![d1.params(&params), d2.params(&params)])
            }
        }
    }
}
