//! `foveate eval --endpoint` end to end, over real HTTP on 127.0.0.1:
//! * against `foveate serve` (the binary, an ephemeral port): the same predictions and score as the
//!   in-process eval, the same protocol hash, and `foveate diff` of the two runs reports no
//!   protocol difference and 0 changed answers; a server that refuses some questions (413) gets
//!   them journaled as failed, and `--resume` against a server that takes them completes the run
//!   with the in-process answers;
//! * against a scripted server: 5xx is retried, 4xx is not, a question that keeps failing is
//!   reported in results.json and asked again by `--resume`.

use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

mod common;
use common::{repo, scratch};

fn foveate() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_foveate"));
    c.current_dir(repo());
    c
}

/// `foveate serve` on an ephemeral port; returns the child and its base URL.
struct Serve(Child, String);

impl Serve {
    fn start(extra: &[&str]) -> Serve {
        let mut child = foveate()
            .args([
                "serve",
                "--model",
                "eval/models/easyvqa-tiny",
                "--port",
                "0",
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start foveate serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("the address line");
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        Serve(child, url.trim_end_matches("/v1").to_string())
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `foveate eval --task easy-vqa --limit N --json` into `out`: (success, results JSON, stderr).
fn eval_n(out: &Path, limit: usize, extra: &[&str]) -> (bool, Value, String) {
    let o = foveate()
        .args([
            "eval",
            "--task",
            "easy-vqa",
            "--json",
            "--data",
            "eval/data/easy-vqa",
        ])
        .args(["--limit", &limit.to_string(), "--output"])
        .arg(out)
        .args(extra)
        .output()
        .expect("run foveate eval");
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    let results = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    (o.status.success(), results, stderr)
}

fn eval(out: &Path, extra: &[&str]) -> (bool, Value, String) {
    eval_n(out, 200, extra)
}

fn submission(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("submission.json")).unwrap()).unwrap()
}

fn diff(a: &Path, b: &Path) -> Value {
    let o = foveate()
        .arg("diff")
        .arg(a)
        .arg(b)
        .arg("--json")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn endpoint_eval_against_foveate_serve_equals_in_process() {
    let base = scratch("endpoint", "same", true);
    let (a, b) = (base.join("in-process"), base.join("endpoint"));
    let (ok, ra, err) = eval(&a, &["--model", "eval/models/easyvqa-tiny"]);
    assert!(ok, "{err}");
    let server = Serve::start(&[]);
    let (ok, rb, err) = eval(
        &b,
        &[
            "--endpoint",
            &server.1,
            "--served-model",
            "easyvqa-tiny",
            "--concurrency",
            "8",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(submission(&a), submission(&b));
    assert_eq!(ra["score"], rb["score"]);
    assert_eq!(ra["protocol_hash"], rb["protocol_hash"]);
    assert_eq!(rb["engine"]["mode"], "endpoint");
    assert_eq!(rb["engine"]["backend"], "cpu");
    assert_eq!(rb["failed"], 0);
    let d = diff(&a, &b);
    assert_eq!(d["protocol"]["identical"], true, "{d}");
    assert_eq!(d["questions"]["compared"], 200, "{d}");
    assert_eq!(d["questions"]["changed"], 0, "{d}");
    assert_eq!(d["scores"]["overall"]["delta"], 0.0, "{d}");
    // The engines differ only in how the answers travelled.
    let fields: Vec<&str> = d["engine_differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["concurrency", "endpoint", "mode", "served_model"],
        "{d}"
    );
    // The table says the same.
    let o = foveate().arg("diff").arg(&a).arg(&b).output().unwrap();
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.contains("protocol: identical")
            && table.contains("200 compared, 0 answer(s) changed"),
        "{table}"
    );

    // A task spec with another budget: the cards differ in exactly that field.
    let spec = base.join("easy-vqa-9.toml");
    let text = std::fs::read_to_string(repo().join("eval/tasks/easy-vqa.toml"))
        .unwrap()
        .replace("max_new_tokens = 8", "max_new_tokens = 9");
    std::fs::write(&spec, text).unwrap();
    let c = base.join("budget-9");
    let (ok, _, err) = eval(
        &c,
        &[
            "--endpoint",
            &server.1,
            "--served-model",
            "easyvqa-tiny",
            "--task-file",
            spec.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    let d = diff(&a, &c);
    let fields: Vec<&str> = d["protocol"]["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["task.max_new_tokens"], "{d}");

    // A server whose body limit refuses the larger images (413, never retried): those questions
    // are journaled as failed; --resume against a server that takes them completes the run.
    let sizes: Vec<usize> = (0..200).map(request_size).collect();
    let mut sorted = sizes.clone();
    sorted.sort();
    let limit = sorted[190];
    drop(server);
    let strict = Serve::start(&["--max-body-bytes", &limit.to_string()]);
    let f = base.join("failing");
    let (ok, rf, err) = eval(
        &f,
        &[
            "--endpoint",
            &strict.1,
            "--served-model",
            "easyvqa-tiny",
            "--retries",
            "0",
        ],
    );
    assert!(!ok, "a run with failed questions exits non-zero");
    assert!(err.contains("failed for good"), "{err}");
    let failed = rf["failed"].as_u64().unwrap() as usize;
    assert_eq!(failed, sizes.iter().filter(|&&s| s > limit).count(), "{rf}");
    assert!(failed > 0, "{rf}");
    assert!(
        rf["failed_questions"][0]["error"]
            .as_str()
            .unwrap()
            .starts_with("413"),
        "{rf}"
    );
    drop(strict);
    let server = Serve::start(&[]);
    let (ok, rr, err) = eval(
        &f,
        &[
            "--endpoint",
            &server.1,
            "--served-model",
            "easyvqa-tiny",
            "--resume",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(rr["failed"], 0);
    assert_eq!(rr["answered_this_run"], failed);
    assert_eq!(submission(&f), submission(&a));
    assert_eq!(diff(&a, &f)["questions"]["changed"], 0);
}

/// The body size of `eval --endpoint`'s request for easy-VQA question `i` (the same JSON the client
/// writes: one user turn, the image as a base64 data: URL, then the question).
fn request_size(i: usize) -> usize {
    use base64::Engine;
    let qs: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("eval/data/easy-vqa/test/questions.json")).unwrap(),
    )
    .unwrap();
    let img =
        std::fs::read(repo().join(format!("eval/data/easy-vqa/test/images/{}.png", qs[i][2])))
            .unwrap();
    let url = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(img)
    );
    let content = serde_json::json!([{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": qs[i][0]}]);
    let body = serde_json::json!({"model": "easyvqa-tiny", "messages": [{"role": "user", "content": content}], "max_tokens": 8, "temperature": 0.0, "top_p": 1.0, "stream": false});
    serde_json::to_vec(&body).unwrap().len()
}

/// A scripted OpenAI-compatible server: question text -> how many times it was asked; the first
/// try of each question gets a 503, question `never` always a 400.
fn scripted(never: String, attempts: Arc<Mutex<HashMap<String, usize>>>) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let (never, attempts) = (never.clone(), attempts.clone());
            std::thread::spawn(move || {
                let mut r = BufReader::new(s.try_clone().unwrap());
                let (mut line, mut len, mut first) = (String::new(), 0usize, String::new());
                loop {
                    line.clear();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if first.is_empty() {
                        first = line.clone();
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0u8; len];
                r.read_exact(&mut body).unwrap();
                let (status, out) = if first.starts_with("GET /v1/models") {
                    (
                        200,
                        r#"{"object":"list","data":[{"id":"scripted","object":"model"}]}"#
                            .to_string(),
                    )
                } else {
                    let v: Value = serde_json::from_slice(&body).unwrap();
                    let q = v["messages"][0]["content"][1]["text"]
                        .as_str()
                        .unwrap()
                        .to_string();
                    let n = {
                        let mut a = attempts.lock().unwrap();
                        let n = a.entry(q.clone()).or_insert(0);
                        *n += 1;
                        *n
                    };
                    if q == never {
                        (400, r#"{"error":{"message":"no","type":"invalid_request_error","code":"nope"}}"#.to_string())
                    } else if n == 1 {
                        (
                            503,
                            r#"{"error":{"message":"warming up","type":"server_error"}}"#
                                .to_string(),
                        )
                    } else {
                        (200, serde_json::json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "yes"}}]}).to_string())
                    }
                };
                let _ = write!(s, "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{out}", out.len());
            });
        }
    });
    url
}

#[test]
fn endpoint_retries_5xx_not_4xx_and_resume_asks_failed_questions_again() {
    let qs: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("eval/data/easy-vqa/test/questions.json")).unwrap(),
    )
    .unwrap();
    let never = qs[2][0].as_str().unwrap().to_string();
    let attempts = Arc::new(Mutex::new(HashMap::new()));
    let url = scripted(never.clone(), attempts.clone());
    let out: PathBuf = scratch("endpoint", "scripted", false);
    let (ok, r, _) = eval_n(
        &out,
        6,
        &[
            "--endpoint",
            &url,
            "--served-model",
            "scripted",
            "--concurrency",
            "2",
        ],
    );
    assert!(!ok);
    assert_eq!(r["failed"], 1, "{r}");
    assert_eq!(r["failed_questions"][0]["question_id"], 2, "{r}");
    assert!(
        r["failed_questions"][0]["error"]
            .as_str()
            .unwrap()
            .starts_with("400: no"),
        "{r}"
    );
    assert_eq!(
        r["protocol"]["model"],
        Value::Null,
        "an endpoint that reports no card: {r}"
    );
    {
        let a = attempts.lock().unwrap();
        // Six distinct questions: each was asked again after its first try got a 503.
        assert_eq!(a[&never], 1, "a 4xx is not retried: {a:?}");
        assert!(
            a.iter().filter(|(k, _)| **k != never).all(|(_, &n)| n >= 2),
            "{a:?}"
        );
    }
    let journal = std::fs::read_to_string(out.join("predictions.jsonl")).unwrap();
    assert_eq!(
        journal
            .lines()
            .filter(|l| l.contains("\"failed\":true"))
            .count(),
        1,
        "{journal}"
    );
    // --resume asks only the failed question again (still refused here: still one failure).
    let before = attempts.lock().unwrap()[&never];
    let (_, r, _) = eval_n(
        &out,
        6,
        &["--endpoint", &url, "--served-model", "scripted", "--resume"],
    );
    assert_eq!(r["answered_this_run"], 0, "{r}");
    assert_eq!(r["resumed_from_journal"], 5, "{r}");
    assert_eq!(r["failed"], 1, "{r}");
    assert_eq!(attempts.lock().unwrap()[&never], before + 1);
}
