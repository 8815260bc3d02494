//! Bad dataset and predictions files, and what a failed run leaves behind (rows of
//! docs/ROBUSTNESS.md): every error names the file and the record or field.

use foveate_core::{Error, Result};
use foveate_eval::data::{docvqa, textvqa, vqav2, Dataset, QuestionId, Record, TaskKind};
use foveate_eval::runner::{check_images, run_eval, Answerer, ModelInfo, RunOptions};
use foveate_eval::{predictions, TaskSpec};
use std::path::{Path, PathBuf};

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("foveate-eval-bad-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write(name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir().join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

const ANSWERS: &str = r#"[{"answer": "a"}, {"answer": "b"}]"#;

#[test]
fn duplicate_question_ids_in_every_loader() {
    let p = write(
        "dup_ann.json",
        format!(
            r#"{{"annotations": [{{"question_id": 7, "image_id": 1, "answers": {ANSWERS}}}, {{"question_id": 7, "image_id": 2, "answers": {ANSWERS}}}]}}"#
        )
        .as_bytes(),
    );
    let e = vqav2::load(&p, None, None).unwrap_err().to_string();
    assert!(e.ends_with("dup_ann.json: annotations[1] (question_id 7): duplicate question_id (also annotations[0])"), "{e}");

    let ann = write(
        "one_ann.json",
        format!(
            r#"{{"annotations": [{{"question_id": 7, "image_id": 1, "answers": {ANSWERS}}}]}}"#
        )
        .as_bytes(),
    );
    let q = write(
        "dup_q.json",
        br#"{"questions": [{"question_id": 7, "question": "a?"}, {"question_id": 7, "question": "b?"}]}"#,
    );
    let e = vqav2::load(&ann, Some(&q), None).unwrap_err().to_string();
    assert!(
        e.ends_with(
            "dup_q.json: questions[1] (question_id 7): duplicate question_id (also questions[0])"
        ),
        "{e}"
    );

    let rec = r#"{"question_id": 3, "question": "q", "image_id": "ab", "answers": ["x"]}"#;
    let p = write(
        "dup_tv.json",
        format!(r#"{{"data": [{rec}, {rec}]}}"#).as_bytes(),
    );
    let e = textvqa::load(&p, None).unwrap_err().to_string();
    assert!(
        e.ends_with("dup_tv.json: data[1] (question_id 3): duplicate question_id"),
        "{e}"
    );

    // DocVQA: 5 and "5" are the same question (the official script calls int() on both).
    let p = write(
        "dup_doc.json",
        br#"{"data": [{"questionId": 5, "question": "q", "image": "d.png", "answers": ["x"]},
                      {"questionId": "5", "question": "q", "image": "d.png", "answers": ["x"]}]}"#,
    );
    let e = docvqa::load(&p, None).unwrap_err().to_string();
    assert!(
        e.ends_with("dup_doc.json: data[1] (questionId \"5\"): duplicate questionId"),
        "{e}"
    );
}

#[test]
fn non_utf8_files_name_the_file_and_offset() {
    let p = write(
        "latin1_ann.json",
        b"{\"annotations\": [], \"x\": \"caf\xe9\"}",
    );
    let e = vqav2::load(&p, None, None).unwrap_err().to_string();
    assert!(
        e.ends_with("latin1_ann.json: (encoding): not valid UTF-8 (first bad byte at offset 29)"),
        "{e}"
    );
    let p = write(
        "latin1_preds.json",
        b"[{\"question_id\": 1, \"answer\": \"\xe9t\xe9\"}]",
    );
    let e = predictions::load(&p).unwrap_err().to_string();
    assert!(
        e.ends_with("latin1_preds.json: (encoding): not valid UTF-8 (first bad byte at offset 31)"),
        "{e}"
    );
}

fn record(i: i64, image: PathBuf) -> Record {
    Record {
        id: QuestionId::Int(i),
        question: format!("question {i}"),
        image,
        answers: vec!["yes".into()],
        answer_keys: Vec::new(),
        answer_type: None,
        question_types: vec![],
        canonical_answer: None,
    }
}

fn docvqa_ds(images: Vec<PathBuf>) -> Dataset {
    Dataset {
        task: TaskKind::DocVqa,
        records: images
            .into_iter()
            .enumerate()
            .map(|(i, p)| record(100 + i as i64, p))
            .collect(),
        source: PathBuf::from("val.json"),
    }
}

#[test]
fn missing_images_are_found_before_a_run_starts() {
    let img = write("present.png", b"not really a png, but present");
    let ds = docvqa_ds(vec![
        img.clone(),
        dir().join("absent-1.png"),
        img,
        dir().join("absent-2.png"),
    ]);
    let e = check_images(&ds, None, (0, 1)).unwrap_err().to_string();
    assert!(
        e.starts_with("val.json: questionId 101.image: image file "),
        "{e}"
    );
    assert!(
        e.ends_with("absent-1.png not found (2 of the 4 records of this run have no image)"),
        "{e}"
    );
    // Only the records of this run count: the first two, and shard 0 of 2 (records 0 and 2).
    assert!(check_images(&ds, Some(1), (0, 1)).is_ok());
    assert!(check_images(&ds, None, (0, 2)).is_ok());
}

/// Fails on call `fail_at` (0-based).
struct Failing {
    calls: usize,
    fail_at: usize,
}

impl Answerer for Failing {
    fn answer(&mut self, image: &Path, _prompt: &str, _max: usize) -> Result<String> {
        if self.calls == self.fail_at {
            return Err(Error::format(
                image.display().to_string(),
                "image",
                "corrupt PNG image",
            ));
        }
        self.calls += 1;
        Ok("yes".into())
    }
    fn describe(&self) -> ModelInfo {
        ModelInfo::default()
    }
}

#[test]
fn a_failed_run_leaves_no_half_made_output() {
    let ds = docvqa_ds((0..4).map(|i| PathBuf::from(format!("p{i}.png"))).collect());
    let spec = TaskSpec::builtin(TaskKind::DocVqa);
    // A run into `out` whose answerer fails at call `n`.
    let run_into = |out: &Path, n: usize| {
        run_eval(
            &spec,
            &ds,
            &mut Failing {
                calls: 0,
                fail_at: n,
            },
            &RunOptions::new(out),
        )
    };
    // Fails before any answer: the folder it created is removed again.
    let out = dir().join("run-fails-at-once");
    let _ = std::fs::remove_dir_all(&out);
    let e = run_into(&out, 0).unwrap_err();
    assert_eq!(e.to_string(), "p0.png: image: corrupt PNG image");
    assert!(!out.exists(), "{} was left behind", out.display());
    // Fails after two answers: the journal stays for --resume, but no submission or results.
    let out = dir().join("run-fails-later");
    let _ = std::fs::remove_dir_all(&out);
    run_into(&out, 2).unwrap_err();
    let journal = std::fs::read_to_string(out.join("predictions.jsonl")).unwrap();
    assert_eq!(journal.lines().count(), 2);
    assert!(!out.join("submission.json").exists() && !out.join("results.json").exists());
    // A folder that existed before the run is never removed.
    let out = dir().join("run-existing");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    run_into(&out, 0).unwrap_err();
    assert!(out.is_dir());
    // A finished run leaves complete files and no temporaries.
    let out = dir().join("run-ok");
    let _ = std::fs::remove_dir_all(&out);
    let s = run_into(&out, 99).unwrap();
    assert_eq!(s.answered, 4);
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "predictions.jsonl",
            "results.json",
            "run.json",
            "submission.json"
        ]
    );
}
