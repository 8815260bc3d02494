//! Batched decode and request checks, on tiny random checkpoints (`foveate_models::synth`):
//! a batch of requests with different prompt lengths, images or none, budgets and stop tokens
//! gives each request the tokens it gets alone, while each decode step's GEMMs run once for the
//! whole batch; empty prompts and prompts past the context window are refused with errors that
//! name the lengths and the config field.

use foveate_core::{Backend, DType, Op, Result, Tensor};
use foveate_cpu::CpuBackend;
use foveate_graph::{AttentionKind, GenerateParams, SamplingParams};
use foveate_models::synth::{self, SynthSpec};
use foveate_models::{LlavaConfig, Model, ModelOptions, PixelValues, Request};
use foveate_testkit::skip_or_fail;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "foveate-graph-batched-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
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

/// Counts the GEMM launches of the backend it wraps.
struct Counting {
    inner: Arc<dyn Backend>,
    gemms: AtomicUsize,
}

impl Backend for Counting {
    foveate_testkit::forward_backend!(inner);
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn device_name(&self) -> String {
        self.inner.device_name()
    }
    fn execute(&self, op: &Op, inputs: &[&Tensor], out: &Tensor, variant: &str) -> Result<()> {
        if matches!(op, Op::Gemm(_)) {
            self.gemms.fetch_add(1, Ordering::Relaxed);
        }
        self.inner.execute(op, inputs, out, variant)
    }
}

fn greedy(max_new_tokens: usize, stop_tokens: Vec<u32>) -> GenerateParams {
    GenerateParams {
        max_new_tokens,
        sampling: SamplingParams::default(),
        stop_tokens,
        prompt_logits: false,
    }
}

/// Three requests: different prompt lengths, two images, one text-only.
fn requests(m: &Model) -> Vec<Request> {
    let a = m
        .tokenize(
            "USER : <image> what is the color of the cat ? ASSISTANT :",
            false,
            true,
        )
        .unwrap();
    let b = m.tokenize("<image> the cat", false, true).unwrap();
    let c = m.tokenize("what is it", false, false).unwrap();
    assert!(a.len() != b.len() && b.len() != c.len() && a.len() != c.len());
    vec![
        Request {
            input_ids: a,
            pixels: Some(pixels(11)),
        },
        Request {
            input_ids: b,
            pixels: Some(pixels(12)),
        },
        Request {
            input_ids: c,
            pixels: None,
        },
    ]
}

/// Runs the batch checks on `backend`; returns the failures.
fn batch_checks(
    backend: Arc<dyn Backend>,
    be: &str,
    dir: &PathBuf,
    attention: AttentionKind,
) -> Vec<String> {
    let counting = Arc::new(Counting {
        inner: backend,
        gemms: AtomicUsize::new(0),
    });
    let m = Model::load(
        dir,
        counting.clone(),
        ModelOptions {
            dtype: DType::F32,
            attention,
            weights: None,
            kv: None,
        },
    )
    .unwrap();
    let tag = format!("{be}/{attention:?}");
    let reqs = requests(&m);
    let mut fails = Vec::new();
    // Each alone, 8 greedy tokens, counting GEMM launches.
    let mut alone = Vec::new();
    let mut alone_gemms = 0;
    for r in &reqs {
        let before = counting.gemms.load(Ordering::Relaxed);
        alone.push(m.generate_one(r, &greedy(8, vec![])).unwrap().tokens);
        alone_gemms += counting.gemms.load(Ordering::Relaxed) - before;
    }
    // Same budget for all: identical tokens, and far fewer GEMM launches than one by one.
    let before = counting.gemms.load(Ordering::Relaxed);
    let batch = m.generate(&reqs, &greedy(8, vec![])).unwrap();
    let batch_gemms = counting.gemms.load(Ordering::Relaxed) - before;
    for (i, (g, want)) in batch.iter().zip(&alone).enumerate() {
        if &g.tokens != want {
            fails.push(format!(
                "{tag}: request {i}: batched tokens {:?} != alone {want:?}",
                g.tokens
            ));
        }
        if g.timings.decode_steps != 7 {
            fails.push(format!(
                "{tag}: request {i}: {} decode steps, expected 7",
                g.timings.decode_steps
            ));
        }
    }
    // Prefill GEMMs are per request; the 7 decode steps' GEMMs run once for all three.
    let cfg = &m.checkpoint.config_as::<LlavaConfig>().unwrap();
    // Per layer q, k, v (one stacked product on a host backend), o, gate, up, down; then the head.
    let per_layer = if counting.on_host() { 5 } else { 7 };
    let per_step = cfg.text.num_layers * per_layer + 1;
    if alone_gemms - batch_gemms != 2 * 7 * per_step {
        fails.push(format!("{tag}: {batch_gemms} GEMM launches batched vs {alone_gemms} one by one (expected {} fewer)", 2 * 7 * per_step));
    }
    // Requests finish independently: own budgets, a stop token for one of them.
    let stop = alone[2][2];
    let first_stop = alone[2].iter().position(|&t| t == stop).unwrap();
    let params = vec![greedy(5, vec![]), greedy(2, vec![]), greedy(8, vec![stop])];
    let mixed = m.generate_each(&reqs, &params).unwrap();
    let want = [
        alone[0][..5].to_vec(),
        alone[1][..2].to_vec(),
        alone[2][..=first_stop].to_vec(),
    ];
    for (i, (g, w)) in mixed.iter().zip(&want).enumerate() {
        if &g.tokens != w {
            fails.push(format!(
                "{tag}: mixed budgets, request {i}: {:?} != {w:?}",
                g.tokens
            ));
        }
    }
    if !mixed[2].stopped_on_token || mixed[0].stopped_on_token {
        fails.push(format!(
            "{tag}: stopped_on_token {:?}",
            mixed.iter().map(|g| g.stopped_on_token).collect::<Vec<_>>()
        ));
    }
    // Seeded sampling: each request draws from its own generator, as alone.
    let sp = GenerateParams {
        sampling: SamplingParams {
            temperature: 3.0,
            top_k: 0,
            top_p: 0.95,
            seed: 5,
        },
        ..greedy(6, vec![])
    };
    let sampled = m.generate(&reqs, &sp).unwrap();
    for (i, (g, r)) in sampled.iter().zip(&reqs).enumerate() {
        let one = m.generate_one(r, &sp).unwrap().tokens;
        if g.tokens != one {
            fails.push(format!(
                "{tag}: sampled request {i}: batched {:?} != alone {one:?}",
                g.tokens
            ));
        }
    }
    // Continuous batching: 7 requests through 2 slots (budgets 8, 5, 2, 8 with a stop token...),
    // each joining as another leaves, prefilled in groups: each gets its tokens alone.
    let queue_params = [
        greedy(8, vec![]),
        greedy(5, vec![]),
        greedy(2, vec![]),
        greedy(8, vec![stop]),
    ];
    let mut queue: Vec<(Request, GenerateParams)> = (0..7)
        .map(|i| (reqs[i % 3].clone(), queue_params[i % 4].clone()))
        .collect();
    let wants: Vec<Vec<u32>> = queue
        .iter()
        .map(|(r, p)| m.generate_one(r, p).unwrap().tokens)
        .collect();
    let mut got: Vec<Option<Vec<u32>>> = vec![None; wants.len()];
    let mut order = Vec::new();
    m.generate_batched(
        2,
        &mut |free| Ok(queue.drain(..free.min(queue.len())).collect()),
        &mut |i, g| {
            order.push(i);
            got[i] = Some(g.tokens);
            Ok(())
        },
    )
    .unwrap();
    for (i, (g, w)) in got.iter().zip(&wants).enumerate() {
        if g.as_ref() != Some(w) {
            fails.push(format!(
                "{tag}: continuous batching, request {i}: {g:?} != alone {w:?}"
            ));
        }
    }
    if order.len() != 7 || order == (0..7).collect::<Vec<_>>() {
        fails.push(format!("{tag}: continuous batching finished in order {order:?} (expected all 7, out of order: budgets differ)"));
    }
    // All three admitted at once: one vision batch, one prefill, then decode together: fewer GEMM
    // launches than generate() (which prefills one by one).
    let before = counting.gemms.load(Ordering::Relaxed);
    let mut q3: Vec<(Request, GenerateParams)> = reqs
        .iter()
        .map(|r| (r.clone(), greedy(8, vec![])))
        .collect();
    let mut toks3: Vec<Vec<u32>> = vec![Vec::new(); 3];
    m.generate_batched(
        3,
        &mut |free| Ok(q3.drain(..free.min(q3.len())).collect()),
        &mut |i, g| {
            toks3[i] = g.tokens;
            Ok(())
        },
    )
    .unwrap();
    let grouped_gemms = counting.gemms.load(Ordering::Relaxed) - before;
    if toks3 != alone || grouped_gemms >= batch_gemms {
        fails.push(format!("{tag}: grouped prefill: tokens {toks3:?} (alone {alone:?}), {grouped_gemms} GEMM launches vs {batch_gemms}"));
    }
    eprintln!("{tag}: tokens {alone:?}; GEMM launches {batch_gemms} batched, {grouped_gemms} grouped prefill, {alone_gemms} one by one; continuous order {order:?}");
    fails
}

fn synth_dir(name: &str, spec: SynthSpec) -> PathBuf {
    let d = tmp(name);
    synth::write_checkpoint(&d, &spec).unwrap();
    d
}

#[test]
fn batched_decode_matches_single_runs_cpu() {
    let mut fails = Vec::new();
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
        let d = synth_dir(&format!("cpu-{name}"), spec);
        for a in [
            AttentionKind::Naive,
            AttentionKind::Flash,
            AttentionKind::BlockSparse,
        ] {
            fails.extend(batch_checks(
                Arc::new(CpuBackend::fast()),
                &format!("cpu/{name}"),
                &d,
                a,
            ));
        }
        let _ = std::fs::remove_dir_all(&d);
    }
    assert!(fails.is_empty(), "{}", fails.join("\n"));
}

#[test]
fn batched_decode_matches_single_runs_wgpu() {
    let test = "batched_decode_matches_single_runs_wgpu";
    let be = match foveate_wgpu::WgpuBackend::new() {
        Ok(b) => Arc::new(b),
        Err(e) => {
            return skip_or_fail(
                test,
                "FOVEATE_REQUIRE_WGPU",
                &format!("no wgpu backend: {e}"),
            )
        }
    };
    let d = synth_dir(
        "wgpu",
        SynthSpec {
            text: "mistral",
            sliding_window: Some(6),
            ..SynthSpec::default()
        },
    );
    let mut fails = Vec::new();
    for a in [
        AttentionKind::Naive,
        AttentionKind::Flash,
        AttentionKind::BlockSparse,
    ] {
        fails.extend(batch_checks(be.clone(), "wgpu/mistral", &d, a));
    }
    let _ = std::fs::remove_dir_all(&d);
    assert!(fails.is_empty(), "{}", fails.join("\n"));
}

#[test]
fn empty_and_overlong_prompts_are_refused() {
    let d = synth_dir("limits", SynthSpec::default());
    let m = Model::load(&d, Arc::new(CpuBackend::fast()), ModelOptions::default()).unwrap();
    let window = m
        .checkpoint
        .config_as::<LlavaConfig>()
        .unwrap()
        .text
        .max_position_embeddings;
    assert_eq!(window, 256);
    // Empty prompt text, raw or through the chat template; a request without ids.
    for (prompt, chat) in [("", false), ("   \n", false), ("", true)] {
        let e = m.tokenize(prompt, chat, true).unwrap_err().to_string();
        assert!(e.contains("empty prompt"), "{e}");
    }
    let e = m
        .generate_one(
            &Request {
                input_ids: vec![],
                pixels: None,
            },
            &greedy(4, vec![]),
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("empty prompt"), "{e}");
    // Prompt (image tokens expanded) + max_new_tokens past the window: refused, naming both lengths.
    let ids = m
        .tokenize(
            "USER : <image> what is the color of a cat ? ASSISTANT :",
            false,
            true,
        )
        .unwrap();
    let px = Some(pixels(3));
    let n = ids.len();
    let req = Request {
        input_ids: ids.clone(),
        pixels: px.clone(),
    };
    let e = m
        .generate_one(&req, &greedy(window - n + 1, vec![]))
        .unwrap_err()
        .to_string();
    for want in [
        format!("prompt of {n} tokens (16 of them image tokens)"),
        format!("max_new_tokens {}", window - n + 1),
        format!("{}", window + 1),
    ] {
        assert!(e.contains(&want), "`{want}` missing from: {e}");
    }
    assert!(
        e.contains("context window of 256 tokens (text_config.max_position_embeddings)"),
        "{e}"
    );
    // Exactly the window is fine (the last token is never fed back).
    let g = m.generate_one(&req, &greedy(window - n, vec![])).unwrap();
    assert_eq!(g.tokens.len(), window - n);
    // A prompt alone longer than the window.
    let long: Vec<u32> = ids
        .iter()
        .chain(std::iter::repeat_n(&5u32, window))
        .copied()
        .collect();
    let e = m
        .generate_one(
            &Request {
                input_ids: long.clone(),
                pixels: px.clone(),
            },
            &greedy(0, vec![]),
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("prompt of {} tokens", long.len()))
            && e.contains("max_position_embeddings"),
        "{e}"
    );
    // In a batch, the error names the request, and nothing runs.
    let reqs = vec![
        req.clone(),
        Request {
            input_ids: long,
            pixels: px,
        },
    ];
    let e = m
        .generate(&reqs, &greedy(2, vec![]))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("request 1: prompt of"), "{e}");
    let _ = std::fs::remove_dir_all(&d);
}
