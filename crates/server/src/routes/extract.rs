//! Request parts parsed with JSON errors: axum's own extractor rejections
//! answer in plain text, which SPEC 4 rules out.

use std::borrow::Cow;

use axum::extract::Path;
use axum::extract::rejection::PathRejection;
use spywatcher_analytics::{GuildId, Since};

use crate::error::ApiError;

/// The value of one query-string parameter, percent-decoded (lossily: a
/// malformed sequence becomes U+FFFD, which the value's own check then
/// rejects). The last of repeated names wins. Looked up by scanning, not
/// collected into a map: the analytics routes read two parameters, on the
/// hottest path of the service.
pub fn param<'q>(query: Option<&'q str>, name: &str) -> Option<Cow<'q, str>> {
    let query = query?;
    if !query.contains(['%', '+']) {
        // Nothing to decode (the usual `?guildId=123`): borrow the value.
        return query
            .split('&')
            .rev()
            .find_map(|pair| match pair.split_once('=') {
                Some((key, value)) => (key == name).then_some(value),
                None => (pair == name).then_some(""),
            })
            .map(Cow::Borrowed);
    }
    form_urlencoded::parse(query.as_bytes())
        .filter(|(key, _)| key == name)
        .map(|(_, value)| value)
        .last()
}

pub fn path(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    path.map(|Path(segment)| segment)
        .map_err(|e| ApiError::BadRequest(format!("invalid path: {}", e.body_text())))
}

pub fn json(body: &[u8]) -> Result<serde_json::Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))
}

/// The required `guildId` parameter.
pub fn guild_id(raw: Option<&str>) -> Result<GuildId, ApiError> {
    let raw = raw.ok_or_else(|| ApiError::BadRequest("guildId is required".into()))?;
    GuildId::parse(raw).map_err(|e| ApiError::BadRequest(format!("guildId {raw:?}: {e}")))
}

/// The optional `since` parameter (empty counts as absent).
pub fn since(raw: Option<&str>) -> Result<Option<Since>, ApiError> {
    raw.filter(|s| !s.is_empty())
        .map(|raw| {
            Since::parse(raw).map_err(|e| ApiError::BadRequest(format!("since {raw:?}: {e}")))
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::param;

    #[test]
    fn params_are_decoded_and_the_last_one_wins() {
        let query = Some("guildId=1&since=2024-01-01T00%3A00%3A00Z&guildId=2&x");
        assert_eq!(param(query, "guildId").as_deref(), Some("2"));
        assert_eq!(
            param(query, "since").as_deref(),
            Some("2024-01-01T00:00:00Z")
        );
        assert_eq!(param(query, "x").as_deref(), Some(""));
        assert_eq!(param(query, "missing"), None);
        assert_eq!(param(None, "guildId"), None);
        assert_eq!(param(Some("a=%FF"), "a").as_deref(), Some("\u{fffd}"));
        let plain = Some("guildId=1&since=2024&guildId=2&x&&=y");
        assert_eq!(param(plain, "guildId").as_deref(), Some("2"));
        assert_eq!(param(plain, "x").as_deref(), Some(""));
        assert_eq!(param(plain, "").as_deref(), Some("y"));
        assert_eq!(param(Some("a=b+c"), "a").as_deref(), Some("b c"));
    }
}
