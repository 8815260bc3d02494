//! `foveate diff RUN_A RUN_B`: two eval runs side by side. First the protocol (the cards' hashes
//! and every field that differs), then the engines (how the answers were computed: not part of
//! the protocol), then the score deltas overall and per answer type / question type, then every
//! question whose answer changed, with both answers and scores. `--json` gives all of it as one
//! object.

use crate::CmdResult;
use foveate_eval::journal::{journal_path, read_journal};
use foveate_eval::protocol::{differences, Difference};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// An eval output folder (or its results.json).
    run_a: PathBuf,
    /// The run to compare it with.
    run_b: PathBuf,
    /// Print one JSON object instead of the tables.
    #[arg(long)]
    json: bool,
    /// Changed questions listed in the table (--json lists all).
    #[arg(long, default_value_t = 40)]
    max_rows: usize,
}

/// One question of a run: its id's key, the id as JSON, the answer (`None`: failed), the score.
type Answered = (String, Value, Option<String>, Option<f64>);

struct Run {
    dir: PathBuf,
    results: Value,
    /// Every question's last journal line, in journal order.
    answers: Vec<Answered>,
}

fn load(p: &Path) -> Result<Run, Box<dyn std::error::Error + Send + Sync>> {
    let dir = if p.is_file() {
        p.parent().unwrap_or(Path::new(".")).to_path_buf()
    } else {
        p.to_path_buf()
    };
    let rp = dir.join("results.json");
    let text = std::fs::read_to_string(&rp).map_err(|e| {
        format!(
            "{}: {e} (a finished `foveate eval` output folder has one)",
            rp.display()
        )
    })?;
    let results: Value = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not valid JSON: {e}", rp.display()))?;
    // The last line of a question wins (a failed one answered by --resume).
    let mut order: Vec<String> = Vec::new();
    let mut by_id: HashMap<String, (Value, Option<String>, Option<f64>)> = HashMap::new();
    for e in read_journal(&journal_path(&dir), false)? {
        let k = e.id.key();
        if !by_id.contains_key(&k) {
            order.push(k.clone());
        }
        by_id.insert(k, (e.id.to_json(), e.answer, e.score));
    }
    let answers = order.into_iter().map(|k| {
        let (id, a, s) = by_id.remove(&k).expect("every key was inserted");
        (k, id, a, s)
    });
    Ok(Run {
        dir,
        results,
        answers: answers.collect(),
    })
}

fn hash_of(r: &Run) -> String {
    r.results["protocol_hash"]
        .as_str()
        .unwrap_or("(no protocol card: a run from before cards)")
        .to_string()
}

fn delta(a: &Value, b: &Value) -> Value {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => json!({"a": x, "b": y, "delta": y - x}),
        _ => json!({"a": a, "b": b, "delta": null}),
    }
}

fn diff_json(d: &[Difference]) -> Value {
    Value::Array(
        d.iter()
            .map(|x| json!({"field": x.path, "a": x.a, "b": x.b}))
            .collect(),
    )
}

pub fn run(args: Args) -> CmdResult {
    let (a, b) = (load(&args.run_a)?, load(&args.run_b)?);
    let protocol = differences(&a.results["protocol"], &b.results["protocol"]);
    let engine = differences(&a.results["engine"], &b.results["engine"]);
    // Scores: overall and every breakdown group either run has.
    let mut breakdown: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    for r in [&a, &b] {
        if let Some(groups) = r.results["breakdown"].as_object() {
            for (g, vals) in groups {
                for k in vals
                    .as_object()
                    .map(|o| o.keys().cloned().collect::<Vec<_>>())
                    .unwrap_or_default()
                {
                    let (va, vb) = (
                        &a.results["breakdown"][g][&k],
                        &b.results["breakdown"][g][&k],
                    );
                    breakdown
                        .entry(g.clone())
                        .or_default()
                        .insert(k, delta(va, vb));
                }
            }
        }
    }
    // Questions.
    let b_by: HashMap<&str, &Answered> = b.answers.iter().map(|x| (x.0.as_str(), x)).collect();
    let a_keys: std::collections::HashSet<&str> = a.answers.iter().map(|x| x.0.as_str()).collect();
    let mut changed = Vec::new();
    let mut only_a = Vec::new();
    for (k, id, ans_a, s_a) in &a.answers {
        match b_by.get(k.as_str()) {
            Some((_, _, ans_b, s_b)) if ans_b != ans_a || s_b != s_a => {
                changed.push(json!({"question_id": id, "answer_a": ans_a, "answer_b": ans_b, "score_a": s_a, "score_b": s_b}))
            }
            Some(_) => {}
            None => only_a.push(id.clone()),
        }
    }
    let only_b: Vec<Value> = b
        .answers
        .iter()
        .filter(|x| !a_keys.contains(x.0.as_str()))
        .map(|x| x.1.clone())
        .collect();
    let compared = a.answers.len() - only_a.len();
    let out = json!({
        "run_a": a.dir.display().to_string(),
        "run_b": b.dir.display().to_string(),
        "protocol": {"hash_a": hash_of(&a), "hash_b": hash_of(&b), "identical": protocol.is_empty(), "differences": diff_json(&protocol)},
        "engine_differences": diff_json(&engine),
        "scores": {"unit": a.results["unit"], "overall": delta(&a.results["score"], &b.results["score"]), "breakdown": breakdown},
        "questions": {"compared": compared, "changed": changed.len(), "only_a": only_a, "only_b": only_b},
        "changed": changed,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", table(&out, &protocol, &engine, args.max_rows));
    }
    Ok(ExitCode::SUCCESS)
}

fn show(v: &Option<Value>) -> String {
    match v {
        None => "(absent)".into(),
        Some(Value::String(s)) => s.clone(),
        Some(x) => x.to_string(),
    }
}

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n.saturating_sub(1)).collect::<String>() + "…"
    }
}

fn num(v: &Value) -> String {
    v.as_f64()
        .map(|x| format!("{x:.2}"))
        .unwrap_or_else(|| "-".into())
}

fn table(out: &Value, protocol: &[Difference], engine: &[Difference], max_rows: usize) -> String {
    let mut s = String::new();
    let p = &out["protocol"];
    s += &format!(
        "A  {}\nB  {}\n\n",
        out["run_a"].as_str().unwrap_or(""),
        out["run_b"].as_str().unwrap_or("")
    );
    if protocol.is_empty() {
        s += &format!(
            "protocol: identical ({})\n",
            p["hash_a"].as_str().unwrap_or("")
        );
    } else {
        s += &format!(
            "protocol: {} difference(s)  (A {}, B {})\n",
            protocol.len(),
            p["hash_a"].as_str().unwrap_or(""),
            p["hash_b"].as_str().unwrap_or("")
        );
        let w = protocol
            .iter()
            .map(|d| d.path.len())
            .max()
            .unwrap_or(5)
            .max(5);
        s += &format!("  {:<w$}  {:<40}  {}\n", "field", "A", "B");
        for d in protocol {
            s += &format!(
                "  {:<w$}  {:<40}  {}\n",
                d.path,
                cut(&show(&d.a), 40),
                cut(&show(&d.b), 40)
            );
        }
    }
    if !engine.is_empty() {
        s += "engine (how the answers were computed; not part of the protocol):\n";
        let w = engine
            .iter()
            .map(|d| d.path.len())
            .max()
            .unwrap_or(5)
            .max(5);
        for d in engine {
            s += &format!(
                "  {:<w$}  {:<40}  {}\n",
                d.path,
                cut(&show(&d.a), 40),
                cut(&show(&d.b), 40)
            );
        }
    }
    let sc = &out["scores"];
    s += &format!(
        "\nscores ({})\n  {:<22} {:>8} {:>8} {:>8}\n",
        sc["unit"].as_str().unwrap_or("?"),
        "",
        "A",
        "B",
        "delta"
    );
    let row = |name: &str, v: &Value| {
        format!(
            "  {:<22} {:>8} {:>8} {:>8}\n",
            cut(name, 22),
            num(&v["a"]),
            num(&v["b"]),
            v["delta"]
                .as_f64()
                .map(|x| format!("{x:+.2}"))
                .unwrap_or_else(|| "-".into())
        )
    };
    s += &row("overall", &sc["overall"]);
    for (g, vals) in sc["breakdown"].as_object().into_iter().flatten() {
        s += &format!("  {g}:\n");
        for (k, v) in vals.as_object().into_iter().flatten() {
            s += &row(&format!("  {k}"), v);
        }
    }
    let q = &out["questions"];
    let n_only = |k: &str| q[k].as_array().map_or(0, Vec::len);
    s += &format!(
        "\nquestions: {} compared, {} answer(s) changed, {} only in A, {} only in B\n",
        q["compared"],
        q["changed"],
        n_only("only_a"),
        n_only("only_b")
    );
    let changed = out["changed"].as_array().cloned().unwrap_or_default();
    if !changed.is_empty() {
        s += &format!(
            "  {:<14} {:<24} {:>6}   {:<24} {:>6}\n",
            "question", "A", "score", "B", "score"
        );
        for c in changed.iter().take(max_rows) {
            let ans = |v: &Value| {
                v.as_str()
                    .map(String::from)
                    .unwrap_or_else(|| "(failed)".into())
            };
            s += &format!(
                "  {:<14} {:<24} {:>6}   {:<24} {:>6}\n",
                cut(&c["question_id"].to_string(), 14),
                cut(&ans(&c["answer_a"]), 24),
                num(&c["score_a"]),
                cut(&ans(&c["answer_b"]), 24),
                num(&c["score_b"])
            );
        }
        if changed.len() > max_rows {
            s += &format!(
                "  ... {} more (--max-rows N, or --json for all)\n",
                changed.len() - max_rows
            );
        }
    }
    s
}
