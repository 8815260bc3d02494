//! Qwen2-VL / Qwen2.5-VL configs: the fixtures' transformers 5 configs and a hub-style (transformers 4,
//! flat) config parse to the same settings; bad values are errors naming the file and the field; the
//! image processor config and its smart resize; image-dependent prompt expansion.

use foveate_models::arch::parse_config;
use foveate_models::arch::qwen2_vl_config::{QwenVlConfig, QwenVlKind};
use foveate_models::image::{ImageProcessorConfig, ProcessorKind};
use foveate_models::Checkpoint;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn fixture_config(name: &str) -> Value {
    let p = repo()
        .join("eval/fixtures")
        .join(name)
        .join("model/config.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn err(v: &Value) -> String {
    match parse_config(v, "x/config.json") {
        Ok(_) => panic!("accepted: {v}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn fixtures_parse_as_their_families() {
    let c = QwenVlConfig::from_json(&fixture_config("qwen2-vl"), "config.json").unwrap();
    assert_eq!(c.kind, QwenVlKind::V2);
    assert_eq!(
        (
            c.vision.width,
            c.vision.intermediate,
            c.vision.out_dim,
            c.vision.depth
        ),
        (32, 64, 64, 2)
    );
    assert_eq!(c.text.mrope_section, Some([2, 3, 3]));
    assert!(!c.text.tie_word_embeddings);
    assert!(c.vision.full_attention_layers.len() == 2 && !c.vision.windowed(0));
    let c = QwenVlConfig::from_json(&fixture_config("qwen2_5-vl"), "config.json").unwrap();
    assert_eq!(c.kind, QwenVlKind::V2_5);
    assert_eq!(
        (
            c.vision.window_units(),
            c.vision.full_attention_layers.clone()
        ),
        (2, vec![1])
    );
    assert!(c.vision.windowed(0) && !c.vision.windowed(1) && c.vision.windowed(2));
    assert!(c.text.tie_word_embeddings);
}

/// The hub's Qwen2.5-VL-3B-Instruct layout: text fields at the top level, `rope_scaling` of type
/// mrope, `in_chans`.
#[test]
fn hub_flat_config_parses() {
    let v = json!({
        "architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl",
        "hidden_size": 2048, "intermediate_size": 11008, "num_attention_heads": 16, "num_hidden_layers": 36,
        "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "vocab_size": 151936,
        "max_position_embeddings": 128000, "tie_word_embeddings": true, "use_sliding_window": false,
        "sliding_window": 32768, "max_window_layers": 70, "hidden_act": "silu",
        "bos_token_id": 151643, "eos_token_id": 151645, "image_token_id": 151655, "video_token_id": 151656,
        "vision_start_token_id": 151652, "vision_end_token_id": 151653,
        "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
        "vision_config": {"depth": 32, "hidden_act": "silu", "hidden_size": 1280, "intermediate_size": 3420,
            "num_heads": 16, "in_chans": 3, "out_hidden_size": 2048, "patch_size": 14, "spatial_merge_size": 2,
            "spatial_patch_size": 14, "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31],
            "tokens_per_second": 2, "temporal_patch_size": 2}
    });
    let c = parse_config(&v, "config.json").unwrap();
    let c = c.as_any().downcast_ref::<QwenVlConfig>().unwrap();
    assert_eq!(
        (c.text.hidden_size, c.text.head_dim, c.text.mrope_section),
        (2048, 128, Some([16, 24, 24]))
    );
    assert_eq!((c.vision.window_units(), c.vision.head_dim()), (4, 80));
    assert_eq!(c.text.rope_theta, 1e6);
}

/// A change made to a good config (the field it breaks goes with it).
type Mutation = fn(&mut Value);

#[test]
fn bad_configs_name_the_file_and_the_field() {
    let base = fixture_config("qwen2_5-vl");
    let cases: Vec<(&str, Mutation)> = vec![
        ("text_config.rope_parameters.mrope_section", |v| {
            v["text_config"]["rope_parameters"]["mrope_section"] = json!([2, 3, 4])
        }),
        ("text_config.rope_parameters.mrope_section", |v| {
            v["text_config"]["rope_parameters"]["mrope_section"] = json!("x")
        }),
        ("vision_config.out_hidden_size", |v| {
            v["vision_config"]["out_hidden_size"] = json!(48)
        }),
        ("vision_config.window_size", |v| {
            v["vision_config"]["window_size"] = json!(50)
        }),
        ("vision_config.fullatt_block_indexes", |v| {
            v["vision_config"]["fullatt_block_indexes"] = json!([3])
        }),
        ("vision_config.hidden_act", |v| {
            v["vision_config"]["hidden_act"] = json!("gelu")
        }),
        ("vision_config.num_heads", |v| {
            v["vision_config"]["num_heads"] = json!(3)
        }),
        ("vision_config.patch_size", |v| {
            v["vision_config"]["patch_size"] = json!([14, 14])
        }),
        ("vision_config.in_channels", |v| {
            v["vision_config"]["in_channels"] = json!(4)
        }),
        ("vision_config.depth", |v| {
            v["vision_config"]["depth"] = json!(0)
        }),
        ("vision_config", |v| v["vision_config"] = json!(null)),
        ("image_token_id", |v| v["image_token_id"] = json!(100000)),
        ("text_config.rope_parameters.rope_type", |v| {
            v["text_config"]["rope_parameters"]["rope_type"] = json!("yarn")
        }),
    ];
    for (field, mutate) in cases {
        let mut v = base.clone();
        mutate(&mut v);
        let e = err(&v);
        assert!(
            e.contains("x/config.json") && e.contains(field),
            "expected {field}: {e}"
        );
    }
    let mut v = base.clone();
    v["model_type"] = json!("qwen3_vl");
    let e = err(&v);
    assert!(
        e.contains("model_type") && e.contains("qwen2_vl") && e.contains("qwen2_5_vl"),
        "{e}"
    );
}

#[test]
fn image_processor_config_reads_pixel_bounds() {
    let ip =
        ImageProcessorConfig::from_model_dir(repo().join("eval/fixtures/qwen2-vl/model")).unwrap();
    assert_eq!(ip.kind, ProcessorKind::Qwen2Vl);
    let p = ip.patches.unwrap();
    assert_eq!(
        (
            p.min_pixels,
            p.max_pixels,
            p.patch_size,
            p.merge_size,
            p.temporal_patch_size
        ),
        (784, 15680, 14, 2, 2)
    );
    assert_eq!(ip.resize_output_size(359, 270), (140, 84));
    assert_eq!(ip.pixel_shape(140, 84), vec![60, 1176]);
    // transformers 4 names win over size, as in the processor's __init__.
    let v = json!({"image_processor_type": "Qwen2VLImageProcessor", "min_pixels": 3136, "max_pixels": 12845056});
    let ip = ImageProcessorConfig::from_json(&v, "p.json").unwrap();
    assert_eq!(ip.patches.unwrap().max_pixels, 12845056);
    for (bad, field) in [
        (
            json!({"image_processor_type": "Qwen2VLImageProcessor", "size": {"height": 4}}),
            "size",
        ),
        (
            json!({"image_processor_type": "Qwen2VLImageProcessor", "merge_size": 0}),
            "merge_size",
        ),
        (
            json!({"image_processor_type": "Qwen2VLImageProcessor", "min_pixels": 10, "max_pixels": 5}),
            "size",
        ),
    ] {
        let e = ImageProcessorConfig::from_json(&bad, "p.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("p.json") && e.contains(field), "{field}: {e}");
    }
}

#[test]
fn prompt_expansion_depends_on_the_image() {
    let ck = Checkpoint::open(repo().join("eval/fixtures/qwen2-vl/model")).unwrap();
    assert!(ck.config.image_tokens_vary());
    let pad = ck.config.image_token_id();
    // A raw `<image>` becomes vision start, N image tokens, vision end.
    for n in [15, 24] {
        let ids = ck.prompt.encode_with("<image>hi", n).unwrap();
        assert_eq!(ids.iter().filter(|&&t| t == pad).count(), n);
        let start = ids.iter().position(|&t| t == pad).unwrap();
        assert_eq!(
            ids[start - 1],
            3,
            "<|vision_start|> before the image tokens: {ids:?}"
        );
        assert_eq!(ids[start + n], 4, "<|vision_end|> after them: {ids:?}");
    }
    // The chat template writes `<|image_pad|>` itself; it is expanded the same way.
    let text = ck.prompt.apply_chat_template("What is it?", true).unwrap();
    assert!(
        text.contains("<|vision_start|><|image_pad|><|vision_end|>What is it?<|im_end|>"),
        "{text}"
    );
    assert_eq!(
        ck.prompt
            .encode_with(&text, 9)
            .unwrap()
            .iter()
            .filter(|&&t| t == pad)
            .count(),
        9
    );
}
