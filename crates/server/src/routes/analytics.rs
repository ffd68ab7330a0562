//! `GET|POST /api/analytics/{type}?guildId=&since=`
//!
//! The service's hottest route. A cached answer costs a token check, two
//! parameters scanned out of the query string, one lookup and the headers:
//! no middleware layer, no parameter map, nothing boxed per request.

use axum::extract::FromRequestParts;
use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use spywatcher_analytics::{AnalyticsKind, GuildId, Since};
use spywatcher_cache::Origin;

use super::extract;
use super::framing::OptionalJsonBody;
use crate::auth::{Authorized, Caller, Reader};
use crate::error::ApiError;
use crate::rate_limit::ClientIp;
use crate::service::cache_label;
use crate::state::AppState;

const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// The analytics type named by the request's path. The router gives each
/// type a static route, so this reads the last path segment instead of a
/// captured parameter; only a percent-encoded spelling (which reaches the
/// `{kind}` route) goes through axum's decoding.
pub struct Kind(AnalyticsKind);

impl<S: Send + Sync> FromRequestParts<S> for Kind {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let decoded;
        let segment = parts.uri.path().rsplit('/').next().unwrap_or_default();
        let name = if segment.contains('%') {
            decoded = extract::path(Path::<String>::from_request_parts(parts, state).await)?;
            decoded.as_str()
        } else {
            segment
        };
        name.parse()
            .map(Kind)
            .map_err(|e: spywatcher_analytics::domain::UnknownKind| {
                ApiError::NotFound(e.to_string())
            })
    }
}

pub async fn get(
    State(state): State<AppState>,
    auth: Authorized<Reader>,
    ip: ClientIp,
    Kind(kind): Kind,
    uri: Uri,
    IfNoneMatch(if_none_match): IfNoneMatch,
) -> Result<Response, ApiError> {
    state.rate_limiter.admit(auth.caller, ip).await?;
    let query = uri.query();
    let guild = extract::guild_id(extract::param(query, "guildId").as_deref())?;
    let since = extract::since(extract::param(query, "since").as_deref())?;
    let client = (auth.caller, ip);
    respond(&state, client, kind, &guild, since, if_none_match.as_ref()).await
}

/// The POST alias: the parameters may also come in a JSON body, whose
/// fields win over the query string's. In the body, `guildId` is a string
/// (as everywhere: a JSON number cannot hold every snowflake exactly), and
/// `since` any form of an instant (`domain/timestamp.rs`): a string, or an
/// integer of epoch milliseconds.
pub async fn post(
    State(state): State<AppState>,
    auth: Authorized<Reader>,
    ip: ClientIp,
    Kind(kind): Kind,
    uri: Uri,
    IfNoneMatch(if_none_match): IfNoneMatch,
    OptionalJsonBody(body): OptionalJsonBody,
) -> Result<Response, ApiError> {
    state.rate_limiter.admit(auth.caller, ip).await?;
    let fields = if body.is_empty() {
        serde_json::Map::new()
    } else {
        match extract::json(&body)? {
            serde_json::Value::Object(fields) => fields,
            _ => {
                return Err(ApiError::BadRequest(
                    "the body must be a JSON object".into(),
                ));
            }
        }
    };
    let query = uri.query();
    let guild = match fields.get("guildId") {
        None | Some(serde_json::Value::Null) => {
            extract::guild_id(extract::param(query, "guildId").as_deref())?
        }
        Some(serde_json::Value::String(raw)) => extract::guild_id(Some(raw))?,
        Some(_) => {
            return Err(ApiError::BadRequest(
                "guildId must be a string of 1-20 decimal digits".into(),
            ));
        }
    };
    let since = match fields.get("since") {
        None | Some(serde_json::Value::Null) => {
            extract::since(extract::param(query, "since").as_deref())?
        }
        Some(serde_json::Value::String(raw)) if raw.is_empty() => None,
        Some(value) => Some(
            Since::from_json(value)
                .map_err(|e| ApiError::BadRequest(format!("since {value}: {e}")))?,
        ),
    };
    let client = (auth.caller, ip);
    respond(&state, client, kind, &guild, since, if_none_match.as_ref()).await
}

/// The analytics as JSON with its `ETag` and `X-Cache`, or 304 when the
/// client already holds this version. A miss costs the client more of its
/// rate-limit budget than the hit it was admitted for: it made a query.
async fn respond(
    state: &AppState,
    (caller, ip): (Caller, ClientIp),
    kind: AnalyticsKind,
    guild: &GuildId,
    since: Option<Since>,
    if_none_match: Option<&HeaderValue>,
) -> Result<Response, ApiError> {
    let (json, origin) = state.service.analytics(kind, guild, since).await?;
    if matches!(origin, Origin::Loader | Origin::Flight) {
        state.rate_limiter.charge_miss(caller, ip).await;
    }
    let etag = etag(json.digest);
    let x_cache = HeaderValue::from_static(cache_label(origin));
    // A stale value says how old it is (whole seconds, RFC 9111 `Age`).
    let age = match origin {
        Origin::Stale { age } => Some((header::AGE, HeaderValue::from(age.as_secs()))),
        _ => None,
    };
    if matches_etag(if_none_match, &etag) {
        let mut response = (
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag), (X_CACHE, x_cache)],
        )
            .into_response();
        response.headers_mut().extend(age);
        return Ok(response);
    }
    let mut response = (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::ETAG, etag),
            (X_CACHE, x_cache),
        ],
        json.bytes,
    )
        .into_response();
    response.headers_mut().extend(age);
    Ok(response)
}

/// A strong validator of the body: the digest of its JSON (taken by the
/// cache when the value was stored), quoted, in hex.
fn etag(digest: u64) -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hash = digest;
    let mut etag = [b'"'; 18];
    for (i, byte) in etag[1..17].iter_mut().enumerate() {
        *byte = HEX[((hash >> (60 - 4 * i)) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&etag).expect("hex digits in quotes are a valid header value")
}

/// The `If-None-Match` header alone: the handler needs no other header, and
/// cloning the whole map on the hottest route costs allocations.
pub struct IfNoneMatch(Option<HeaderValue>);

impl<S: Send + Sync> FromRequestParts<S> for IfNoneMatch {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(IfNoneMatch(
            parts.headers.get(header::IF_NONE_MATCH).cloned(),
        ))
    }
}

/// Does `If-None-Match` name the current ETag (or `*`)?
fn matches_etag(if_none_match: Option<&HeaderValue>, etag: &HeaderValue) -> bool {
    if_none_match
        .and_then(|v| v.to_str().ok())
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || tag.as_bytes() == etag.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_is_the_quoted_hex_hash_and_matches_lists_and_weak_forms() {
        let etag = etag(xxhash_rust::xxh3::xxh3_64(b"[]"));
        let expected = format!("\"{:016x}\"", xxhash_rust::xxh3::xxh3_64(b"[]"));
        assert_eq!(etag.to_str().unwrap(), expected);
        let header = |s: &str| HeaderValue::from_str(s).unwrap();
        assert!(matches_etag(Some(&header(&expected)), &etag));
        assert!(matches_etag(
            Some(&header(&format!("\"x\", W/{expected}"))),
            &etag
        ));
        assert!(matches_etag(Some(&header("*")), &etag));
        assert!(!matches_etag(Some(&header("\"0000000000000000\"")), &etag));
        assert!(!matches_etag(None, &etag));
    }
}
