//! VQAv2 accuracy against the official scorer itself: GT-Vision-Lab/VQA at a013f00,
//! PythonEvaluationTools/vqaEvaluation/vqaEval.py `VQAEval.evaluate`, run by
//! eval/tools/vqa_reference.py on 1,500 generated questions in the official annotation format
//! (identical answer sets with capitalised / punctuated / article-bearing predictions, answers that
//! merge only after normalisation, newline/tab/Unicode whitespace, number words, digit commas,
//! answer dicts without ids). Every per-question accuracy must match bit for bit, and `evalQA`,
//! the overall and the per-type figures exactly.

use foveate_eval::data::{vqav2, Dataset, TaskKind};
use foveate_eval::metrics;
use serde_json::Value;
use std::path::Path;

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/vqa_official.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("read fixture")).expect("parse")
}

#[test]
fn vqav2_scores_equal_the_official_scorer() {
    let f = fixture();
    let ann = Path::new("vqa_official.json");
    let records = vqav2::from_value(&f["annotations"], ann, None, None).expect("load");
    assert_eq!(records.len(), 1500);
    let ds = Dataset {
        task: TaskKind::VqaV2,
        records,
        source: ann.into(),
    };
    let preds: Vec<&str> = f["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["answer"].as_str().unwrap())
        .collect();
    let (raw, eval_qa) = (&f["per_question_raw"], &f["evalQA"]);
    let mut nonzero = 0;
    for (rec, p) in ds.records.iter().zip(&preds) {
        let key = rec.id.to_string();
        let want = raw[&key].as_f64().unwrap();
        let got = metrics::question_score(TaskKind::VqaV2, rec, p);
        assert_eq!(
            got.to_bits(),
            want.to_bits(),
            "question {key}: {:?} / {p:?}: {got} != {want}",
            rec.answers
        );
        nonzero += usize::from(want > 0.0);
    }
    assert!(
        nonzero > 500,
        "the vectors must exercise matches ({nonzero})"
    );

    let score = metrics::score_all(&ds, &preds).expect("score");
    for (id, v) in &score.per_question {
        assert_eq!(
            *v,
            eval_qa[&id.to_string()].as_f64().unwrap(),
            "evalQA[{id}]"
        );
    }
    let acc = &f["accuracy"];
    assert_eq!(score.overall, acc["overall"].as_f64().unwrap(), "overall");
    for (group, official) in [
        ("answer_type", "perAnswerType"),
        ("question_type", "perQuestionType"),
    ] {
        let ours = &score.breakdown[group];
        let theirs = acc[official].as_object().unwrap();
        assert_eq!(ours.len(), theirs.len(), "{group}");
        for (k, v) in theirs {
            assert_eq!(ours[k], v.as_f64().unwrap(), "{official}[{k}]");
        }
    }
}

#[test]
fn the_vectors_cover_the_quirks() {
    // Guards the fixture itself: regenerated vectors must still hold every case this test file
    // claims to check.
    let f = fixture();
    let anns = f["annotations"]["annotations"].as_array().unwrap();
    let results = f["results"].as_array().unwrap();
    let clean = |s: &str| s.replace(['\n', '\t'], " ").trim().to_string();
    let (mut identical, mut no_ids, mut ws_pred, mut identical_miss_by_case) = (0, 0, 0, 0);
    for (a, r) in anns.iter().zip(results) {
        let answers: Vec<&str> = a["answers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["answer"].as_str().unwrap())
            .collect();
        let pred = r["answer"].as_str().unwrap();
        let set: std::collections::HashSet<String> = answers.iter().map(|s| clean(s)).collect();
        if set.len() == 1 {
            identical += 1;
            let only = set.iter().next().unwrap();
            if clean(pred) != *only && clean(pred).to_lowercase() == only.to_lowercase() {
                identical_miss_by_case += 1;
            }
        }
        no_ids += usize::from(a["answers"][0].get("answer_id").is_none());
        ws_pred += usize::from(pred.contains(['\n', '\t']));
    }
    assert!(identical >= 200 && no_ids >= 30 && ws_pred >= 30 && identical_miss_by_case >= 10,
        "identical {identical}, no ids {no_ids}, whitespace predictions {ws_pred}, case-only misses {identical_miss_by_case}");
}
