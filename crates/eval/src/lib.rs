//! foveate-eval: the benchmarks foveate is scored on.
//!
//! * [`data`]: loaders for the official VQAv2, TextVQA, DocVQA and easy-VQA files, producing one
//!   [`data::Record`] type; errors name the file and the record.
//! * [`normalize`] and [`metrics`]: the official scorers reproduced with their quirks (vqaEval.py,
//!   MMF's TextVQA evaluator, the RRC ANLS script); each module documents what it copies.
//! * [`predictions`]: official submission files, aligned with a dataset (strict by default).
//! * [`task`]: task specs (prompt, token budget, post-processing, metric) from `eval/tasks/*.toml`.
//! * [`journal`]: a run's `predictions.jsonl` (answers and failed questions).
//! * [`runner`]: the model-agnostic eval loop (shards, resumable journal, reports) and [`runner::merge`].
//! * [`protocol`]: the protocol card of a run, its hash and the difference of two cards.
//! * [`report`]: score tables and JSON.

mod contractions;
pub mod journal;
pub mod data;
pub mod metrics;
pub mod normalize;
pub mod predictions;
pub mod protocol;
pub mod py;
pub mod report;
pub mod runner;
pub mod task;

pub use data::{Dataset, DatasetPaths, QuestionId, Record, TaskKind};
pub use metrics::{Score, Unit};
pub use runner::{merge, run_eval, Answerer, ModelInfo, Outcome, RunOptions, RunSummary};
pub use task::TaskSpec;

use std::path::Path;

/// Score a submission file against a dataset (the `foveate score` command).
pub fn score_file(
    ds: &Dataset,
    predictions: &Path,
    allow_missing: bool,
) -> foveate_core::Result<Score> {
    let preds = predictions::load(predictions)?;
    let aligned = predictions::align(ds, &preds, predictions, allow_missing)?;
    let refs: Vec<&str> = aligned.iter().map(String::as_str).collect();
    metrics::score_all(ds, &refs)
}
