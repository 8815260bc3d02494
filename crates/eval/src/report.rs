//! Score reports: the `--json` object and a small human table.

use crate::metrics::{Score, Unit};
use serde_json::{json, Map, Value};

/// `{"task", "metric", "unit", "overall", "breakdown": {...}, "per_question": {"<id>": score}}`.
/// Percent for VQAv2/TextVQA/easy-VQA, 0..1 for ANLS, as the reference scripts print them.
pub fn score_json(s: &Score) -> Value {
    let breakdown: Map<String, Value> = s
        .breakdown
        .iter()
        .map(|(g, m)| {
            (
                g.clone(),
                Value::Object(m.iter().map(|(k, v)| (k.clone(), json!(v))).collect()),
            )
        })
        .collect();
    let per_q: Map<String, Value> = s
        .per_question
        .iter()
        .map(|(id, v)| (id.key(), json!(v)))
        .collect();
    json!({
        "task": s.task.name(),
        "metric": s.metric,
        "unit": unit_name(s.unit),
        "count": s.per_question.len(),
        "overall": s.overall,
        "breakdown": breakdown,
        "per_question": per_q,
    })
}

pub fn unit_name(u: Unit) -> &'static str {
    match u {
        Unit::Percent => "percent",
        Unit::Fraction => "fraction",
    }
}

/// A number the way the reference prints it: 2 decimals for percentages, 4 for ANLS (`{:2.4f}`).
pub fn fmt_value(u: Unit, v: f64) -> String {
    match u {
        Unit::Percent => format!("{v:.2}"),
        Unit::Fraction => format!("{v:.4}"),
    }
}

/// A small aligned table: overall, then each breakdown group.
pub fn score_table(s: &Score) -> String {
    let mut rows: Vec<(String, String)> = vec![
        (
            "task".into(),
            format!("{} ({}, {})", s.task, s.metric, unit_name(s.unit)),
        ),
        ("questions".into(), s.per_question.len().to_string()),
        ("overall".into(), fmt_value(s.unit, s.overall)),
    ];
    for (group, m) in &s.breakdown {
        rows.push((format!("{group}:"), String::new()));
        for (k, v) in m {
            rows.push((format!("  {k}"), fmt_value(s.unit, *v)));
        }
    }
    let w = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("{k:<w$}  {v}\n").trim_end().to_string() + "\n")
        .collect()
}
