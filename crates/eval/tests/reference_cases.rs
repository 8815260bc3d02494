//! Cross-check against values produced by the Python scorers' logic (MMF
//! EvalAIAnswerProcessor/TextVQAAccuracyEvaluator, the RRC ANLS loop, vqaEval.py's normalisation
//! chain) on 1,000 random inputs built from quirk-prone tokens ("two", "1,000", "t-shirt", "a.m.",
//! " / ", "ß", tabs...). Scores must match bit for bit (JSON floats round-trip exactly). VQAv2
//! accuracy itself is checked against the official file in vqa_official.rs.

use foveate_eval::metrics::{anls, textvqa};
use foveate_eval::normalize;
use serde_json::Value;

fn cases() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/reference_cases.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("read reference cases"))
        .expect("parse")
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn normalisation_matches_reference() {
    let c = cases();
    let list = c["norm"].as_array().unwrap();
    assert!(list.len() >= 400);
    for case in list {
        let s = case["input"].as_str().unwrap();
        assert_eq!(
            normalize::vqa_normalise(&normalize::vqa_clean(s)),
            case["vqa_prediction"].as_str().unwrap(),
            "resAns of {s:?}"
        );
        assert_eq!(
            normalize::evalai(s),
            case["evalai"].as_str().unwrap(),
            "evalai of {s:?}"
        );
    }
}

#[test]
fn textvqa_accuracy_matches_reference() {
    let c = cases();
    for case in c["textvqa"].as_array().unwrap() {
        let (a, p) = (strs(&case["answers"]), case["prediction"].as_str().unwrap());
        let want = case["score"].as_f64().unwrap();
        let got = textvqa::accuracy(&a, p);
        assert_eq!(
            got.to_bits(),
            want.to_bits(),
            "{a:?} / {p:?}: {got} != {want}"
        );
    }
}

#[test]
fn anls_matches_reference() {
    let c = cases();
    for case in c["anls"].as_array().unwrap() {
        let (a, p) = (strs(&case["answers"]), case["prediction"].as_str().unwrap());
        let want = case["score"].as_f64().unwrap();
        let got = anls::anls(&a, p, anls::THRESHOLD);
        assert_eq!(
            got.to_bits(),
            want.to_bits(),
            "{a:?} / {p:?}: {got} != {want}"
        );
    }
}
