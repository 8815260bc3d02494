//! Batched decode vs one request at a time, on a random text decoder of a few tens of millions of
//! parameters (CPU, f32): decode tokens/s for B requests with different prompt lengths, and a
//! check that both give the same greedy tokens.
//!
//! `cargo run --release -p foveate-models --example batch_decode -- [B] [new_tokens] [layers] [hidden]`

use foveate_core::DType;
use foveate_cpu::CpuBackend;
use foveate_graph::{AttentionKind, GenerateParams, SamplingParams};
use foveate_models::synth::{self, SynthSpec};
use foveate_models::{LlavaConfig, Model, ModelOptions, Request};
use std::path::Path;
use std::sync::Arc;

/// A synth checkpoint (tokenizer, template, tiny vision tower) whose decoder is resized.
fn write_model(dir: &Path, layers: usize, hidden: usize) {
    let spec = SynthSpec::default();
    let mut c = synth::config_json(&spec);
    let heads = hidden / 64;
    c["text_config"]["hidden_size"] = hidden.into();
    c["text_config"]["intermediate_size"] = (hidden * 8 / 3).into();
    c["text_config"]["num_attention_heads"] = heads.into();
    c["text_config"]["num_key_value_heads"] = (heads / 2).max(1).into();
    c["text_config"]["num_hidden_layers"] = layers.into();
    c["text_config"]["vocab_size"] = 8192.into();
    c["text_config"]["max_position_embeddings"] = 1024.into();
    synth::write_checkpoint_with(dir, &spec, c).unwrap();
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numbers"))
        .collect();
    let (b, new_tokens, layers, hidden) = (
        args.first().copied().unwrap_or(4),
        args.get(1).copied().unwrap_or(32),
        args.get(2).copied().unwrap_or(6),
        args.get(3).copied().unwrap_or(768),
    );
    let dir = std::env::temp_dir().join(format!("foveate-batch-decode-{}", std::process::id()));
    write_model(&dir, layers, hidden);
    let m = Model::load(
        &dir,
        Arc::new(CpuBackend::fast()),
        ModelOptions {
            dtype: DType::F32,
            attention: AttentionKind::Flash,
            weights: None,
            kv: None,
        },
    )
    .unwrap();
    let t = &m.checkpoint.config_as::<LlavaConfig>().unwrap().text;
    println!(
        "decoder: {} layers, hidden {}, {}/{} heads, MLP {}, vocab {}: {:.1} M parameters; {}",
        t.num_layers,
        t.hidden_size,
        t.num_heads,
        t.num_kv_heads,
        t.intermediate_size,
        t.vocab_size,
        m.memory().weights_bytes as f64 / 4e6,
        m.backend().device_name()
    );
    let reqs: Vec<Request> = (0..b)
        .map(|i| Request {
            input_ids: (0..20 + 15 * i)
                .map(|j| 3 + ((i * 7 + j * 13) % 57) as u32)
                .collect(),
            pixels: None,
        })
        .collect();
    let p = GenerateParams {
        max_new_tokens: new_tokens,
        sampling: SamplingParams::default(),
        stop_tokens: vec![],
        prompt_logits: false,
    };
    m.generate_one(
        &reqs[0],
        &GenerateParams {
            max_new_tokens: 4,
            ..p.clone()
        },
    )
    .unwrap(); // warm-up
    let (mut single_ms, mut steps, mut single_tokens) = (0.0, 0, Vec::new());
    for r in &reqs {
        let g = m.generate_one(r, &p).unwrap();
        single_ms += g.timings.decode_ms;
        steps += g.timings.decode_steps;
        single_tokens.push(g.tokens);
    }
    let batch = m.generate(&reqs, &p).unwrap();
    let batch_ms = batch
        .iter()
        .map(|g| g.timings.decode_ms)
        .fold(0.0, f64::max);
    let batch_steps: usize = batch.iter().map(|g| g.timings.decode_steps).sum();
    let same = batch
        .iter()
        .zip(&single_tokens)
        .all(|(g, s)| &g.tokens == s);
    let (one, many) = (
        steps as f64 / (single_ms / 1e3),
        batch_steps as f64 / (batch_ms / 1e3),
    );
    println!(
        "B = {b}, prompts of {:?} tokens, {new_tokens} new tokens each",
        reqs.iter().map(|r| r.input_ids.len()).collect::<Vec<_>>()
    );
    println!("one by one: {steps} decode tokens in {single_ms:.0} ms = {one:.1} tokens/s");
    println!(
        "batched:    {batch_steps} decode tokens in {batch_ms:.0} ms = {many:.1} tokens/s ({:.2}x)",
        many / one
    );
    println!("greedy tokens identical: {same}");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(same, "batched tokens differ from single runs");
}
