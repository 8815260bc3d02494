//! The journal of a run (`predictions.jsonl`): one JSON line per question, written as soon as the
//! question and every earlier one are settled, fsynced at most every [`SYNC_EVERY`].
//!
//! A line is an answer (`question_id`, `prompt`, `raw`, `answer`, `score`) or a failure
//! (`question_id`, `prompt`, `failed: true`, `error`): a question whose generation failed for good
//! (an endpoint that kept erroring). A resumed run asks failed questions again and appends their
//! answers, so an id may appear as failed and later as answered; an answer twice is an error.

use crate::data::QuestionId;
use foveate_core::{Error, Result};
use serde_json::Value;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// One journal line: the answer and its score, or `None` with the error for a failed question.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub id: QuestionId,
    pub answer: Option<String>,
    /// The question's score as journaled (a fraction in 0..1).
    pub score: Option<f64>,
    pub error: Option<String>,
}

/// `predictions.jsonl` in a run folder.
pub fn journal_path(dir: &Path) -> PathBuf {
    dir.join("predictions.jsonl")
}

/// Read a journal, dropping (and, with `truncate_torn`, truncating away) a torn last line.
pub fn read_journal(path: &Path, truncate_torn: bool) -> Result<Vec<Entry>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(path, e)),
    };
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    if complete < bytes.len() && truncate_torn {
        let f = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        f.set_len(complete as u64).map_err(|e| Error::io(path, e))?;
        f.sync_all().map_err(|e| Error::io(path, e))?;
    }
    let text = String::from_utf8_lossy(&bytes[..complete]);
    let file = path.display().to_string();
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("line {}", n + 1);
        let v: Value = serde_json::from_str(line)
            .map_err(|e| Error::format(&file, at(), format!("not valid JSON: {e}")))?;
        let id = v.get("question_id").and_then(QuestionId::from_json);
        let failed = v.get("failed").and_then(Value::as_bool).unwrap_or(false);
        let answer = v.get("answer").and_then(Value::as_str);
        match (id, answer, failed) {
            (Some(id), Some(a), false) => {
                let score = v.get("score").and_then(Value::as_f64);
                out.push(Entry {
                    id,
                    answer: Some(a.to_string()),
                    score,
                    error: None,
                })
            }
            (Some(id), None, true) => {
                let error = v
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("(no error recorded)")
                    .to_string();
                out.push(Entry {
                    id,
                    answer: None,
                    score: None,
                    error: Some(error),
                })
            }
            _ => {
                return Err(Error::format(
                    &file,
                    at(),
                    "needs question_id and answer (or failed: true)",
                ))
            }
        }
    }
    Ok(out)
}

/// The longest a written journal line waits for its fsync.
pub const SYNC_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The open journal: lines written at once, fsynced at most every [`SYNC_EVERY`] and at the end.
pub(crate) struct Journal<'a> {
    file: File,
    path: &'a Path,
    synced: Instant,
    dirty: bool,
}

impl<'a> Journal<'a> {
    /// Opens `path` for appending (creating it).
    pub fn open(path: &'a Path) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(Journal {
            file,
            path,
            synced: Instant::now(),
            dirty: false,
        })
    }

    pub fn append(&mut self, v: &Value) -> Result<()> {
        let mut line = serde_json::to_string(v).map_err(|e| Error::Msg(e.to_string()))?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .map_err(|e| Error::io(self.path, e))?;
        self.dirty = true;
        if self.synced.elapsed() >= SYNC_EVERY {
            self.sync()?;
        }
        Ok(())
    }

    pub fn sync(&mut self) -> Result<()> {
        if self.dirty {
            self.file.sync_data().map_err(|e| Error::io(self.path, e))?;
            self.dirty = false;
        }
        self.synced = Instant::now();
        Ok(())
    }
}
