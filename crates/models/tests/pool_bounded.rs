//! The buffer pool stays bounded over an eval's worth of distinct prompt lengths: 200 requests of
//! 200 different lengths (every fifth with an image) through one loaded model, on the CPU and on
//! wgpu. After every request the pool may hold at most what the longest request needs on its own
//! (measured on a fresh model) plus a quarter; trimming must have given buffers back; and the
//! tokens are those of a fresh model (reused buffers change nothing).

use foveate_core::{Backend, DType};
use foveate_cpu::CpuBackend;
use foveate_graph::AttentionKind;
use foveate_models::synth::{self, SynthSpec};
use foveate_models::{Model, ModelOptions, PixelValues, Request};
use foveate_testkit::skip_or_fail;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn model_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("foveate-pool-bounded-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    synth::write_checkpoint(&d, &SynthSpec::default()).unwrap();
    d
}

fn pixels(seed: u32) -> PixelValues {
    let data = (0..3 * 28 * 28)
        .map(|i| (((i as u32).wrapping_mul(2654435761u32) ^ seed) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    PixelValues {
        data,
        height: 28,
        width: 28,
    }
}

/// Request `i`: a prompt of `len` tokens (16 image tokens among them when it has an image).
fn request(m: &Model, i: usize, len: usize) -> Request {
    let with_image = i % 5 == 0;
    let text: Vec<u32> = (0..len)
        .map(|j| 3 + ((i * 7 + j * 13) % 57) as u32)
        .collect();
    if !with_image {
        return Request {
            input_ids: text,
            pixels: None,
        };
    }
    let mut ids = m.tokenize("<image>", false, true).unwrap();
    ids.extend(&text[..len.saturating_sub(ids.len()).max(1)]);
    Request {
        input_ids: ids,
        pixels: Some(pixels(i as u32)),
    }
}

/// Lengths 20..220 in a scrambled order, the longest first.
fn lengths() -> Vec<usize> {
    let mut v: Vec<usize> = (0..200).map(|i| 20 + (i * 37) % 200).collect();
    v.sort_by_key(|&l| std::cmp::Reverse((l == 219) as u8));
    v
}

fn check(backend: Arc<dyn Backend>, dir: &Path) {
    let opts = ModelOptions {
        dtype: DType::F32,
        attention: AttentionKind::Flash,
        weights: None,
        kv: None,
    };
    let m = Model::load(dir, backend.clone(), opts).unwrap();
    let lens = lengths();
    let longest = lens[0];
    let params = m.default_params(3);
    // What the longest request needs alone, on a fresh model.
    let alone = {
        let f = Model::load(dir, backend.clone(), opts).unwrap();
        f.generate_one(&request(&f, 0, longest), &params).unwrap();
        f.memory().pool.peak_bytes
    };
    let bound = alone + alone / 4;
    let mut held_max = 0;
    for (i, &len) in lens.iter().enumerate() {
        let req = request(&m, i, len);
        let g = m.generate_one(&req, &params).unwrap();
        let s = m.memory().pool;
        let held = s.live_bytes + s.free_bytes;
        held_max = held_max.max(held);
        assert!(held <= bound, "after request {i} ({len} tokens) the pool holds {held} bytes, above {bound} ({alone} for the longest alone)");
        if i % 50 == 7 {
            // reused buffers give the same tokens as a fresh model
            let f = Model::load(dir, backend.clone(), opts).unwrap();
            assert_eq!(
                g.tokens,
                f.generate_one(&req, &params).unwrap().tokens,
                "request {i}"
            );
        }
    }
    let s = m.memory().pool;
    assert!(
        s.trimmed > 0,
        "nothing was trimmed over 200 prompt lengths: {s:?}"
    );
    assert!(
        s.reuses > s.backend_allocs,
        "buffers are reused across requests: {s:?}"
    );
    eprintln!(
        "{}: 200 requests, pool held at most {held_max} bytes (bound {bound}, longest alone {alone}); {} backend allocations, {} reuses, {} trimmed",
        backend.name(),
        s.backend_allocs,
        s.reuses,
        s.trimmed
    );
}

#[test]
fn pool_stays_bounded_over_200_prompt_lengths_cpu() {
    check(Arc::new(CpuBackend::fast()), &model_dir("cpu"));
}

#[test]
fn pool_stays_bounded_over_200_prompt_lengths_wgpu() {
    let test = "pool_stays_bounded_over_200_prompt_lengths_wgpu";
    match foveate_wgpu::WgpuBackend::new() {
        Ok(b) => check(Arc::new(b), &model_dir("wgpu")),
        Err(e) => skip_or_fail(
            test,
            "FOVEATE_REQUIRE_WGPU",
            &format!("no wgpu backend: {e}"),
        ),
    }
}
