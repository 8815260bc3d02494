//! The eval runner, model-agnostic: anything that turns (image, prompt) into text is an
//! [`Answerer`].
//!
//! Output folder of one run (one shard):
//! * `run.json`: what the run is (task, shard, limit, dataset, model); a resume must match it.
//! * `predictions.jsonl`: the journal and per-sample log, one JSON line per answered question
//!   (question id, the prompt as the model saw it, raw generation, post-processed answer, score),
//!   in record order, written as soon as every earlier question is answered too (so a killed
//!   process loses none of them: the page cache keeps what was written) and fsynced at most once
//!   every [`SYNC_EVERY`] (a machine crash loses at most that much; one fsync per answer cost
//!   more wall time than the tiny model's forward passes). A batching answerer finishes questions out of order; a killed run loses at most the questions
//!   in flight and the finished ones waiting behind them; a torn last line (killed mid-write) is
//!   dropped on resume. The journal of a resumed run is byte-identical to an uninterrupted one.
//! * `submission.json`: the official submission format, in record order.
//!   A question whose generation failed for good (an endpoint that kept failing) is journaled as
//!   failed, reported in `results.json` and asked again by a resumed run ([`crate::journal`]).
//! * `results.json`: score, breakdown, the protocol card and its hash ([`crate::protocol`]: task
//!   spec, scorer and its reference, decoding, the model's side), the engine (in-process or
//!   endpoint, backend, device, attention, batch size), failed questions, questions/s, commit, date.

use crate::data::{Dataset, QuestionId, Record, TaskKind};
use crate::journal::{journal_path, read_journal, Journal};
use crate::metrics::{self, Score};
use crate::predictions::submission_json;
use crate::report;
use crate::task::TaskSpec;
use foveate_core::{stamp, Error, Result};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What the report says about the model that answered.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelInfo {
    pub model: String,
    pub backend: String,
    /// The device in words (GPU or adapter name, CPU threads).
    pub device: String,
    pub dtype: String,
    pub attention: String,
    /// Questions answered together (1: one at a time).
    pub batch_size: usize,
    /// The model's side of the protocol card (`foveate_models::protocol::model_card`); `Null`
    /// when unknown (an endpoint that does not report it).
    pub card: Value,
    /// The decoding the answerer asks for ([`crate::protocol::greedy_decoding`] for every eval).
    pub decoding: Value,
    /// How the answers are computed: `{"mode": "in-process" | "endpoint", ...}`.
    pub engine: Value,
}

/// What an [`Answerer`] gives for one question: the raw generation, or why it failed for good
/// (the question is journaled as failed and asked again by `--resume`).
pub type Outcome = std::result::Result<String, String>;

/// One question for an [`Answerer`].
#[derive(Clone, Debug)]
pub struct Query {
    pub image: PathBuf,
    pub prompt: String,
    pub max_new_tokens: usize,
}

/// A model that answers questions about images.
pub trait Answerer {
    /// Generate at most `max_new_tokens` tokens answering `prompt` about the image at `image`.
    fn answer(&mut self, image: &Path, prompt: &str, max_new_tokens: usize) -> Result<String>;
    /// Answers every query, calling `done(i, outcome)` as soon as query `i` is settled, in any
    /// order. An `Err` returned aborts the run (what is journaled stays for `--resume`); an
    /// `Err` outcome fails that question alone. The default answers one at a time, in order; a
    /// batching or remote answerer overrides it.
    fn answer_all(&mut self, queries: &[Query], done: &mut dyn FnMut(usize, Outcome) -> Result<()>) -> Result<()> {
        for (i, q) in queries.iter().enumerate() {
            let raw = self.answer(&q.image, &q.prompt, q.max_new_tokens)?;
            done(i, Ok(raw))?;
        }
        Ok(())
    }
    /// The prompt as the model sees it (e.g. inside its chat template), for the per-sample log.
    fn rendered_prompt(&self, prompt: &str) -> String {
        prompt.to_string()
    }
    /// Model, backend, device, dtype, attention variant and batch size, for the report.
    fn describe(&self) -> ModelInfo;
}

/// How to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Only the first `limit` records of the dataset (before sharding).
    pub limit: Option<usize>,
    /// `(index, count)`: this run takes the records whose position `p` has `p % count == index`.
    pub shard: (usize, usize),
    pub out_dir: PathBuf,
    /// Continue from an existing journal in `out_dir` instead of refusing to overwrite it.
    pub resume: bool,
    /// Draw a progress bar on stderr.
    pub progress: bool,
}

impl RunOptions {
    pub fn new(out_dir: impl Into<PathBuf>) -> Self {
        RunOptions {
            limit: None,
            shard: (0, 1),
            out_dir: out_dir.into(),
            resume: false,
            progress: false,
        }
    }
}

/// What a finished run reports.
#[derive(Clone, Debug)]
pub struct RunSummary {
    pub score: Score,
    /// Questions answered by this invocation (excludes those found in the journal).
    pub answered: usize,
    /// Questions taken from the journal of an earlier, interrupted run.
    pub resumed: usize,
    /// Questions that failed for good (journaled as failed; scored as wrong; `--resume` retries).
    pub failed: usize,
    pub questions_per_s: f64,
    pub results_path: PathBuf,
    pub submission_path: PathBuf,
    /// The human summary table.
    pub table: String,
}

/// The records of a shard, in dataset order.
pub fn shard_records(
    ds: &Dataset,
    limit: Option<usize>,
    shard: (usize, usize),
) -> Result<Vec<&Record>> {
    let (i, n) = shard;
    if n == 0 || i >= n {
        return Err(Error::Msg(format!(
            "shard {i}/{n}: the index must be below the count (count >= 1)"
        )));
    }
    let take = limit.unwrap_or(ds.records.len()).min(ds.records.len());
    Ok(ds.records[..take]
        .iter()
        .enumerate()
        .filter(|(p, _)| p % n == i)
        .map(|(_, r)| r)
        .collect())
}

/// Writes `v` to `path` through a temporary file renamed into place, so a crash or a full disk
/// leaves either the old file or the new one, never half of one.
fn write_json(path: &Path, v: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(v).map_err(|e| Error::Msg(e.to_string()))? + "\n";
    foveate_core::write_atomic(path, text.as_bytes())
}

/// Refuses a run whose records point at image files that do not exist, before anything is
/// written: the error names the dataset file, the record and the image path.
pub fn check_images(ds: &Dataset, limit: Option<usize>, shard: (usize, usize)) -> Result<()> {
    let records = shard_records(ds, limit, shard)?;
    let missing: Vec<&&Record> = records.iter().filter(|r| !r.image.is_file()).collect();
    let Some(first) = missing.first() else {
        return Ok(());
    };
    let more = if missing.len() > 1 {
        format!(
            " ({} of the {} records of this run have no image)",
            missing.len(),
            records.len()
        )
    } else {
        String::new()
    };
    Err(Error::format(
        ds.source.display().to_string(),
        format!("{} {}.image", ds.task.id_key(), first.id),
        format!("image file {} not found{more}", first.image.display()),
    ))
}

fn run_header(spec: &TaskSpec, ds: &Dataset, opts: &RunOptions, info: &ModelInfo) -> Value {
    let card = crate::protocol::card(spec, &info.decoding, &info.card);
    json!({
        "protocol_hash": crate::protocol::hash(&card),
        "protocol": card,
        "engine": info.engine,
        "task": ds.task.name(),
        "dataset": ds.source.display().to_string(),
        "limit": opts.limit,
        "shard": [opts.shard.0, opts.shard.1],
        "model": info.model,
        "backend": info.backend,
        "device": info.device,
        "dtype": info.dtype,
        "attention": info.attention,
        "batch_size": info.batch_size,
    })
}

/// Run `spec` over the shard of `ds` chosen by `opts`, journaling every answer; see the module doc.
pub fn run_eval(
    spec: &TaskSpec,
    ds: &Dataset,
    answerer: &mut dyn Answerer,
    opts: &RunOptions,
) -> Result<RunSummary> {
    if spec.task != ds.task {
        return Err(Error::Msg(format!(
            "task spec is for {}, dataset is {}",
            spec.task, ds.task
        )));
    }
    metrics::check_scorable(ds)?;
    let records = shard_records(ds, opts.limit, opts.shard)?;
    let dir = &opts.out_dir;
    let fresh = !dir.exists();
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let r = run_in(spec, ds, answerer, opts, &records);
    if r.is_err() && fresh {
        remove_if_unused(dir);
    }
    r
}

/// After a failed run in a folder it created: removes the folder again if no question was
/// answered (nothing worth resuming), so a failure leaves no half-made output behind.
fn remove_if_unused(dir: &Path) {
    let jpath = journal_path(dir);
    if std::fs::metadata(&jpath)
        .map(|m| m.len() > 0)
        .unwrap_or(false)
    {
        return; // answers were journaled: keep them for --resume
    }
    for f in [
        "run.json",
        "predictions.jsonl",
        "submission.json",
        "results.json",
    ] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    let _ = std::fs::remove_dir(dir); // only succeeds when empty
}

fn run_in(
    spec: &TaskSpec,
    ds: &Dataset,
    answerer: &mut dyn Answerer,
    opts: &RunOptions,
    records: &[&Record],
) -> Result<RunSummary> {
    let dir = &opts.out_dir;
    let info = answerer.describe();
    let header = run_header(spec, ds, opts, &info);
    let header_path = dir.join("run.json");
    let jpath = journal_path(dir);
    let journal_has_data = std::fs::metadata(&jpath)
        .map(|m| m.len() > 0)
        .unwrap_or(false);
    if journal_has_data && !opts.resume {
        return Err(Error::Msg(format!(
            "{} already holds predictions; resume it (--resume) or choose another output folder",
            jpath.display()
        )));
    }
    if opts.resume && header_path.is_file() {
        let old = crate::data::read_json(&header_path)?;
        for key in ["task", "dataset", "limit", "shard", "protocol"] {
            if old.get(key) != header.get(key) {
                return Err(Error::format(
                    header_path.display().to_string(),
                    key,
                    format!(
                        "the run being resumed has {}, this one {}",
                        old.get(key).unwrap_or(&Value::Null),
                        header[key]
                    ),
                ));
            }
        }
    }
    write_json(&header_path, &header)?;

    // What earlier runs already answered.
    let wanted: HashMap<String, usize> = records
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id.key(), i))
        .collect();
    let mut answers: Vec<Option<String>> = vec![None; records.len()];
    let mut resumed = 0;
    for e in read_journal(&jpath, opts.resume)? {
        let Some(&i) = wanted.get(&e.id.key()) else {
            return Err(Error::format(
                jpath.display().to_string(),
                "question_id",
                format!("id {} is not in this shard", e.id),
            ));
        };
        if answers[i].is_some() {
            return Err(Error::format(
                jpath.display().to_string(),
                "question_id",
                format!("id {} is journaled twice", e.id),
            ));
        }
        // A failed question stays unanswered: this run asks it again.
        if let Some(a) = e.answer {
            answers[i] = Some(a);
            resumed += 1;
        }
    }

    let answerer_prompts: Vec<String> = records
        .iter()
        .zip(&answers)
        .filter(|(_, a)| a.is_none())
        .map(|(r, _)| answerer.rendered_prompt(&spec.prompt_for(&r.question)))
        .collect();
    let mut journal = Journal::open(&jpath)?;
    let bar = progress_bar(records.len() as u64, opts.progress);
    bar.set_position(resumed as u64);
    let mut running = Running::default();
    for (rec, a) in records.iter().zip(&answers) {
        if let Some(a) = a {
            running.add(metrics::question_score(ds.task, rec, a));
        }
    }
    bar.set_message(running.message(ds.task));

    let start = Instant::now();
    let todo: Vec<usize> = (0..records.len()).filter(|&i| answers[i].is_none()).collect();
    let queries: Vec<Query> = todo
        .iter()
        .map(|&i| Query { image: records[i].image.clone(), prompt: spec.prompt_for(&records[i].question), max_new_tokens: spec.max_new_tokens })
        .collect();
    // Finished answers wait here until every earlier question is answered, so the journal stays
    // in record order.
    let mut waiting: Vec<Option<Value>> = vec![None; todo.len()];
    let mut flushed = 0usize;
    let mut answered = 0usize;
    let mut failed: Vec<(QuestionId, String)> = Vec::new();
    let mut done = |qi: usize, outcome: Outcome| -> Result<()> {
        let rec = records[todo[qi]];
        let prompt = answerer_prompts.get(qi).cloned().unwrap_or_default();
        let line = match outcome {
            Ok(raw) => {
                let answer = spec.clean_answer(&raw);
                let s = metrics::question_score(ds.task, rec, &answer);
                answered += 1;
                running.add(s);
                json!({"question_id": rec.id.to_json(), "prompt": prompt, "raw": raw, "answer": answer, "score": s})
            }
            Err(error) => {
                failed.push((rec.id.clone(), error.clone()));
                running.failed += 1;
                json!({"question_id": rec.id.to_json(), "prompt": prompt, "failed": true, "error": error})
            }
        };
        waiting[qi] = Some(line);
        while flushed < waiting.len() {
            let Some(line) = waiting[flushed].take() else { break };
            journal.append(&line)?;
            answers[todo[flushed]] = line["answer"].as_str().map(String::from);
            flushed += 1;
        }
        bar.inc(1);
        bar.set_message(running.message(ds.task));
        Ok(())
    };
    let answered_all = answerer.answer_all(&queries, &mut done);
    journal.sync()?;
    answered_all?;
    bar.finish_and_clear();
    let elapsed = start.elapsed().as_secs_f64();
    let qps = if elapsed > 0.0 {
        answered as f64 / elapsed
    } else {
        0.0
    };

    let final_answers: Vec<String> = answers.into_iter().map(Option::unwrap_or_default).collect();
    let recs: Vec<Record> = records.iter().map(|r| (*r).clone()).collect();
    failed.sort_by_key(|(id, _)| wanted.get(&id.key()).copied());
    finish(
        ds.task,
        &recs,
        &final_answers,
        dir,
        &header,
        qps,
        (answered, resumed),
        &failed,
    )
}

pub use crate::journal::SYNC_EVERY;

#[allow(clippy::too_many_arguments)]
fn finish(
    task: TaskKind,
    recs: &[Record],
    answers: &[String],
    dir: &Path,
    header: &Value,
    qps: f64,
    (answered, resumed): (usize, usize),
    failed: &[(QuestionId, String)],
) -> Result<RunSummary> {
    let scores: Vec<f64> = recs
        .iter()
        .zip(answers)
        .map(|(r, a)| metrics::question_score(task, r, a))
        .collect();
    let score = metrics::aggregate(task, recs, &scores);
    let items: Vec<(QuestionId, String)> = recs
        .iter()
        .map(|r| r.id.clone())
        .zip(answers.iter().cloned())
        .collect();
    let submission_path = dir.join("submission.json");
    write_json(&submission_path, &submission_json(task, &items))?;
    let sj = report::score_json(&score);
    let mut results = json!({
        "task": task.name(),
        "metric": score.metric,
        "unit": sj["unit"],
        "score": score.overall,
        "breakdown": sj["breakdown"],
        "questions": recs.len(),
        "answered_this_run": answered,
        "resumed_from_journal": resumed,
        "failed": failed.len(),
        "failed_questions": failed.iter().map(|(id, e)| json!({"question_id": id.to_json(), "error": e})).collect::<Vec<_>>(),
        "questions_per_s": qps,
        "commit": stamp::git_commit().unwrap_or_else(|| "unknown".into()),
        "date": stamp::utc_now(),
    });
    for key in [
        "protocol_hash",
        "protocol",
        "engine",
        "model",
        "backend",
        "device",
        "dtype",
        "attention",
        "batch_size",
        "dataset",
        "limit",
        "shard",
    ] {
        results[key] = header.get(key).cloned().unwrap_or(Value::Null);
    }
    let results_path = dir.join("results.json");
    write_json(&results_path, &results)?;
    let mut table = report::score_table(&score);
    table.push_str(&format!("{:<9}  {:.3}\n", "q/s", qps));
    if !failed.is_empty() {
        table.push_str(&format!(
            "{:<9}  {} (journaled as failed and scored as wrong; --resume asks them again; first: {}: {})\n",
            "failed",
            failed.len(),
            failed[0].0,
            failed[0].1
        ));
    }
    Ok(RunSummary {
        score,
        answered,
        resumed,
        failed: failed.len(),
        questions_per_s: qps,
        results_path,
        submission_path,
        table,
    })
}

/// Combine the output folders of the shards of one run into one scored result in `out_dir`.
/// Every shard of the split must be present exactly once.
pub fn merge(ds: &Dataset, dirs: &[PathBuf], out_dir: &Path) -> Result<RunSummary> {
    if dirs.is_empty() {
        return Err(Error::Msg("merge: no shard folders given".into()));
    }
    metrics::check_scorable(ds)?;
    let mut headers = Vec::new();
    for d in dirs {
        let h = crate::data::read_json(&d.join("run.json"))?;
        headers.push((d, h));
    }
    let first = &headers[0].1;
    let limit = first
        .get("limit")
        .and_then(Value::as_u64)
        .map(|l| l as usize);
    let count = first["shard"][1].as_u64().unwrap_or(0) as usize;
    let mut seen_shards = HashSet::new();
    let mut qps = 0.0;
    for (d, h) in &headers {
        let file = d.join("run.json").display().to_string();
        if h.get("task").and_then(Value::as_str) != Some(ds.task.name()) {
            return Err(Error::format(
                &file,
                "task",
                format!("expected {}", ds.task),
            ));
        }
        for key in ["limit", "dataset"] {
            if h.get(key) != first.get(key) {
                return Err(Error::format(&file, key, "differs from the first shard"));
            }
        }
        if h["shard"][1].as_u64() != Some(count as u64) {
            return Err(Error::format(
                &file,
                "shard",
                "shard count differs from the first shard",
            ));
        }
        if !seen_shards.insert(h["shard"][0].as_u64().unwrap_or(u64::MAX)) {
            return Err(Error::format(
                &file,
                "shard",
                "this shard index appears twice",
            ));
        }
        if let Ok(r) = crate::data::read_json(&d.join("results.json")) {
            qps += r
                .get("questions_per_s")
                .and_then(Value::as_f64)
                .unwrap_or(0.0);
        }
    }
    let all = shard_records(ds, limit, (0, 1))?;
    let index: HashMap<String, usize> = all
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id.key(), i))
        .collect();
    let mut answers: Vec<Option<String>> = vec![None; all.len()];
    let mut failed_in_shards = 0usize;
    for d in dirs {
        let jp = journal_path(d);
        for e in read_journal(&jp, false)? {
            let Some(&i) = index.get(&e.id.key()) else {
                return Err(Error::format(
                    jp.display().to_string(),
                    "question_id",
                    format!("id {} is not in the dataset", e.id),
                ));
            };
            if answers[i].is_some() {
                return Err(Error::format(
                    jp.display().to_string(),
                    "question_id",
                    format!("id {} is answered by two shards", e.id),
                ));
            }
            match e.answer {
                Some(a) => answers[i] = Some(a),
                None => failed_in_shards += 1,
            }
        }
    }
    let missing: Vec<String> = all
        .iter()
        .zip(&answers)
        .filter(|(_, a)| a.is_none())
        .map(|(r, _)| r.id.key())
        .take(5)
        .collect();
    if !missing.is_empty() {
        let n = answers.iter().filter(|a| a.is_none()).count();
        return Err(Error::Msg(format!(
            "merge: {n} questions have no answer in the given shards (shards {} of {count} given; {failed_in_shards} \
             journaled as failed: finish those shards with --resume; first ids: {})",
            seen_shards.len(),
            missing.join(", ")
        )));
    }
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let mut header = first.clone();
    header["shard"] = json!([0, 1]);
    write_json(&out_dir.join("run.json"), &header)?;
    let recs: Vec<Record> = all.iter().map(|r| (*r).clone()).collect();
    let final_answers: Vec<String> = answers.into_iter().map(Option::unwrap_or_default).collect();
    finish(
        ds.task,
        &recs,
        &final_answers,
        out_dir,
        &header,
        qps,
        (0, recs.len()),
        &[],
    )
}

#[derive(Default)]
struct Running {
    sum: f64,
    n: usize,
    failed: usize,
}

impl Running {
    fn add(&mut self, s: f64) {
        self.sum += s;
        self.n += 1;
    }
    fn message(&self, task: TaskKind) -> String {
        if self.n == 0 {
            return String::new();
        }
        let mean = self.sum / self.n as f64;
        let failed = if self.failed > 0 { format!(", {} failed", self.failed) } else { String::new() };
        match task {
            TaskKind::DocVqa => format!("ANLS {mean:.4}{failed}"),
            _ => format!("acc {:.2}%{failed}", 100.0 * mean),
        }
    }
}

fn progress_bar(len: u64, show: bool) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    let style = indicatif::ProgressStyle::with_template(
        "{bar:30.cyan/blue} {pos}/{len} [{elapsed_precise}<{eta_precise}] {per_sec} {msg}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}
