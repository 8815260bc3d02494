//! `foveate eval` with Qwen2-VL-family checkpoints (the tiny fixtures of eval/fixtures): the task's
//! prompt goes through the checkpoint's own chat template (Qwen's `<|im_start|>` turns, the image as
//! `<|vision_start|><|image_pad|><|vision_end|>`), each image gives its own number of image tokens,
//! and every question gets an answer; `foveate run` refuses a video file by name.

use std::path::Path;
use std::process::Command;

mod common;
use common::{repo, scratch};

fn eval(
    model: &str,
    task: &str,
    data: &Path,
    n: usize,
    out: &Path,
    extra: &[&str],
) -> serde_json::Value {
    let o = Command::new(env!("CARGO_BIN_EXE_foveate"))
        .args(["eval", "--task", task, "--json", "--limit", &n.to_string()])
        .args(extra)
        .arg("--model")
        .arg(repo().join("eval/fixtures").join(model).join("model"))
        .arg("--data")
        .arg(data)
        .arg("--output")
        .arg(out)
        .output()
        .expect("run foveate");
    assert!(
        o.status.success(),
        "foveate eval {task} with {model} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("results JSON on stdout")
}

/// The per-sample log's rendered prompts: the checkpoint's Qwen chat template around the task prompt.
fn check_prompts(out: &Path, n: usize) {
    let log = std::fs::read_to_string(out.join("predictions.jsonl")).expect("predictions.jsonl");
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let samples: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l.get("answer").is_some()).collect();
    assert_eq!(samples.len(), n, "{log}");
    let run = std::fs::read_to_string(out.join("run.json")).expect("run.json");
    let text = format!("{log}\n{run}");
    assert!(
        text.contains("<|im_start|>user\\n<|vision_start|><|image_pad|><|vision_end|>"),
        "the rendered prompt is not the checkpoint's chat template:\n{text}"
    );
}

#[test]
fn eval_runs_easy_vqa_with_qwen2_vl_checkpoints() {
    for model in ["qwen2-vl", "qwen2_5-vl"] {
        let out = scratch("eval-qwen", model, false);
        let r = eval(
            model,
            "easy-vqa",
            &repo().join("eval/data/easy-vqa"),
            3,
            &out,
            &[],
        );
        assert_eq!(r["questions"], 3, "{r}");
        assert_eq!(r["task"], "easy-vqa");
        check_prompts(&out, 3);
        let _ = std::fs::remove_dir_all(&out);
    }
}

/// DocVQA and TextVQA samples from the shared datasets, when they are beside the repo. TextVQA's
/// images have different sizes (1024x664, 1024x1024, 1024x576): batched, they go through the tower
/// as one sequence of differently shaped grids, and the answers must be those of one question at a time.
#[test]
fn eval_runs_docvqa_and_textvqa_with_a_qwen2_5_vl_checkpoint() {
    let shared = repo().join("../shared/datasets");
    if !shared.join("textvqa").exists() {
        eprintln!(
            "SKIPPED eval_runs_docvqa_and_textvqa_with_a_qwen2_5_vl_checkpoint: {} is absent",
            shared.display()
        );
        return;
    }
    let out = scratch("eval-qwen", "docvqa", false);
    let r = eval(
        "qwen2_5-vl",
        "docvqa",
        &shared.join("docvqa/val_sample_nkbl0226_1.json"),
        2,
        &out,
        &[],
    );
    assert_eq!(r["questions"], 2, "{r}");
    check_prompts(&out, 2);
    let answers = |out: &Path| -> Vec<String> {
        let log = std::fs::read_to_string(out.join("predictions.jsonl")).unwrap();
        let mut v: Vec<(u64, String)> = log
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|l| l.get("answer").is_some())
            .map(|l| {
                (
                    l["question_id"].as_u64().unwrap(),
                    l["raw"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        v.sort();
        v.into_iter().map(|(_, a)| a).collect()
    };
    let tv = shared.join("textvqa/TextVQA_0.5.1_val.json");
    let (batched, single) = (
        scratch("eval-qwen", "textvqa-b3", false),
        scratch("eval-qwen", "textvqa-b1", false),
    );
    eval(
        "qwen2_5-vl",
        "textvqa",
        &tv,
        3,
        &batched,
        &["--batch-size", "3"],
    );
    eval(
        "qwen2_5-vl",
        "textvqa",
        &tv,
        3,
        &single,
        &["--batch-size", "1"],
    );
    check_prompts(&batched, 3);
    assert_eq!(
        answers(&batched),
        answers(&single),
        "batched answers differ from one question at a time"
    );
    for d in [out, batched, single] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn run_refuses_video_inputs() {
    let dir = scratch("run-video", "x", true);
    let video = dir.join("clip.mp4");
    std::fs::write(&video, b"\x00\x00\x00\x18ftypmp42").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_foveate"))
        .args(["run", "--prompt", "What happens?", "--max-new-tokens", "2"])
        .arg("--model")
        .arg(repo().join("eval/fixtures/qwen2-vl/model"))
        .arg("--image")
        .arg(&video)
        .output()
        .expect("run foveate");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "a video file must be refused");
    assert!(
        err.contains("video inputs are not supported") && err.contains("clip.mp4"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The bench builtins of both families run end to end (one layer per tower, a cut vocabulary):
/// image encode through the Qwen tower on the builtin's 448x448 image, prefill and decode with
/// M-RoPE; and a Qwen2.5-VL checkpoint directory (the fixture) likewise.
#[test]
fn bench_runs_the_qwen_builtins() {
    let dir = repo().join("eval/fixtures/qwen2_5-vl/model");
    let dir = dir.to_str().unwrap();
    for model in ["qwen2-vl-2b", "qwen2.5-vl-3b", dir] {
        let o = Command::new(env!("CARGO_BIN_EXE_foveate"))
            .args([
                "bench", "-m", model, "-b", "cpu", "--layers", "1", "--vocab", "1024",
            ])
            .args([
                "-p", "8", "-n", "2", "-r", "1", "--warmup", "0", "-o", "json",
            ])
            .output()
            .expect("run foveate");
        assert!(
            o.status.success(),
            "bench {model}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("bench JSON");
        let text = v.to_string();
        for metric in ["image_encode_ms", "prefill_ms", "decode_tokens_per_s"] {
            assert!(
                text.contains(metric),
                "bench {model}: no {metric} in {text}"
            );
        }
        let name = if model == dir { "model" } else { model };
        assert!(text.contains(name), "{text}");
    }
}
