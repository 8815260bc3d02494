//! A chat-completion request body, checked field by field and turned into what the batcher runs:
//! prompt ids (the model's own chat template over the messages, `<image>` expanded), the image's
//! pixel values (the checkpoint's processor), generation parameters. Every refusal is an
//! [`ApiError`] naming the field; nothing here panics on any input.
//!
//! Accepted: `model`, `messages` (`system` / `user` / `assistant`; content a string or parts
//! `{"type": "text", "text"}` and `{"type": "image_url", "image_url": {"url"} | "url"}` where the
//! url is `data:image/png;base64,...` or `data:image/jpeg;base64,...`, or `file://PATH` under the
//! `--allow-file-urls` folder), `max_tokens` / `max_completion_tokens`, `temperature`, `top_p`,
//! `seed`, `stop` (a string or up to 4), `stream`, `stream_options.include_usage`, and `n`,
//! `logprobs`, `presence_penalty`, `frequency_penalty`, `user` at their defaults. Any other field is
//! refused (a typo would otherwise change nothing silently).

use crate::error::ApiError;
use base64::Engine;
use foveate_core::Error;
use foveate_graph::{GenerateParams, SamplingParams};
use foveate_models::image::{decode_bytes, preprocess, DecodeOptions, ImageProcessorConfig};
use foveate_models::{Model, PixelValues, Request, IMAGE_PLACEHOLDER};
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Request limits (each a `foveate serve` flag).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Images per request (`--max-images`; LLaVA-1.5 takes one).
    pub max_images: usize,
    /// Width x height of one image, checked from its header before decoding (`--max-image-pixels`).
    pub max_image_pixels: u64,
    /// `file://` image URLs are read only from under this folder (`--allow-file-urls DIR`).
    pub allow_file_urls: Option<PathBuf>,
}

/// A request ready for the batcher.
pub struct Prepared {
    pub request: Request,
    pub params: GenerateParams,
    /// Stop strings: the text ends before the first of them.
    pub stops: Vec<String>,
    pub stream: bool,
    pub include_usage: bool,
}

/// What the HTTP side needs of the model: its tokenizer and template, its image processor.
pub struct Frontend {
    pub model: Arc<Model>,
    pub processor: ImageProcessorConfig,
    pub name: String,
    pub limits: Limits,
    seeds: AtomicU64,
}

const TOP_LEVEL: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "seed",
    "stop",
    "stream",
    "stream_options",
    "n",
    "user",
    "presence_penalty",
    "frequency_penalty",
    "logprobs",
];

fn unknown_fields(m: &Map<String, Value>, at: &str, allowed: &[&str]) -> Result<(), ApiError> {
    match m.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => {
            let path = if at.is_empty() {
                k.clone()
            } else {
                format!("{at}.{k}")
            };
            Err(ApiError::invalid(
                "unknown_field",
                path,
                format!(
                    "unknown field `{k}`{} (accepted: {})",
                    if at.is_empty() {
                        String::new()
                    } else {
                        format!(" in {at}")
                    },
                    allowed.join(", ")
                ),
            ))
        }
        None => Ok(()),
    }
}

fn bad(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid("invalid_value", param.to_string(), message)
}

fn opt_f64(m: &Map<String, Value>, key: &str) -> Result<Option<f64>, ApiError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| bad(key, format!("`{key}` must be a number, got {v}"))),
    }
}

fn opt_u64(m: &Map<String, Value>, key: &str) -> Result<Option<u64>, ApiError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            bad(
                key,
                format!("`{key}` must be a non-negative integer, got {v}"),
            )
        }),
    }
}

fn opt_bool(m: &Map<String, Value>, key: &str) -> Result<Option<bool>, ApiError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_bool()
            .map(Some)
            .ok_or_else(|| bad(key, format!("`{key}` must be true or false, got {v}"))),
    }
}

impl Frontend {
    pub fn new(model: Arc<Model>, name: String, limits: Limits) -> foveate_core::Result<Self> {
        let processor = model.checkpoint.image_processor()?;
        Ok(Frontend {
            model,
            processor,
            name,
            limits,
            seeds: AtomicU64::new(0x5EED),
        })
    }

    /// Parses and checks a request body and builds its prompt (CPU work: run it off the reactor).
    pub fn prepare(&self, body: &[u8]) -> Result<Prepared, ApiError> {
        let v: Value = serde_json::from_slice(body).map_err(|e| {
            ApiError::invalid(
                "invalid_json",
                None,
                format!("the body is not valid JSON: {e}"),
            )
        })?;
        let m = v.as_object().ok_or_else(|| {
            ApiError::invalid("invalid_json", None, "the body must be a JSON object")
        })?;
        unknown_fields(m, "", TOP_LEVEL)?;
        match m.get("model").and_then(Value::as_str) {
            None => {
                return Err(bad(
                    "model",
                    "`model` (a string) is required; GET /v1/models lists it",
                ))
            }
            Some(name) if name != self.name => {
                return Err(ApiError::not_found(
                    "model_not_found",
                    format!(
                        "model `{name}` is not served here (this server serves `{}`)",
                        self.name
                    ),
                ))
            }
            Some(_) => {}
        }
        self.check_defaults(m)?;
        let stream = opt_bool(m, "stream")?.unwrap_or(false);
        let include_usage = match m.get("stream_options") {
            None | Some(Value::Null) => false,
            Some(Value::Object(o)) => {
                unknown_fields(o, "stream_options", &["include_usage"])?;
                opt_bool(o, "include_usage")
                    .map_err(|e| ApiError {
                        param: Some("stream_options.include_usage".into()),
                        ..e
                    })?
                    .unwrap_or(false)
            }
            Some(other) => {
                return Err(bad(
                    "stream_options",
                    format!("must be an object, got {other}"),
                ))
            }
        };
        let temperature = opt_f64(m, "temperature")?.unwrap_or(1.0);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(bad(
                "temperature",
                format!("must be between 0 and 2, got {temperature}"),
            ));
        }
        let top_p = opt_f64(m, "top_p")?.unwrap_or(1.0);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(bad("top_p", format!("must be in (0, 1], got {top_p}")));
        }
        let seed = match m.get("seed") {
            None | Some(Value::Null) => self
                .seeds
                .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed),
            Some(v) => v
                .as_i64()
                .map(|s| s as u64)
                .or_else(|| v.as_u64())
                .ok_or_else(|| bad("seed", format!("must be an integer, got {v}")))?,
        };
        let stops = stop_strings(m.get("stop"))?;
        let max_tokens = match (
            opt_u64(m, "max_tokens")?,
            opt_u64(m, "max_completion_tokens")?,
        ) {
            (Some(_), Some(_)) => {
                return Err(bad(
                    "max_tokens",
                    "give max_tokens or max_completion_tokens, not both",
                ))
            }
            (Some(0), _) | (_, Some(0)) => return Err(bad("max_tokens", "must be at least 1")),
            (a, b) => a.or(b),
        };
        let (messages, images) = self.messages(m.get("messages"))?;
        let request = self.tokenize(&messages, images)?;
        let (window, _) = self.model.checkpoint.config.context_window();
        let room = window.saturating_sub(request.input_ids.len());
        let max_new_tokens = match max_tokens {
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            None => room.max(1),
        };
        self.model
            .check_request(&request, max_new_tokens)
            .map_err(|e| {
                ApiError::invalid(
                    "context_length_exceeded",
                    "messages".to_string(),
                    e.to_string(),
                )
            })?;
        let sampling = SamplingParams {
            temperature: temperature as f32,
            top_k: 0,
            top_p: top_p as f32,
            seed,
        };
        let params = GenerateParams {
            max_new_tokens,
            sampling,
            stop_tokens: self.model.checkpoint.eos_token_ids.clone(),
            prompt_logits: false,
        };
        Ok(Prepared {
            request,
            params,
            stops,
            stream,
            include_usage,
        })
    }

    /// Fields accepted only at the value that changes nothing.
    fn check_defaults(&self, m: &Map<String, Value>) -> Result<(), ApiError> {
        if let Some(n) = opt_u64(m, "n")? {
            if n != 1 {
                return Err(bad("n", format!("only n = 1 is supported, got {n}")));
            }
        }
        if opt_bool(m, "logprobs")? == Some(true) {
            return Err(bad("logprobs", "logprobs are not supported"));
        }
        for key in ["presence_penalty", "frequency_penalty"] {
            if let Some(p) = opt_f64(m, key)? {
                if p != 0.0 {
                    return Err(bad(key, format!("only 0 is supported, got {p}")));
                }
            }
        }
        match m.get("user") {
            None | Some(Value::Null) | Some(Value::String(_)) => Ok(()),
            Some(v) => Err(bad("user", format!("must be a string, got {v}"))),
        }
    }

    /// The messages as transformers' chat templates take them, and the decoded images in order.
    fn messages(&self, v: Option<&Value>) -> Result<(Value, Vec<PixelValues>), ApiError> {
        let list = match v {
            Some(Value::Array(a)) if !a.is_empty() => a,
            Some(Value::Array(_)) => return Err(bad("messages", "`messages` is empty")),
            _ => {
                return Err(bad(
                    "messages",
                    "`messages` (a non-empty array) is required",
                ))
            }
        };
        let mut out = Vec::with_capacity(list.len());
        let mut images = Vec::new();
        for (i, msg) in list.iter().enumerate() {
            let at = format!("messages[{i}]");
            let m = msg
                .as_object()
                .ok_or_else(|| bad(&at, "each message must be an object"))?;
            unknown_fields(m, &at, &["role", "content", "name"])?;
            let role = match m.get("role").and_then(Value::as_str) {
                Some(r @ ("system" | "user" | "assistant")) => r,
                Some(r) => {
                    return Err(bad(
                        &format!("{at}.role"),
                        format!("role `{r}` is not supported (system, user, assistant)"),
                    ))
                }
                None => return Err(bad(&format!("{at}.role"), "`role` (a string) is required")),
            };
            let content = match m.get("content") {
                Some(Value::String(s)) => {
                    check_text(s, &format!("{at}.content"))?;
                    json!(s)
                }
                Some(Value::Array(parts)) => {
                    let mut hf = Vec::with_capacity(parts.len());
                    for (j, p) in parts.iter().enumerate() {
                        hf.push(self.part(p, &format!("{at}.content[{j}]"), &mut images)?);
                    }
                    Value::Array(hf)
                }
                _ => {
                    return Err(bad(
                        &format!("{at}.content"),
                        "`content` must be a string or an array of parts",
                    ))
                }
            };
            out.push(json!({"role": role, "content": content}));
        }
        Ok((Value::Array(out), images))
    }

    fn part(&self, p: &Value, at: &str, images: &mut Vec<PixelValues>) -> Result<Value, ApiError> {
        let m = p
            .as_object()
            .ok_or_else(|| bad(at, "each content part must be an object"))?;
        match m.get("type").and_then(Value::as_str) {
            Some("text") => {
                unknown_fields(m, at, &["type", "text"])?;
                let text = m
                    .get("text")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad(&format!("{at}.text"), "`text` (a string) is required"))?;
                check_text(text, &format!("{at}.text"))?;
                Ok(json!({"type": "text", "text": text}))
            }
            Some("image_url") => {
                unknown_fields(m, at, &["type", "image_url"])?;
                let at_url = format!("{at}.image_url");
                let url = match m.get("image_url") {
                    Some(Value::String(s)) => s.as_str(),
                    Some(Value::Object(o)) => {
                        unknown_fields(o, &at_url, &["url", "detail"])?;
                        o.get("url").and_then(Value::as_str).ok_or_else(|| {
                            bad(&format!("{at_url}.url"), "`url` (a string) is required")
                        })?
                    }
                    _ => return Err(bad(&at_url, "`image_url` must be an object with a `url`")),
                };
                if images.len() >= self.limits.max_images {
                    return Err(ApiError::invalid(
                        "too_many_images",
                        at.to_string(),
                        format!("more than {} image(s) in the request (--max-images; this model takes at most one per request)", self.limits.max_images),
                    ));
                }
                images.push(self.image(url, &at_url)?);
                Ok(json!({"type": "image"}))
            }
            Some(t) => Err(bad(
                &format!("{at}.type"),
                format!("content part type `{t}` is not supported (text, image_url)"),
            )),
            None => Err(bad(&format!("{at}.type"), "`type` (a string) is required")),
        }
    }

    /// Decodes (header size check first) and preprocesses one image.
    fn image(&self, url: &str, at: &str) -> Result<PixelValues, ApiError> {
        let invalid = |msg: String| ApiError::invalid("invalid_image", at.to_string(), msg);
        let (bytes, label) = if let Some(rest) = url.strip_prefix("data:") {
            let (head, data) = rest
                .split_once(',')
                .ok_or_else(|| invalid("a data: URL needs a `,` before its data".into()))?;
            let mime = head.strip_suffix(";base64").ok_or_else(|| {
                invalid("only base64 data: URLs are accepted (data:image/png;base64,...)".into())
            })?;
            if !matches!(mime, "image/png" | "image/jpeg" | "image/jpg") {
                return Err(invalid(format!(
                    "data: URL of type `{mime}` (accepted: image/png, image/jpeg)"
                )));
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .map_err(|e| invalid(format!("bad base64 in the data: URL: {e}")))?;
            (bytes, format!("{at} ({mime})"))
        } else if let Some(path) = url.strip_prefix("file://") {
            let Some(root) = &self.limits.allow_file_urls else {
                return Err(ApiError::invalid("file_urls_disabled", at.to_string(), "file:// image URLs are off (start the server with --allow-file-urls DIR); send a data: URL"));
            };
            let p = std::fs::canonicalize(path).map_err(|e| invalid(format!("{path}: {e}")))?;
            if !p.starts_with(root) || !p.is_file() {
                return Err(ApiError::invalid(
                    "file_url_not_allowed",
                    at.to_string(),
                    format!(
                        "{path} is not a file under the --allow-file-urls folder {}",
                        root.display()
                    ),
                ));
            }
            (
                std::fs::read(&p).map_err(|e| invalid(format!("{path}: {e}")))?,
                p.display().to_string(),
            )
        } else {
            let scheme = url.split(':').next().unwrap_or("");
            return Err(invalid(format!("image URLs of scheme `{scheme}` are not fetched by this server: send a data:image/png;base64 or data:image/jpeg;base64 URL")));
        };
        let opts = DecodeOptions {
            max_pixels: self.limits.max_image_pixels,
            ..DecodeOptions::default()
        };
        let img = decode_bytes(&bytes, &label, &opts).map_err(|e| match &e {
            Error::Format { field, msg, .. }
                if field == "dimensions" && msg.contains("exceeds") =>
            {
                ApiError::too_large(
                    "image_too_large",
                    at.to_string(),
                    format!(
                        "{e} (the server's limit is --max-image-pixels {})",
                        self.limits.max_image_pixels
                    ),
                )
            }
            _ => invalid(e.to_string()),
        })?;
        let (data, height, width) =
            preprocess(&self.processor, &img).map_err(|e| invalid(e.to_string()))?;
        Ok(PixelValues {
            data,
            height,
            width,
        })
    }

    /// The chat template over the messages, tokenized with `<image>` expanded.
    fn tokenize(
        &self,
        messages: &Value,
        mut images: Vec<PixelValues>,
    ) -> Result<Request, ApiError> {
        let prompt = &self.model.checkpoint.prompt;
        let text = prompt.render_messages(messages).map_err(|e| {
            ApiError::invalid("invalid_messages", "messages".to_string(), e.to_string())
        })?;
        let placed = text.matches(IMAGE_PLACEHOLDER).count();
        if placed != images.len() {
            return Err(ApiError::invalid(
                "invalid_messages",
                "messages".to_string(),
                format!(
                    "the chat template placed {placed} image(s) but the request has {}",
                    images.len()
                ),
            ));
        }
        let input_ids = prompt.encode(&text).map_err(|e| {
            ApiError::invalid("invalid_messages", "messages".to_string(), e.to_string())
        })?;
        Ok(Request {
            input_ids,
            pixels: images.pop(),
        })
    }
}

/// User text may not smuggle in image tokens.
fn check_text(s: &str, at: &str) -> Result<(), ApiError> {
    if s.contains(IMAGE_PLACEHOLDER) {
        return Err(bad(
            at,
            format!("text may not contain `{IMAGE_PLACEHOLDER}`: send images as image_url parts"),
        ));
    }
    Ok(())
}

fn stop_strings(v: Option<&Value>) -> Result<Vec<String>, ApiError> {
    let list: Vec<String> = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str().map(String::from).ok_or_else(|| {
                    bad(
                        "stop",
                        format!("each stop sequence must be a string, got {x}"),
                    )
                })
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(bad(
                "stop",
                format!("must be a string or an array of strings, got {other}"),
            ))
        }
    };
    if list.len() > 4 {
        return Err(bad(
            "stop",
            format!("at most 4 stop sequences, got {}", list.len()),
        ));
    }
    if list.iter().any(String::is_empty) {
        return Err(bad("stop", "a stop sequence may not be empty"));
    }
    Ok(list)
}
