//! The one error type of the HTTP layer: each variant is one status and a small JSON body
//! `{"error": "...", "code": "..."}`. Internal details are logged here, never sent.

use axum::{
    Json,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

use crate::{
    intake::{envelope::EnvelopeError, signature::SignatureError},
    store::database::Failure,
};

/// `Result` with the HTTP error as its default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Missing, malformed or wrong `X-FLUID-Signature`: 401.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// Body larger than `server.max_body_bytes`: 413.
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// Signed, but not something we can store (not JSON, not an object, oversized id): 400.
    #[error("{0}")]
    BadRequest(String),
    /// The request contradicts what is stored (an expected debit with another amount): 409.
    #[error("{0}")]
    Conflict(String),
    /// No such route: 404.
    #[error("no such route")]
    NotFound,
    /// No stored event with that provider and event id: 404.
    #[error("no such event")]
    NoSuchEvent,
    /// No stored transaction matches: 404.
    #[error("no such transaction")]
    NoSuchTransaction,
    /// `POST /webhooks/{provider}` for a provider that is not configured: 404.
    #[error("unknown provider")]
    UnknownProvider,
    /// The route exists, the method does not: 405.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// No or wrong admin bearer token: 401.
    #[error("missing or wrong bearer token")]
    Unauthorized,
    /// The client's address may not deliver for this provider, or HTTPS is required: 403.
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// The client sent its body too slowly: 408.
    #[error("request body not received in time")]
    RequestTimeout,
    /// The client is over its rate: 429 with `Retry-After`.
    #[error("too many requests")]
    RateLimited {
        /// Seconds until the client may try again.
        retry_after: u64,
    },
    /// Too many requests in flight: 503, so the sender retries.
    #[error("server busy")]
    Busy,
    /// The database could not be reached in time: 503, so FLUID retries.
    #[error("database unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// A bug or an unexpected failure: 500, logged.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl Error {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Signature(SignatureError::Missing) => {
                (StatusCode::UNAUTHORIZED, "missing_signature")
            }
            Self::Signature(_) => (StatusCode::UNAUTHORIZED, "invalid_signature"),
            Self::PayloadTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            Self::NoSuchEvent => (StatusCode::NOT_FOUND, "no_such_event"),
            Self::NoSuchTransaction => (StatusCode::NOT_FOUND, "no_such_transaction"),
            Self::UnknownProvider => (StatusCode::NOT_FOUND, "unknown_provider"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::RequestTimeout => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            Self::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Self::Busy => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        match &self {
            Self::Unavailable(e) => tracing::warn!(
                error = format!("{e:#}"),
                "answering 503: database unavailable"
            ),
            Self::Internal(e) => tracing::error!(error = format!("{e:#}"), "answering 500"),
            _ => {}
        }
        let body = Json(json!({ "error": self.to_string(), "code": code }));
        // FLUID retries 503 on its own schedule; Retry-After helps other clients.
        let retry_after = match &self {
            Self::RateLimited { retry_after } => Some(*retry_after),
            Self::Unavailable(_) | Self::Busy => Some(5),
            _ => None,
        };
        match retry_after {
            Some(secs) => (status, [(header::RETRY_AFTER, secs.to_string())], body).into_response(),
            None => (status, body).into_response(),
        }
    }
}

impl From<EnvelopeError> for Error {
    /// A signed body that cannot be stored as an event: 400.
    fn from(error: EnvelopeError) -> Self {
        Self::BadRequest(error.0)
    }
}

impl From<Failure> for Error {
    /// A database failure as the store sorted it: bad data 400, unreachable or contended 503 (the
    /// sender retries), anything else 500.
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::BadData(message) => Self::BadRequest(message),
            Failure::Unreachable(message) | Failure::Contended(message) => {
                Self::Unavailable(anyhow::anyhow!(message))
            }
            Failure::Bug(message) => Self::Internal(anyhow::anyhow!(message)),
        }
    }
}

impl From<sqlx::Error> for Error {
    /// A failed query of a handler, sorted by the store.
    fn from(error: sqlx::Error) -> Self {
        Failure::of(&error).into()
    }
}

/// Answers unknown routes with a JSON 404.
pub async fn not_found() -> Error {
    Error::NotFound
}

/// Answers a known route called with the wrong method with a JSON 405 (axum adds `Allow`).
pub async fn method_not_allowed() -> Error {
    Error::MethodNotAllowed
}
