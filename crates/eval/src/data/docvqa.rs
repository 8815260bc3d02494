//! SP-DocVQA: `val_v1.0.json` / `val_v1.0_withQT.json`:
//! `{dataset_name, dataset_version, dataset_split, data: [{questionId, question, question_types?,
//! image: "documents/<name>.png", answers, ...}]}`. The image is resolved by trying the given
//! path, then the file name under `images/` and `documents/`.

use super::json::{rec_name, Ctx};
use super::{first_existing, parent_dir, read_json, QuestionId, Record};
use foveate_core::Result;
use serde_json::Value;
use std::collections::HashSet;
use std::path::Path;

/// Load every record in file order. `question_types` is optional (absent in `val_v1.0.json`);
/// test records without `answers` load with an empty answer list.
pub fn load(path: &Path, image_root: Option<&Path>) -> Result<Vec<Record>> {
    from_value(&read_json(path)?, path, image_root)
}

/// [`load`] on parsed JSON; `path` (the file `root` came from) names errors and is the default
/// image root.
pub fn from_value(root: &Value, path: &Path, image_root: Option<&Path>) -> Result<Vec<Record>> {
    let ctx = Ctx { file: path };
    let data = ctx.array(root, "data")?;
    let image_root = image_root
        .map(Path::to_path_buf)
        .unwrap_or_else(|| parent_dir(path));
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(data.len());
    for (i, r) in data.iter().enumerate() {
        let what = rec_name("data", i, "questionId", r);
        let id = match r.get("questionId").and_then(QuestionId::from_json) {
            Some(id) => id,
            None => {
                return Err(ctx.err(
                    format!("{what}.questionId"),
                    "missing or not an integer/string",
                ))
            }
        };
        if !seen.insert(id.key()) {
            return Err(ctx.err(what, "duplicate questionId"));
        }
        let image = ctx.string(r, "image", &what)?;
        let file_name = Path::new(&image)
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        let answers = if r.get("answers").is_some_and(|a| !a.is_null()) {
            ctx.strings(r, "answers", &what)?
        } else {
            Vec::new()
        };
        let question_types = if r.get("question_types").is_some_and(|a| !a.is_null()) {
            ctx.strings(r, "question_types", &what)?
        } else {
            Vec::new()
        };
        out.push(Record {
            id,
            question: ctx.string(r, "question", &what)?,
            image: first_existing(vec![
                image_root.join(&image),
                image_root.join("images").join(&file_name),
                image_root.join("documents").join(&file_name),
            ]),
            answers,
            answer_type: None,
            question_types,
            canonical_answer: None,
        });
    }
    Ok(out)
}
