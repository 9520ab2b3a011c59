//! The application's one error type, and its single mapping to HTTP.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tally_core::Reasons;

#[derive(Debug, Clone, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("body is larger than {0} bytes")]
    TooLarge(usize),
    /// Well-formed but refused: every reason, each naming its field.
    #[error("invalid: {0}")]
    Invalid(Reasons),
    /// The store or queue is unreachable or contended: retry later.
    #[error("temporarily unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl AppError {
    /// Worth retrying the same request or message later.
    pub fn is_transient(&self) -> bool {
        matches!(self, AppError::Unavailable(_))
    }
}

impl From<tally_core::Error> for AppError {
    fn from(e: tally_core::Error) -> Self {
        use tally_core::Error as E;
        match e {
            E::Invalid(r) => AppError::Invalid(r),
            E::NotFound(what) => AppError::NotFound(what),
            E::Conflict(_) | E::Unavailable(_) => AppError::Unavailable(e.to_string()),
            E::AlreadyApplied(what) => AppError::Conflict(format!("{what} was already applied")),
            E::Corrupt { .. } => AppError::Internal(e.to_string()),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            AppError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            AppError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            AppError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            AppError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            AppError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            AppError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            AppError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            AppError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let mut body = json!({"error": {"code": code, "message": self.to_string()}});
        if let AppError::Invalid(reasons) = &self {
            body["error"]["reasons"] = json!(reasons);
        }
        (status, Json(body)).into_response()
    }
}
