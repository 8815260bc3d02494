//! Dataset loaders for the official file formats, and the common record type they produce.

pub mod docvqa;
pub mod easyvqa;
pub(crate) mod json;
pub mod textvqa;
pub mod vqav2;

use std::fmt;
use std::path::{Path, PathBuf};

pub(crate) use json::kind as json_kind;
pub use json::read_json;

/// A question id as the official files spell it: an integer (VQAv2, TextVQA, DocVQA) or a string.
/// Kept in its original type so predictions are written back the way the official scorer reads them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QuestionId {
    Int(i64),
    Str(String),
}

impl QuestionId {
    /// The id as JSON, in its official type.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            QuestionId::Int(i) => serde_json::Value::from(*i),
            QuestionId::Str(s) => serde_json::Value::from(s.clone()),
        }
    }
    /// Read an id from JSON (integer or string); `None` for anything else.
    pub fn from_json(v: &serde_json::Value) -> Option<QuestionId> {
        match v {
            serde_json::Value::Number(n) => n.as_i64().map(QuestionId::Int),
            serde_json::Value::String(s) => Some(QuestionId::Str(s.clone())),
            _ => None,
        }
    }
    /// The key predictions are matched on: the decimal text of the id, so `24580` and `"24580"`
    /// match (the DocVQA script calls `int()` on both sides).
    pub fn key(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for QuestionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuestionId::Int(i) => write!(f, "{i}"),
            QuestionId::Str(s) => f.write_str(s),
        }
    }
}

/// One question of any task.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub id: QuestionId,
    pub question: String,
    /// Resolved image path (the first candidate that exists, else the canonical one).
    pub image: PathBuf,
    /// Human answers as written in the file (VQAv2/TextVQA: 10; DocVQA: 1..n; easy-VQA: 1).
    pub answers: Vec<String>,
    /// VQAv2: the identity of each answer dict apart from its text (its other fields as JSON), which
    /// vqaEval.py's leave-one-out compares (`item != gtAnsDatum`). Empty when the dicts are
    /// distinct anyway (unique `answer_id`s, as in every official file) and for other tasks.
    pub answer_keys: Vec<String>,
    /// VQAv2 `answer_type`; easy-VQA "yes/no" or "other"; absent elsewhere.
    pub answer_type: Option<String>,
    /// VQAv2 `question_type` (one); DocVQA `question_types` (any number).
    pub question_types: Vec<String>,
    /// The file's single canonical answer where it has one (VQAv2 `multiple_choice_answer`).
    pub canonical_answer: Option<String>,
}

/// Which benchmark a set of records belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TaskKind {
    VqaV2,
    TextVqa,
    DocVqa,
    EasyVqa,
}

impl TaskKind {
    pub const ALL: [TaskKind; 4] = [
        TaskKind::VqaV2,
        TaskKind::TextVqa,
        TaskKind::DocVqa,
        TaskKind::EasyVqa,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TaskKind::VqaV2 => "vqav2",
            TaskKind::TextVqa => "textvqa",
            TaskKind::DocVqa => "docvqa",
            TaskKind::EasyVqa => "easy-vqa",
        }
    }

    pub fn parse(s: &str) -> foveate_core::Result<TaskKind> {
        TaskKind::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| {
                foveate_core::Error::Msg(format!(
                    "unknown task `{s}` (supported: vqav2, textvqa, docvqa, easy-vqa)"
                ))
            })
    }

    /// The key the official submission format uses for the question id.
    pub fn id_key(self) -> &'static str {
        match self {
            TaskKind::DocVqa => "questionId",
            _ => "question_id",
        }
    }
}

impl fmt::Display for TaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The records of one benchmark split, in file order, and the files they came from.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub task: TaskKind,
    pub records: Vec<Record>,
    /// The annotation / ground-truth file (for messages and reports).
    pub source: PathBuf,
}

/// Paths a user gives to load a dataset.
#[derive(Clone, Debug, Default)]
pub struct DatasetPaths {
    /// VQAv2 annotations, TextVQA json, DocVQA json, easy-VQA questions.json or data dir.
    pub annotations: Option<PathBuf>,
    /// VQAv2 questions file (question text); optional for scoring.
    pub questions: Option<PathBuf>,
    /// Where images live; defaults to the annotation file's folder.
    pub image_root: Option<PathBuf>,
}

/// Load a dataset of `task` from `paths`.
pub fn load(task: TaskKind, paths: &DatasetPaths) -> foveate_core::Result<Dataset> {
    let need = |what: &str| {
        foveate_core::Error::Msg(format!("task {task}: {what} is required (--annotations)"))
    };
    let ann = paths.annotations.as_deref();
    let root = paths.image_root.as_deref();
    let records = match task {
        TaskKind::VqaV2 => {
            let ann = ann.ok_or_else(|| need("the annotations file"))?;
            vqav2::load(ann, paths.questions.as_deref(), root)?
        }
        TaskKind::TextVqa => textvqa::load(ann.ok_or_else(|| need("the TextVQA json"))?, root)?,
        TaskKind::DocVqa => docvqa::load(ann.ok_or_else(|| need("the DocVQA json"))?, root)?,
        TaskKind::EasyVqa => {
            let p = match ann {
                Some(p) => p.to_path_buf(),
                None => easyvqa::default_data_dir()?.join("test"),
            };
            return easyvqa::load(&p);
        }
    };
    Ok(Dataset {
        task,
        records,
        source: ann.map(Path::to_path_buf).unwrap_or_default(),
    })
}

/// The first candidate that exists, else the first one (so a missing image is reported later with
/// its canonical path).
pub(crate) fn first_existing(candidates: Vec<PathBuf>) -> PathBuf {
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| candidates[0].clone())
}

pub(crate) fn parent_dir(p: &Path) -> PathBuf {
    p.parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}
