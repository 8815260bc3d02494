//! The main job end to end: `foveate eval --task easy-vqa` with the shipped tiny model on the shipped
//! test split, checked against PyTorch's greedy answers stored beside the model.

use std::collections::HashMap;
use std::process::Command;

mod common;
use common::repo;

#[test]
fn easy_vqa_matches_pytorch_answers() {
    let out_dir = std::env::temp_dir().join(format!("foveate-eval-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out_dir);
    let n = 600;
    let o = Command::new(env!("CARGO_BIN_EXE_foveate"))
        .args([
            "eval",
            "--task",
            "easy-vqa",
            "--json",
            "--limit",
            &n.to_string(),
        ])
        .arg("--model")
        .arg(repo().join("eval/models/easyvqa-tiny"))
        .arg("--data")
        .arg(repo().join("eval/data/easy-vqa"))
        .arg("--output")
        .arg(&out_dir)
        .output()
        .expect("run foveate");
    assert!(
        o.status.success(),
        "foveate eval failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let results: serde_json::Value =
        serde_json::from_slice(&o.stdout).expect("results JSON on stdout");
    assert_eq!(results["questions"], n);
    assert_eq!(results["task"], "easy-vqa");
    let score = results["score"].as_f64().expect("score");

    // PyTorch's greedy answers for the same questions (eval/models/easyvqa-tiny/torch_predictions.jsonl).
    let mut torch = HashMap::new();
    let mut torch_correct = 0;
    for l in
        std::fs::read_to_string(repo().join("eval/models/easyvqa-tiny/torch_predictions.jsonl"))
            .unwrap()
            .lines()
    {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let (index, prediction) = (
            v["question_index"].as_u64().unwrap(),
            v["prediction"].as_str().unwrap(),
        );
        if index < n as u64 && prediction == v["answer"].as_str().unwrap() {
            torch_correct += 1;
        }
        torch.insert(index, prediction.trim().to_lowercase());
    }
    let sub: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("submission.json")).unwrap())
            .unwrap();
    assert_eq!(sub.len(), n);
    let agree = sub
        .iter()
        .filter(|s| torch[&s["question_id"].as_u64().unwrap()] == s["answer"].as_str().unwrap())
        .count();
    assert_eq!(
        agree,
        n,
        "foveate and PyTorch greedy answers differ on {} of {n} questions",
        n - agree
    );
    // The same answers score what PyTorch's score on these questions, and the bar is 90%
    // (the shipped model: 98.58% on the whole test split).
    let torch_score = 100.0 * torch_correct as f64 / n as f64;
    assert!(
        (score - torch_score).abs() < 1e-9,
        "foveate {score} vs PyTorch {torch_score} on {n} questions"
    );
    assert!(score >= 90.0, "easy-VQA score {score} on {n} questions");
    let _ = std::fs::remove_dir_all(&out_dir);
}
