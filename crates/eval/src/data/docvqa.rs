//! SP-DocVQA: `val_v1.0.json` / `val_v1.0_withQT.json`:
//! `{dataset_name, dataset_version, dataset_split, data: [{questionId, question, question_types?,
//! image: "documents/<name>.png", answers, ...}]}`. The image is resolved by trying the given
//! path, then the file name under `images/` and `documents/`.

use super::json::Ctx;
use super::{first_existing, parent_dir, read_json, QuestionId, Record};
use foveate_core::Result;
use serde_json::Value;
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
    let image_root = image_root.map_or_else(|| parent_dir(path), Path::to_path_buf);
    ctx.data_records(root, "questionId", |r, what| {
        let id = r
            .get("questionId")
            .and_then(QuestionId::from_json)
            .ok_or_else(|| {
                ctx.err(
                    format!("{what}.questionId"),
                    "missing or not an integer/string",
                )
            })?;
        let image = ctx.string(r, "image", what)?;
        let file_name = Path::new(&image)
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        Ok(Record {
            id,
            question: ctx.string(r, "question", what)?,
            image: first_existing(vec![
                image_root.join(&image),
                image_root.join("images").join(&file_name),
                image_root.join("documents").join(&file_name),
            ]),
            answers: ctx.opt_strings(r, "answers", what)?,
            answer_keys: Vec::new(),
            answer_type: None,
            question_types: ctx.opt_strings(r, "question_types", what)?,
            canonical_answer: None,
        })
    })
}
