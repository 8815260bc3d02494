//! TextVQA accuracy as MMF's `TextVQAAccuracyEvaluator` computes it (the EvalAI TextVQA scorer).
//!
//! * Every human answer and the prediction go through `EvalAIAnswerProcessor`
//!   ([`crate::normalize::evalai`]), always (unlike vqaEval.py there is no "all identical" rule).
//! * `_compute_answer_scores`: the 10 processed answers are enumerated; for each UNIQUE answer `u`,
//!   for each of the 10 positions `g`, count the answers at the other 9 positions equal to `u`,
//!   `acc = min(1, count / 3)`; the score of `u` is the mean over the 10 positions. (So an answer
//!   given by k humans scores 0.3 / 0.6 / 0.9 / 1 for k = 1 / 2 / 3 / >=4, as in VQAv2.)
//! * The prediction scores the score of the unique answer it equals, else 0.
//! * The accuracy is `sum(scores) / len(scores)` (a fraction); reported here in percent, unrounded.
//!   MMF asserts exactly 10 answers per question; so do we (`check_scorable`).

use super::{py_sum, Score, Unit};
use crate::data::{Record, TaskKind};
use crate::normalize::evalai;
use std::collections::BTreeMap;

/// Scores of each unique processed answer (`_compute_answer_scores`).
pub fn answer_scores(raw_answers: &[String]) -> BTreeMap<String, f64> {
    let answers: Vec<String> = raw_answers.iter().map(|a| evalai(a)).collect();
    let mut out = BTreeMap::new();
    for unique in &answers {
        if out.contains_key(unique) {
            continue;
        }
        let accs: Vec<f64> = (0..answers.len())
            .map(|g| {
                let n = answers
                    .iter()
                    .enumerate()
                    .filter(|(i, a)| *i != g && *a == unique)
                    .count();
                (n as f64 / 3.0).min(1.0)
            })
            .collect();
        out.insert(unique.clone(), py_sum(&accs) / accs.len() as f64);
    }
    out
}

/// The score of one prediction, a fraction in 0..1.
pub fn accuracy(answers: &[String], prediction: &str) -> f64 {
    answer_scores(answers)
        .get(&evalai(prediction))
        .copied()
        .unwrap_or(0.0)
}

pub(super) fn aggregate(records: &[Record], scores: &[f64]) -> Score {
    let acc = if scores.is_empty() {
        0.0
    } else {
        py_sum(scores) / scores.len() as f64
    };
    Score {
        task: TaskKind::TextVqa,
        metric: super::metric_name(TaskKind::TextVqa),
        unit: Unit::Percent,
        overall: 100.0 * acc,
        breakdown: BTreeMap::new(),
        per_question: records
            .iter()
            .zip(scores)
            .map(|(r, &s)| (r.id.clone(), 100.0 * s))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn unique_answer_scores_follow_the_count() {
        let gts = v(&["p", "q", "q", "r", "r", "r", "s", "s", "s", "s"]);
        let s = answer_scores(&gts);
        assert!((s["p"] - 0.3).abs() < 1e-12);
        assert!((s["q"] - 0.6).abs() < 1e-12);
        assert!((s["r"] - 0.9).abs() < 1e-12);
        assert_eq!(s["s"], 1.0);
        assert_eq!(accuracy(&gts, "e"), 0.0);
        // "a" is an article: it processes to "" and an empty prediction matches it
        let gts = v(&["a", "a", "a", "x", "x", "x", "x", "x", "x", "x"]);
        assert!((accuracy(&gts, "") - 0.9).abs() < 1e-12);
    }

    #[test]
    fn processing_applies_to_every_answer_and_the_prediction() {
        // "Dakota!" and "dakota" process to the same string: 4 humans -> 1.0
        let gts = v(&[
            "Dakota!", "dakota", "dakota", "dakota ", "x", "y", "z", "w", "v", "u",
        ]);
        assert_eq!(accuracy(&gts, "DAKOTA."), 1.0);
        // even when all ten are identical (no vqaEval "all identical" rule)
        let gts = v(&["t-shirt"; 10]);
        assert_eq!(accuracy(&gts, "t-shirt"), 1.0);
        // "'s" is split off on both sides
        let gts = v(&["joe's", "joe's", "joe's", "x", "x", "x", "x", "x", "x", "x"]);
        assert!((accuracy(&gts, "Joe's") - 0.9).abs() < 1e-12);
        assert_eq!(accuracy(&gts, "joes"), 0.0);
    }

    #[test]
    fn numbers_with_commas() {
        let gts = v(&["1,000"; 10]);
        assert_eq!(accuracy(&gts, "1000"), 1.0);
        assert_eq!(accuracy(&gts, "one thousand"), 0.0);
    }
}
