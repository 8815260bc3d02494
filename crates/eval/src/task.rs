//! Task specs (`eval/tasks/*.toml`): prompt template, token budget, answer post-processing and the
//! metric. The shipped specs are embedded; a user file (`--task-file`) replaces them.

use crate::data::TaskKind;
use crate::metrics::metric_name;
use crate::py;
use foveate_core::{Error, Result};
use serde::Deserialize;
use std::path::Path;

const BUILTIN: [(TaskKind, &str); 4] = [
    (
        TaskKind::VqaV2,
        include_str!("../../../eval/tasks/vqav2.toml"),
    ),
    (
        TaskKind::TextVqa,
        include_str!("../../../eval/tasks/textvqa.toml"),
    ),
    (
        TaskKind::DocVqa,
        include_str!("../../../eval/tasks/docvqa.toml"),
    ),
    (
        TaskKind::EasyVqa,
        include_str!("../../../eval/tasks/easy-vqa.toml"),
    ),
];

/// What is done to a raw generation before it is recorded as the answer.
#[derive(Clone, Debug, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PostProcess {
    /// Keep only the first non-empty line.
    #[serde(default = "yes")]
    pub first_line: bool,
    /// Strip surrounding whitespace.
    #[serde(default = "yes")]
    pub strip: bool,
    #[serde(default)]
    pub lowercase: bool,
}

fn yes() -> bool {
    true
}

impl Default for PostProcess {
    fn default() -> Self {
        PostProcess {
            first_line: true,
            strip: true,
            lowercase: false,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    task: String,
    metric: String,
    prompt: String,
    max_new_tokens: usize,
    #[serde(default)]
    postprocess: PostProcess,
}

/// A parsed task spec.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskSpec {
    pub task: TaskKind,
    pub metric: String,
    /// Template with `{question}`.
    pub prompt: String,
    pub max_new_tokens: usize,
    pub postprocess: PostProcess,
}

impl TaskSpec {
    /// The shipped spec of `task`.
    pub fn builtin(task: TaskKind) -> TaskSpec {
        let (_, text) = BUILTIN
            .iter()
            .find(|(k, _)| *k == task)
            .copied()
            .unwrap_or(BUILTIN[0]);
        // The embedded files are checked by a unit test, so this cannot fail in a release.
        TaskSpec::parse(text, &format!("eval/tasks/{}.toml", task.name()))
            .unwrap_or_else(|e| panic!("shipped task spec is invalid: {e}"))
    }

    /// Read a user spec file.
    pub fn from_file(path: &Path) -> Result<TaskSpec> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        TaskSpec::parse(&text, &path.display().to_string())
    }

    /// Parse spec text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<TaskSpec> {
        let raw: RawSpec = toml::from_str(text)
            .map_err(|e| Error::format(file, "(toml)", e.to_string().trim().to_string()))?;
        let task =
            TaskKind::parse(&raw.task).map_err(|e| Error::format(file, "task", e.to_string()))?;
        let want = metric_name(task);
        if raw.metric != want {
            return Err(Error::format(
                file,
                "metric",
                format!("task {task} is scored with `{want}`, not `{}`", raw.metric),
            ));
        }
        if !raw.prompt.contains("{question}") {
            return Err(Error::format(file, "prompt", "must contain {question}"));
        }
        if raw.max_new_tokens == 0 {
            return Err(Error::format(file, "max_new_tokens", "must be at least 1"));
        }
        Ok(TaskSpec {
            task,
            metric: raw.metric,
            prompt: raw.prompt,
            max_new_tokens: raw.max_new_tokens,
            postprocess: raw.postprocess,
        })
    }

    /// The prompt for one question.
    pub fn prompt_for(&self, question: &str) -> String {
        self.prompt.replace("{question}", question)
    }

    /// Post-process a raw generation into the recorded answer.
    pub fn clean_answer(&self, raw: &str) -> String {
        let pp = &self.postprocess;
        let mut s: &str = raw;
        if pp.first_line {
            s = s.lines().find(|l| !py::strip(l).is_empty()).unwrap_or("");
        }
        if pp.strip {
            s = py::strip(s);
        }
        if pp.lowercase {
            s.to_lowercase()
        } else {
            s.to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_specs_parse() {
        for t in TaskKind::ALL {
            let s = TaskSpec::builtin(t);
            assert_eq!(s.task, t);
            if t == TaskKind::EasyVqa {
                // The shipped easy-VQA model was trained on the bare question (see easy-vqa.toml).
                assert_eq!(s.prompt_for("Q?"), "Q?");
            } else {
                assert_eq!(
                    s.prompt_for("Q?"),
                    "Q?\nAnswer the question using a single word or phrase."
                );
            }
        }
        assert_eq!(TaskSpec::builtin(TaskKind::VqaV2).max_new_tokens, 16);
        assert_eq!(TaskSpec::builtin(TaskKind::DocVqa).max_new_tokens, 128);
    }

    #[test]
    fn bad_specs_name_the_field() {
        let e = TaskSpec::parse(
            "task='vqav2'\nmetric='anls'\nprompt='{question}'\nmax_new_tokens=4",
            "x.toml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("x.toml: metric"), "{e}");
        let e = TaskSpec::parse(
            "task='vqav2'\nmetric='vqa_accuracy'\nprompt='Q'\nmax_new_tokens=4",
            "x.toml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("prompt"), "{e}");
        let e = TaskSpec::parse(
            "task='vqav2'\nmetric='vqa_accuracy'\nprompt='{question}'\nmax_new_tokens=4\nfoo=1",
            "x.toml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("foo"), "{e}");
        let e = TaskSpec::parse(
            "task='gqa'\nmetric='x'\nprompt='{question}'\nmax_new_tokens=4",
            "x.toml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("x.toml: task"), "{e}");
    }

    #[test]
    fn answer_cleaning() {
        let s = TaskSpec::builtin(TaskKind::VqaV2);
        assert_eq!(s.clean_answer("\n  Two dogs \nbecause..."), "Two dogs");
        assert_eq!(s.clean_answer(""), "");
        let e = TaskSpec::builtin(TaskKind::EasyVqa);
        assert_eq!(e.clean_answer(" Circle\n"), "circle");
    }
}
