//! Input limits and bad-input errors of the checkpoint, config and preprocessing parsers: each
//! bad input is one error naming the file and the field or tensor, never a panic. (Rows of
//! docs/ROBUSTNESS.md.)

use foveate_models::image::{
    preprocess, ImageProcessorConfig, ProcessorKind, RgbImage, DEFAULT_MAX_PIXELS,
};
use foveate_models::synth::{self, SynthSpec};
use foveate_models::weights::{parse_safetensors, MAX_HEADER_BYTES};
use foveate_models::{Checkpoint, LlavaConfig};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("foveate-limits-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A safetensors file from a header value and `data_len` bytes of data.
fn st_file(header: &Value, data_len: usize) -> Vec<u8> {
    let h = header.to_string().into_bytes();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend((0..data_len).map(|i| i as u8));
    out
}

fn st_err(header: &Value, data_len: usize) -> String {
    parse_safetensors("w.safetensors", &st_file(header, data_len))
        .unwrap_err()
        .to_string()
}

#[test]
fn safetensors_header_length_is_bounded() {
    // Past the end of the file.
    let mut f = 1000u64.to_le_bytes().to_vec();
    f.extend_from_slice(b"{}");
    let e = parse_safetensors("w.safetensors", &f)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "w.safetensors: header: header length 1000 exceeds the file size 10 (truncated?)"
    );
    // Above the limit: refused before anything else is looked at.
    let f = (MAX_HEADER_BYTES + 1).to_le_bytes().to_vec();
    let e = parse_safetensors("w.safetensors", &f)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "w.safetensors: header: header length 100000001 exceeds the limit of 100000000 bytes"
    );
    // Shorter than the length prefix.
    let e = parse_safetensors("w.safetensors", &[1, 2, 3])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("w.safetensors: header: file is 3 bytes, too short"),
        "{e}"
    );
    // Header bytes that are not UTF-8.
    let mut f = 4u64.to_le_bytes().to_vec();
    f.extend_from_slice(b"{\xff}\n");
    let e = parse_safetensors("w.safetensors", &f)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "w.safetensors: header: not valid UTF-8 (first bad byte at header offset 1)"
    );
}

#[test]
fn safetensors_offsets_are_checked_against_shape_file_and_each_other() {
    let ok = json!({"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
                    "b": {"dtype": "F16", "shape": [4], "data_offsets": [16, 24]}});
    let t = parse_safetensors("w.safetensors", &st_file(&ok, 24)).unwrap();
    assert_eq!(t.len(), 2);

    let overlap = json!({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                         "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}});
    assert_eq!(
        st_err(&overlap, 24),
        "w.safetensors: b: data_offsets [8, 24] overlap those of a [0, 16]"
    );

    let misaligned = json!({"a": {"dtype": "F32", "shape": [4], "data_offsets": [2, 18]}});
    assert_eq!(
        st_err(&misaligned, 24),
        "w.safetensors: a: data_offsets begin 2 is not aligned to the F32 element size of 4 bytes"
    );

    let past_end = json!({"a": {"dtype": "F32", "shape": [8], "data_offsets": [0, 32]}});
    assert!(st_err(&past_end, 24)
        .contains("w.safetensors: a: data_offsets end 32 is past the end of the data (24 bytes)"));

    let wrong_size = json!({"a": {"dtype": "F16", "shape": [4], "data_offsets": [0, 16]}});
    assert_eq!(
        st_err(&wrong_size, 24),
        "w.safetensors: a: data_offsets [0, 16] hold 16 bytes, shape [4] needs 8"
    );

    let overflow =
        json!({"a": {"dtype": "F32", "shape": [1u64 << 40, 1u64 << 40], "data_offsets": [0, 16]}});
    assert!(
        st_err(&overflow, 24).contains("w.safetensors: a: shape")
            && st_err(&overflow, 24).contains("too large")
    );

    let dtype = json!({"a": {"dtype": "I8", "shape": [4], "data_offsets": [0, 4]}});
    assert_eq!(
        st_err(&dtype, 24),
        "w.safetensors: a: dtype I8 is not supported (supported: F32, F16, BF16; U8 in quantised checkpoints)"
    );

    let reversed = json!({"a": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}});
    assert!(st_err(&reversed, 24).starts_with("w.safetensors: a: data_offsets [8, 4]"));
}

fn synth_dir(name: &str, sharded: bool) -> PathBuf {
    let d = tmp(name);
    synth::write_checkpoint(
        &d,
        &SynthSpec {
            sharded,
            ..SynthSpec::default()
        },
    )
    .unwrap();
    d
}

fn open_err(d: &Path) -> String {
    match Checkpoint::open(d) {
        Ok(_) => panic!("{} opened", d.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn sharded_index_refuses_paths_and_tensors_stored_twice() {
    let d = synth_dir("shards", true);
    let index_path = d.join("model.safetensors.index.json");
    let index: Value =
        serde_json::from_str(&std::fs::read_to_string(&index_path).unwrap()).unwrap();
    let map = index["weight_map"].as_object().unwrap();
    let shards: Vec<String> = {
        let mut v: Vec<String> = map
            .values()
            .map(|s| s.as_str().unwrap().to_string())
            .collect();
        v.sort();
        v.dedup();
        v
    };
    assert_eq!(shards.len(), 2);

    // A shard outside the checkpoint directory.
    let mut bad = index.clone();
    let first = map.keys().next().unwrap().clone();
    bad["weight_map"][&first] = json!("../elsewhere.safetensors");
    std::fs::write(&index_path, bad.to_string()).unwrap();
    let e = open_err(&d);
    assert!(
        e.contains("model.safetensors.index.json") && e.contains(&format!("weight_map.{first}")),
        "{e}"
    );
    assert!(
        e.contains("`../elsewhere.safetensors` is not a file name in the checkpoint directory"),
        "{e}"
    );

    // The same tensor stored in both shards: copy shard 0 over shard 1 and list both files.
    std::fs::copy(d.join(&shards[0]), d.join(&shards[1])).unwrap();
    std::fs::write(&index_path, index.to_string()).unwrap();
    let e = open_err(&d);
    // Whichever shard is opened second is named first.
    let named = |a: &str, b: &str| {
        e.contains(&format!("{a}: "))
            && e.contains(&format!("tensor is also in {}", d.join(b).display()))
    };
    assert!(
        named(&shards[0], &shards[1]) || named(&shards[1], &shards[0]),
        "{e}"
    );
    assert!(e.ends_with("each tensor must be stored once"), "{e}");
    let _ = std::fs::remove_dir_all(&d);
}

fn cfg_err(edit: impl FnOnce(&mut Value)) -> String {
    let mut v = synth::config_json(&SynthSpec::default());
    edit(&mut v);
    LlavaConfig::from_json(&v, "config.json")
        .unwrap_err()
        .to_string()
}

#[test]
fn config_sizes_are_positive_and_bounded() {
    let e = cfg_err(|v| v["vision_config"]["image_size"] = json!(0));
    assert_eq!(
        e,
        "config.json: vision_config.image_size: 0 is out of range (supported: 1 ..= 16777216)"
    );
    let e = cfg_err(|v| v["text_config"]["num_hidden_layers"] = json!(1_000_000_000u64));
    assert_eq!(e, "config.json: text_config.num_hidden_layers: 1000000000 is out of range (supported: 1 ..= 1024)");
    let e = cfg_err(|v| v["text_config"]["vocab_size"] = json!(0));
    assert!(
        e.starts_with("config.json: text_config.vocab_size: 0 is out of range"),
        "{e}"
    );
    let e = cfg_err(|v| v["text_config"]["head_dim"] = json!(0));
    assert!(
        e.starts_with("config.json: text_config.head_dim: 0 is out of range"),
        "{e}"
    );
    let e = cfg_err(|v| v["text_config"]["max_position_embeddings"] = json!(-5));
    assert!(
        e.starts_with(
            "config.json: text_config.max_position_embeddings: -5 must be a non-negative integer"
        ),
        "{e}"
    );
    let e = cfg_err(|v| v["image_token_index"] = json!(1u64 << 40));
    assert!(
        e.starts_with("config.json: image_token_index: 1099511627776 is not a valid token id"),
        "{e}"
    );
    let e = cfg_err(|v| {
        v["vision_config"]["image_size"] = json!(8192);
        v["vision_config"]["patch_size"] = json!(1);
    });
    assert!(
        e.starts_with(
            "config.json: vision_config.image_size: 8192 with patch_size 1 gives 67108864 patches"
        ),
        "{e}"
    );
    // SigLIP (no CLS) with one patch: `default` would drop the only row.
    let e = cfg_err(|v| {
        v["vision_config"]["model_type"] = json!("siglip_vision_model");
        v["vision_config"]["image_size"] = json!(7);
    });
    assert!(e.starts_with("config.json: vision_feature_select_strategy: `default` drops the first of 1 vision rows"), "{e}");
}

#[test]
fn non_utf8_config_names_the_file() {
    let d = synth_dir("utf8", false);
    let mut bytes = std::fs::read(d.join("config.json")).unwrap();
    let at = bytes.windows(5).position(|w| w == b"llama").unwrap();
    bytes[at] = 0xFF;
    std::fs::write(d.join("config.json"), &bytes).unwrap();
    let e = open_err(&d);
    assert!(
        e.contains("config.json: (encoding): not valid UTF-8 (first bad byte at offset"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn preprocessor_config_limits() {
    let parse = |v: Value| {
        ImageProcessorConfig::from_json(&v, "preprocessor_config.json")
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let e = parse(
        json!({"image_processor_type": "CLIPImageProcessor", "size": {"shortest_edge": 100000}}),
    );
    assert_eq!(
        e,
        "preprocessor_config.json: size: 100000 is larger than the supported 32768"
    );
    let e =
        parse(json!({"image_processor_type": "CLIPImageProcessor", "image_std": [0.5, 0.0, 0.5]}));
    assert!(
        e.starts_with("preprocessor_config.json: image_std: [0.5, 0.0, 0.5] has a zero"),
        "{e}"
    );
    let e = parse(
        json!({"image_processor_type": "CLIPImageProcessor", "crop_size": {"height": 0, "width": 3}}),
    );
    assert!(
        e.starts_with("preprocessor_config.json: crop_size: expected a positive integer"),
        "{e}"
    );
}

#[test]
fn extreme_aspect_ratio_is_refused_by_preprocessing_not_allocated() {
    // 1 x 40000: resizing the short side to 224 would make a 224 x 8960000 image.
    let img = RgbImage::new(1, 40_000, vec![7; 120_000]).unwrap();
    let mut cfg = ImageProcessorConfig::defaults(ProcessorKind::Clip);
    cfg.source = "preprocessor_config.json".into();
    let e = preprocess(&cfg, &img).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "preprocessor_config.json: size: resizing the 1x40000 image gives 224x8960000 = 2007040000 pixels, above the limit of {DEFAULT_MAX_PIXELS}"
        )
    );
    // LLaVA's pad-to-square of the same image.
    cfg.do_pad_to_square = true;
    let img = RgbImage::new(10, 20_000, vec![0; 10 * 20_000 * 3]).unwrap();
    let e = preprocess(&cfg, &img).unwrap_err().to_string();
    assert!(
        e.starts_with(
            "preprocessor_config.json: do_pad: padding the 10x20000 image gives 20000x20000"
        ),
        "{e}"
    );
}
