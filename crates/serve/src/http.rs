//! The HTTP side (axum): `POST /v1/chat/completions` (JSON or SSE), `GET /v1/models`,
//! `GET /health`, JSON errors for everything else. Request bodies are checked and their prompts
//! built on tokio's blocking pool ([`crate::request`]); generation happens on the model thread
//! ([`crate::worker`]); the text is detokenized here, stop strings included.

use crate::error::ApiError;
use crate::request::{Frontend, Prepared};
use crate::worker::{Event, Job, Stats, Ticket};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

/// Everything a handler reads.
pub struct App {
    pub front: Frontend,
    pub queue: Sender<Job>,
    pub stats: Arc<Stats>,
    pub max_queue: usize,
    pub max_body_bytes: usize,
    /// `GET /v1/models`' `foveate` object: the protocol card's model side and the engine.
    pub card: Value,
    pub engine: Value,
    pub created: u64,
    pub ids: AtomicU64,
}

pub fn router(app: Arc<App>) -> Router {
    let limit = app.max_body_bytes;
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .route("/health", get(health))
        .fallback(|| async {
            ApiError::not_found(
                "unknown_route",
                "no such route (POST /v1/chat/completions, GET /v1/models, GET /health)",
            )
        })
        .method_not_allowed_fallback(|| async {
            ApiError {
                status: StatusCode::METHOD_NOT_ALLOWED,
                ..ApiError::invalid(
                    "method_not_allowed",
                    None,
                    "method not allowed on this route",
                )
            }
        })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(app)
}

async fn models(State(app): State<Arc<App>>) -> Json<Value> {
    Json(json!({"object": "list", "data": [{
        "id": app.front.name, "object": "model", "created": app.created, "owned_by": "foveate",
        "foveate": {"protocol": app.card, "engine": app.engine},
    }]}))
}

async fn health(State(app): State<Arc<App>>) -> Json<Value> {
    let s = &app.stats;
    let n = |a: &std::sync::atomic::AtomicUsize| a.load(Ordering::Relaxed);
    Json(json!({
        "status": "ok", "model": app.front.name,
        "queued": n(&s.queued), "running": n(&s.running), "finished": n(&s.finished),
        "dropped": n(&s.dropped), "failed": n(&s.failed), "rejected": n(&s.rejected),
    }))
}

async fn chat(State(app): State<Arc<App>>, body: Result<Bytes, BytesRejection>) -> Response {
    match chat_inner(&app, body).await {
        Ok(r) => r,
        Err(e) => {
            if e.status.is_client_error() {
                app.stats.rejected.fetch_add(1, Ordering::Relaxed);
            }
            e.into_response()
        }
    }
}

/// What every response of one request carries.
struct Meta {
    id: String,
    created: u64,
    model: String,
    prompt_tokens: usize,
}

async fn chat_inner(
    app: &Arc<App>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(
                "body_too_large",
                None,
                format!(
                    "the request body is over {} bytes (--max-body-bytes)",
                    app.max_body_bytes
                ),
            )
        } else {
            ApiError::invalid("invalid_body", None, r.body_text())
        }
    })?;
    // A place in the queue first, so a flood is refused before any of it is decoded.
    let ticket = Ticket::take(&app.stats, app.max_queue)
        .ok_or_else(|| ApiError::queue_full(app.max_queue))?;
    let a = app.clone();
    let prepared = tokio::task::spawn_blocking(move || a.front.prepare(&body))
        .await
        .map_err(|e| {
            ApiError::server(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                format!("internal error while reading the request: {e}"),
            )
        })??;
    let Prepared {
        request,
        params,
        stops,
        stream,
        include_usage,
    } = prepared;
    let meta = Meta {
        id: format!("chatcmpl-{}", app.ids.fetch_add(1, Ordering::Relaxed)),
        created: now(),
        model: app.front.name.clone(),
        prompt_tokens: request.input_ids.len(),
    };
    let (tx, rx) = unbounded_channel();
    let job = Job {
        request,
        params,
        want_tokens: stream || !stops.is_empty(),
        events: tx,
        ticket,
    };
    app.queue.send(job).map_err(|_| {
        ApiError::server(
            StatusCode::SERVICE_UNAVAILABLE,
            "model_unavailable",
            "the model thread has stopped",
        )
    })?;
    let text = Text {
        front: app.clone(),
        stops,
        tokens: Vec::new(),
        generated: 0,
        sent: 0,
    };
    if stream {
        Ok(stream_response(rx, text, meta, include_usage))
    } else {
        complete(rx, text, meta).await
    }
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The generated text as it grows: what is safe to send (no half a UTF-8 character, nothing that
/// may turn out to be the start of a stop string), cut before the first stop string.
struct Text {
    front: Arc<App>,
    stops: Vec<String>,
    /// The tokens whose text is sent (without a final stop token).
    tokens: Vec<u32>,
    /// Tokens generated (the usage count: a final stop token included).
    generated: usize,
    /// Bytes of the text sent so far.
    sent: usize,
}

impl Text {
    fn extend(&mut self, t: Vec<u32>) {
        self.generated += t.len();
        self.tokens.extend(t);
    }

    /// The whole generation: its text without the stop token.
    fn finish(&mut self, mut tokens: Vec<u32>, stopped_on_token: bool) {
        self.generated = tokens.len();
        if stopped_on_token {
            tokens.pop();
        }
        self.tokens = tokens;
    }

    /// Takes one event of the model thread: the next piece of text to send and, when the answer
    /// is over (its end, or a stop string), the finish reason; a failure as the error to send.
    fn take(&mut self, ev: Option<Event>) -> Result<(String, Option<&'static str>), ApiError> {
        match ev {
            Some(Event::Tokens(t)) => {
                self.extend(t);
                let (piece, hit) = self.delta(false);
                Ok((piece, hit.then_some("stop")))
            }
            Some(Event::Done {
                tokens,
                stopped_on_token,
            }) => {
                self.finish(tokens, stopped_on_token);
                let (piece, hit) = self.delta(true);
                Ok((piece, Some(finish_reason(hit, stopped_on_token))))
            }
            Some(Event::Failed(m)) => Err(failed(Some(m))),
            None => Err(failed(None)),
        }
    }

    /// The next piece to send and whether a stop string ended the text. `last`: the generation
    /// is over (send everything).
    fn delta(&mut self, last: bool) -> (String, bool) {
        let text = self
            .front
            .front
            .model
            .decode_text(&self.tokens)
            .unwrap_or_default();
        let first_stop = self
            .stops
            .iter()
            .filter_map(|s| text.find(s.as_str()))
            .min();
        let (end, hit) = match first_stop {
            Some(p) => (p, true),
            None if last => (text.len(), false),
            None => {
                let hold = self
                    .stops
                    .iter()
                    .map(|s| s.len().saturating_sub(1))
                    .max()
                    .unwrap_or(0);
                let mut end = text.len().saturating_sub(hold);
                if let Some(p) = text.rfind('\u{FFFD}').filter(|p| p + 3 == text.len()) {
                    end = end.min(p); // an incomplete character so far
                }
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                (end, false)
            }
        };
        let piece = text
            .get(self.sent..end)
            .map(String::from)
            .unwrap_or_default();
        self.sent = self.sent.max(end);
        (piece, hit)
    }
}

fn finish_reason(hit_stop: bool, stopped_on_token: bool) -> &'static str {
    if hit_stop || stopped_on_token {
        "stop"
    } else {
        "length"
    }
}

fn usage(meta: &Meta, completion: usize) -> Value {
    json!({"prompt_tokens": meta.prompt_tokens, "completion_tokens": completion, "total_tokens": meta.prompt_tokens + completion})
}

fn failed(msg: Option<String>) -> ApiError {
    let msg = msg.unwrap_or_else(|| "the model thread stopped before the request finished".into());
    ApiError::server(StatusCode::INTERNAL_SERVER_ERROR, "generation_failed", msg)
}

/// A non-streaming answer: waits for the end (or a stop string), one JSON body.
async fn complete(
    mut rx: UnboundedReceiver<Event>,
    mut text: Text,
    meta: Meta,
) -> Result<Response, ApiError> {
    let mut content = String::new();
    let reason = loop {
        let (piece, end) = text.take(rx.recv().await)?;
        content.push_str(&piece);
        if let Some(r) = end {
            break r;
        }
    };
    drop(rx); // a stop string: the model thread drops the request at its next step
    let body = json!({
        "id": meta.id, "object": "chat.completion", "created": meta.created, "model": meta.model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": reason}],
        "usage": usage(&meta, text.generated),
    });
    Ok(Json(body).into_response())
}

fn chunk(meta: &Meta, delta: Value, finish: Option<&str>) -> SseEvent {
    let v = json!({
        "id": meta.id, "object": "chat.completion.chunk", "created": meta.created, "model": meta.model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    });
    SseEvent::default().data(v.to_string())
}

/// Server-sent events: a role chunk, content chunks as tokens come, a finish chunk, the usage
/// chunk when asked, `[DONE]`. A task pumps model events into the body; when the client goes
/// away the body is dropped, the task sees it and drops the model's channel, which takes the
/// request out of the batch.
fn stream_response(
    mut rx: UnboundedReceiver<Event>,
    mut text: Text,
    meta: Meta,
    include_usage: bool,
) -> Response {
    let (out, body) = tokio::sync::mpsc::channel::<SseEvent>(64);
    tokio::spawn(async move {
        if out
            .send(chunk(
                &meta,
                json!({"role": "assistant", "content": ""}),
                None,
            ))
            .await
            .is_err()
        {
            return;
        }
        let mut end: Option<&'static str> = None;
        while end.is_none() {
            let ev = tokio::select! {
                ev = rx.recv() => ev,
                _ = out.closed() => return,
            };
            let (piece, reason) = match text.take(ev) {
                Ok(x) => x,
                Err(e) => {
                    let _ = out
                        .send(SseEvent::default().data(e.body().to_string()))
                        .await;
                    return;
                }
            };
            if !piece.is_empty()
                && out
                    .send(chunk(&meta, json!({"content": piece}), None))
                    .await
                    .is_err()
            {
                return;
            }
            end = reason;
        }
        drop(rx);
        let reason = end.unwrap_or("stop");
        if out
            .send(chunk(&meta, json!({}), Some(reason)))
            .await
            .is_err()
        {
            return;
        }
        if include_usage {
            let v = json!({
                "id": meta.id, "object": "chat.completion.chunk", "created": meta.created, "model": meta.model,
                "choices": [], "usage": usage(&meta, text.generated),
            });
            if out
                .send(SseEvent::default().data(v.to_string()))
                .await
                .is_err()
            {
                return;
            }
        }
        let _ = out.send(SseEvent::default().data("[DONE]")).await;
    });
    let stream = futures_util::stream::unfold(body, |mut r| async move {
        r.recv().await.map(|e| (Ok::<_, Infallible>(e), r))
    });
    Sse::new(stream).into_response()
}
