//! TextVQA 0.5.1: `{dataset_name?, dataset_type?, dataset_version?, data: [...]}`; images
//! `train_images/<image_id>.jpg` (val images live there), or `images/<image_id>.jpg` as in the
//! shared sample. The header keys are optional (the shared sample has none).

use super::json::{rec_name, Ctx};
use super::{first_existing, parent_dir, read_json, QuestionId, Record};
use foveate_core::Result;
use serde_json::Value;
use std::collections::HashSet;
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
    let data = ctx.array(root, "data")?;
    let image_root = image_root
        .map(Path::to_path_buf)
        .unwrap_or_else(|| parent_dir(path));
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(data.len());
    for (i, r) in data.iter().enumerate() {
        let what = rec_name("data", i, "question_id", r);
        let qid = ctx.int(r, "question_id", &what)?;
        if !seen.insert(qid) {
            return Err(ctx.err(what, "duplicate question_id"));
        }
        let image_id = ctx.string(r, "image_id", &what)?;
        let answers = if r.get("answers").is_some_and(|a| !a.is_null()) {
            ctx.strings(r, "answers", &what)?
        } else {
            Vec::new()
        };
        let name = format!("{image_id}.jpg");
        out.push(Record {
            id: QuestionId::Int(qid),
            question: ctx.string(r, "question", &what)?,
            image: first_existing(vec![
                image_root.join("train_images").join(&name),
                image_root.join("images").join(&name),
                image_root.join("test_images").join(&name),
                image_root.join(&name),
            ]),
            answers,
            answer_type: None,
            question_types: Vec::new(),
            canonical_answer: None,
        });
    }
    Ok(out)
}
