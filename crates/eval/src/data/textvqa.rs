//! TextVQA 0.5.1: `{dataset_name?, dataset_type?, dataset_version?, data: [...]}`; images
//! `train_images/<image_id>.jpg` (val images live there), or `images/<image_id>.jpg` as in the
//! shared sample. The header keys are optional (the shared sample has none).

use super::json::Ctx;
use super::{first_existing, parent_dir, read_json, QuestionId, Record};
use foveate_core::Result;
use serde_json::Value;
use std::path::Path;

/// Load every record in file order. Test-split records have no `answers`: they load with an empty
/// answer list (they can be run, not scored).
pub fn load(path: &Path, image_root: Option<&Path>) -> Result<Vec<Record>> {
    from_value(&read_json(path)?, path, image_root)
}

/// [`load`] on parsed JSON; `path` (the file `root` came from) names errors and is the default
/// image root.
pub fn from_value(root: &Value, path: &Path, image_root: Option<&Path>) -> Result<Vec<Record>> {
    let ctx = Ctx { file: path };
    let image_root = image_root.map_or_else(|| parent_dir(path), Path::to_path_buf);
    ctx.data_records(root, "question_id", |r, what| {
        let name = format!("{}.jpg", ctx.string(r, "image_id", what)?);
        Ok(Record {
            id: QuestionId::Int(ctx.int(r, "question_id", what)?),
            question: ctx.string(r, "question", what)?,
            image: first_existing(vec![
                image_root.join("train_images").join(&name),
                image_root.join("images").join(&name),
                image_root.join("test_images").join(&name),
                image_root.join(&name),
            ]),
            answers: ctx.opt_strings(r, "answers", what)?,
            answer_keys: Vec::new(),
            answer_type: None,
            question_types: Vec::new(),
            canonical_answer: None,
        })
    })
}
