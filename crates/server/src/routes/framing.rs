//! The body of a request, read only when it is framed as the API expects:
//! `Content-Type: application/json` (a `charset` parameter allowed), no
//! content coding, at most `BODY_LIMIT_BYTES`, received within
//! `HTTP_BODY_TIMEOUT_MS`.
//!
//! A compressed body is refused (415), not decoded: event batches are small
//! JSON, and decoding would let a few kilobytes of gzip expand into the
//! body limit's worth of work per request before any check.
//!
//! A `Content-Length` above the limit is refused before a byte of the body
//! is read, so a client announcing 10 GB hears 413 at once instead of the
//! server waiting for (or reading) the body.

use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use bytes::Bytes;

use crate::error::ApiError;
use crate::state::AppState;

/// A body that must be JSON (the events route).
pub struct JsonBody(pub Bytes);

/// A body that may be absent (the analytics POST alias); when present it
/// must be JSON.
pub struct OptionalJsonBody(pub Bytes);

impl FromRequest<AppState> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        json_framing(request.headers())?;
        read(request, state).await.map(JsonBody)
    }
}

impl FromRequest<AppState> for OptionalJsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        // The headers alone cannot tell an empty body (a chunked one may be
        // empty): the framing is judged now, and matters if there is content.
        let framing = json_framing(request.headers());
        let body = read(request, state).await?;
        if !body.is_empty() {
            framing?;
        }
        Ok(OptionalJsonBody(body))
    }
}

/// 415 unless the body is declared as uncompressed JSON.
pub fn json_framing(headers: &HeaderMap) -> Result<(), ApiError> {
    for coding in headers.get_all(header::CONTENT_ENCODING) {
        let coding = coding.to_str().unwrap_or("?");
        let identity = coding
            .split(',')
            .map(str::trim)
            .all(|c| c.is_empty() || c.eq_ignore_ascii_case("identity"));
        if !identity {
            return Err(ApiError::UnsupportedMediaType(format!(
                "Content-Encoding {coding} is not supported: send the body uncompressed"
            )));
        }
    }
    let Some(content_type) = headers.get(header::CONTENT_TYPE) else {
        return Err(ApiError::UnsupportedMediaType(
            "Content-Type is missing: send Content-Type: application/json".into(),
        ));
    };
    // The media type without its parameters (`; charset=utf-8`).
    let essence = content_type
        .to_str()
        .unwrap_or("?")
        .split(';')
        .next()
        .unwrap_or_default()
        .trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type {essence} is not supported: send Content-Type: application/json"
        )))
    }
}

/// The whole body, or 413 from its declared length before reading it.
async fn read(request: Request, state: &AppState) -> Result<Bytes, ApiError> {
    let limit = state.body_limit;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    Bytes::from_request(request, state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(limit)
        } else if is_deadline(&e) {
            ApiError::BodyTimeout(state.body_timeout.as_millis() as u64)
        } else {
            ApiError::BadRequest(format!("unreadable body: {}", e.body_text()))
        }
    })
}

/// Did the body deadline (`RequestBodyDeadlineLayer`) end the read?
fn is_deadline(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = e.source();
    }
    false
}
