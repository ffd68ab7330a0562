//! Errors at the HTTP edge: every failure becomes `{"error", "message"}` with
//! a 4xx/5xx status (SPEC 4). No stack traces, no HTML.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use spywatcher_analytics::{StoreError, ValidationError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Validation(ValidationError),
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("this token may not {0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The client did not send its body in time.
    #[error("the request body was not received within {0} ms")]
    BodyTimeout(u64),
    /// The server did not answer in time (`HTTP_REQUEST_TIMEOUT_MS`).
    #[error("the request was not answered within {0} ms")]
    Timeout(u64),
    #[error("too many requests: retry in {0} s")]
    RateLimited(u64),
    #[error("too many failed authentications from this address: retry in {0} s")]
    AuthFailures(u64),
    #[error("the database is unavailable")]
    Database(#[source] StoreError),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Validation(_) => (StatusCode::UNPROCESSABLE_ENTITY, "validation_error"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::BodyTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            ApiError::Timeout(_) => (StatusCode::SERVICE_UNAVAILABLE, "timeout"),
            ApiError::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::AuthFailures(_) => (StatusCode::TOO_MANY_REQUESTS, "auth_failures"),
            ApiError::Database(_) => (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        }
    }
}

/// A wait as whole seconds for `Retry-After`: rounded up, at least 1 (a
/// client told 0 would retry at once).
pub fn retry_after_secs(wait: std::time::Duration) -> u64 {
    (wait.as_millis() as u64).div_ceil(1000).max(1)
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid(v) => ApiError::Validation(v),
            other => ApiError::Database(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        match &self {
            ApiError::Database(e) => tracing::error!(error = %e, "database error"),
            ApiError::Internal(e) => tracing::error!(error = %e, "internal error"),
            _ => {}
        }
        let mut body = json!({ "error": code, "message": self.to_string() });
        if let ApiError::Validation(v) = &self {
            body["index"] = json!(v.index);
            body["field"] = json!(v.field);
        }
        let mut response = (status, Json(body)).into_response();
        if let ApiError::RateLimited(secs) | ApiError::AuthFailures(secs) = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let ApiError::UnsupportedMediaType(_) = self {
            // RFC 7694: a 415 names the content codings the server takes.
            response.headers_mut().insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_static("identity"),
            );
        }
        response
    }
}
