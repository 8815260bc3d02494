//! VQAv2: `v2_mscoco_<subtype>_annotations.json` (+ optional `v2_OpenEnded_mscoco_<subtype>_questions.json`);
//! images `COCO_<subtype>_%012d.jpg`.

use super::json::{rec_name, Ctx};
use super::{first_existing, parent_dir, read_json, QuestionId, Record};
use foveate_core::Result;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// Load the annotations (and question text, if a questions file is given) in annotation order.
/// `answer_confidence`, `_inferred_fields` and other keys are ignored; a missing `question_type` /
/// `answer_type` becomes "unknown"; a missing `data_subtype` is taken as "val2014".
pub fn load(
    annotations: &Path,
    questions: Option<&Path>,
    image_root: Option<&Path>,
) -> Result<Vec<Record>> {
    let root = read_json(annotations)?;
    let texts = match questions {
        Some(q) => Some((q, load_questions(q)?)),
        None => None,
    };
    from_value(
        &root,
        annotations,
        texts.as_ref().map(|(q, t)| (*q, t)),
        image_root,
    )
}

/// [`load`] on parsed JSON: `annotations` (the file `root` came from) names errors and is the
/// default image root; `questions` is the questions file and its id -> text map.
pub fn from_value(
    root: &Value,
    annotations: &Path,
    questions: Option<(&Path, &HashMap<i64, String>)>,
    image_root: Option<&Path>,
) -> Result<Vec<Record>> {
    let ctx = Ctx { file: annotations };
    let anns = ctx.array(root, "annotations")?;
    let subtype = ctx
        .opt_string(root, "data_subtype", "(root)")?
        .unwrap_or_else(|| "val2014".into());
    let image_root = image_root
        .map(Path::to_path_buf)
        .unwrap_or_else(|| parent_dir(annotations));

    let mut seen = HashMap::new();
    let mut out = Vec::with_capacity(anns.len());
    for (i, a) in anns.iter().enumerate() {
        let what = rec_name("annotations", i, "question_id", a);
        let qid = ctx.int(a, "question_id", &what)?;
        if let Some(prev) = seen.insert(qid, i) {
            return Err(ctx.err(
                what,
                format!("duplicate question_id (also annotations[{prev}])"),
            ));
        }
        let image_id = ctx.int(a, "image_id", &what)?;
        let answers = ctx
            .array(a, "answers")
            .map_err(|_| ctx.err(format!("{what}.answers"), "missing or not an array"))?;
        if answers.is_empty() {
            return Err(ctx.err(format!("{what}.answers"), "no answers"));
        }
        let answer_keys = answer_keys(answers);
        let answers = answers
            .iter()
            .enumerate()
            .map(|(j, ans)| ctx.string(ans, "answer", &format!("{what}.answers[{j}]")))
            .collect::<Result<Vec<_>>>()?;
        let question_type = ctx
            .opt_string(a, "question_type", &what)?
            .unwrap_or_else(|| "unknown".into());
        let answer_type = ctx
            .opt_string(a, "answer_type", &what)?
            .unwrap_or_else(|| "unknown".into());
        let question = match questions {
            Some((qfile, t)) => match t.get(&qid) {
                Some(q) => q.clone(),
                None => {
                    return Err(ctx.err(
                        what,
                        format!(
                            "question_id {qid} is not in the questions file {}",
                            qfile.display()
                        ),
                    ))
                }
            },
            None => String::new(),
        };
        let name = format!("COCO_{subtype}_{image_id:012}.jpg");
        let image = first_existing(vec![
            image_root.join(&subtype).join(&name),
            image_root.join("images").join(&name),
            image_root.join(&name),
        ]);
        out.push(Record {
            id: QuestionId::Int(qid),
            question,
            image,
            answers,
            answer_keys,
            answer_type: Some(answer_type),
            question_types: vec![question_type],
            canonical_answer: ctx.opt_string(a, "multiple_choice_answer", &what)?,
        });
    }
    Ok(out)
}

/// [`Record::answer_keys`]: empty when every answer dict has an `answer_id` and no two share one
/// (then every dict differs from the others), else each dict's fields other than `answer` as
/// sorted-key JSON.
fn answer_keys(answers: &[Value]) -> Vec<String> {
    let ids: Vec<Option<&Value>> = answers.iter().map(|a| a.get("answer_id")).collect();
    let unique = ids.iter().all(Option::is_some)
        && ids
            .iter()
            .flatten()
            .map(|v| v.to_string())
            .collect::<HashSet<_>>()
            .len()
            == ids.len();
    if unique {
        return Vec::new();
    }
    answers
        .iter()
        .map(|a| {
            let rest: std::collections::BTreeMap<&str, String> = a
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| k.as_str() != "answer")
                .map(|(k, v)| (k.as_str(), v.to_string()))
                .collect();
            format!("{rest:?}")
        })
        .collect()
}

/// The questions file as question_id -> question text; a repeated id is an error.
pub fn load_questions(path: &Path) -> Result<HashMap<i64, String>> {
    questions_from_value(&read_json(path)?, path)
}

/// [`load_questions`] on parsed JSON; `path` names errors.
pub fn questions_from_value(root: &Value, path: &Path) -> Result<HashMap<i64, String>> {
    let ctx = Ctx { file: path };
    let qs = ctx.array(root, "questions")?;
    let mut map = HashMap::with_capacity(qs.len());
    let mut index = HashMap::with_capacity(qs.len());
    for (i, q) in qs.iter().enumerate() {
        let what = rec_name("questions", i, "question_id", q);
        let id = ctx.int(q, "question_id", &what)?;
        if let Some(prev) = index.insert(id, i) {
            return Err(ctx.err(
                what,
                format!("duplicate question_id (also questions[{prev}])"),
            ));
        }
        map.insert(id, ctx.string(q, "question", &what)?);
    }
    Ok(map)
}
