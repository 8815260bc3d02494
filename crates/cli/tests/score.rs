//! `foveate score` on the real dataset samples.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn shared() -> PathBuf {
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/datasets");
    if local.is_dir() {
        local
    } else {
        PathBuf::from("/work/shared/datasets")
    }
}

fn tmp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("foveate-cli-score-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn foveate_score(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_foveate"))
        .arg("score")
        .args(args)
        .output()
        .expect("run foveate")
}

/// `foveate score --task TASK --predictions PREDS --annotations ANN EXTRA...`
fn score(task: &str, preds: &Path, ann: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "--task",
        task,
        "--predictions",
        s(preds),
        "--annotations",
        s(ann),
    ];
    args.extend_from_slice(extra);
    foveate_score(&args)
}

/// The run failed and its stderr holds every one of `needles`.
fn fails_with(o: &Output, needles: &[&str]) {
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(needles.iter().all(|n| err.contains(n)), "{err}");
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn json_out(o: &Output) -> serde_json::Value {
    assert!(
        o.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("stdout is JSON")
}

#[test]
fn vqav2_sample_json() {
    let d = shared().join("vqav2");
    // 30, 30, 90, 30, 0 as the official vqaEval.py gives (see crates/eval/tests/samples.rs) -> 36.00
    let preds = tmp_file(
        "vqa_preds.json",
        r#"[{"question_id": 262148000, "answer": "skateboard"}, {"question_id": 262148001, "answer": "spectating"},
            {"question_id": 262148002, "answer": "table"}, {"question_id": 393225000, "answer": "http://foodiebakercom"},
            {"question_id": 393225001, "answer": "No."}]"#,
    );
    let ann = d.join("v2_mscoco_val2014_annotations.sample.json");
    let q = d.join("v2_OpenEnded_mscoco_val2014_questions.sample.json");
    let v = json_out(&score(
        "vqav2",
        &preds,
        &ann,
        &["--questions", s(&q), "--json"],
    ));
    assert_eq!(v["overall"], 36.0);
    assert_eq!(v["breakdown"]["answer_type"]["other"], 45.0);
    assert_eq!(v["per_question"]["262148002"], 90.0);
    assert_eq!(v["per_question"]["393225000"], 30.0);
    assert_eq!(v["per_question"]["393225001"], 0.0);

    // human table
    let o = score("vqav2", &preds, &ann, &[]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success());
    assert!(
        text.lines()
            .any(|l| l.starts_with("overall") && l.ends_with("36.00")),
        "{text}"
    );
}

#[test]
fn docvqa_sample_table_and_json() {
    let d = shared().join("docvqa");
    let preds = tmp_file(
        "doc_preds.json",
        r#"[{"questionId": 24580, "answer": "University of California"}, {"questionId": 24581, "answer": "San Diego, CA"}, {"questionId": 24582, "answer": "Pau"}]"#,
    );
    let gt = d.join("val_sample_nkbl0226_1.json");
    // (1 + 9/13 + 0.75) / 3 = 0.814102...
    let o = score("docvqa", &preds, &gt, &[]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        text.lines()
            .any(|l| l.starts_with("overall") && l.ends_with("0.8141")),
        "{text}"
    );
    let v = json_out(&score("docvqa", &preds, &gt, &["--json"]));
    assert_eq!(
        v["overall"].as_f64().unwrap(),
        (1.0 + 9.0 / 13.0 + 0.75) / 3.0
    );
    assert_eq!(v["breakdown"]["question_type"]["handwritten"], 0.75);
}

#[test]
fn textvqa_sample_json() {
    let d = shared().join("textvqa");
    let preds = tmp_file(
        "tvqa_preds.json",
        r#"[{"question_id": 34602, "answer": "dakota"}, {"question_id": 34603, "answer": "Copenhagen"}, {"question_id": 34604, "answer": "ale"},
            {"question_id": 34605, "answer": "bowmore"}, {"question_id": 34606, "answer": "10"}]"#,
    );
    let gt = d.join("TextVQA_0.5.1_val.json");
    // 1, 1, 1, 1 and "10" (1 human) 0.3 -> mean 0.86 -> 86%
    let v = json_out(&score("textvqa", &preds, &gt, &["--json"]));
    assert!((v["overall"].as_f64().unwrap() - 86.0).abs() < 1e-9, "{v}");
}

#[test]
fn malformed_predictions_name_the_file() {
    let d = shared().join("docvqa");
    let bad = tmp_file(
        "broken_preds.json",
        r#"[{"questionId": 24580, "answer": "x"},"#,
    );
    let o = score("docvqa", &bad, &d.join("val_sample_nkbl0226_1.json"), &[]);
    fails_with(&o, &["broken_preds.json", "not valid JSON"]);
}

#[test]
fn missing_and_unknown_ids_are_errors() {
    let d = shared().join("docvqa");
    let gt = d.join("val_sample_nkbl0226_1.json");
    let partial = tmp_file(
        "partial_preds.json",
        r#"[{"questionId": 24580, "answer": "x"}]"#,
    );
    let o = score("docvqa", &partial, &gt, &[]);
    fails_with(&o, &["partial_preds.json", "24581, 24582"]);
    // --allow-missing scores them as empty answers: (0 + 0 + 0) / 3
    let v = json_out(&score(
        "docvqa",
        &partial,
        &gt,
        &["--allow-missing", "--json"],
    ));
    assert_eq!(v["overall"], 0.0);

    let extra = tmp_file(
        "extra_preds.json",
        r#"[{"questionId": 24580, "answer": "x"}, {"questionId": 24581, "answer": "x"}, {"questionId": 24582, "answer": "x"}, {"questionId": 7, "answer": "x"}]"#,
    );
    let o = score("docvqa", &extra, &gt, &[]);
    fails_with(&o, &["extra_preds.json", ": 7"]);
}

#[test]
fn unknown_task_is_an_error() {
    let o = foveate_score(&["--task", "gqa", "--predictions", "x.json"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown task `gqa`"));
}
