//! The official metrics. Each task scores one question at a time (a fraction in 0..1, used for the
//! running score of the runner) and aggregates the way its reference script does (rounding,
//! summation order, units).

pub mod anls;
pub mod textvqa;
pub mod vqa;

use crate::data::{Dataset, QuestionId, Record, TaskKind};
use foveate_core::{Error, Result};
use std::collections::BTreeMap;

/// How the overall score is expressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// 0..100 (VQAv2, TextVQA, easy-VQA: the scripts print percentages).
    Percent,
    /// 0..1 (ANLS, as the RRC script prints it).
    Fraction,
}

/// A scored prediction set.
#[derive(Clone, Debug, PartialEq)]
pub struct Score {
    pub task: TaskKind,
    pub metric: &'static str,
    pub unit: Unit,
    pub overall: f64,
    /// Group name ("answer_type", "question_type") -> group value -> score, in `unit`.
    pub breakdown: BTreeMap<String, BTreeMap<String, f64>>,
    /// Per question, in record order, in `unit` (VQAv2 rounds these as `evalQA` does).
    pub per_question: Vec<(QuestionId, f64)>,
}

/// The metric name of a task, as task specs and reports spell it.
pub fn metric_name(task: TaskKind) -> &'static str {
    match task {
        TaskKind::VqaV2 => "vqa_accuracy",
        TaskKind::TextVqa => "textvqa_accuracy",
        TaskKind::DocVqa => "anls",
        TaskKind::EasyVqa => "exact_match_vqa_normalised",
    }
}

/// The reference implementation a task's scorer follows (and the commit, where the scorer's own
/// doc cites one), for the protocol card.
pub fn reference(task: TaskKind) -> &'static str {
    match task {
        TaskKind::VqaV2 => "GT-Vision-Lab/VQA vqaEval.py at a013f0043c1e2cdc995922dfe257f7149aa9af06",
        TaskKind::TextVqa => "MMF TextVQAAccuracyEvaluator with EvalAIAnswerProcessor (no commit cited)",
        TaskKind::DocVqa => "RRC DocVQA evaluate_method ANLS, threshold 0.5 (no commit cited)",
        TaskKind::EasyVqa => "exact match after vqaEval.py normalisation (GT-Vision-Lab/VQA at a013f0043c1e2cdc995922dfe257f7149aa9af06)",
    }
}

/// Check that every record can be scored (answers present; TextVQA has exactly 10, as MMF asserts).
pub fn check_scorable(ds: &Dataset) -> Result<()> {
    for (i, r) in ds.records.iter().enumerate() {
        let bad = |msg: &str| {
            Error::format(
                ds.source.display().to_string(),
                format!("record {i} (question id {}).answers", r.id),
                msg,
            )
        };
        if r.answers.is_empty() {
            return Err(bad(
                "no ground-truth answers (a test split cannot be scored)",
            ));
        }
        if ds.task == TaskKind::TextVqa && r.answers.len() != 10 {
            return Err(bad(&format!(
                "TextVQA needs 10 answers, found {}",
                r.answers.len()
            )));
        }
    }
    Ok(())
}

/// The score of one prediction, a fraction in 0..1 (unrounded). Call [`check_scorable`] first.
pub fn question_score(task: TaskKind, rec: &Record, prediction: &str) -> f64 {
    match task {
        TaskKind::VqaV2 => vqa::accuracy(&rec.answers, &rec.answer_keys, prediction),
        TaskKind::TextVqa => textvqa::accuracy(&rec.answers, prediction),
        TaskKind::DocVqa => anls::anls(&rec.answers, prediction, anls::THRESHOLD),
        TaskKind::EasyVqa => vqa::exact_match(&rec.answers[0], prediction),
    }
}

/// Aggregate per-question fractions (in record order) the way the task's reference does.
pub fn aggregate(task: TaskKind, records: &[Record], scores: &[f64]) -> Score {
    assert_eq!(records.len(), scores.len(), "one score per record");
    match task {
        TaskKind::VqaV2 | TaskKind::EasyVqa => vqa::aggregate(task, records, scores),
        TaskKind::TextVqa => textvqa::aggregate(records, scores),
        TaskKind::DocVqa => anls::aggregate(records, scores),
    }
}

/// Score predictions given in record order.
pub fn score_all(ds: &Dataset, predictions: &[&str]) -> Result<Score> {
    check_scorable(ds)?;
    if predictions.len() != ds.records.len() {
        return Err(Error::Msg(format!(
            "{} predictions for {} records",
            predictions.len(),
            ds.records.len()
        )));
    }
    let scores: Vec<f64> = ds
        .records
        .iter()
        .zip(predictions)
        .map(|(r, p)| question_score(ds.task, r, p))
        .collect();
    Ok(aggregate(ds.task, &ds.records, &scores))
}

/// Python-order sum (left to right from 0), as `sum(list)` computes it.
pub(crate) fn py_sum<'a>(xs: impl IntoIterator<Item = &'a f64>) -> f64 {
    xs.into_iter().fold(0.0, |a, b| a + b)
}
