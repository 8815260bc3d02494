//! Host-side index work of the Qwen2-VL / Qwen2.5-VL vision tower, as transformers computes it in
//! `vision_utils.py` (`get_vision_position_ids`, `get_vision_cu_seqlens`, `get_vision_window_index`;
//! transformers 5.25.0, the same arithmetic as `rot_pos_emb` / `get_window_index` in
//! `modeling_qwen2_5_vl.py` at commit 928b5565ecea2852ac5a41701c90589321548522), and the
//! block layouts that turn its variable-length attention (`cu_seqlens`) into one block-sparse
//! attention over all patches:
//!
//! * [`vision_positions`]: the (row, column) patch ids the 2-D rotary embedding takes, in the
//!   processor's row order (merge blocks of `merge x merge` patches);
//! * [`frame_bounds`]: each image frame attends only to itself (`cu_seqlens`);
//! * [`window_order`]: Qwen2.5-VL's windows: merged tokens regrouped window by window (windows of
//!   `window_units x window_units` merged tokens, row-major, the last row and column of windows
//!   cut by the grid), and where each window starts (`cu_window_seqlens`);
//! * [`segment_layout`]: a block layout keeping exactly the diagonal blocks of a segmentation,
//!   with blocks as large as every boundary allows, so no element test is ever needed.

use foveate_core::{BlockLayout, Mask, Result};
use std::sync::Arc;

/// One image's patch grid: frames, rows, columns (`image_grid_thw`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Grid {
    pub t: usize,
    pub h: usize,
    pub w: usize,
}

impl Grid {
    pub fn patches(&self) -> usize {
        self.t * self.h * self.w
    }
}

/// The largest layout block: the kernels' tiles are at most this tall.
pub const MAX_BLOCK: usize = 64;

/// Row (h) and column (w) patch ids of every patch row of `grids`, one image after another, rows in
/// merge-block order (what the processor's patch rows are in).
pub fn vision_positions(grids: &[Grid], merge: usize) -> (Vec<u32>, Vec<u32>) {
    let n: usize = grids.iter().map(Grid::patches).sum();
    let (mut hs, mut ws) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for g in grids {
        for _ in 0..g.t {
            for bh in 0..g.h / merge {
                for bw in 0..g.w / merge {
                    for mh in 0..merge {
                        for mw in 0..merge {
                            hs.push((bh * merge + mh) as u32);
                            ws.push((bw * merge + mw) as u32);
                        }
                    }
                }
            }
        }
    }
    (hs, ws)
}

/// Row offsets where each frame of each image starts, and the total (`cu_seqlens`).
pub fn frame_bounds(grids: &[Grid]) -> Vec<usize> {
    let mut b = vec![0];
    for g in grids {
        for _ in 0..g.t {
            b.push(b.last().unwrap() + g.h * g.w);
        }
    }
    b
}

/// Qwen2.5-VL's window reordering: `order[k]` is the merged token (index over all images, in
/// processor order) that comes k-th in window order; `bounds` the row offsets where each
/// non-empty window starts, and the total (`cu_window_seqlens` after `unique_consecutive`).
pub fn window_order(grids: &[Grid], merge: usize, window_units: usize) -> (Vec<usize>, Vec<usize>) {
    let unit = merge * merge;
    let (mut order, mut bounds) = (Vec::new(), vec![0usize]);
    let mut base = 0;
    for g in grids {
        let (lh, lw) = (g.h / merge, g.w / merge);
        // transformers pads each side up to the next multiple (a whole extra window when already a
        // multiple); empty windows add no boundary.
        let (nh, nw) = (lh / window_units + 1, lw / window_units + 1);
        for t in 0..g.t {
            for wy in 0..nh {
                for wx in 0..nw {
                    let mut count = 0;
                    for y in wy * window_units..((wy + 1) * window_units).min(lh) {
                        for x in wx * window_units..((wx + 1) * window_units).min(lw) {
                            order.push(base + (t * lh + y) * lw + x);
                            count += 1;
                        }
                    }
                    if count > 0 {
                        bounds.push(bounds.last().unwrap() + count * unit);
                    }
                }
            }
        }
        base += g.t * lh * lw;
    }
    (order, bounds)
}

/// Patch rows in window order: row `r` of the reordered sequence is row `rows[r]` in processor order.
pub fn window_rows(order: &[usize], merge: usize) -> Vec<usize> {
    let unit = merge * merge;
    order
        .iter()
        .flat_map(|&u| u * unit..(u + 1) * unit)
        .collect()
}

/// The inverse permutation of `order`: where each merged token went.
pub fn inverse(order: &[usize]) -> Vec<u32> {
    let mut inv = vec![0u32; order.len()];
    for (k, &u) in order.iter().enumerate() {
        inv[u] = k as u32;
    }
    inv
}

/// Attention within segments: rows `bounds[i]..bounds[i + 1]` see each other and nothing else.
/// One segment is plain full attention (`Mask::None`); otherwise a block layout whose block size is
/// the largest divisor of every boundary up to [`MAX_BLOCK`], keeping the diagonal blocks of each
/// segment: every kept block is wholly inside one segment, so the layout is exact with no base mask.
pub fn segment_layout(bounds: &[usize]) -> Result<Mask> {
    let n = *bounds.last().unwrap_or(&0);
    if bounds.len() <= 2 {
        return Ok(Mask::None);
    }
    let g = bounds.iter().fold(0, |g, &b| gcd(g, b));
    let block = (1..=MAX_BLOCK.min(g))
        .rev()
        .find(|b| g % b == 0)
        .unwrap_or(1);
    let nb = n.div_ceil(block);
    let mut keep = vec![0u8; nb * nb];
    for s in bounds.windows(2) {
        let (b0, b1) = (s[0] / block, s[1].div_ceil(block));
        for qb in b0..b1 {
            keep[qb * nb + b0..qb * nb + b1].fill(1);
        }
    }
    let mut l = BlockLayout::from_table(block, block, nb, nb, keep, Mask::None)?;
    l.pattern = format!("segments{}", bounds.len() - 1);
    Ok(Mask::BlockSparse(Arc::new(l)))
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_match_transformers_get_window_index() {
        // transformers 5.25 `get_vision_window_index(tensor([[1, 10, 6]]), 2, 56, 14)`: window 2x2
        // merged tokens on a 5x3 merged grid.
        let (order, bounds) = window_order(&[Grid { t: 1, h: 10, w: 6 }], 2, 2);
        assert_eq!(order, [0, 1, 3, 4, 2, 5, 6, 7, 9, 10, 8, 11, 12, 13, 14]);
        assert_eq!(bounds, [0, 16, 24, 40, 48, 56, 60]);
        // A grid that is a multiple of the window: transformers' padding adds empty windows only.
        let (order, bounds) = window_order(&[Grid { t: 1, h: 4, w: 4 }], 2, 1);
        assert_eq!(order, [0, 1, 2, 3]);
        assert_eq!(bounds, [0, 4, 8, 12, 16]);
    }

    #[test]
    fn positions_follow_merge_blocks() {
        let (h, w) = vision_positions(&[Grid { t: 1, h: 2, w: 4 }], 2);
        assert_eq!(h, [0, 0, 1, 1, 0, 0, 1, 1]);
        assert_eq!(w, [0, 1, 0, 1, 2, 3, 2, 3]);
    }

    #[test]
    fn segment_layout_picks_the_largest_exact_block() {
        let Mask::BlockSparse(l) = segment_layout(&[0, 16, 24, 40]).unwrap() else {
            panic!("sparse")
        };
        assert_eq!((l.block_q, l.q_blocks), (8, 5));
        let Mask::BlockSparse(l) = segment_layout(&[0, 128, 256, 300]).unwrap() else {
            panic!("sparse")
        };
        assert_eq!(l.block_q, 4, "gcd 4 (300)");
        let Mask::BlockSparse(l) = segment_layout(&[0, 256, 512]).unwrap() else {
            panic!("sparse")
        };
        assert_eq!(l.block_q, MAX_BLOCK);
        assert_eq!(segment_layout(&[0, 77]).unwrap(), Mask::None);
    }
}
