//! Errors as the OpenAI API writes them: a 4xx/5xx status and
//! `{"error": {"message", "type", "param", "code"}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// One refused or failed request.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    /// OpenAI's `error.type`: `invalid_request_error`, `not_found_error`, `rate_limit_error`, `server_error`.
    pub kind: &'static str,
    /// A machine-readable reason (`context_length_exceeded`, `image_too_large`, ...).
    pub code: &'static str,
    /// The request field at fault, as a path (`messages[0].content[1].image_url`).
    pub param: Option<String>,
    pub message: String,
}

impl ApiError {
    /// 400 `invalid_request_error`.
    pub fn invalid(
        code: &'static str,
        param: impl Into<Option<String>>,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            code,
            param: param.into(),
            message: message.into(),
        }
    }

    /// 413: a size limit (body, image pixels); the message names the flag that sets it.
    pub fn too_large(
        code: &'static str,
        param: impl Into<Option<String>>,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            kind: "invalid_request_error",
            code,
            param: param.into(),
            message: message.into(),
        }
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            kind: "not_found_error",
            code,
            param: None,
            message: message.into(),
        }
    }

    /// 429: the queue of waiting requests is full.
    pub fn queue_full(max_queue: usize) -> Self {
        ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            kind: "rate_limit_error",
            code: "queue_full",
            param: None,
            message: format!(
                "the server has {max_queue} requests waiting already (--max-queue); retry later"
            ),
        }
    }

    /// 500 (or 503 when the model is gone): the server's fault, never the request's.
    pub fn server(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind: "server_error",
            code,
            param: None,
            message: message.into(),
        }
    }

    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}
