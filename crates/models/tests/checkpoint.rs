//! Checkpoint loading: configs, aliases, prompt building, and clear errors for bad checkpoints.

use foveate_core::DType;
use foveate_models::synth::{self, Layout, SynthSpec};
use foveate_models::{manifest, Checkpoint, LayerAttention, LlavaConfig, Part};
use serde_json::json;
use std::path::{Path, PathBuf};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("foveate-models-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn err_of(dir: &Path) -> String {
    match Checkpoint::open(dir) {
        Ok(ck) => {
            // Open succeeded: the error must come when the tensors are read.
            let cfg = ck.config.clone();
            for e in manifest::all(&*cfg) {
                if let Err(err) = ck.tensor(e.part, &e.name, &e.shape, DType::F32) {
                    return err.to_string();
                }
            }
            panic!("no error for {}", dir.display())
        }
        Err(e) => e.to_string(),
    }
}

#[test]
fn every_layout_resolves_every_tensor() {
    for (name, layout) in [
        ("t5", Layout::Transformers5),
        ("hub", Layout::Hub),
        ("model", Layout::ModelPrefix),
    ] {
        let d = tmp(&format!("layout-{name}"));
        synth::write_checkpoint(
            &d,
            &SynthSpec {
                layout,
                ..SynthSpec::default()
            },
        )
        .unwrap();
        let ck = Checkpoint::open(&d).unwrap();
        for e in manifest::all(&*ck.config) {
            let t = ck.tensor(e.part, &e.name, &e.shape, DType::BF16).unwrap();
            assert_eq!(t.shape().dims(), &e.shape[..]);
            assert_eq!(t.dtype(), DType::BF16);
        }
        assert_eq!(ck.eos_token_ids, vec![2]);
        let _ = std::fs::remove_dir_all(&d);
    }
}

#[test]
fn prompt_expansion_and_chat_template() {
    let d = tmp("prompt");
    synth::write_checkpoint(&d, &SynthSpec::default()).unwrap();
    let ck = Checkpoint::open(&d).unwrap();
    assert_eq!(ck.config.image_tokens_per_image(), 16);
    let ids = ck.prompt.encode("<image> what is it").unwrap();
    assert_eq!(ids[0], 1, "BOS first: {ids:?}");
    assert_eq!(&ids[1..17], &[synth::IMAGE_TOKEN; 16]);
    assert_eq!(ids.len(), 20);
    let text = ck.prompt.apply_chat_template("what is it ?", true).unwrap();
    assert_eq!(text, "USER: <image>\nwhat is it ?ASSISTANT:");
    let text = ck
        .prompt
        .apply_chat_template("what <image> it", true)
        .unwrap();
    assert_eq!(text, "USER: what <image>\n itASSISTANT:");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn config_variants_parse() {
    let mut v = synth::config_json(&SynthSpec {
        text: "qwen2",
        vision: "siglip_vision_model",
        ..SynthSpec::default()
    });
    v["text_config"]["use_sliding_window"] = json!(true);
    v["text_config"]["sliding_window"] = json!(4);
    v["text_config"]["max_window_layers"] = json!(1);
    let c = LlavaConfig::from_json(&v, "config.json").unwrap();
    assert_eq!(
        c.text.layers,
        vec![LayerAttention::Full, LayerAttention::Sliding(4)]
    );
    assert!(c.text.qkv_bias && c.text.tie_word_embeddings);
    assert_eq!(c.image_tokens_per_image(), 16, "siglip full: all patches");
    // transformers 4 style rope_theta and head_dim derivation
    let mut v = synth::config_json(&SynthSpec::default());
    v["text_config"]
        .as_object_mut()
        .unwrap()
        .remove("rope_parameters");
    v["text_config"]["rope_theta"] = json!(500000.0);
    let c = LlavaConfig::from_json(&v, "config.json").unwrap();
    assert_eq!(c.text.rope_theta, 500000.0);
    assert_eq!(c.text.head_dim, 8);
    assert_eq!(c.vision_layers_to_run(), 2, "-2 of 3 layers");
    assert_eq!(c.image_tokens_per_image(), 16, "clip default: CLS dropped");
    v["vision_feature_select_strategy"] = json!("full");
    assert_eq!(
        LlavaConfig::from_json(&v, "config.json")
            .unwrap()
            .image_tokens_per_image(),
        17
    );
}

#[test]
fn unsupported_config_values_name_the_field() {
    let cases = [
        ("/model_type", json!("llava_next"), "model_type"),
        (
            "/text_config/model_type",
            json!("gemma"),
            "text_config.model_type",
        ),
        (
            "/vision_config/model_type",
            json!("dinov2"),
            "vision_config.model_type",
        ),
        (
            "/vision_feature_layer",
            json!([-2, -5]),
            "vision_feature_layer",
        ),
        (
            "/vision_feature_select_strategy",
            json!("cls"),
            "vision_feature_select_strategy",
        ),
        (
            "/projector_hidden_act",
            json!("relu6"),
            "projector_hidden_act",
        ),
        (
            "/text_config/rope_parameters",
            json!({"rope_type": "llama3", "rope_theta": 1.0}),
            "text_config.rope_parameters.rope_type",
        ),
    ];
    for (ptr, val, field) in cases {
        let mut v = synth::config_json(&SynthSpec::default());
        *v.pointer_mut(ptr).unwrap() = val;
        let e = LlavaConfig::from_json(&v, "config.json")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with(&format!("config.json: {field}:")), "{e}");
        assert!(e.contains("supported"), "{e}");
    }
}

#[test]
fn corrupt_checkpoints_give_one_clear_error() {
    let good = tmp("corrupt-src");
    synth::write_checkpoint(&good, &SynthSpec::default()).unwrap();
    let st = std::fs::read(good.join("model.safetensors")).unwrap();
    let copy = |name: &str| {
        let d = tmp(name);
        synth::copy_checkpoint(&good, &d).unwrap();
        d
    };
    // Truncated: the last tensors run past the end of the data.
    let d = copy("truncated");
    std::fs::write(d.join("model.safetensors"), &st[..st.len() - 100]).unwrap();
    let e = err_of(&d);
    assert!(
        e.contains("model.safetensors") && e.contains("truncated"),
        "{e}"
    );
    // Cut inside the header.
    std::fs::write(d.join("model.safetensors"), &st[..20]).unwrap();
    let e = err_of(&d);
    assert!(e.contains("model.safetensors: header:"), "{e}");

    // Missing tensor and wrong shape: rewrite the file without / with a reshaped tensor.
    let rewrite = |d: &Path, drop: Option<&str>, reshape: Option<(&str, &[usize])>| {
        synth::rewrite_safetensors(&st, &d.join("model.safetensors"), drop, reshape).unwrap();
    };
    let d = copy("missing");
    rewrite(
        &d,
        Some("language_model.model.layers.1.mlp.up_proj.weight"),
        None,
    );
    let e = err_of(&d);
    assert!(e.contains("model.safetensors: language_model.layers.1.mlp.up_proj.weight: tensor missing (expected shape [48, 32]"), "{e}");
    let d2 = copy("shape");
    rewrite(
        &d2,
        None,
        Some((
            "vision_tower.encoder.layers.0.mlp.fc1.weight",
            &[24, 40][..],
        )),
    );
    let e = err_of(&d2);
    assert!(
        e.contains(
            "vision_tower.encoder.layers.0.mlp.fc1.weight: shape [24, 40], expected [40, 24]"
        ),
        "{e}"
    );
    // Unsupported architecture.
    let d3 = copy("arch");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d3.join("config.json")).unwrap()).unwrap();
    v["model_type"] = json!("idefics3");
    std::fs::write(d3.join("config.json"), v.to_string()).unwrap();
    let e = err_of(&d3);
    assert!(
        e.contains("config.json: model_type: `idefics3`") && e.contains("supported: llava"),
        "{e}"
    );
    for x in [&good, &d, &d2, &d3] {
        let _ = std::fs::remove_dir_all(x);
    }
    let _ = Part::Vision;
}
