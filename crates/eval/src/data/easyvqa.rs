//! easy-VQA (PyPI `easy-vqa`): `<data>/{train,test}/questions.json` as `[[question, answer,
//! image_id], ...]` and `<split>/images/<image_id>.png`. The file has no question ids, so the id of
//! a question is its index in the file.

use super::json::{kind, Ctx};
use super::{read_json, Dataset, QuestionId, Record, TaskKind};
use foveate_core::{Error, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The installed package's data dir, asked of `python3` (`easy_vqa/data`).
pub fn default_data_dir() -> Result<PathBuf> {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import easy_vqa, os; print(os.path.dirname(easy_vqa.__file__))",
        ])
        .output()
        .map_err(|e| {
            Error::Msg(format!(
                "easy-vqa: cannot run python3 to find the package: {e}; pass the data dir"
            ))
        })?;
    if !out.status.success() {
        return Err(Error::Msg(format!(
            "easy-vqa: the python package is not importable ({}); `pip install easy-vqa` or pass the data dir",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("data"))
}

/// Load a split. `path` may be the questions file, a split dir (`.../test`) or the data dir
/// (then the `test` split is used).
pub fn load(path: &Path) -> Result<Dataset> {
    let file = if path.is_file() {
        path.to_path_buf()
    } else if path.join("questions.json").is_file() {
        path.join("questions.json")
    } else if path.join("test").join("questions.json").is_file() {
        path.join("test").join("questions.json")
    } else {
        return Err(Error::format(
            path.display().to_string(),
            "questions.json",
            "no easy-VQA questions file here (expected questions.json, or test/questions.json)",
        ));
    };
    let split_dir = super::parent_dir(&file);
    let ctx = Ctx { file: &file };
    let root = read_json(&file)?;
    let list = root.as_array().ok_or_else(|| {
        ctx.err(
            "(root)",
            format!(
                "expected an array of [question, answer, image_id], found {}",
                kind(&root)
            ),
        )
    })?;
    let mut records = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let field = format!("[{i}]");
        let (q, a, img) = match item.as_array().map(Vec::as_slice) {
            Some([Value::String(q), Value::String(a), Value::Number(n)])
                if n.as_u64().is_some() =>
            {
                (q.clone(), a.clone(), n.as_u64().unwrap_or_default())
            }
            _ => {
                return Err(ctx.err(
                    field,
                    "expected [question (string), answer (string), image_id (integer)]",
                ))
            }
        };
        let answer_type = if a == "yes" || a == "no" {
            "yes/no"
        } else {
            "other"
        };
        records.push(Record {
            id: QuestionId::Int(i as i64),
            question: q,
            image: split_dir.join("images").join(format!("{img}.png")),
            answers: vec![a],
            answer_keys: Vec::new(),
            answer_type: Some(answer_type.into()),
            question_types: Vec::new(),
            canonical_answer: None,
        });
    }
    Ok(Dataset {
        task: TaskKind::EasyVqa,
        records,
        source: file,
    })
}
