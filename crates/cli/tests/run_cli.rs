//! `foveate run` end to end: JSON output, logits dump, and one-line errors for bad checkpoints.

use foveate_models::synth::{self, SynthSpec};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::repo;

fn tmp(name: &str) -> PathBuf {
    common::scratch("cli-run", name, false)
}

fn image() -> PathBuf {
    repo().join("eval/fixtures/images/nkbl0226_1_reduced3.png")
}

fn run(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_foveate"))
        .arg("run")
        .args(args)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

#[test]
fn json_output_and_logits_dump() {
    let d = tmp("ok");
    synth::write_checkpoint(&d, &SynthSpec::default()).unwrap();
    let dump = d.join("logits.safetensors");
    let (code, out, err) = run(&[
        "--model",
        d.to_str().unwrap(),
        "--image",
        image().to_str().unwrap(),
        "--prompt",
        "what is the color of a cat ?",
        "--chat",
        "--json",
        "--max-new-tokens",
        "5",
        "--attention",
        "flash",
        "--dump-logits",
        dump.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    let prompt_tokens = v["prompt_tokens"].as_array().unwrap();
    // <s> USER : <image>x16 what is the color of a cat ? ASSISTANT :
    assert_eq!(prompt_tokens.len(), 1 + 2 + 16 + 8 + 2, "{v}");
    assert!(
        v["tokens"].as_array().unwrap().len() <= 5 && !v["tokens"].as_array().unwrap().is_empty()
    );
    assert!(v["text"].is_string());
    for k in [
        "load_ms",
        "image_encode_ms",
        "prefill_ms",
        "decode_tokens_per_s",
    ] {
        assert!(v["timings"][k].as_f64().unwrap() >= 0.0, "{k}");
    }
    let bytes = std::fs::read(&dump).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor("logits").unwrap();
    assert_eq!(t.dtype(), safetensors::Dtype::F32);
    assert_eq!(t.shape(), &[prompt_tokens.len(), synth::VOCAB]);
    // The first generated token is the argmax of the last prompt row.
    let last: Vec<f32> = t.data()[(prompt_tokens.len() - 1) * synth::VOCAB * 4..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let best = last
        .iter()
        .enumerate()
        .fold((0, f32::MIN), |b, (i, &x)| if x > b.1 { (i, x) } else { b })
        .0;
    assert_eq!(v["tokens"][0].as_u64().unwrap() as usize, best);
    let _ = std::fs::remove_dir_all(&d);
}

fn assert_one_line_error(dir: &Path, must: &[&str]) {
    let (code, out, err) = run(&[
        "--model",
        dir.to_str().unwrap(),
        "--image",
        image().to_str().unwrap(),
        "--prompt",
        "<image> what",
    ]);
    assert_eq!(code, 1, "stdout {out} stderr {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].starts_with("error: ") && !lines[0].contains("internal error"),
        "{err}"
    );
    for m in must {
        assert!(lines[0].contains(m), "`{m}` not in: {err}");
    }
}

#[test]
fn bad_checkpoints_fail_with_one_line() {
    let good = tmp("src");
    synth::write_checkpoint(&good, &SynthSpec::default()).unwrap();
    let st = std::fs::read(good.join("model.safetensors")).unwrap();
    let copy = |name: &str| {
        let d = tmp(name);
        synth::copy_checkpoint(&good, &d).unwrap();
        d
    };
    let rewrite = |d: &Path, drop: Option<&str>, reshape: Option<(&str, &[usize])>| {
        synth::rewrite_safetensors(&st, &d.join("model.safetensors"), drop, reshape).unwrap();
    };
    let d = copy("missing");
    rewrite(&d, Some("multi_modal_projector.linear_2.weight"), None);
    assert_one_line_error(
        &d,
        &[
            "model.safetensors",
            "multi_modal_projector.linear_2.weight",
            "missing",
            "[32, 32]",
        ],
    );
    let d = copy("shape");
    rewrite(
        &d,
        None,
        Some(("language_model.model.embed_tokens.weight", &[32, 64][..])),
    );
    assert_one_line_error(
        &d,
        &[
            "model.safetensors",
            "language_model.model.embed_tokens.weight",
            "shape [32, 64], expected [64, 32]",
        ],
    );
    let d = copy("truncated");
    std::fs::write(d.join("model.safetensors"), &st[..st.len() / 2]).unwrap();
    assert_one_line_error(&d, &["model.safetensors", "truncated"]);
    let d = copy("arch");
    let mut v: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("config.json")).unwrap()).unwrap();
    v["text_config"]["model_type"] = Value::from("gemma2");
    std::fs::write(d.join("config.json"), v.to_string()).unwrap();
    assert_one_line_error(
        &d,
        &[
            "config.json",
            "text_config.model_type",
            "gemma2",
            "supported: llama, mistral, qwen2",
        ],
    );
    for n in ["src", "missing", "shape", "truncated", "arch"] {
        let _ = std::fs::remove_dir_all(tmp(n));
    }
}
