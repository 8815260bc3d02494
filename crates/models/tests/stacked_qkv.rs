//! A decoder layer's q, k, v stacked into one product on the cpu (`TensorSource::fuse_rows`)
//! computes what three products compute, in every weight format, with and without q/k/v biases:
//! a decode step's projections bit for bit, prefill logits within a few ulps, the same greedy
//! tokens.

use foveate_core::{Backend, DType, Result, Tensor};
use foveate_graph::{
    generate_each, AttentionKind, Exec, GenerateParams, Positions, PromptInput, SamplingParams,
    TextModel,
};
use foveate_models::arch::layers::Projections;
use foveate_models::arch::llama::Llama;
use foveate_models::formats::Formats;
use foveate_models::synth::{config_json, SynthSpec};
use foveate_models::vars::{RandomSource, Role, TensorSource};
use foveate_models::{LlavaConfig, Part};
use std::sync::Arc;

/// A source that never stacks (everything else forwarded): the products stay apart.
struct Apart<'a>(RandomSource<'a>);

impl TensorSource for Apart<'_> {
    fn tensor(&mut self, part: Part, name: &str, shape: &[usize], role: Role) -> Result<Tensor> {
        self.0.tensor(part, name, shape, role)
    }
    fn zeros(&mut self, shape: &[usize]) -> Result<Tensor> {
        self.0.zeros(shape)
    }
    fn bytes(&self) -> usize {
        self.0.bytes()
    }
    fn separate_head(&self) -> bool {
        self.0.separate_head()
    }
}

/// The tiny synthetic decoder widened so its products run in parallel (more than the cpu's
/// serial threshold of multiply-adds per decode step).
fn config(text: &'static str) -> foveate_models::TextConfig {
    let mut cfg = config_json(&SynthSpec {
        text,
        ..SynthSpec::default()
    });
    cfg["text_config"]["hidden_size"] = 256.into();
    cfg["text_config"]["intermediate_size"] = 512.into();
    LlavaConfig::from_json(&cfg, "config.json").unwrap().text
}

fn run(model: &Llama, ex: &Exec) -> (Vec<f32>, Vec<u32>) {
    let ids: Vec<u32> = (0..9)
        .map(|i| (i * 7 + 3) % model.vocab_size() as u32)
        .collect();
    let prompt = PromptInput {
        positions: Positions::linear(1, 0, ids.len()),
        ids,
        splice: None,
        image_encode_ms: 0.0,
    };
    let params = GenerateParams {
        max_new_tokens: 6,
        sampling: SamplingParams::default(),
        stop_tokens: vec![],
        prompt_logits: true,
    };
    let mut g = generate_each(ex, model, vec![prompt], &[params]).unwrap();
    let g = g.remove(0);
    (g.prompt_logits.unwrap().to_f32(), g.tokens)
}

#[test]
fn stacked_qkv_is_three_products() {
    let cpu: Arc<dyn Backend> = Arc::new(foveate_cpu::CpuBackend::fast());
    for text in ["llama", "qwen2"] {
        let cfg = config(text);
        for weights in [DType::F32, DType::BF16, DType::Int8, DType::Int4] {
            let formats = Formats::new(DType::F32, weights);
            let ex = Exec::new(cpu.clone(), DType::F32, AttentionKind::Flash);
            let source = || RandomSource::new(cpu.as_ref(), DType::F32, 5).with_formats(formats);
            let stacked = Llama::load(&mut source(), &cfg).unwrap();
            let apart = Llama::load(&mut Apart(source()), &cfg).unwrap();
            assert!(
                matches!(stacked.layers[0].qkv, Projections::Stacked(..)),
                "{text} {weights}: not stacked on the cpu"
            );
            assert!(matches!(apart.layers[0].qkv, Projections::Apart(..)));
            if let Projections::Stacked(l, rows) = &stacked.layers[0].qkv {
                assert_eq!(
                    l.b.is_some(),
                    cfg.qkv_bias,
                    "{text}: the biases follow the weights"
                );
                assert_eq!(rows, &[256, 128, 128]);
            }
            let (a, b) = (run(&stacked, &ex), run(&apart, &ex));
            // Prefill's products (9 rows) may sum in another order for another width (the f32
            // GEMM's blocking): within a few ulps; the tokens must agree.
            let scale = b.0.iter().fold(0f32, |m, v| m.max(v.abs()));
            let worst =
                a.0.iter()
                    .zip(&b.0)
                    .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            assert!(
                worst <= 1e-5 * scale,
                "{text} {weights}: prefill logits differ by {worst} (of {scale})"
            );
            assert_eq!(a.1, b.1, "{text} {weights}: greedy tokens differ");
            // A decode-shaped product (one row) is the parts' products bit for bit.
            let x = ex
                .upload_f32(
                    &[1, 1, 256],
                    &(0..256)
                        .map(|i| (i as f32 * 0.37).sin())
                        .collect::<Vec<_>>(),
                )
                .unwrap();
            let (one, three) = (
                stacked.layers[1].qkv.forward(&ex, &x).unwrap(),
                apart.layers[1].qkv.forward(&ex, &x).unwrap(),
            );
            for (i, (s, p)) in one.iter().zip(&three).enumerate() {
                let (s, p) = (
                    cpu.download(s).unwrap().to_f32(),
                    cpu.download(p).unwrap().to_f32(),
                );
                assert!(s == p, "{text} {weights}: decode projection {i} differs");
            }
        }
    }
}
