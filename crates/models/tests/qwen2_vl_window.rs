//! Qwen2.5-VL window attention as a block-sparse layout, against a dense masked reference:
//!
//! * the layout of the window bounds keeps (i, j) exactly when rows i and j fall in the same
//!   window, the window of a row computed independently from its merged token's image and grid
//!   cell (transformers' windows: `window_units x window_units` cells of the merged grid), for
//!   grids that are and are not multiples of the window, one and several images;
//! * attention through that layout (cpu: naive, flash and block-sparse variants; wgpu: the
//!   block-sparse kernel) equals softmax attention with a dense -inf mask outside the windows,
//!   computed here in f64;
//! * the per-image layout of full-attention layers (several images in one sequence) likewise.

use foveate_core::{AttentionSpec, Backend, DType, HostTensor, Mask};
use foveate_cpu::CpuBackend;
use foveate_graph::{AttentionKind, Exec};
use foveate_models::arch::qwen2_vl_window::{
    frame_bounds, segment_layout, window_order, window_rows, Grid,
};
use foveate_testkit::skip_or_fail;
use std::sync::Arc;

const MERGE: usize = 2;

/// Each row's window, from its merged token's image and grid cell (not from the bounds).
fn window_of_rows(grids: &[Grid], wu: usize) -> Vec<(usize, usize, usize)> {
    let (order, _) = window_order(grids, MERGE, wu);
    // merged token index -> (image, merged row, merged column)
    let mut where_ = Vec::new();
    for (i, g) in grids.iter().enumerate() {
        let (lh, lw) = (g.h / MERGE, g.w / MERGE);
        for y in 0..lh {
            for x in 0..lw {
                where_.push((i, y, x));
            }
        }
    }
    window_rows(&order, MERGE)
        .iter()
        .map(|&r| {
            let (i, y, x) = where_[r / (MERGE * MERGE)];
            (i, y / wu, x / wu)
        })
        .collect()
}

fn cases() -> Vec<(Vec<Grid>, usize)> {
    let g = |h, w| Grid { t: 1, h, w };
    vec![
        (vec![g(10, 6)], 2),           // 5x3 merged: windows of 4, 2, 2, 1 tokens
        (vec![g(6, 10)], 2),           // 3x5
        (vec![g(8, 8)], 2),            // a multiple of the window
        (vec![g(16, 12)], 4),          // 8x6 merged, window 4 (the real models' 112 px)
        (vec![g(10, 6), g(4, 14)], 2), // two images of different shapes in one sequence
        (vec![g(2, 2)], 4),            // smaller than one window
    ]
}

#[test]
fn window_layout_equals_the_dense_window_mask() {
    for (grids, wu) in cases() {
        let (_, bounds) = window_order(&grids, MERGE, wu);
        let n = *bounds.last().unwrap();
        assert_eq!(n, grids.iter().map(Grid::patches).sum::<usize>());
        let win = window_of_rows(&grids, wu);
        let mask = segment_layout(&bounds).unwrap();
        let mut kept = 0;
        for i in 0..n {
            for j in 0..n {
                let same = win[i] == win[j];
                assert_eq!(
                    mask.allows(i, j, n, n),
                    same,
                    "{grids:?} window {wu}: ({i}, {j})"
                );
                kept += same as usize;
            }
        }
        if let Mask::BlockSparse(l) = &mask {
            // Every kept block lies inside one window: full, never partial.
            for qb in 0..l.q_blocks {
                for kb in 0..l.k_blocks {
                    assert_ne!(
                        l.classify(qb, kb, n, n),
                        foveate_core::BlockClass::Partial,
                        "{grids:?}: block ({qb}, {kb})"
                    );
                }
            }
            eprintln!(
                "{grids:?} window {wu}: {n} rows, block {}, density {:.3} (elements {:.3})",
                l.block_q,
                l.density(),
                kept as f64 / (n * n) as f64
            );
        }
    }
}

/// Softmax attention in f64 with key j visible from query i iff `seg[i] == seg[j]`.
fn dense_reference<T: PartialEq>(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    n: usize,
    h: usize,
    d: usize,
    seg: &[T],
) -> Vec<f32> {
    let mut out = vec![0f32; n * h * d];
    let scale = 1.0 / (d as f64).sqrt();
    for hh in 0..h {
        for i in 0..n {
            let at = |x: &[f32], r: usize, c: usize| x[(r * h + hh) * d + c] as f64;
            let s: Vec<f64> = (0..n)
                .map(|j| {
                    if seg[i] == seg[j] {
                        (0..d).map(|c| at(q, i, c) * at(k, j, c)).sum::<f64>() * scale
                    } else {
                        f64::NEG_INFINITY
                    }
                })
                .collect();
            let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
            let z: f64 = e.iter().sum();
            for c in 0..d {
                out[(i * h + hh) * d + c] =
                    ((0..n).map(|j| e[j] * at(v, j, c)).sum::<f64>() / z) as f32;
            }
        }
    }
    out
}

fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(2654435761).max(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x as f32 / u32::MAX as f32) * 4.0 - 2.0
        })
        .collect()
}

/// Runs each case's window and per-image masks through `kinds` on `backend`; returns failures.
fn check_attention(backend: Arc<dyn Backend>, kinds: &[AttentionKind]) -> Vec<String> {
    let (h, d) = (2, 16);
    let mut failures = Vec::new();
    for (ci, (grids, wu)) in cases().into_iter().enumerate() {
        let (_, bounds) = window_order(&grids, MERGE, wu);
        let n = *bounds.last().unwrap();
        let win = window_of_rows(&grids, wu);
        let image_of: Vec<usize> = grids
            .iter()
            .enumerate()
            .flat_map(|(i, g)| std::iter::repeat_n(i, g.patches()))
            .collect();
        let (q, k, v) = (
            values(n * h * d, 3 * ci as u32 + 1),
            values(n * h * d, 3 * ci as u32 + 2),
            values(n * h * d, 3 * ci as u32 + 3),
        );
        let masks = [
            (
                "windows",
                segment_layout(&bounds).unwrap(),
                dense_reference(&q, &k, &v, n, h, d, &win),
            ),
            (
                "images",
                segment_layout(&frame_bounds(&grids)).unwrap(),
                dense_reference(&q, &k, &v, n, h, d, &image_of),
            ),
        ];
        for &kind in kinds {
            let ex = Exec::new(backend.clone(), DType::F32, kind);
            let up = |x: &[f32]| {
                ex.upload(&HostTensor::from_f32(DType::F32, vec![1, n, h, d], x))
                    .unwrap()
            };
            let (tq, tk, tv) = (up(&q), up(&k), up(&v));
            for (what, mask, want) in &masks {
                let spec = AttentionSpec::new(1, h, h, n, n, d, mask.clone());
                let got = ex.attention(spec, &tq, &tk, &tv).unwrap();
                let got = ex.backend.download(&got).unwrap().to_f32();
                let err = got
                    .iter()
                    .zip(want)
                    .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                eprintln!(
                    "{} {kind:?} {grids:?} window {wu} {what}: max abs err {err:.2e}",
                    backend.name()
                );
                if err > 2e-5 {
                    failures.push(format!(
                        "{} {kind:?} {grids:?} window {wu} {what}: max abs err {err:.2e} > 2e-5",
                        backend.name()
                    ));
                }
            }
        }
    }
    failures
}

#[test]
fn window_attention_matches_dense_masked_reference_cpu() {
    let kinds = [
        AttentionKind::Naive,
        AttentionKind::Flash,
        AttentionKind::BlockSparse,
    ];
    let failures = check_attention(Arc::new(CpuBackend::fast()), &kinds);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn window_attention_matches_dense_masked_reference_wgpu() {
    let test = "window_attention_matches_dense_masked_reference_wgpu";
    let backend = match foveate_wgpu::WgpuBackend::new() {
        Ok(b) => b,
        Err(e) => {
            return skip_or_fail(
                test,
                "FOVEATE_REQUIRE_WGPU",
                &format!("no wgpu backend: {e}"),
            )
        }
    };
    let failures = check_attention(
        Arc::new(backend),
        &[AttentionKind::BlockSparse, AttentionKind::Naive],
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
