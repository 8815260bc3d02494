//! Protocol identity: the card that says everything that decides a run's answers and scores,
//! its hash, and the field-by-field difference of two cards (what `foveate diff` prints first).
//!
//! A card is `{card_version, task: {name, prompt, max_new_tokens, postprocess}, scorer: {metric,
//! reference}, decoding, model}` where `model` is the model's own side (weights hash and dtypes,
//! chat template hash, image-processor settings, stop tokens, context window; see
//! `foveate_models::protocol`), `null` when an endpoint does not report it. How the answers were
//! computed (in-process or over HTTP, backend, device, kernels, batch size) is the `engine`,
//! recorded beside the card and compared separately: the same protocol run by two engines should
//! give the same answers, and `foveate diff` shows exactly where they do not.

use crate::metrics;
use crate::task::TaskSpec;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// Bumped when the card's layout changes (cards of different versions always differ).
pub const CARD_VERSION: u32 = 1;

/// The decoding every eval asks for: greedy (temperature 0, no nucleus cut), the model's stop tokens.
pub fn greedy_decoding() -> Value {
    json!({"temperature": 0.0, "top_p": 1.0})
}

/// The card of a run of `spec` by a model whose own side is `model` (`Value::Null`: unknown).
pub fn card(spec: &TaskSpec, decoding: &Value, model: &Value) -> Value {
    json!({
        "card_version": CARD_VERSION,
        "task": {
            "name": spec.task.name(),
            "prompt": spec.prompt,
            "max_new_tokens": spec.max_new_tokens,
            "postprocess": spec.postprocess,
        },
        "scorer": {"metric": spec.metric, "reference": metrics::reference(spec.task)},
        "decoding": decoding,
        "model": model,
    })
}

/// `v` with every object's keys sorted, printed without spaces: the bytes that are hashed.
pub fn canonical(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                Value::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), sorted(&m[k])))
                        .collect::<Map<_, _>>(),
                )
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(v).to_string()
}

/// `sha256:` + the hex SHA-256 of the card's canonical form.
pub fn hash(card: &Value) -> String {
    let d = Sha256::digest(canonical(card).as_bytes());
    format!(
        "sha256:{}",
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// One field that differs between two cards: its dotted path and both values (`None`: absent).
#[derive(Clone, Debug, PartialEq)]
pub struct Difference {
    pub path: String,
    pub a: Option<Value>,
    pub b: Option<Value>,
}

/// Every leaf field (dotted path, arrays compared whole) whose value differs, in path order.
pub fn differences(a: &Value, b: &Value) -> Vec<Difference> {
    let (mut fa, mut fb) = (Vec::new(), Vec::new());
    flatten("", a, &mut fa);
    flatten("", b, &mut fb);
    let mut paths: Vec<&String> = fa.iter().chain(&fb).map(|(p, _)| p).collect();
    paths.sort();
    paths.dedup();
    let get =
        |f: &[(String, Value)], p: &str| f.iter().find(|(q, _)| q == p).map(|(_, v)| v.clone());
    paths
        .into_iter()
        .filter_map(|p| {
            let (va, vb) = (get(&fa, p), get(&fb, p));
            (va != vb).then(|| Difference {
                path: p.clone(),
                a: va,
                b: vb,
            })
        })
        .collect()
}

fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&p, x, out);
            }
        }
        other => out.push((
            if prefix.is_empty() {
                "(card)".into()
            } else {
                prefix.to_string()
            },
            other.clone(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TaskKind;

    #[test]
    fn hash_ignores_key_order_and_sees_every_value() {
        let a = json!({"x": 1, "y": {"b": [1, 2], "a": "s"}});
        let b: Value = serde_json::from_str(r#"{"y": {"a": "s", "b": [1, 2]}, "x": 1}"#).unwrap();
        assert_eq!(hash(&a), hash(&b));
        assert_eq!(canonical(&b), r#"{"x":1,"y":{"a":"s","b":[1,2]}}"#);
        let c = json!({"x": 1, "y": {"b": [2, 1], "a": "s"}});
        assert_ne!(hash(&a), hash(&c));
        assert!(hash(&a).starts_with("sha256:") && hash(&a).len() == 7 + 64);
    }

    #[test]
    fn differences_name_the_field() {
        let spec = TaskSpec::builtin(TaskKind::EasyVqa);
        let m = json!({"weights": {"sha256": "aa", "files": 1}, "chat_template_sha256": "t"});
        let a = card(&spec, &greedy_decoding(), &m);
        assert!(differences(&a, &a.clone()).is_empty());
        let mut other = spec.clone();
        other.max_new_tokens = 9;
        let mut m2 = m.clone();
        m2["weights"]["sha256"] = json!("bb");
        let b = card(&other, &greedy_decoding(), &m2);
        let d = differences(&a, &b);
        let paths: Vec<&str> = d.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(paths, ["model.weights.sha256", "task.max_new_tokens"]);
        assert_eq!(d[1].a, Some(json!(8)));
        assert_eq!(d[1].b, Some(json!(9)));
        // An endpoint that reports no model side: every model field is a difference, absent on one side.
        let c = card(&spec, &greedy_decoding(), &Value::Null);
        let d = differences(&a, &c);
        assert!(
            d.iter()
                .any(|x| x.path == "model" && x.a.is_none() && x.b == Some(Value::Null)),
            "{d:?}"
        );
        assert!(
            d.iter()
                .any(|x| x.path == "model.weights.files" && x.b.is_none()),
            "{d:?}"
        );
    }
}
