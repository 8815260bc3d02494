//! VQAv2 accuracy as GT-Vision-Lab `vqaEval.py` (current version) computes it.
//!
//! Per question (`evaluate`), checked against the current reference:
//! 1. `resAns`: `\n` and `\t` to spaces, `strip()`, then ALWAYS `processPunctuation` and
//!    `processDigitArticle` (the prediction is lower-cased, number words become digits, articles go).
//! 2. The human answers are NOT stripped or lower-cased. Only when they are not all identical
//!    (`len(set(gtAnswers)) > 1`) each gets `processPunctuation` — and only that, no
//!    digit/article step. So with 10 identical answers "t-shirt", the prediction "t-shirt" becomes
//!    "t shirt" and scores 0.
//! 3. For each of the n answers, the others (the dicts that differ from it; answer ids are unique,
//!    so exactly that one is left out) are searched for the prediction:
//!    `acc = min(1, matches / 3)`; the question's accuracy is the mean of the n values.
//!    With 10 answers and k matching: k=0 -> 0, 1 -> 0.3, 2 -> 0.6, 3 -> 0.9, >=4 -> 1.
//! 4. `evalQA[q] = round(100 * acc, 2)`; overall and per answer/question type
//!    `round(100 * sum(accs) / len(accs), 2)` with `sum` in annotation order.
//!
//! An older revision applied the digit/article step to neither side and had a bug in the per-type
//! lists; we follow the current one.

use super::{py_sum, Score, Unit};
use crate::data::{Record, TaskKind};
use crate::normalize::{vqa_ground_truth, vqa_prediction};
use crate::py;
use std::collections::{BTreeMap, HashSet};

/// The accuracy of one prediction against the human answers, a fraction in 0..1 (unrounded).
pub fn accuracy(answers: &[String], prediction: &str) -> f64 {
    let res = vqa_prediction(prediction);
    let distinct: HashSet<&str> = answers.iter().map(String::as_str).collect();
    let gts: Vec<String> = if distinct.len() > 1 {
        answers.iter().map(|a| vqa_ground_truth(a)).collect()
    } else {
        answers.to_vec()
    };
    let gt_acc: Vec<f64> = (0..gts.len())
        .map(|i| {
            let matches = gts
                .iter()
                .enumerate()
                .filter(|(j, g)| *j != i && **g == res)
                .count();
            (matches as f64 / 3.0).min(1.0)
        })
        .collect();
    py_sum(&gt_acc) / gt_acc.len() as f64
}

/// easy-VQA: one answer, so the leave-one-out accuracy is always 0; we score exact match after
/// the prediction normalisation of vqaEval.py applied to both sides.
pub fn exact_match(answer: &str, prediction: &str) -> f64 {
    if vqa_prediction(answer) == vqa_prediction(prediction) {
        1.0
    } else {
        0.0
    }
}

fn pct(list: &[f64]) -> f64 {
    py::round(100.0 * py_sum(list) / list.len() as f64, 2)
}

pub(super) fn aggregate(task: TaskKind, records: &[Record], scores: &[f64]) -> Score {
    let mut by_answer: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut by_question: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for (r, &s) in records.iter().zip(scores) {
        if let Some(t) = &r.answer_type {
            by_answer.entry(t.clone()).or_default().push(s);
        }
        for t in &r.question_types {
            by_question.entry(t.clone()).or_default().push(s);
        }
    }
    let mut breakdown = BTreeMap::new();
    for (name, groups) in [("answer_type", by_answer), ("question_type", by_question)] {
        if !groups.is_empty() {
            breakdown.insert(
                name.to_string(),
                groups.iter().map(|(k, v)| (k.clone(), pct(v))).collect(),
            );
        }
    }
    Score {
        task,
        metric: super::metric_name(task),
        unit: Unit::Percent,
        overall: if scores.is_empty() { 0.0 } else { pct(scores) },
        breakdown,
        per_question: records
            .iter()
            .zip(scores)
            .map(|(r, &s)| (r.id.clone(), py::round(100.0 * s, 2)))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers(spec: &[(&str, usize)]) -> Vec<String> {
        spec.iter()
            .flat_map(|(a, n)| std::iter::repeat_n(a.to_string(), *n))
            .collect()
    }

    #[test]
    fn leave_one_out_values_for_known_counts() {
        // k of 10 humans gave the prediction: mean over the 10 leave-one-out subsets of
        // min(1, matches/3). k=1: 9 subsets keep it (1/3 each) -> 3/10 = 0.3.
        // k=2: 2 subsets see 1 (1/3), 8 see 2 (2/3) -> (2/3 + 16/3)/10 = 0.6.
        // k=3: 3 subsets see 2 (2/3), 7 see 3 (1) -> (2 + 7)/10 = 0.9.  k=4: all >= 3 -> 1.
        let expect = [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)];
        for (k, want) in expect {
            let gts = answers(&[("cat", k), ("dog", 10 - k)]);
            let got = accuracy(&gts, "cat");
            assert!((got - want).abs() < 1e-12, "k={k}: {got} != {want}");
        }
        // rounding as evalQA: 100*0.6 -> 60.0
        assert_eq!(
            py::round(
                100.0 * accuracy(&answers(&[("cat", 2), ("dog", 8)]), "cat"),
                2
            ),
            60.0
        );
    }

    #[test]
    fn number_word_and_period_in_prediction() {
        let gts = answers(&[("2", 9), ("3", 1)]);
        assert_eq!(accuracy(&gts, "two."), 1.0);
        assert_eq!(accuracy(&gts, "Two"), 1.0);
    }

    #[test]
    fn ground_truth_number_words_are_not_mapped() {
        // only punctuation is applied to the human answers: "two" stays "two", the prediction "two"
        // becomes "2", no match.
        let gts = answers(&[("two", 9), ("three", 1)]);
        assert_eq!(accuracy(&gts, "two"), 0.0);
        assert_eq!(accuracy(&gts, "2"), 0.0);
    }

    #[test]
    fn article_in_prediction_is_dropped() {
        let gts = answers(&[("dog", 5), ("puppy", 5)]);
        assert_eq!(accuracy(&gts, "the dog"), 1.0);
        // but an article in the human answer is kept (no digit/article step on gt)
        let gts = answers(&[("the dog", 5), ("puppy", 5)]);
        assert_eq!(accuracy(&gts, "the dog"), 0.0);
    }

    #[test]
    fn identical_answers_are_not_normalised() {
        // 10 identical "t-shirt": gt untouched, prediction "t-shirt" -> "t shirt": 0.
        let gts = answers(&[("t-shirt", 10)]);
        assert_eq!(accuracy(&gts, "t-shirt"), 0.0);
        // one differing answer switches on gt punctuation processing: 9 "t-shirt" -> "t shirt"
        let gts = answers(&[("t-shirt", 9), ("shirt", 1)]);
        assert_eq!(accuracy(&gts, "t-shirt"), 1.0);
    }

    #[test]
    fn commas_in_numbers() {
        let gts = answers(&[("1,000", 6), ("1000", 4)]);
        // gt "1,000" -> "1000" (digit,digit deletes the comma); prediction too: all 10 match
        assert_eq!(accuracy(&gts, "1,000"), 1.0);
        assert_eq!(accuracy(&gts, "1000"), 1.0);
    }

    #[test]
    fn decimal_point_kept() {
        let gts = answers(&[("2.5", 3), ("25", 7)]);
        assert!((accuracy(&gts, "2.5") - 0.9).abs() < 1e-12);
    }

    #[test]
    fn contraction_its() {
        let gts = answers(&[("it's", 4), ("yes", 6)]);
        assert_eq!(accuracy(&gts, "it's"), 1.0);
        assert_eq!(accuracy(&gts, "its"), 0.0); // "its" is not in the table
        let gts = answers(&[("don't", 4), ("no", 6)]);
        assert_eq!(accuracy(&gts, "dont"), 1.0);
    }

    #[test]
    fn trailing_punctuation_in_ground_truth_leaves_a_space() {
        // gt "yes!" (mixed set) becomes "yes " and never equals a normalised prediction
        let gts = answers(&[("yes!", 5), ("yes", 5)]);
        // only the 5 plain "yes" match: k=5 -> 1.0
        assert_eq!(accuracy(&gts, "yes!"), 1.0);
        let gts = answers(&[("yes!", 8), ("yes", 2)]);
        assert!((accuracy(&gts, "yes") - 0.6).abs() < 1e-12);
    }

    #[test]
    fn ground_truth_case_is_kept() {
        let gts = answers(&[("Yes", 5), ("no", 5)]);
        assert_eq!(accuracy(&gts, "Yes"), 0.0); // prediction is lower-cased, gt is not
    }

    #[test]
    fn empty_prediction() {
        let gts = answers(&[("", 3), ("x", 7)]);
        assert!((accuracy(&gts, "  ") - 0.9).abs() < 1e-12);
        assert_eq!(accuracy(&answers(&[("x", 10)]), ""), 0.0);
    }

    #[test]
    fn easy_vqa_exact_match() {
        assert_eq!(exact_match("circle", " Circle."), 1.0);
        assert_eq!(exact_match("yes", "no"), 0.0);
    }
}
