//! VQAv2 accuracy exactly as the official scorer computes it: GT-Vision-Lab/VQA at commit
//! a013f0043c1e2cdc995922dfe257f7149aa9af06 ("Fixed processing answers bug"),
//! PythonEvaluationTools/vqaEvaluation/vqaEval.py, `VQAEval.evaluate`. That file is Python 2 code
//! (print statements), so its strings and `round` behave as Python 2.7's.
//!
//! Per question:
//! 1. Every human answer and the prediction: `\n` and `\t` to spaces, then `strip()`
//!    ([`vqa_clean`]).
//! 2. ONLY when the human answers are not all identical (`len(set(gtAnswers)) > 1`, on the cleaned
//!    answers): `processPunctuation` then `processDigitArticle` on every human answer AND on the
//!    prediction ([`vqa_normalise`]). When they are all identical nothing more is done to either
//!    side: no lower-casing, so 10 x "yes" against "Yes" or "yes." scores 0.
//! 3. For each answer dict, the OTHER dicts (`item != gtAnsDatum`: dict equality, so with the
//!    official unique `answer_id`s exactly that one is left out; a file without ids leaves out
//!    every dict equal to it) are searched for the prediction: `acc = min(1, matches / 3)`; the
//!    question's accuracy is the mean of these values (`sum` left to right, then `/ len`).
//!    With 10 answers and k matching: k=0 -> 0, 1 -> 0.3, 2 -> 0.6, 3 -> 0.9, >=4 -> 1.
//! 4. `evalQA[q] = round(100 * acc, 2)`; overall and per answer/question type
//!    `round(100 * sum(accs) / len(accs), 2)` with `sum` in annotation order; `round` is Python
//!    2.7's (exact ties away from zero, [`py::round_py27`]).
//!
//! crates/eval/tests/vqa_official.rs checks all of this against the official file itself, run on
//! generated annotations by eval/tools/vqa_reference.py.

use super::{py_sum, Score, Unit};
use crate::data::{Record, TaskKind};
use crate::normalize::{vqa_clean, vqa_normalise};
use crate::py;
use std::collections::{BTreeMap, HashSet};

/// The accuracy of one prediction against the human answers, a fraction in 0..1 (unrounded).
/// `keys[i]` is the rest of answer dict `i` (its other fields, see [`Record::answer_keys`]);
/// empty `keys` means every dict is distinct (as with official unique `answer_id`s).
pub fn accuracy(answers: &[String], keys: &[String], prediction: &str) -> f64 {
    let mut gts: Vec<String> = answers.iter().map(|a| vqa_clean(a)).collect();
    let mut res = vqa_clean(prediction);
    let distinct: HashSet<&str> = gts.iter().map(String::as_str).collect();
    if distinct.len() > 1 {
        gts = gts.iter().map(|g| vqa_normalise(g)).collect();
        res = vqa_normalise(&res);
    }
    let same_dict = |i: usize, j: usize| match keys.is_empty() {
        true => i == j,
        false => gts[i] == gts[j] && keys[i] == keys[j],
    };
    let gt_acc: Vec<f64> = (0..gts.len())
        .map(|i| {
            let matches = (0..gts.len())
                .filter(|&j| !same_dict(i, j) && gts[j] == res)
                .count();
            (matches as f64 / 3.0).min(1.0)
        })
        .collect();
    py_sum(&gt_acc) / gt_acc.len() as f64
}

/// easy-VQA (foveate's own metric, `exact_match_vqa_normalised`): one answer, so the leave-one-out
/// accuracy is always 0; we score exact match after vqaEval.py's full normalisation
/// ([`vqa_clean`] then [`vqa_normalise`]) applied to both sides.
pub fn exact_match(answer: &str, prediction: &str) -> f64 {
    let norm = |s: &str| vqa_normalise(&vqa_clean(s));
    if norm(answer) == norm(prediction) {
        1.0
    } else {
        0.0
    }
}

fn pct(list: &[f64]) -> f64 {
    py::round_py27(100.0 * py_sum(list) / list.len() as f64, 2)
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
            .map(|(r, &s)| (r.id.clone(), py::round_py27(100.0 * s, 2)))
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

    fn acc(gts: &[String], prediction: &str) -> f64 {
        accuracy(gts, &[], prediction)
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
            let got = acc(&gts, "cat");
            assert!((got - want).abs() < 1e-12, "k={k}: {got} != {want}");
        }
        assert_eq!(
            py::round_py27(100.0 * acc(&answers(&[("cat", 2), ("dog", 8)]), "cat"), 2),
            60.0
        );
    }

    #[test]
    fn identical_answers_are_compared_as_they_are() {
        // All 10 identical: only newline/tab/strip on either side, nothing else.
        let gts = answers(&[("yes", 10)]);
        assert_eq!(acc(&gts, "yes"), 1.0);
        assert_eq!(acc(&gts, "\tyes\n "), 1.0);
        assert_eq!(acc(&gts, "Yes"), 0.0); // capitalised
        assert_eq!(acc(&gts, "yes."), 0.0); // punctuated
        assert_eq!(acc(&gts, "the yes"), 0.0); // article
        let gts = answers(&[("t-shirt", 10)]);
        assert_eq!(acc(&gts, "t-shirt"), 1.0);
        assert_eq!(acc(&gts, "t shirt"), 0.0);
        let gts = answers(&[("two", 10)]);
        assert_eq!(acc(&gts, "2"), 0.0); // no number-word mapping either
                                         // human answers that only become identical after strip count as identical
        let mut gts = answers(&[("dog", 9)]);
        gts.push(" dog\n".into());
        assert_eq!(acc(&gts, "Dog"), 0.0);
    }

    #[test]
    fn differing_answers_normalise_both_sides() {
        // One differing answer switches on punctuation + digit/article for every answer and
        // for the prediction.
        let gts = answers(&[("yes", 9), ("no", 1)]);
        assert_eq!(acc(&gts, "Yes"), 1.0);
        assert_eq!(acc(&gts, "YES."), 1.0);
        assert_eq!(acc(&gts, "the yes"), 1.0);
        let gts = answers(&[("t-shirt", 9), ("shirt", 1)]);
        assert_eq!(acc(&gts, "t-shirt"), 1.0);
        assert_eq!(acc(&gts, "T Shirt"), 1.0);
        // human answers get the digit/article step too
        let gts = answers(&[("two", 9), ("three", 1)]);
        assert_eq!(acc(&gts, "2"), 1.0);
        assert_eq!(acc(&gts, "Two"), 1.0);
        let gts = answers(&[("the dog", 5), ("puppy", 5)]);
        assert_eq!(acc(&gts, "dog"), 1.0);
    }

    #[test]
    fn answers_that_merge_only_after_normalisation() {
        // "Dog", "dog.", "the dog", "a dog" are four different raw answers and one normalised:
        // 1 human "dog" alone scores 0.3; with the variants merged, 4 matches -> 1.
        let gts: Vec<String> = [
            "Dog", "dog.", "the dog", "a dog", "cat", "cat", "cat", "cat", "cat", "cat",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(acc(&gts, "dog"), 1.0);
        let gts: Vec<String> = [
            "1,000",
            "1000",
            "one thousand",
            "10",
            "10",
            "10",
            "10",
            "10",
            "10",
            "10",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert!((acc(&gts, "1000") - 0.6).abs() < 1e-12); // "1,000" and "1000" merge
    }

    #[test]
    fn newline_and_tab_become_spaces_before_everything() {
        let gts = answers(&[("red and blue", 6), ("red", 4)]);
        assert_eq!(acc(&gts, "red\tand\nblue"), 1.0);
        // inside a word they are spaces too: "red\nblue" is two words
        assert_eq!(
            acc(&answers(&[("redblue", 6), ("red", 4)]), "red\nblue"),
            0.0
        );
        // identical answers with a newline inside: cleaned to a space on both sides
        let gts = answers(&[("ice\ncream", 10)]);
        assert_eq!(acc(&gts, "ice cream"), 1.0);
        assert_eq!(acc(&gts, "ice\tcream"), 1.0);
    }

    #[test]
    fn commas_periods_and_contractions() {
        let gts = answers(&[("1,000", 6), ("1000", 4)]);
        assert_eq!(acc(&gts, "1,000"), 1.0);
        assert_eq!(acc(&gts, "1000"), 1.0);
        let gts = answers(&[("2.5", 3), ("25", 7)]);
        assert!((acc(&gts, "2.5") - 0.9).abs() < 1e-12);
        let gts = answers(&[("it's", 4), ("yes", 6)]);
        assert_eq!(acc(&gts, "it's"), 1.0);
        assert_eq!(acc(&gts, "its"), 0.0); // "its" is not in the table
        let gts = answers(&[("don't", 4), ("no", 6)]);
        assert_eq!(acc(&gts, "dont"), 1.0);
        // a trailing "!" becomes a space, which the digit/article split then drops
        let gts = answers(&[("yes!", 8), ("yes", 2)]);
        assert_eq!(acc(&gts, "yes"), 1.0);
    }

    #[test]
    fn empty_prediction() {
        let gts = answers(&[("", 3), ("x", 7)]);
        assert!((acc(&gts, "  ") - 0.9).abs() < 1e-12);
        assert_eq!(acc(&answers(&[("x", 10)]), ""), 0.0);
    }

    #[test]
    fn dicts_without_ids_leave_out_every_equal_dict() {
        // `item != gtAnsDatum` compares whole dicts: without answer ids, two equal dicts are
        // both left out for each other.
        let gts = answers(&[("cat", 4), ("dog", 6)]);
        let same = vec![r#"{"answer_confidence":"yes"}"#.to_string(); 10];
        // With unique ids (keys empty): k=4 -> 1.0. Without ids every "cat" dict leaves out all
        // four "cat" dicts: for a "cat" position 0 matches, for a "dog" position 4 -> 6/10.
        assert_eq!(accuracy(&gts, &[], "cat"), 1.0);
        assert!((accuracy(&gts, &same, "cat") - 0.6).abs() < 1e-12);
        // differing confidences make the dicts distinct again
        let mut keys = same.clone();
        for (i, k) in keys.iter_mut().enumerate() {
            *k = format!(r#"{{"answer_confidence":"{i}"}}"#);
        }
        assert_eq!(accuracy(&gts, &keys, "cat"), 1.0);
    }

    #[test]
    fn aggregates_round_exact_ties_away_from_zero() {
        // 800 questions, one right: 100 * 1 / 800 = 0.125 exactly. Python 2.7's round (the
        // official scorer's) gives 0.13; Python 3's would give 0.12.
        let rec = |i: i64| Record {
            id: crate::QuestionId::Int(i),
            question: String::new(),
            image: Default::default(),
            answers: vec!["a".into()],
            answer_keys: Vec::new(),
            answer_type: Some("other".into()),
            question_types: vec!["what".into()],
            canonical_answer: None,
        };
        let records: Vec<Record> = (0..800).map(rec).collect();
        let mut scores = vec![0.0; 800];
        scores[0] = 1.0;
        let s = aggregate(TaskKind::VqaV2, &records, &scores);
        assert_eq!(s.overall, 0.13);
        assert_eq!(s.breakdown["answer_type"]["other"], 0.13);
    }

    #[test]
    fn easy_vqa_exact_match() {
        assert_eq!(exact_match("circle", " Circle."), 1.0);
        assert_eq!(exact_match("yes", "no"), 0.0);
    }
}
