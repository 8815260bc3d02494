//! Attention dispatch: naive, flash (tensor-core / SIMT), block-sparse, flash-decode and the
//! 16-byte-load flash-decode, and the host side of the sparse tile tables.

use crate::backend::{ptr, CudaBackend, Enqueue};
use crate::ops::{cfg, launch_struct, module, I32};
use crate::specs::{self, Family};
use cudarc::driver::DeviceRepr;
use foveate_core::{
    registry::attention as av, AttentionSpec, BlockLayout, DType, Mask, Result, Tensor,
};
use std::sync::Arc;

/// flash-decode with K and V tiles staged by 16-byte loads (`decode_v16_g*`). Registered, never
/// picked by default until it has passed the matrix on a GPU.
pub const FLASH_DECODE_V16: &str = "flash-decode-v16";

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct AttnArgs {
    q: u64,
    k: u64,
    v: u64,
    out: u64,
    tile_cls: u64,
    blk_cls: u64,
    batch: i32,
    q_heads: i32,
    kv_heads: i32,
    q_len: i32,
    kv_len: i32,
    kv_cap: i32,
    scale_log2: f32,
    window: i32,
    k_tiles: i32,
    block_q: i32,
    block_k: i32,
    k_blocks: i32,
    head_dim: i32,
}
unsafe impl DeviceRepr for AttnArgs {}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct DecodeArgs {
    q: u64,
    k: u64,
    v: u64,
    out: u64,
    part_o: u64,
    part_lse: u64,
    batch: i32,
    q_heads: i32,
    kv_heads: i32,
    kv_len: i32,
    kv_cap: i32,
    scale_log2: f32,
    key_start: i32,
    chunk: i32,
    splits: i32,
}
unsafe impl DeviceRepr for DecodeArgs {}

const LOG2E: f32 = std::f32::consts::LOG2_E;

// ------------------------------------------------------------------ support matrix

fn hd_ok(spec: &AttentionSpec, dtype: DType) -> std::result::Result<(), String> {
    let d = spec.head_dim;
    if d > 128 {
        return Err(format!("head_dim {d} > 128"));
    }
    if dtype != DType::F32 && !d.is_multiple_of(8) {
        return Err(format!(
            "head_dim {d} is not a multiple of 8 (16-byte rows for cp.async)"
        ));
    }
    Ok(())
}

fn sizes_ok(a: &AttentionSpec) -> std::result::Result<(), String> {
    if a.batch * a.kv_capacity * a.kv_heads * a.head_dim > u32::MAX as usize * 16
        || a.kv_capacity > I32
        || a.q_len > I32
    {
        return Err("attention extents exceed the kernels' 32-bit lengths".into());
    }
    Ok(())
}

fn decode_ok(a: &AttentionSpec, sparse: bool) -> std::result::Result<(), String> {
    if a.q_len != 1 {
        return Err(format!("flash-decode needs q_len = 1 (got {})", a.q_len));
    }
    if sparse {
        return Err("flash-decode takes none/causal/window masks".into());
    }
    if a.head_dim > 128 {
        return Err(format!("head_dim {} > 128", a.head_dim));
    }
    Ok(())
}

pub(crate) fn supports(
    a: &AttentionSpec,
    dtype: DType,
    variant: &str,
) -> std::result::Result<(), String> {
    sizes_ok(a)?;
    let sparse = matches!(a.mask, Mask::BlockSparse(_));
    match variant {
        "" => pick(a, dtype).map(|_| ()),
        av::NAIVE => {
            if a.head_dim > 256 {
                return Err(format!("head_dim {} > 256", a.head_dim));
            }
            Ok(())
        }
        av::FLASH => {
            if sparse {
                return Err("flash takes none/causal/window masks; use block-sparse".into());
            }
            hd_ok(a, dtype)
        }
        av::FLASH_DECODE => decode_ok(a, sparse),
        FLASH_DECODE_V16 => {
            decode_ok(a, sparse)?;
            let per16 = 16 / dtype.size();
            if !a.head_dim.is_multiple_of(per16) {
                return Err(format!("head_dim {} is not a multiple of {per16} (16-byte rows)", a.head_dim));
            }
            Ok(())
        }
        av::BLOCK_SPARSE => {
            if !sparse {
                return Err("block-sparse needs a BlockSparse mask".into());
            }
            hd_ok(a, dtype)
        }
        other => Err(format!("unknown attention variant `{other}` (naive, flash, flash-decode, {FLASH_DECODE_V16}, block-sparse)")),
    }
}

/// The kernel the empty variant runs, by the one policy (`registry::pick_attention`).
pub(crate) fn pick(a: &AttentionSpec, dtype: DType) -> std::result::Result<&'static str, String> {
    foveate_core::registry::pick_attention("", a, &|v| supports(a, dtype, v))
}

// ------------------------------------------------------------------ launches

fn window_of(m: &Mask) -> i32 {
    match m {
        Mask::SlidingWindow { window } => (*window).min(I32) as i32,
        Mask::BlockSparse(l) => window_of(&l.base),
        _ => 0,
    }
}

fn attn_args(a: &AttentionSpec, ins: &[&Tensor], out: &Tensor) -> Result<AttnArgs> {
    let window = window_of(&a.mask);
    Ok(AttnArgs {
        q: ptr(ins[0])?,
        k: ptr(ins[1])?,
        v: ptr(ins[2])?,
        out: ptr(out)?,
        batch: a.batch as i32,
        q_heads: a.q_heads as i32,
        kv_heads: a.kv_heads as i32,
        q_len: a.q_len as i32,
        kv_len: a.kv_len as i32,
        kv_cap: a.kv_capacity as i32,
        scale_log2: a.scale * LOG2E,
        window,
        head_dim: a.head_dim as i32,
        ..Default::default()
    })
}

/// Layout classes aggregated to kernel tiles of `tq x tk` (the layout's own table when its blocks
/// are that size): Empty if every layout block the tile covers is Empty, Full if every one is
/// Full, else Partial. Only blocks meeting the in-range part (< q_len, < kv_len) count.
pub fn tile_classes(
    l: &BlockLayout,
    q_len: usize,
    kv_len: usize,
    tq: usize,
    tk: usize,
) -> (Vec<u32>, usize, usize) {
    let blk = l.class_table(q_len, kv_len);
    let (qt, kt) = (q_len.div_ceil(tq), kv_len.div_ceil(tk));
    let mut t = vec![0u32; qt * kt];
    for i in 0..qt {
        let (r0, r1) = (i * tq, ((i + 1) * tq).min(q_len) - 1);
        for j in 0..kt {
            let (c0, c1) = (j * tk, ((j + 1) * tk).min(kv_len) - 1);
            let (mut any, mut all_full) = (false, true);
            for qb in r0 / l.block_q..=r1 / l.block_q {
                for kb in c0 / l.block_k..=c1 / l.block_k {
                    match blk[qb * l.k_blocks + kb] {
                        0 => all_full = false,
                        1 => {
                            any = true;
                            all_full = false
                        }
                        _ => any = true,
                    }
                }
            }
            t[i * kt + j] = if !any {
                0
            } else if all_full {
                2
            } else {
                1
            };
        }
    }
    (t, qt, kt)
}

fn mask_index(m: &Mask) -> usize {
    match m {
        Mask::None => 0,
        Mask::Causal => 1,
        Mask::SlidingWindow { .. } => 2,
        Mask::BlockSparse(l) => mask_index(&l.base),
    }
}

/// Kernel names by base mask (none, causal, window).
const NAIVE: [&str; 3] = ["naive_none", "naive_causal", "naive_window"];
const NAIVE_SPARSE: [&str; 3] = [
    "naive_sparse_none",
    "naive_sparse_causal",
    "naive_sparse_window",
];
const FLASH: [&str; 3] = ["flash_none", "flash_causal", "flash_window"];
const SPARSE: [&str; 3] = ["sparse_none", "sparse_causal", "sparse_window"];
const DECODE: [&str; 4] = ["decode_g1", "decode_g2", "decode_g4", "decode_g8"];
const DECODE_V16: [&str; 4] = [
    "decode_v16_g1",
    "decode_v16_g2",
    "decode_v16_g4",
    "decode_v16_g8",
];

/// Table kinds in the backend's table cache key.
const TABLE_BLOCKS: usize = 0;
const TABLE_TILES: usize = 1;

fn layout_tables(
    be: &CudaBackend,
    q: &mut Enqueue,
    args: &mut AttnArgs,
    a: &AttentionSpec,
    l: &Arc<BlockLayout>,
) -> Result<()> {
    let id = Arc::as_ptr(l) as usize;
    args.blk_cls = be.table(q, l, (id, a.q_len, a.kv_len, TABLE_BLOCKS, 0), || {
        l.class_table(a.q_len, a.kv_len)
    })?;
    args.block_q = l.block_q as i32;
    args.block_k = l.block_k as i32;
    args.k_blocks = l.k_blocks as i32;
    Ok(())
}

pub(crate) fn naive(
    be: &CudaBackend,
    q: &mut Enqueue,
    a: &AttentionSpec,
    dt: DType,
    ins: &[&Tensor],
    out: &Tensor,
) -> Result<()> {
    let mut args = attn_args(a, ins, out)?;
    let mi = mask_index(&a.mask);
    let name = if let Mask::BlockSparse(l) = &a.mask {
        layout_tables(be, q, &mut args, a, l)?;
        NAIVE_SPARSE[mi]
    } else {
        NAIVE[mi]
    };
    let f = be.function(
        &module(Family::AttentionNaive, "attention.cu", dt, None),
        name,
        0,
    )?;
    let rows = (a.batch * a.q_len * a.q_heads) as u64;
    launch_struct(
        be,
        q,
        &f,
        cfg((rows.div_ceil(4) as u32, 1, 1), 128, 0),
        &args,
    )
}

pub(crate) fn flash(
    be: &CudaBackend,
    q: &mut Enqueue,
    a: &AttentionSpec,
    dt: DType,
    ins: &[&Tensor],
    out: &Tensor,
    sparse: Option<&Arc<BlockLayout>>,
) -> Result<()> {
    let mut args = attn_args(a, ins, out)?;
    let mi = mask_index(&a.mask);
    let tc = dt != DType::F32;
    let (bq, bk, threads) = if tc { (64, 64, 128) } else { (8, 32, 256) };
    let (fam, file, name) = match sparse {
        Some(l) => {
            let kt = a.kv_len.div_ceil(bk);
            let id = Arc::as_ptr(l) as usize;
            let key = (id, a.q_len, a.kv_len, TABLE_TILES, bq * 1000 + bk);
            args.tile_cls = be.table(q, l, key, || tile_classes(l, a.q_len, a.kv_len, bq, bk).0)?;
            args.k_tiles = kt as i32;
            layout_tables(be, q, &mut args, a, l)?;
            (Family::BlockSparse, "sparse_attention.cu", SPARSE[mi])
        }
        None => (Family::Flash, "attention.cu", FLASH[mi]),
    };
    let smem = if tc {
        specs::flash_tc_smem(a.head_dim) as u32
    } else {
        0
    };
    let f = be.function(&module(fam, file, dt, Some(a.head_dim)), name, smem)?;
    let grid = (
        a.q_len.div_ceil(bq) as u32,
        a.q_heads as u32,
        a.batch as u32,
    );
    launch_struct(be, q, &f, cfg(grid, threads, smem), &args)
}

/// Keys per decode tile (DTK in decode_attention.cu).
const DECODE_TILE: usize = 128;

/// The decode split of one launch: (log2 of the heads folded per block G, head chunks, splits,
/// keys per split, the most splits any kv_len gets at this batch and head count).
pub(crate) fn decode_split(
    a: &AttentionSpec,
    sms: usize,
    keys: usize,
) -> (usize, usize, usize, usize, usize) {
    let group = a.q_heads / a.kv_heads;
    let gi = [1usize, 2, 4, 8]
        .into_iter()
        .position(|g| g >= group.min(8))
        .unwrap_or(3);
    let g = 1 << gi;
    let chunks = group.div_ceil(g);
    let base_blocks = a.batch * a.kv_heads * chunks;
    // The most splits any kv_len gets at this batch and head count (sizes the scratch once).
    let want = (2 * sms).div_ceil(base_blocks.max(1)).clamp(1, 64);
    let mut splits = want.min(keys.div_ceil(DECODE_TILE)).max(1);
    let chunk = keys.div_ceil(splits).div_ceil(DECODE_TILE).max(1) * DECODE_TILE;
    splits = keys.div_ceil(chunk).max(1);
    (gi, chunks, splits, chunk, want)
}

pub(crate) fn decode(
    be: &CudaBackend,
    q: &mut Enqueue,
    a: &AttentionSpec,
    dt: DType,
    ins: &[&Tensor],
    out: &Tensor,
    v16: bool,
) -> Result<()> {
    let key_start = match a.mask {
        Mask::SlidingWindow { window } => a.kv_len.saturating_sub(window),
        _ => 0,
    };
    let keys = a.kv_len - key_start;
    let (gi, chunks, splits, chunk, max_splits) = decode_split(a, be.sms as usize, keys);
    let (part_o, part_lse) = if splits > 1 {
        // Partial outputs and log-sum-exps, sized for the most splits this batch and head count
        // can take, so a growing kv_len does not allocate again.
        let rows = a.batch * a.q_heads * max_splits;
        let base = be.scratch(q, "decode_partials", rows * (a.head_dim + 1) * 4)?;
        (
            base,
            base + (a.batch * a.q_heads * splits * a.head_dim * 4) as u64,
        )
    } else {
        (0, 0)
    };
    let args = DecodeArgs {
        q: ptr(ins[0])?,
        k: ptr(ins[1])?,
        v: ptr(ins[2])?,
        out: ptr(out)?,
        part_o,
        part_lse,
        batch: a.batch as i32,
        q_heads: a.q_heads as i32,
        kv_heads: a.kv_heads as i32,
        kv_len: a.kv_len as i32,
        kv_cap: a.kv_capacity as i32,
        scale_log2: a.scale * LOG2E,
        key_start: key_start as i32,
        chunk: chunk as i32,
        splits: splits as i32,
    };
    let m = module(Family::Decode, "decode_attention.cu", dt, Some(a.head_dim));
    let g = 1 << gi;
    let (name, smem) = if v16 {
        (
            DECODE_V16[gi],
            specs::decode_v16_smem(a.head_dim, dt == DType::F32, g) as u32,
        )
    } else {
        (
            DECODE[gi],
            specs::decode_smem(a.head_dim, dt == DType::F32, g) as u32,
        )
    };
    let f = be.function(&m, name, smem)?;
    launch_struct(
        be,
        q,
        &f,
        cfg(
            (splits as u32, (a.kv_heads * chunks) as u32, a.batch as u32),
            128,
            smem,
        ),
        &args,
    )?;
    if splits > 1 {
        let c = be.function(&m, "decode_combine", 0)?;
        launch_struct(
            be,
            q,
            &c,
            cfg(((a.batch * a.q_heads) as u32, 1, 1), 128, 0),
            &args,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_classes_match_the_layout_at_its_own_block_size() {
        let l = BlockLayout::sliding_window(8, 37, 37, 10);
        let (t, qt, kt) = tile_classes(&l, 37, 37, 8, 8);
        assert_eq!((qt, kt), (l.q_blocks, l.k_blocks));
        assert_eq!(t, l.class_table(37, 37));
    }

    #[test]
    fn aggregated_tiles_cover_every_visible_element() {
        // Every visible element must lie in a non-empty tile, and a Full tile must have every
        // in-range element visible: checked element by element against Mask::allows.
        let (q, k) = (70, 150);
        for l in [
            BlockLayout::sliding_window(16, q, k, 40),
            BlockLayout::global_local(8, q, k, 1, 2, Mask::Causal),
            BlockLayout::dense(32, q, k, Mask::None),
        ] {
            let m = Mask::BlockSparse(Arc::new(l.clone()));
            for (tq, tk) in [(64, 64), (8, 32)] {
                let (t, _, kt) = tile_classes(&l, q, k, tq, tk);
                let mut n_full = 0;
                for (idx, &c) in t.iter().enumerate() {
                    let (ti, tj) = (idx / kt, idx % kt);
                    let mut seen = 0;
                    let mut total = 0;
                    for i in ti * tq..((ti + 1) * tq).min(q) {
                        for j in tj * tk..((tj + 1) * tk).min(k) {
                            total += 1;
                            seen += m.allows(i, j, q, k) as usize;
                        }
                    }
                    match c {
                        0 => assert_eq!(
                            seen, 0,
                            "{} tile {ti},{tj} empty but sees {seen}",
                            l.pattern
                        ),
                        2 => {
                            n_full += 1;
                            assert_eq!(
                                seen, total,
                                "{} tile {ti},{tj} full but sees {seen}/{total}",
                                l.pattern
                            )
                        }
                        _ => {}
                    }
                }
                if l.pattern == "dense" {
                    assert_eq!(n_full, t.len(), "a dense layout with no mask is all Full");
                }
            }
        }
    }

    #[test]
    fn support_matrix() {
        let a = AttentionSpec::new(1, 4, 2, 1, 9, 72, Mask::Causal);
        assert!(supports(&a, DType::BF16, av::FLASH_DECODE).is_ok());
        assert!(supports(&a, DType::BF16, av::FLASH).is_ok());
        assert!(supports(&a, DType::BF16, av::BLOCK_SPARSE).is_err());
        assert_eq!(pick(&a, DType::BF16).unwrap(), av::FLASH_DECODE);
        let b = AttentionSpec::new(1, 4, 2, 3, 9, 36, Mask::None);
        assert!(supports(&b, DType::F16, av::FLASH)
            .unwrap_err()
            .contains("multiple of 8"));
        assert!(supports(&b, DType::F32, av::FLASH).is_ok());
        assert_eq!(pick(&b, DType::F16).unwrap(), av::NAIVE);
        assert!(supports(&b, DType::F16, av::FLASH_DECODE)
            .unwrap_err()
            .contains("q_len"));
        // The 16-byte decode takes head dims in 16-byte chunks only, and is never the default.
        assert!(supports(&a, DType::BF16, FLASH_DECODE_V16).is_ok());
        let odd = AttentionSpec::new(1, 4, 2, 1, 9, 36, Mask::Causal);
        assert!(supports(&odd, DType::BF16, FLASH_DECODE_V16)
            .unwrap_err()
            .contains("multiple of 8"));
        assert!(supports(&odd, DType::F32, FLASH_DECODE_V16).is_ok());
        assert_eq!(pick(&odd, DType::BF16).unwrap(), av::FLASH_DECODE);
    }
}
