//! End to end on tiny random checkpoints written by `foveate_models::synth` (no Python needed):
//! every tensor layout loads to the same model, the KV cache agrees with a full prefill, the
//! attention variants agree, batches equal single runs, sliding windows matter.

use foveate_core::{Backend, DType};
use foveate_cpu::CpuBackend;
use foveate_graph::{AttentionKind, GenerateParams, SamplingParams};
use foveate_models::synth::{self, Layout, SynthSpec};
use foveate_models::{LlavaConfig, Model, ModelOptions, PixelValues, Request};
use std::path::PathBuf;
use std::sync::Arc;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("foveate-graph-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn cpu() -> Arc<dyn Backend> {
    Arc::new(CpuBackend::fast())
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

fn load(dir: &PathBuf, attention: AttentionKind) -> Model {
    Model::load(
        dir,
        cpu(),
        ModelOptions {
            dtype: DType::F32,
            attention,
            weights: None,
            kv: None,
        },
    )
    .unwrap()
}

fn prompt_logits(m: &Model, ids: &[u32], px: Option<PixelValues>) -> Vec<f32> {
    let mut p = m.default_params(0);
    p.prompt_logits = true;
    let g = m
        .generate_one(
            &Request {
                input_ids: ids.to_vec(),
                pixels: px,
            },
            &p,
        )
        .unwrap();
    g.prompt_logits.unwrap().to_f32()
}

fn max_rel(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-6);
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

fn greedy(m: &Model, ids: &[u32], px: Option<PixelValues>, n: usize) -> Vec<u32> {
    let p = GenerateParams {
        max_new_tokens: n,
        sampling: SamplingParams::default(),
        stop_tokens: vec![],
        prompt_logits: false,
    };
    m.generate_one(
        &Request {
            input_ids: ids.to_vec(),
            pixels: px,
        },
        &p,
    )
    .unwrap()
    .tokens
}

fn prompt(m: &Model) -> Vec<u32> {
    m.tokenize(
        "USER : <image> what is the color of a cat ? ASSISTANT :",
        false,
        true,
    )
    .unwrap()
}

#[test]
fn layouts_shards_and_dtypes_load_the_same_model() {
    let base = tmp("layouts-base");
    synth::write_checkpoint(&base, &SynthSpec::default()).unwrap();
    let m = load(&base, AttentionKind::Naive);
    let ids = prompt(&m);
    // <s> + 11 words + 16 image tokens (28/7 = 4x4 patches, CLS dropped).
    assert_eq!(ids.len(), 1 + 12 + 16, "{ids:?}"); // <s>, 12 words, 4x4 patches (CLS dropped)
    assert_eq!(ids.iter().filter(|&&i| i == synth::IMAGE_TOKEN).count(), 16);
    let want = prompt_logits(&m, &ids, Some(pixels(1)));
    for (name, layout, sharded) in [
        ("hub", Layout::Hub, false),
        ("model", Layout::ModelPrefix, false),
        ("sharded", Layout::Transformers5, true),
    ] {
        let d = tmp(name);
        synth::write_checkpoint(
            &d,
            &SynthSpec {
                layout,
                sharded,
                ..SynthSpec::default()
            },
        )
        .unwrap();
        let got = prompt_logits(&load(&d, AttentionKind::Naive), &ids, Some(pixels(1)));
        assert_eq!(got, want, "layout {name}");
        let _ = std::fs::remove_dir_all(&d);
    }
    // bf16 storage: the same weights rounded, so close but not equal.
    let d = tmp("bf16");
    synth::write_checkpoint(
        &d,
        &SynthSpec {
            dtype: "BF16",
            ..SynthSpec::default()
        },
    )
    .unwrap();
    let got = prompt_logits(&load(&d, AttentionKind::Naive), &ids, Some(pixels(1)));
    let r = max_rel(&got, &want);
    assert!(r > 0.0 && r < 0.05, "bf16 weights vs f32: rel {r}");
    let _ = std::fs::remove_dir_all(&d);
    let _ = std::fs::remove_dir_all(&base);
}

/// Decode with the KV cache must give the logits a full prefill of the longer prompt gives.
#[test]
fn kv_cache_matches_full_prefill() {
    for (name, spec) in [
        ("llama", SynthSpec::default()),
        (
            "qwen2",
            SynthSpec {
                vision: "siglip_vision_model",
                text: "qwen2",
                ..SynthSpec::default()
            },
        ),
        (
            "mistral",
            SynthSpec {
                text: "mistral",
                sliding_window: Some(6),
                ..SynthSpec::default()
            },
        ),
    ] {
        let d = tmp(&format!("kv-{name}"));
        synth::write_checkpoint(&d, &spec).unwrap();
        let m = load(&d, AttentionKind::Flash);
        let ids = prompt(&m);
        let toks = greedy(&m, &ids, Some(pixels(2)), 4);
        assert_eq!(toks.len(), 4);
        let mut longer = ids.clone();
        longer.extend(&toks[..3]);
        let full = prompt_logits(&m, &longer, Some(pixels(2)));
        let v = m
            .checkpoint
            .config_as::<LlavaConfig>()
            .unwrap()
            .text
            .vocab_size;
        for (k, &t) in toks.iter().enumerate() {
            let row = &full[(ids.len() - 1 + k) * v..(ids.len() + k) * v];
            assert_eq!(foveate_graph::sample::argmax(row), t, "{name}: token {k}");
        }
        let _ = std::fs::remove_dir_all(&d);
    }
}

#[test]
fn attention_variants_agree_and_windows_matter() {
    let d = tmp("variants");
    synth::write_checkpoint(
        &d,
        &SynthSpec {
            text: "mistral",
            sliding_window: Some(5),
            ..SynthSpec::default()
        },
    )
    .unwrap();
    let mut outs = Vec::new();
    let mut logits = Vec::new();
    for a in [
        AttentionKind::Naive,
        AttentionKind::Flash,
        AttentionKind::BlockSparse,
    ] {
        let m = load(&d, a);
        let ids = prompt(&m);
        outs.push(greedy(&m, &ids, Some(pixels(3)), 8));
        logits.push(prompt_logits(&m, &ids, Some(pixels(3))));
    }
    assert_eq!(outs[0], outs[1], "naive vs flash");
    assert_eq!(outs[0], outs[2], "naive vs block-sparse");
    assert!(max_rel(&logits[1], &logits[0]) < 1e-4 && max_rel(&logits[2], &logits[0]) < 1e-4);
    // The same weights with full attention give other logits: the window is applied.
    let full = tmp("variants-full");
    synth::write_checkpoint(
        &full,
        &SynthSpec {
            text: "mistral",
            sliding_window: None,
            ..SynthSpec::default()
        },
    )
    .unwrap();
    let m = load(&full, AttentionKind::Naive);
    let ids = prompt(&m);
    let lf = prompt_logits(&m, &ids, Some(pixels(3)));
    assert!(
        max_rel(&lf, &logits[0]) > 1e-3,
        "sliding window had no effect"
    );
    let _ = std::fs::remove_dir_all(&d);
    let _ = std::fs::remove_dir_all(&full);
}

#[test]
fn batch_equals_single_runs_and_pool_reuses() {
    let d = tmp("batch");
    synth::write_checkpoint(
        &d,
        &SynthSpec {
            vision: "siglip_vision_model",
            text: "qwen2",
            ..SynthSpec::default()
        },
    )
    .unwrap();
    let m = load(&d, AttentionKind::Flash);
    let a = m
        .tokenize("USER : <image> what is it ? ASSISTANT :", false, true)
        .unwrap();
    let b = m.tokenize("<image> the cat", false, true).unwrap();
    let c = m
        .tokenize("what is the color of the cat", false, false)
        .unwrap();
    assert_ne!(a.len(), b.len());
    let reqs = vec![
        Request {
            input_ids: a.clone(),
            pixels: Some(pixels(4)),
        },
        Request {
            input_ids: b.clone(),
            pixels: Some(pixels(5)),
        },
        Request {
            input_ids: c.clone(),
            pixels: None,
        },
    ];
    let p = GenerateParams {
        max_new_tokens: 6,
        sampling: SamplingParams::default(),
        stop_tokens: vec![],
        prompt_logits: false,
    };
    let batch = m.generate(&reqs, &p).unwrap();
    for (r, g) in reqs.iter().zip(&batch) {
        assert_eq!(g.tokens, greedy(&m, &r.input_ids, r.pixels.clone(), 6));
    }
    let s = m.memory().pool;
    assert!(
        s.reuses > s.backend_allocs,
        "pool reused {} of {} allocations",
        s.reuses,
        s.reuses + s.backend_allocs
    );
    assert!(s.peak_live_bytes <= s.peak_bytes && s.peak_bytes > 0);
    eprintln!("pool: {s:?}, weights {} bytes", m.memory().weights_bytes);
    // Seeded sampling is reproducible and differs from greedy for a high temperature.
    let sp = GenerateParams {
        sampling: SamplingParams {
            temperature: 5.0,
            top_k: 0,
            top_p: 1.0,
            seed: 9,
        },
        max_new_tokens: 10,
        ..p.clone()
    };
    let x = m.generate_one(&reqs[0], &sp).unwrap().tokens;
    let y = m.generate_one(&reqs[0], &sp).unwrap().tokens;
    assert_eq!(x, y);
    assert_ne!(
        x,
        m.generate_one(
            &reqs[0],
            &GenerateParams {
                max_new_tokens: 10,
                ..p
            }
        )
        .unwrap()
        .tokens
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn stop_tokens_end_generation() {
    let d = tmp("stop");
    synth::write_checkpoint(&d, &SynthSpec::default()).unwrap();
    let m = load(&d, AttentionKind::Naive);
    let ids = prompt(&m);
    let toks = greedy(&m, &ids, Some(pixels(6)), 6);
    let stop = toks[2];
    let first = toks.iter().position(|&t| t == stop).unwrap();
    let p = GenerateParams {
        max_new_tokens: 6,
        sampling: SamplingParams::default(),
        stop_tokens: vec![stop],
        prompt_logits: false,
    };
    let g = m
        .generate_one(
            &Request {
                input_ids: ids,
                pixels: Some(pixels(6)),
            },
            &p,
        )
        .unwrap();
    assert!(g.stopped_on_token);
    assert_eq!(g.tokens, toks[..=first].to_vec());
    let _ = std::fs::remove_dir_all(&d);
}
