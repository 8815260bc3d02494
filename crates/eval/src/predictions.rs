//! Prediction files in the official submission format: `[{"question_id": 1, "answer": "..."}]`
//! (VQAv2, TextVQA, easy-VQA) or `[{"questionId": 1, "answer": "..."}]` (DocVQA). Either key is
//! accepted for every task; the id may be an integer or a string.

use crate::data::json_kind;
use crate::data::{read_json, Dataset, QuestionId};
use foveate_core::{Error, Result};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

/// One prediction.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    pub id: QuestionId,
    pub answer: String,
}

/// Read a submission file. Bad entries name the file and the index.
pub fn load(path: &Path) -> Result<Vec<Prediction>> {
    from_value(&read_json(path)?, path)
}

/// [`load`] on parsed JSON; `path` names errors.
pub fn from_value(root: &Value, path: &Path) -> Result<Vec<Prediction>> {
    let file = path.display().to_string();
    let list = root.as_array().ok_or_else(|| {
        Error::format(
            &file,
            "(root)",
            format!(
                "expected an array of {{question_id, answer}}, found {}",
                json_kind(root)
            ),
        )
    })?;
    list.iter()
        .enumerate()
        .map(|(i, e)| {
            let id = e
                .get("question_id")
                .or_else(|| e.get("questionId"))
                .and_then(QuestionId::from_json)
                .ok_or_else(|| {
                    Error::format(
                        &file,
                        format!("[{i}].question_id"),
                        "missing, or not an integer/string (also looked for questionId)",
                    )
                })?;
            let answer = match e.get("answer") {
                Some(Value::String(s)) => s.clone(),
                Some(other) => {
                    return Err(Error::format(
                        &file,
                        format!("[{i}].answer (id {id})"),
                        format!("expected a string, found {}", json_kind(other)),
                    ))
                }
                None => {
                    return Err(Error::format(
                        &file,
                        format!("[{i}].answer (id {id})"),
                        "missing",
                    ))
                }
            };
            Ok(Prediction { id, answer })
        })
        .collect()
}

fn few(ids: &[String]) -> String {
    let shown: Vec<&str> = ids.iter().take(5).map(String::as_str).collect();
    if ids.len() > 5 {
        format!("{} ... ({} in all)", shown.join(", "), ids.len())
    } else {
        shown.join(", ")
    }
}

/// Put predictions in record order. By default every record needs exactly one prediction and
/// every prediction a record (as the official scripts require); with `allow_missing`, records
/// without a prediction are scored as an empty answer. Unknown ids and duplicates are always errors.
pub fn align(
    ds: &Dataset,
    preds: &[Prediction],
    file: &Path,
    allow_missing: bool,
) -> Result<Vec<String>> {
    let file_s = file.display().to_string();
    let mut by_id: HashMap<String, &str> = HashMap::with_capacity(preds.len());
    let mut dups = Vec::new();
    for p in preds {
        if by_id.insert(p.id.key(), &p.answer).is_some() {
            dups.push(p.id.key());
        }
    }
    if !dups.is_empty() {
        return Err(Error::format(
            &file_s,
            "question_id",
            format!("duplicate ids: {}", few(&dups)),
        ));
    }
    let known: std::collections::HashSet<String> = ds.records.iter().map(|r| r.id.key()).collect();
    let extra: Vec<String> = preds
        .iter()
        .map(|p| p.id.key())
        .filter(|k| !known.contains(k))
        .collect();
    if !extra.is_empty() {
        return Err(Error::format(
            &file_s,
            "question_id",
            format!("ids not in {}: {}", ds.source.display(), few(&extra)),
        ));
    }
    let missing: Vec<String> = ds
        .records
        .iter()
        .map(|r| r.id.key())
        .filter(|k| !by_id.contains_key(k))
        .collect();
    if !missing.is_empty() && !allow_missing {
        return Err(Error::format(
            &file_s,
            "question_id",
            format!("no prediction for {} of {} questions of {}: {} (pass --allow-missing to score them as empty answers)", missing.len(), ds.records.len(), ds.source.display(), few(&missing)),
        ));
    }
    Ok(ds
        .records
        .iter()
        .map(|r| by_id.get(&r.id.key()).copied().unwrap_or("").to_string())
        .collect())
}

/// The official submission JSON for `(id, answer)` pairs of `task`.
pub fn submission_json(task: crate::data::TaskKind, items: &[(QuestionId, String)]) -> Value {
    Value::Array(
        items
            .iter()
            .map(|(id, a)| {
                let mut m = serde_json::Map::new();
                m.insert(task.id_key().to_string(), id.to_json());
                m.insert("answer".into(), Value::from(a.clone()));
                Value::Object(m)
            })
            .collect(),
    )
}
