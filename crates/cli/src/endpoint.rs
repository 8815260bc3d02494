//! The generations of `foveate eval --endpoint URL`: any OpenAI-compatible server (foveate serve,
//! llama.cpp's llama-server, vLLM) answers the questions over `POST /v1/chat/completions`, `N`
//! at a time. Each question is one user turn, the image (a base64 data: URL) before the prompt,
//! exactly the turn the in-process eval renders through the model's template; greedy decoding
//! (temperature 0, top_p 1), `max_tokens` the task's budget.
//!
//! Retries: a connection failure, a timeout, a 5xx or a 429 (the server's queue is full) is tried
//! again after 0.5 s, 1 s, 2 s, ... (`--retries`, default 4); any other 4xx, or a 200 without an
//! answer, is not: the question fails for good, is journaled as failed and asked again by
//! `--resume`. When questions keep failing back to back (the server is gone), the run stops with
//! an error after `2 x concurrency + 8` of them in a row, keeping the journal for `--resume`.

use foveate_core::{Error, Result};
use foveate_eval::runner::Query;
use foveate_eval::{Answerer, ModelInfo, Outcome};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

pub struct EndpointAnswerer {
    /// `.../v1`
    base: String,
    served_model: String,
    concurrency: usize,
    retries: usize,
    agent: ureq::Agent,
    info: ModelInfo,
}

/// `http://host:port`, `http://host:port/` or `http://host:port/v1` -> `http://host:port/v1`.
pub fn api_base(url: &str) -> String {
    let u = url.trim_end_matches('/');
    if u.ends_with("/v1") {
        u.to_string()
    } else {
        format!("{u}/v1")
    }
}

/// The engine of an endpoint run: what the server reports of itself (foveate serve: engine,
/// version, backend, device, attention, batch size; else "unknown"), with the endpoint, the served
/// model and the client's concurrency, so `foveate diff` against an in-process run shows only what
/// differs in how the answers were computed.
fn endpoint_engine(base: &str, served_model: &str, concurrency: usize, server: &Value) -> Value {
    let mut e = json!({"engine": "unknown"});
    if let Some(o) = server.as_object() {
        for (k, v) in o.iter().filter(|(k, _)| k.as_str() != "mode") {
            e[k] = v.clone();
        }
    }
    e["mode"] = json!("endpoint");
    e["endpoint"] = json!(base);
    e["served_model"] = json!(served_model);
    e["concurrency"] = json!(concurrency);
    e
}

/// Why one try failed, and whether another may succeed.
enum Failure {
    Retry(String),
    Permanent(String),
}

impl EndpointAnswerer {
    /// Checks that the endpoint serves `served_model` (`GET /v1/models`) and reads what it
    /// reports of its protocol (foveate serve reports the model's side of the card).
    pub fn connect(
        url: &str,
        served_model: &str,
        concurrency: usize,
        retries: usize,
        timeout: Duration,
    ) -> Result<Self> {
        if concurrency == 0 {
            return Err(Error::Msg("--concurrency: must be at least 1".into()));
        }
        let base = api_base(url);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        let listed = agent
            .get(format!("{base}/models"))
            .call()
            .map_err(|e| Error::Msg(format!("--endpoint {base}: GET /models failed: {e}")))?;
        let status = listed.status().as_u16();
        let body: Value = {
            let mut listed = listed;
            let text = listed
                .body_mut()
                .read_to_string()
                .map_err(|e| Error::Msg(format!("--endpoint {base}: GET /models: {e}")))?;
            serde_json::from_str(&text).unwrap_or(Value::Null)
        };
        let entry = if status == 200 {
            let models = body["data"].as_array().cloned().unwrap_or_default();
            let names: Vec<String> = models
                .iter()
                .filter_map(|m| m["id"].as_str().map(String::from))
                .collect();
            match models.into_iter().find(|m| m["id"] == served_model) {
                Some(m) => m,
                None => {
                    return Err(Error::Msg(format!(
                        "--served-model {served_model}: {base} serves {}",
                        if names.is_empty() {
                            "no models".into()
                        } else {
                            names.join(", ")
                        }
                    )))
                }
            }
        } else {
            eprintln!("note: {base}/models answered {status}: the protocol card will not have the model's side");
            Value::Null
        };
        let card = entry["foveate"]["protocol"].clone();
        let server = entry["foveate"]["engine"].clone();
        let or_unknown = |v: &Value| v.as_str().unwrap_or("unknown").to_string();
        let info = ModelInfo {
            model: served_model.to_string(),
            backend: "endpoint".into(),
            device: or_unknown(&server["device"]),
            dtype: or_unknown(&card["compute_dtype"]),
            attention: or_unknown(&server["attention"]),
            batch_size: concurrency,
            card,
            decoding: foveate_eval::protocol::greedy_decoding(),
            engine: endpoint_engine(&base, served_model, concurrency, &server),
        };
        Ok(EndpointAnswerer {
            base,
            served_model: served_model.to_string(),
            concurrency,
            retries,
            agent,
            info,
        })
    }

    /// The request body of one question.
    fn body(&self, q: &Query) -> std::result::Result<Value, String> {
        let bytes = std::fs::read(&q.image).map_err(|e| format!("{}: {e}", q.image.display()))?;
        let mime = if bytes.starts_with(&[0xFF, 0xD8]) {
            "image/jpeg"
        } else {
            "image/png"
        };
        use base64::Engine;
        let url = format!(
            "data:{mime};base64,{}",
            base64::engine::general_purpose::STANDARD.encode(&bytes)
        );
        let image = json!({"type": "image_url", "image_url": {"url": url}});
        // The image where the prompt says `<image>`, else before the text: as the in-process eval.
        let pieces: Vec<&str> = q.prompt.split(foveate_models::IMAGE_PLACEHOLDER).collect();
        let mut content = Vec::new();
        if pieces.len() == 1 {
            content.push(image.clone());
        }
        for (i, p) in pieces.iter().enumerate() {
            if i > 0 {
                content.push(image.clone());
            }
            if !p.is_empty() {
                content.push(json!({"type": "text", "text": p}));
            }
        }
        Ok(json!({
            "model": self.served_model,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": q.max_new_tokens,
            "temperature": 0.0,
            "top_p": 1.0,
            "stream": false,
        }))
    }

    fn try_once(&self, body: &[u8]) -> std::result::Result<String, Failure> {
        let url = format!("{}/chat/completions", self.base);
        let resp = self
            .agent
            .post(&url)
            .header("Content-Type", "application/json")
            .send(body);
        let mut resp = match resp {
            Ok(r) => r,
            Err(e) => return Err(Failure::Retry(format!("POST {url}: {e}"))),
        };
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| Failure::Retry(format!("POST {url}: reading the answer: {e}")))?;
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let message = || {
            v["error"]["message"]
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| text.chars().take(300).collect())
        };
        match status {
            200 => match &v["choices"][0]["message"]["content"] {
                Value::String(s) => Ok(s.clone()),
                Value::Null if v["choices"][0]["message"].is_object() => Ok(String::new()),
                _ => Err(Failure::Permanent(format!(
                    "200 without choices[0].message.content: {}",
                    text.chars().take(300).collect::<String>()
                ))),
            },
            429 | 500..=599 => Err(Failure::Retry(format!("{status}: {}", message()))),
            _ => Err(Failure::Permanent(format!("{status}: {}", message()))),
        }
    }

    /// One question, with retries; `Err` when it failed for good.
    fn ask(&self, q: &Query, stop: &AtomicBool) -> Outcome {
        let body = serde_json::to_vec(&self.body(q)?).map_err(|e| e.to_string())?;
        let mut delay = Duration::from_millis(500);
        let mut last = String::new();
        for attempt in 0..=self.retries {
            if attempt > 0 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                std::thread::sleep(delay);
                delay *= 2;
            }
            match self.try_once(&body) {
                Ok(text) => return Ok(text),
                Err(Failure::Permanent(m)) => return Err(m),
                Err(Failure::Retry(m)) => last = m,
            }
        }
        Err(format!("{last} (gave up after {} tries)", self.retries + 1))
    }
}

impl Answerer for EndpointAnswerer {
    fn answer(&mut self, _image: &std::path::Path, _prompt: &str, _max: usize) -> Result<String> {
        Err(Error::Msg(
            "EndpointAnswerer answers through answer_all".into(),
        ))
    }

    /// `concurrency` threads take the next question each as they finish one.
    fn answer_all(
        &mut self,
        queries: &[Query],
        done: &mut dyn FnMut(usize, Outcome) -> Result<()>,
    ) -> Result<()> {
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let (tx, rx) = std::sync::mpsc::channel::<(usize, Outcome)>();
        let in_a_row_limit = 2 * self.concurrency + 8;
        let this = &*self;
        std::thread::scope(|s| {
            for _ in 0..this.concurrency.min(queries.len()) {
                let (tx, next, stop) = (tx.clone(), &next, &stop);
                s.spawn(move || loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= queries.len() || stop.load(Ordering::Relaxed) {
                        break;
                    }
                    if tx.send((i, this.ask(&queries[i], stop))).is_err() {
                        break;
                    }
                });
            }
            drop(tx);
            let mut in_a_row = 0usize;
            for (i, outcome) in rx {
                if stop.load(Ordering::Relaxed) {
                    continue; // stopping: what is still arriving is not journaled
                }
                in_a_row = if outcome.is_err() { in_a_row + 1 } else { 0 };
                let last_error = outcome.as_ref().err().cloned();
                if let Err(e) = done(i, outcome) {
                    stop.store(true, Ordering::Relaxed);
                    return Err(e);
                }
                if in_a_row >= in_a_row_limit {
                    stop.store(true, Ordering::Relaxed);
                    return Err(Error::Msg(format!(
                        "{} questions in a row failed (last: {}); stopped: the journal keeps what was answered, --resume continues",
                        in_a_row,
                        last_error.unwrap_or_default()
                    )));
                }
            }
            Ok(())
        })
    }

    fn describe(&self) -> ModelInfo {
        self.info.clone()
    }
}
