//! ANLS as the RRC DocVQA / InfographicVQA `evaluate_method` computes it.
//!
//! For each ground-truth answer:
//! * `gt = ' '.join(answer.strip().lower().split())`, the same for the prediction;
//! * `dist = levenshtein(gt, det)` over code points;
//! * `length = max(len(answer.upper()), len(det_raw.upper()))` — on the RAW strings, not the
//!   normalised ones (so surrounding or repeated spaces lengthen the denominator, and "ß" counts 2);
//! * `value = 0.0 if length == 0 else dist / length`.
//! The question scores `1 - min(values)`, set to 0 when `< threshold` (0.5): a normalised distance
//! of exactly 0.5 keeps 0.5 (the ANLS paper's "NL < tau" would give 0; the script keeps it).
//! The overall score is `sum / len` in file order, as a fraction; per question type, a question
//! counts in each of its `question_types`.

use super::{py_sum, Score, Unit};
use crate::data::{Record, TaskKind};
use crate::py;
use std::collections::BTreeMap;

pub const THRESHOLD: f64 = 0.5;

/// ANLS of one prediction against its answers (0..1). With no answers, 0.
pub fn anls(answers: &[String], prediction: &str, threshold: f64) -> f64 {
    let det = py::collapse_spaces(&py::lower(py::strip(prediction)));
    let det_len = py::upper_len(prediction);
    let mut best: Option<f64> = None;
    for a in answers {
        let gt = py::collapse_spaces(&py::lower(py::strip(a)));
        let dist = py::levenshtein(&gt, &det);
        let length = py::upper_len(a).max(det_len);
        let v = if length == 0 {
            0.0
        } else {
            dist as f64 / length as f64
        };
        best = Some(best.map_or(v, |b: f64| b.min(v)));
    }
    let Some(min) = best else { return 0.0 };
    let r = 1.0 - min;
    if r < threshold {
        0.0
    } else {
        r
    }
}

pub(super) fn aggregate(records: &[Record], scores: &[f64]) -> Score {
    let mut types: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    for (r, &s) in records.iter().zip(scores) {
        for t in &r.question_types {
            let e = types.entry(t.clone()).or_insert((0.0, 0));
            e.0 += s;
            e.1 += 1;
        }
    }
    let mut breakdown = BTreeMap::new();
    if !types.is_empty() {
        breakdown.insert(
            "question_type".to_string(),
            types
                .into_iter()
                .map(|(k, (t, n))| (k, t / n as f64))
                .collect(),
        );
    }
    Score {
        task: TaskKind::DocVqa,
        metric: super::metric_name(TaskKind::DocVqa),
        unit: Unit::Fraction,
        overall: if scores.is_empty() {
            0.0
        } else {
            py_sum(scores) / scores.len() as f64
        },
        breakdown,
        per_question: records
            .iter()
            .zip(scores)
            .map(|(r, &s)| (r.id.clone(), s))
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
    fn exact_and_case_insensitive() {
        assert_eq!(anls(&v(&["San Diego"]), "san diego", THRESHOLD), 1.0);
        assert_eq!(anls(&v(&["San Diego"]), "  SAN   DIEGO ", THRESHOLD), 1.0);
    }

    #[test]
    fn threshold_at_exactly_half_is_kept() {
        // "ab" vs "ax": dist 1, length 2 -> NL 0.5 -> 1 - 0.5 = 0.5, not < 0.5: kept
        assert_eq!(anls(&v(&["ab"]), "ax", THRESHOLD), 0.5);
        // "abc" vs "axy": NL 2/3 -> 1/3 < 0.5 -> 0
        assert_eq!(anls(&v(&["abc"]), "axy", THRESHOLD), 0.0);
        // "abcd" vs "abxy"... dist 2, len 4 -> 0.5 kept; "abcde" vs "abxyz": 0.4 -> 0
        assert_eq!(anls(&v(&["abcd"]), "abxy", THRESHOLD), 0.5);
        assert_eq!(anls(&v(&["abcde"]), "abxyz", THRESHOLD), 0.0);
    }

    #[test]
    fn max_over_answers() {
        // best: "paul" vs "paul." -> 1/5 -> 0.8
        let s = anls(&v(&["john", "paul"]), "paul.", THRESHOLD);
        assert!((s - 0.8).abs() < 1e-12);
    }

    #[test]
    fn length_uses_raw_strings() {
        // normalised both "abc" vs "abd": dist 1; raw prediction has 3 extra spaces -> length 6
        let s = anls(&v(&["abc"]), "abd   ", THRESHOLD);
        assert!((s - (1.0 - 1.0 / 6.0)).abs() < 1e-12);
        // "ß" upper-cases to "SS": length 2, dist("ß","s") = 1 -> 0.5 kept
        assert_eq!(anls(&v(&["ß"]), "s", THRESHOLD), 0.5);
    }

    #[test]
    fn empty_strings() {
        // both empty: length 0 -> value 0.0 -> score 1
        assert_eq!(anls(&v(&[""]), "", THRESHOLD), 1.0);
        // gt empty, prediction only spaces: dist 0 after normalising, length 3 -> 1
        assert_eq!(anls(&v(&[""]), "   ", THRESHOLD), 1.0);
        // empty prediction vs a word: dist = len -> NL 1 -> 0
        assert_eq!(anls(&v(&["paul"]), "", THRESHOLD), 0.0);
        // no answers at all
        assert_eq!(anls(&[], "x", THRESHOLD), 0.0);
    }
}
