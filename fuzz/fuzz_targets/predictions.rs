//! Predictions files as `foveate score` reads them: parse, align with a small dataset of each
//! task (strict and with --allow-missing), and score with the official metric (which runs the
//! answer normalisation on the fuzzed answers).
#![no_main]

use foveate_eval::data::{Dataset, QuestionId, Record, TaskKind};
use foveate_eval::{metrics, predictions};
use libfuzzer_sys::fuzz_target;
use std::path::{Path, PathBuf};

fn dataset(task: TaskKind) -> Dataset {
    let ids = [
        QuestionId::Int(1),
        QuestionId::Int(2),
        QuestionId::Str("x7".into()),
    ];
    let records = ids
        .into_iter()
        .map(|id| Record {
            id,
            question: "what is it?".into(),
            image: PathBuf::from("/nonexistent/a.png"),
            answers: vec!["two dogs".into(); if task == TaskKind::DocVqa { 2 } else { 10 }],
            answer_type: Some("other".into()),
            question_types: vec!["what is".into()],
            canonical_answer: None,
        })
        .collect();
    Dataset {
        task,
        records,
        source: PathBuf::from("ground-truth.json"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let file = Path::new("predictions.json");
    let Ok(preds) = predictions::from_value(&v, file) else {
        return;
    };
    for task in [TaskKind::VqaV2, TaskKind::TextVqa, TaskKind::DocVqa] {
        let ds = dataset(task);
        for allow_missing in [false, true] {
            if let Ok(aligned) = predictions::align(&ds, &preds, file, allow_missing) {
                assert_eq!(aligned.len(), ds.records.len());
                let refs: Vec<&str> = aligned.iter().map(String::as_str).collect();
                let score = metrics::score_all(&ds, &refs).expect("aligned predictions score");
                assert!(
                    score.overall.is_finite() && score.overall >= 0.0,
                    "{}",
                    score.overall
                );
            }
        }
    }
});
