//! Loader tolerance (unknown keys, nulls, missing optional fields) and error messages that name
//! the file, the record and the field.

use foveate_eval::data::{docvqa, textvqa, vqav2, Dataset, QuestionId, TaskKind};
use foveate_eval::predictions;
use std::path::PathBuf;

fn write(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("foveate-eval-loaders-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn ten(a: &str) -> String {
    (1..=10)
        .map(|i| format!(r#"{{"answer": "{a}", "answer_confidence": null, "answer_id": {i}}}"#))
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn vqav2_tolerates_unknown_keys_nulls_and_missing_types() {
    let p = write(
        "ann_ok.json",
        &format!(
            r#"{{"annotations": [{{"question_id": 5, "image_id": 42, "answers": [{}], "extra": [1, 2]}}]}}"#,
            ten("yes")
        ),
    );
    let recs = vqav2::load(&p, None, None).unwrap();
    assert_eq!(recs[0].id, QuestionId::Int(5));
    assert_eq!(recs[0].answer_type.as_deref(), Some("unknown"));
    assert_eq!(recs[0].question_types, vec!["unknown".to_string()]);
    // no data_subtype: val2014 image naming
    assert!(
        recs[0].image.ends_with("COCO_val2014_000000000042.jpg"),
        "{:?}",
        recs[0].image
    );
}

#[test]
fn vqav2_bad_record_names_file_record_and_field() {
    let p = write(
        "ann_bad.json",
        r#"{"annotations": [{"question_id": 5, "image_id": 1, "answers": [{"answer": "a"}, {"answer_id": 2}]}]}"#,
    );
    let e = vqav2::load(&p, None, None).unwrap_err().to_string();
    assert!(
        e.contains("ann_bad.json")
            && e.contains("annotations[0] (question_id 5).answers[1].answer")
            && e.contains("missing"),
        "{e}"
    );

    let p = write(
        "ann_bad2.json",
        r#"{"annotations": [{"question_id": "x", "image_id": 1, "answers": []}]}"#,
    );
    let e = vqav2::load(&p, None, None).unwrap_err().to_string();
    assert!(
        e.contains("question_id") && e.contains("expected an integer"),
        "{e}"
    );

    let p = write(
        "ann_bad3.json",
        r#"{"annotations": [{"question_id": 1, "image_id": 1, "answers": [{"answer": "a"}]}], "#,
    );
    let e = vqav2::load(&p, None, None).unwrap_err().to_string();
    assert!(
        e.contains("ann_bad3.json") && e.contains("not valid JSON"),
        "{e}"
    );

    let p = write("ann_bad4.json", r#"{"questions": []}"#);
    let e = vqav2::load(&p, None, None).unwrap_err().to_string();
    assert!(e.contains("ann_bad4.json: annotations: missing"), "{e}");
}

#[test]
fn vqav2_questions_file_must_cover_annotations() {
    let ann = write(
        "ann_q.json",
        &format!(
            r#"{{"annotations": [{{"question_id": 9, "image_id": 1, "answers": [{}]}}]}}"#,
            ten("no")
        ),
    );
    let q = write(
        "q_other.json",
        r#"{"questions": [{"question_id": 8, "image_id": 1, "question": "?"}]}"#,
    );
    let e = vqav2::load(&ann, Some(&q), None).unwrap_err().to_string();
    assert!(
        e.contains("question_id 9 is not in the questions file"),
        "{e}"
    );
}

#[test]
fn docvqa_without_question_types_and_with_string_ids() {
    let p = write(
        "doc.json",
        r#"{"data": [{"questionId": "77", "question": "q?", "image": "documents/x_1.png", "answers": ["A"]}]}"#,
    );
    let recs = docvqa::load(&p, None).unwrap();
    assert_eq!(recs[0].id, QuestionId::Str("77".into()));
    assert!(recs[0].question_types.is_empty());
    // no file exists: the given path is kept
    assert!(recs[0].image.ends_with("documents/x_1.png"));
    let p = write(
        "doc_bad.json",
        r#"{"data": [{"questionId": 3, "question": "q?", "image": "d.png", "answers": "A"}]}"#,
    );
    let e = docvqa::load(&p, None).unwrap_err().to_string();
    assert!(
        e.contains("doc_bad.json")
            && e.contains("data[0] (questionId 3).answers")
            && e.contains("expected an array"),
        "{e}"
    );
}

#[test]
fn textvqa_duplicate_ids_and_test_records() {
    let rec = r#"{"question_id": 1, "question": "q", "image_id": "ab"}"#;
    let p = write("tv_dup.json", &format!(r#"{{"data": [{rec}, {rec}]}}"#));
    let e = textvqa::load(&p, None).unwrap_err().to_string();
    assert!(
        e.contains("data[1] (question_id 1)") && e.contains("duplicate"),
        "{e}"
    );
    // a test record (no answers) loads but cannot be scored
    let p = write(
        "tv_test.json",
        &format!(r#"{{"dataset_name": "textvqa", "data": [{rec}]}}"#),
    );
    let recs = textvqa::load(&p, None).unwrap();
    let ds = Dataset {
        task: TaskKind::TextVqa,
        records: recs,
        source: p,
    };
    let e = foveate_eval::metrics::check_scorable(&ds)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("tv_test.json") && e.contains("cannot be scored"),
        "{e}"
    );
}

#[test]
fn predictions_duplicates_and_bad_entries() {
    let p = write(
        "dup_preds.json",
        r#"[{"question_id": 1, "answer": "a"}, {"question_id": 1, "answer": "b"}]"#,
    );
    let preds = predictions::load(&p).unwrap();
    let ann = write(
        "ann_one.json",
        &format!(
            r#"{{"annotations": [{{"question_id": 1, "image_id": 1, "answers": [{}]}}]}}"#,
            ten("a")
        ),
    );
    let ds = Dataset {
        task: TaskKind::VqaV2,
        records: vqav2::load(&ann, None, None).unwrap(),
        source: ann,
    };
    let e = predictions::align(&ds, &preds, &p, false)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("dup_preds.json") && e.contains("duplicate ids: 1"),
        "{e}"
    );

    let p = write("num_answer.json", r#"[{"question_id": 1, "answer": 3}]"#);
    let e = predictions::load(&p).unwrap_err().to_string();
    assert!(
        e.contains("num_answer.json: [0].answer (id 1): expected a string"),
        "{e}"
    );
}
