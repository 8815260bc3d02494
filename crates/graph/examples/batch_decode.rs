//! Batched decode vs one request at a time, on a random text decoder of a few tens of millions of
//! parameters (CPU, f32): decode tokens/s for B requests with different prompt lengths, and a
//! check that both give the same greedy tokens.
//!
//! `cargo run --release -p foveate-graph --example batch_decode -- [B] [new_tokens] [layers] [hidden]`

use foveate_core::DType;
use foveate_cpu::CpuBackend;
use foveate_graph::{AttentionKind, GenerateParams, LlavaModel, ModelOptions, Request, SamplingParams};
use foveate_models::config::LlavaConfig;
use foveate_models::manifest;
use foveate_models::synth::{self, SynthSpec};
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use std::path::Path;
use std::sync::Arc;

/// A synth checkpoint (tokenizer, template, tiny vision tower) whose decoder is resized.
fn write_model(dir: &Path, layers: usize, hidden: usize) {
    synth::write_checkpoint(dir, &SynthSpec::default()).unwrap();
    let p = dir.join("config.json");
    let mut c: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    let heads = hidden / 64;
    c["text_config"]["hidden_size"] = hidden.into();
    c["text_config"]["intermediate_size"] = (hidden * 8 / 3).into();
    c["text_config"]["num_attention_heads"] = heads.into();
    c["text_config"]["num_key_value_heads"] = (heads / 2).max(1).into();
    c["text_config"]["num_hidden_layers"] = layers.into();
    c["text_config"]["vocab_size"] = 8192.into();
    c["text_config"]["max_position_embeddings"] = 1024.into();
    std::fs::write(&p, serde_json::to_string_pretty(&c).unwrap()).unwrap();
    let cfg = LlavaConfig::from_json(&c, "config.json").unwrap();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = manifest::all(&cfg)
        .into_iter()
        .map(|e| {
            let n: usize = e.shape.iter().product();
            let fan_in = e.shape.get(1).copied().unwrap_or(1) as f32;
            let is_norm = e.name.contains("norm");
            let bytes = (0..n)
                .flat_map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let r = (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
                    let v = if is_norm {
                        1.0 + 0.1 * r
                    } else if e.shape.len() >= 2 {
                        r * 1.7 / fan_in.sqrt()
                    } else {
                        0.1 * r
                    };
                    v.to_le_bytes()
                })
                .collect();
            let prefix = match e.part {
                foveate_models::Part::Vision => "vision_tower.",
                foveate_models::Part::Projector => "multi_modal_projector.",
                foveate_models::Part::Text => "language_model.model.",
                foveate_models::Part::LmHead => "language_model.lm_head.",
            };
            (format!("{prefix}{}", e.name), e.shape, bytes)
        })
        .collect();
    let views: Vec<(String, TensorView)> =
        data.iter().map(|(n, s, b)| (n.clone(), TensorView::new(Dtype::F32, s.clone(), b).unwrap())).collect();
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("numbers")).collect();
    let (b, new_tokens, layers, hidden) = (
        args.first().copied().unwrap_or(4),
        args.get(1).copied().unwrap_or(32),
        args.get(2).copied().unwrap_or(6),
        args.get(3).copied().unwrap_or(768),
    );
    let dir = std::env::temp_dir().join(format!("foveate-batch-decode-{}", std::process::id()));
    write_model(&dir, layers, hidden);
    let m =
        LlavaModel::load(&dir, Arc::new(CpuBackend::fast()), ModelOptions { dtype: DType::F32, attention: AttentionKind::Flash }).unwrap();
    let t = &m.checkpoint.config.text;
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
        .map(|i| Request { input_ids: (0..20 + 15 * i).map(|j| 3 + ((i * 7 + j * 13) % 57) as u32).collect(), pixels: None })
        .collect();
    let p = GenerateParams { max_new_tokens: new_tokens, sampling: SamplingParams::default(), stop_tokens: vec![], prompt_logits: false };
    m.generate_one(&reqs[0], &GenerateParams { max_new_tokens: 4, ..p.clone() }).unwrap(); // warm-up
    let (mut single_ms, mut steps, mut single_tokens) = (0.0, 0, Vec::new());
    for r in &reqs {
        let g = m.generate_one(r, &p).unwrap();
        single_ms += g.timings.decode_ms;
        steps += g.timings.decode_steps;
        single_tokens.push(g.tokens);
    }
    let batch = m.generate(&reqs, &p).unwrap();
    let batch_ms = batch.iter().map(|g| g.timings.decode_ms).fold(0.0, f64::max);
    let batch_steps: usize = batch.iter().map(|g| g.timings.decode_steps).sum();
    let same = batch.iter().zip(&single_tokens).all(|(g, s)| &g.tokens == s);
    let (one, many) = (steps as f64 / (single_ms / 1e3), batch_steps as f64 / (batch_ms / 1e3));
    println!("B = {b}, prompts of {:?} tokens, {new_tokens} new tokens each", reqs.iter().map(|r| r.input_ids.len()).collect::<Vec<_>>());
    println!("one by one: {steps} decode tokens in {single_ms:.0} ms = {one:.1} tokens/s");
    println!("batched:    {batch_steps} decode tokens in {batch_ms:.0} ms = {many:.1} tokens/s ({:.2}x)", many / one);
    println!("greedy tokens identical: {same}");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(same, "batched tokens differ from single runs");
}
