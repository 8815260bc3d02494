//! Bad input through the `foveate` binary (rows of docs/ROBUSTNESS.md): each case exits non-zero
//! with one `error: ...` line naming the file and the field, tensor or record, never panics, and
//! leaves no output file behind.

use foveate_models::synth::{self, SynthSpec};
use serde_json::{json, Value};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::repo;

fn tmp(name: &str) -> PathBuf {
    common::scratch("robust", name, true)
}

fn image() -> PathBuf {
    repo().join("eval/fixtures/images/nkbl0226_1_reduced3.png")
}

/// Runs `foveate args...` in `cwd`; asserts exit 1 (or `code`), one `error:` line on stderr, no
/// panic, nothing on stdout and every `must` in the message. Returns the message.
fn fails_with(code: i32, cwd: &Path, args: &[OsString], must: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_foveate"))
        .current_dir(cwd)
        .args(args)
        .output()
        .unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert_eq!(
        o.status.code(),
        Some(code),
        "args {args:?}\nstdout {out}\nstderr {err}"
    );
    assert!(out.trim().is_empty(), "stdout on error: {out}");
    assert!(
        !err.contains("internal error") && !err.contains("panicked"),
        "{err}"
    );
    let line = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line: {err}"));
    if code == 1 {
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    for m in must {
        assert!(line.contains(m), "`{m}` not in: {line}");
    }
    println!("MESSAGE {line}");
    line.to_string()
}

fn fails(args: &[&str], must: &[&str]) -> String {
    // A fresh, empty working directory per call (tests run in parallel).
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let cwd = tmp(&format!(
        "cwd-{}",
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let args: Vec<OsString> = args.iter().map(OsString::from).collect();
    let line = fails_with(1, &cwd, &args, must);
    assert_eq!(
        std::fs::read_dir(&cwd).unwrap().count(),
        0,
        "files left in the working directory"
    );
    line
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn run_model(model: &Path, image: &Path, prompt: &str, must: &[&str]) -> String {
    let dump = model.join("logits.safetensors");
    let line = fails(
        &[
            "run",
            "--model",
            s(model),
            "--image",
            s(image),
            "--prompt",
            prompt,
            "--dump-logits",
            s(&dump),
        ],
        must,
    );
    assert!(!dump.exists(), "{} written on error", dump.display());
    line
}

fn synth_dir(name: &str) -> PathBuf {
    let d = tmp(name);
    synth::write_checkpoint(&d, &SynthSpec::default()).unwrap();
    d
}

/// Rewrites the safetensors header of `dir/model.safetensors` (the data stays as it is).
fn edit_header(dir: &Path, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) {
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(header.as_object_mut().unwrap());
    let h = header.to_string().into_bytes();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(&path, out).unwrap();
}

fn offsets(t: &Value) -> (u64, u64) {
    (
        t["data_offsets"][0].as_u64().unwrap(),
        t["data_offsets"][1].as_u64().unwrap(),
    )
}

#[test]
fn safetensors_header_past_the_end() {
    let d = synth_dir("header-len");
    let path = d.join("model.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    let len = bytes.len() as u64;
    bytes[..8].copy_from_slice(&(len + 100).to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    run_model(
        &d,
        &image(),
        "<image> what",
        &[
            "model.safetensors: header: header length",
            "exceeds the file size",
            "truncated",
        ],
    );
}

#[test]
fn safetensors_overlapping_offsets() {
    let d = synth_dir("overlap");
    let (a, b) = (
        "vision_tower.pre_layrnorm.weight",
        "vision_tower.pre_layrnorm.bias",
    );
    edit_header(&d, |h| {
        let o = h[a]["data_offsets"].clone();
        h.get_mut(b).unwrap()["data_offsets"] = o;
    });
    run_model(
        &d,
        &image(),
        "<image> what",
        &["model.safetensors: ", a, b, "overlap"],
    );
}

#[test]
fn safetensors_misaligned_offsets() {
    let d = synth_dir("misaligned");
    let mut name = String::new();
    edit_header(&d, |h| {
        // The tensor at the start of the data, moved by 2 bytes (an F32 needs 4-byte alignment).
        let (n, t) = h
            .iter_mut()
            .find(|(_, t)| t.get("data_offsets").is_some_and(|_| offsets(t).0 == 0))
            .unwrap();
        let (b, e) = offsets(t);
        t["data_offsets"] = json!([b + 2, e + 2]);
        name = n.clone();
    });
    run_model(
        &d,
        &image(),
        "<image> what",
        &[
            "model.safetensors: ",
            &name,
            "data_offsets begin 2 is not aligned to the F32 element size of 4 bytes",
        ],
    );
}

#[test]
fn safetensors_wrong_dtype() {
    let d = synth_dir("dtype");
    let name = "multi_modal_projector.linear_1.weight";
    edit_header(&d, |h| h.get_mut(name).unwrap()["dtype"] = json!("I64"));
    run_model(
        &d,
        &image(),
        "<image> what",
        &[&format!(
            "model.safetensors: {name}: dtype I64 is not supported (supported: F32, F16, BF16; U8 in quantised checkpoints)"
        )],
    );
    // A supported dtype that is not what the bytes hold: the size no longer matches the shape.
    let d = synth_dir("dtype-size");
    edit_header(&d, |h| h.get_mut(name).unwrap()["dtype"] = json!("BF16"));
    run_model(
        &d,
        &image(),
        "<image> what",
        &[&format!("model.safetensors: {name}: data_offsets"), "needs"],
    );
}

#[test]
fn non_utf8_config() {
    let d = synth_dir("utf8");
    let mut bytes = std::fs::read(d.join("config.json")).unwrap();
    let at = bytes.windows(5).position(|w| w == b"llama").unwrap();
    bytes[at] = 0xE9;
    std::fs::write(d.join("config.json"), &bytes).unwrap();
    run_model(
        &d,
        &image(),
        "<image> what",
        &["config.json: (encoding): not valid UTF-8 (first bad byte at offset"],
    );
}

#[test]
fn bad_images() {
    let d = synth_dir("images");
    let png = std::fs::read(image()).unwrap();
    let mut corrupt = png.clone();
    let n = corrupt.len();
    for b in &mut corrupt[200..n - 100] {
        *b = b.wrapping_mul(31).wrapping_add(7);
    }
    let p = d.join("corrupt.png");
    std::fs::write(&p, &corrupt).unwrap();
    run_model(
        &d,
        &p,
        "<image> what",
        &["corrupt.png: image: corrupt PNG image"],
    );

    let jpg =
        std::fs::read(repo().join("eval/fixtures/images/COCO_val2014_000000393225_reduced2.jpg"))
            .unwrap();
    let p = d.join("cut.jpg");
    std::fs::write(&p, &jpg[..jpg.len() / 2]).unwrap();
    run_model(&d, &p, "<image> what", &["cut.jpg: image: truncated JPEG"]);

    let p = d.join("bomb.png");
    std::fs::write(&p, synth::png_header(60_000, 60_000)).unwrap();
    run_model(&d, &p, "<image> what", &["bomb.png: dimensions: 60000x60000 = 3600000000 pixels exceeds the limit of 89478485 pixels"]);

    let p = d.join("notes.png");
    std::fs::write(&p, "these are notes, not a picture").unwrap();
    run_model(
        &d,
        &p,
        "<image> what",
        &["notes.png: image: unrecognised image format (supported: PNG, JPEG)"],
    );
}

#[test]
fn empty_and_over_long_prompts() {
    let d = synth_dir("prompts");
    run_model(&d, &image(), "", &["empty prompt"]);
    run_model(&d, &image(), "   ", &["empty prompt"]);
    // The synthetic model's context window is 256 tokens.
    let long = format!("<image> {}", "what ".repeat(300));
    run_model(
        &d,
        &image(),
        &long,
        &[
            "prompt of",
            "tokens",
            "text_config.max_position_embeddings",
            "256",
        ],
    );
}

#[test]
fn non_utf8_prompt_names_the_option() {
    use std::os::unix::ffi::OsStringExt;
    let d = synth_dir("prompt-bytes");
    let cwd = tmp("cwd-bytes");
    let args = [
        OsString::from("run"),
        OsString::from("--model"),
        d.clone().into_os_string(),
        OsString::from("--prompt"),
        OsString::from_vec(b"caf\xe9 <image>".to_vec()),
    ];
    fails_with(1, &cwd, &args, &["--prompt: not valid UTF-8", "caf\\xE9"]);
}

/// A VQAv2 annotations file with `ids` (one record each).
fn vqa_annotations(dir: &Path, name: &str, ids: &[i64]) -> PathBuf {
    let answers: Vec<Value> = (0..10).map(|_| json!({"answer": "yes"})).collect();
    let anns: Vec<Value> = ids
        .iter()
        .map(|i| json!({"question_id": i, "image_id": 1, "answers": answers}))
        .collect();
    let p = dir.join(name);
    std::fs::write(&p, json!({"annotations": anns}).to_string()).unwrap();
    p
}

fn preds(dir: &Path, name: &str, ids: &[i64]) -> PathBuf {
    let v: Vec<Value> = ids
        .iter()
        .map(|i| json!({"question_id": i, "answer": "yes"}))
        .collect();
    let p = dir.join(name);
    std::fs::write(&p, Value::from(v).to_string()).unwrap();
    p
}

fn score(task: &str, p: &Path, ann: &Path, must: &[&str]) -> String {
    fails(
        &[
            "score",
            "--task",
            task,
            "--predictions",
            s(p),
            "--annotations",
            s(ann),
        ],
        must,
    )
}

#[test]
fn score_refuses_bad_datasets_and_predictions() {
    let d = tmp("score");
    let ann = vqa_annotations(&d, "ann.json", &[1, 2, 3]);
    // Missing ids and extra ids.
    score(
        "vqav2",
        &preds(&d, "short.json", &[1]),
        &ann,
        &[
            "short.json: question_id: no prediction for 2 of 3 questions",
            "2, 3",
        ],
    );
    score(
        "vqav2",
        &preds(&d, "extra.json", &[1, 2, 3, 99]),
        &ann,
        &["extra.json: question_id: ids not in", "ann.json: 99"],
    );
    score(
        "vqav2",
        &preds(&d, "twice.json", &[1, 2, 3, 2]),
        &ann,
        &["twice.json: question_id: duplicate ids: 2"],
    );
    // Non-UTF-8 predictions and annotations.
    let p = d.join("latin1.json");
    std::fs::write(&p, b"[{\"question_id\": 1, \"answer\": \"caf\xe9\"}]").unwrap();
    score(
        "vqav2",
        &p,
        &ann,
        &["latin1.json: (encoding): not valid UTF-8 (first bad byte at offset 34)"],
    );
    let bad_ann = d.join("latin1_ann.json");
    std::fs::write(&bad_ann, b"{\"annotations\": [], \"note\": \"\xff\"}").unwrap();
    score(
        "vqav2",
        &preds(&d, "ok.json", &[1]),
        &bad_ann,
        &["latin1_ann.json: (encoding): not valid UTF-8"],
    );
    // Duplicate question ids in each dataset format.
    let dup = vqa_annotations(&d, "dup_ann.json", &[1, 2, 1]);
    score(
        "vqav2",
        &preds(&d, "p.json", &[1, 2]),
        &dup,
        &["dup_ann.json: annotations[2] (question_id 1): duplicate question_id"],
    );
    let tv = d.join("dup_textvqa.json");
    let rec = json!({"question_id": 4, "question": "q", "image_id": "a", "answers": ["x"]});
    std::fs::write(&tv, json!({"data": [rec, rec]}).to_string()).unwrap();
    score(
        "textvqa",
        &preds(&d, "p4.json", &[4]),
        &tv,
        &["dup_textvqa.json: data[1] (question_id 4): duplicate question_id"],
    );
    let doc = d.join("dup_docvqa.json");
    let rec = json!({"questionId": 4, "question": "q", "image": "a.png", "answers": ["x"]});
    std::fs::write(&doc, json!({"data": [rec, rec]}).to_string()).unwrap();
    score(
        "docvqa",
        &preds(&d, "p4.json", &[4]),
        &doc,
        &["dup_docvqa.json: data[1] (questionId 4): duplicate questionId"],
    );
}

fn docvqa_file(dir: &Path, image: &str) -> PathBuf {
    let p = dir.join("val.json");
    let rec = json!({"questionId": 5, "question": "what is it?", "image": image, "answers": ["x"]});
    std::fs::write(&p, json!({"data": [rec]}).to_string()).unwrap();
    p
}

#[test]
fn eval_refuses_missing_and_corrupt_images_and_leaves_no_output() {
    let model = synth_dir("eval-model");
    let d = tmp("eval");
    let out = d.join("out");
    let ann = docvqa_file(&d, "documents/absent.png");
    let eval = |ann: &Path, must: &[&str]| {
        fails(
            &[
                "eval",
                "--task",
                "docvqa",
                "--annotations",
                s(ann),
                "--model",
                s(&model),
                "--output",
                s(&out),
            ],
            must,
        );
        assert!(!out.exists(), "{} left behind", out.display());
    };
    eval(
        &ann,
        &[
            "val.json: questionId 5.image: image file",
            "absent.png not found",
        ],
    );
    // The image exists but is not a picture: the run fails on its first question and removes
    // the folder it made (nothing was answered, nothing to resume).
    std::fs::create_dir_all(d.join("documents")).unwrap();
    std::fs::write(d.join("documents/bad.png"), synth::png_header(0, 3)).unwrap();
    let ann = docvqa_file(&d, "documents/bad.png");
    eval(&ann, &["bad.png: dimensions: zero-size image (0x3)"]);
}
