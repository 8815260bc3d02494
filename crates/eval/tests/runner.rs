//! The runner with a test double for the model: resume after an interruption loses and duplicates
//! nothing, torn journal lines are dropped, shards merge to the unsharded result.

use foveate_core::{Error, Result};
use foveate_eval::data::{Dataset, QuestionId, Record, TaskKind};
use foveate_eval::runner::{merge, run_eval, Answerer, ModelInfo, RunOptions};
use foveate_eval::TaskSpec;
use std::path::{Path, PathBuf};

/// Answers "answer N" to the question "question N", except every third question gets a
/// near miss; fails on call number `fail_at` (0-based) when set.
struct Fake {
    calls: usize,
    fail_at: Option<usize>,
    seen: Vec<String>,
}

impl Fake {
    fn new(fail_at: Option<usize>) -> Self {
        Fake {
            calls: 0,
            fail_at,
            seen: Vec::new(),
        }
    }
}

impl Answerer for Fake {
    fn answer(&mut self, image: &Path, prompt: &str, max_new_tokens: usize) -> Result<String> {
        assert_eq!(max_new_tokens, 128, "the docvqa spec's budget");
        assert!(prompt.ends_with("\nAnswer the question using a single word or phrase."));
        if Some(self.calls) == self.fail_at {
            return Err(Error::Msg("simulated crash".into()));
        }
        self.calls += 1;
        let n: usize = prompt
            .split('\n')
            .next()
            .unwrap()
            .trim_start_matches("question ")
            .parse()
            .unwrap();
        assert!(image.ends_with(format!("page{n}.png")));
        self.seen.push(prompt.to_string());
        Ok(if n % 3 == 0 {
            format!("  answr {n}\nsecond line")
        } else {
            format!("answer {n}")
        })
    }
    fn describe(&self) -> ModelInfo {
        ModelInfo {
            model: "fake".into(),
            backend: "none".into(),
            dtype: "f32".into(),
            attention: "naive".into(),
            ..ModelInfo::default()
        }
    }
}

fn dataset(n: usize) -> Dataset {
    let records = (0..n)
        .map(|i| Record {
            id: QuestionId::Int(1000 + i as i64),
            question: format!("question {i}"),
            image: PathBuf::from(format!("/nonexistent/page{i}.png")),
            answers: vec![format!("answer {i}")],
            answer_keys: Vec::new(),
            answer_type: None,
            question_types: vec![if i % 2 == 0 { "even" } else { "odd" }.to_string()],
            canonical_answer: None,
        })
        .collect();
    Dataset {
        task: TaskKind::DocVqa,
        records,
        source: PathBuf::from("synthetic.json"),
    }
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("foveate-eval-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

fn journal_ids(dir: &Path) -> Vec<i64> {
    read(&dir.join("predictions.jsonl"))
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["question_id"]
                .as_i64()
                .unwrap()
        })
        .collect()
}

#[test]
fn resume_after_interruption_matches_uninterrupted_run() {
    let spec = TaskSpec::builtin(TaskKind::DocVqa);
    let ds = dataset(20);

    let full_dir = tmp("full");
    let full = run_eval(
        &spec,
        &ds,
        &mut Fake::new(None),
        &RunOptions::new(&full_dir),
    )
    .unwrap();
    assert_eq!(full.answered, 20);
    // 1..=19 not divisible by 3 are exact (13 of them, plus 0 is divisible by 3): the near misses
    // "answr N" vs "answer N" have distance 1 over length 8 or 9 -> 0.875 / 0.8889.
    assert!(
        full.score.overall > 0.9 && full.score.overall < 1.0,
        "{}",
        full.score.overall
    );

    let dir = tmp("resume");
    let err = run_eval(&spec, &ds, &mut Fake::new(Some(7)), &RunOptions::new(&dir)).unwrap_err();
    assert!(err.to_string().contains("simulated crash"));
    assert_eq!(journal_ids(&dir).len(), 7);

    // a second start without --resume refuses to overwrite
    let err = run_eval(&spec, &ds, &mut Fake::new(None), &RunOptions::new(&dir)).unwrap_err();
    assert!(err.to_string().contains("--resume"), "{err}");

    let mut opts = RunOptions::new(&dir);
    opts.resume = true;
    let mut fake = Fake::new(None);
    let resumed = run_eval(&spec, &ds, &mut fake, &opts).unwrap();
    assert_eq!(fake.calls, 13, "only the unanswered questions are asked");
    assert!(fake.seen[0].starts_with("question 7\n"));
    assert_eq!((resumed.resumed, resumed.answered), (7, 13));
    let mut ids = journal_ids(&dir);
    ids.sort();
    assert_eq!(
        ids,
        (1000..1020).collect::<Vec<_>>(),
        "nothing lost, nothing duplicated"
    );
    assert_eq!(resumed.score, full.score);
    assert_eq!(
        read(&dir.join("submission.json")),
        read(&full_dir.join("submission.json"))
    );

    // the submission is the official DocVQA format, answers post-processed (first line, stripped)
    let sub: serde_json::Value = serde_json::from_str(&read(&dir.join("submission.json"))).unwrap();
    assert_eq!(
        sub[3],
        serde_json::json!({"questionId": 1003, "answer": "answr 3"})
    );
    let res: serde_json::Value = serde_json::from_str(&read(&dir.join("results.json"))).unwrap();
    for key in [
        "task",
        "score",
        "breakdown",
        "model",
        "backend",
        "dtype",
        "attention",
        "questions_per_s",
        "commit",
        "date",
    ] {
        assert!(res.get(key).is_some(), "results.json lacks {key}");
    }
    assert_eq!(res["score"].as_f64().unwrap(), full.score.overall);
}

#[test]
fn torn_last_line_is_dropped_on_resume() {
    use std::io::Write;
    let spec = TaskSpec::builtin(TaskKind::DocVqa);
    let ds = dataset(6);
    let dir = tmp("torn");
    run_eval(&spec, &ds, &mut Fake::new(Some(3)), &RunOptions::new(&dir)).unwrap_err();
    // killed in the middle of writing the 4th line
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("predictions.jsonl"))
        .unwrap();
    f.write_all(br#"{"question_id":1003,"ans"#).unwrap();
    drop(f);
    let mut opts = RunOptions::new(&dir);
    opts.resume = true;
    let mut fake = Fake::new(None);
    let s = run_eval(&spec, &ds, &mut fake, &opts).unwrap();
    assert_eq!(fake.calls, 3);
    assert_eq!(s.resumed, 3);
    let mut ids = journal_ids(&dir);
    ids.sort();
    assert_eq!(ids, (1000..1006).collect::<Vec<_>>());
}

#[test]
fn resume_with_other_shard_is_refused() {
    let spec = TaskSpec::builtin(TaskKind::DocVqa);
    let ds = dataset(6);
    let dir = tmp("mismatch");
    run_eval(&spec, &ds, &mut Fake::new(Some(1)), &RunOptions::new(&dir)).unwrap_err();
    let mut opts = RunOptions::new(&dir);
    opts.resume = true;
    opts.shard = (1, 2);
    let err = run_eval(&spec, &ds, &mut Fake::new(None), &opts).unwrap_err();
    assert!(err.to_string().contains("run.json: shard"), "{err}");
}

#[test]
fn shards_merge_to_the_unsharded_result() {
    let spec = TaskSpec::builtin(TaskKind::DocVqa);
    let ds = dataset(11);
    let mut whole = RunOptions::new(tmp("whole"));
    whole.limit = Some(10);
    let full = run_eval(&spec, &ds, &mut Fake::new(None), &whole).unwrap();
    assert_eq!(full.score.per_question.len(), 10);

    let mut dirs = Vec::new();
    let mut total = 0;
    for i in 0..3 {
        let mut o = RunOptions::new(tmp(&format!("shard{i}")));
        o.limit = Some(10);
        o.shard = (i, 3);
        let s = run_eval(&spec, &ds, &mut Fake::new(None), &o).unwrap();
        total += s.answered;
        dirs.push(o.out_dir);
    }
    assert_eq!(total, 10);
    let merged = merge(&ds, &dirs, &tmp("merged")).unwrap();
    assert_eq!(merged.score, full.score);

    let err = merge(&ds, &dirs[..2], &tmp("merged2")).unwrap_err();
    assert!(err.to_string().contains("no answer"), "{err}");
}

/// Answers through `answer_all`, failing for good the questions whose number is in `fail`.
struct Flaky {
    fail: Vec<usize>,
    asked: Vec<usize>,
}

impl Answerer for Flaky {
    fn answer(&mut self, _: &Path, _: &str, _: usize) -> Result<String> {
        unreachable!("Flaky answers through answer_all")
    }
    fn answer_all(
        &mut self,
        queries: &[foveate_eval::runner::Query],
        done: &mut dyn FnMut(usize, foveate_eval::Outcome) -> Result<()>,
    ) -> Result<()> {
        // Out of order, as a remote answerer finishes them.
        for i in (0..queries.len()).rev() {
            let n: usize = queries[i].prompt.split('\n').next().unwrap().trim_start_matches("question ").parse().unwrap();
            self.asked.push(n);
            let outcome = if self.fail.contains(&n) { Err(format!("503 on question {n}")) } else { Ok(format!("answer {n}")) };
            done(i, outcome)?;
        }
        Ok(())
    }
    fn describe(&self) -> ModelInfo {
        ModelInfo { model: "flaky".into(), card: serde_json::json!({"weights": {"sha256": "ab"}}), ..ModelInfo::default() }
    }
}

#[test]
fn failed_questions_are_journaled_reported_and_asked_again_on_resume() {
    let spec = TaskSpec::builtin(TaskKind::DocVqa);
    let ds = dataset(8);
    let dir = tmp("flaky");
    let mut a = Flaky { fail: vec![2, 5], asked: Vec::new() };
    let s = run_eval(&spec, &ds, &mut a, &RunOptions::new(&dir)).unwrap();
    assert_eq!((s.answered, s.failed), (6, 2));
    assert!(s.table.contains("failed     2") && s.table.contains("503 on question"), "{}", s.table);
    // In record order in the journal, failed lines included.
    assert_eq!(journal_ids(&dir), (1000..1008).collect::<Vec<_>>());
    let journal = read(&dir.join("predictions.jsonl"));
    let failed: Vec<&str> = journal.lines().filter(|l| l.contains("\"failed\":true")).collect();
    assert_eq!(failed.len(), 2);
    assert!(failed[0].contains("\"question_id\":1002") && failed[0].contains("503 on question 2"), "{}", failed[0]);
    let res: serde_json::Value = serde_json::from_str(&read(&dir.join("results.json"))).unwrap();
    assert_eq!(res["failed"], 2);
    assert_eq!(res["failed_questions"][1], serde_json::json!({"question_id": 1005, "error": "503 on question 5"}));
    // Scored as wrong: 6 of 8 exact.
    assert!((res["score"].as_f64().unwrap() - 0.75).abs() < 1e-12, "{res}");
    // The card: the task spec, the scorer and its reference, the model's side; and its hash.
    assert_eq!(res["protocol"]["task"]["max_new_tokens"], 128);
    assert_eq!(res["protocol"]["scorer"]["metric"], "anls");
    assert_eq!(res["protocol"]["model"]["weights"]["sha256"], "ab");
    assert_eq!(res["protocol_hash"], foveate_eval::protocol::hash(&res["protocol"]).as_str());

    // --resume asks exactly the failed ones again; now they are answered.
    let mut opts = RunOptions::new(&dir);
    opts.resume = true;
    let mut b = Flaky { fail: Vec::new(), asked: Vec::new() };
    let s = run_eval(&spec, &ds, &mut b, &opts).unwrap();
    b.asked.sort();
    assert_eq!(b.asked, [2, 5]);
    assert_eq!((s.resumed, s.answered, s.failed), (6, 2, 0));
    assert!((s.score.overall - 1.0).abs() < 1e-12);
    let res: serde_json::Value = serde_json::from_str(&read(&dir.join("results.json"))).unwrap();
    assert_eq!(res["failed"], 0);
    // A resume with another protocol (another model) is refused.
    let mut c = Flaky { fail: Vec::new(), asked: Vec::new() };
    struct Other<'a>(&'a mut Flaky);
    impl Answerer for Other<'_> {
        fn answer(&mut self, i: &Path, p: &str, m: usize) -> Result<String> {
            self.0.answer(i, p, m)
        }
        fn describe(&self) -> ModelInfo {
            ModelInfo { card: serde_json::json!({"weights": {"sha256": "cd"}}), ..self.0.describe() }
        }
    }
    let e = run_eval(&spec, &ds, &mut Other(&mut c), &opts).unwrap_err();
    assert!(e.to_string().contains("protocol"), "{e}");
}
