//! The instants a client sends, `createdAt` and `since`: one set of forms
//! and one range for both, whatever the spelling.
//!
//! Forms: an RFC 3339 string (`2026-11-01T00:00:00Z`, any offset), or epoch
//! milliseconds, as a JSON integer (`1793491200000`) or a string of digits
//! (`"1793491200000"`; a query string has no other way to write it).
//! Range: 1970-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z. RFC 3339 cannot
//! write a later year, so epoch milliseconds may not either: an instant is
//! accepted in one spelling exactly when it is in the other. (`createdAt`
//! is further bounded by the time it is received, see `parse.rs`.)

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;

/// The first instant accepted: the Unix epoch (nothing Discord records is older).
pub const MIN_EPOCH_MILLIS: i64 = 0;
/// The last instant accepted: 9999-12-31T23:59:59.999Z, the last RFC 3339 can write.
pub const MAX_EPOCH_MILLIS: i64 = 253_402_300_799_999;

/// Why a value is not an accepted instant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "must be an RFC 3339 timestamp or epoch milliseconds (an integer or a string of digits), from 1970-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z"
)]
pub struct InvalidTimestamp;

/// An instant written as a string: RFC 3339, or epoch milliseconds in
/// decimal digits. Surrounding whitespace is ignored.
pub fn parse_timestamp(text: &str) -> Result<DateTime<Utc>, InvalidTimestamp> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let ms: i64 = text.parse().map_err(|_| InvalidTimestamp)?;
        return from_epoch_millis(ms);
    }
    let parsed = DateTime::parse_from_rfc3339(text).map_err(|_| InvalidTimestamp)?;
    from_epoch_millis(parsed.timestamp_millis())
}

/// An instant in a JSON body: a string (see [`parse_timestamp`]) or an
/// integer of epoch milliseconds.
pub fn timestamp_from_json(value: &Value) -> Result<DateTime<Utc>, InvalidTimestamp> {
    match value {
        Value::String(text) => parse_timestamp(text),
        Value::Number(n) => from_epoch_millis(n.as_i64().ok_or(InvalidTimestamp)?),
        _ => Err(InvalidTimestamp),
    }
}

/// Epoch milliseconds within the accepted range. The instant keeps
/// millisecond precision: finer digits of an RFC 3339 string are dropped,
/// as the store keeps milliseconds.
pub fn from_epoch_millis(ms: i64) -> Result<DateTime<Utc>, InvalidTimestamp> {
    if !(MIN_EPOCH_MILLIS..=MAX_EPOCH_MILLIS).contains(&ms) {
        return Err(InvalidTimestamp);
    }
    Utc.timestamp_millis_opt(ms)
        .single()
        .ok_or(InvalidTimestamp)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_spelling_of_an_instant_is_the_same_instant() {
        let expected = from_epoch_millis(1_793_491_200_000).unwrap();
        for value in [
            json!("2026-11-01T00:00:00Z"),
            json!("2026-11-01T01:00:00+01:00"),
            json!("1793491200000"),
            json!(" 1793491200000 "),
            json!(1_793_491_200_000_i64),
        ] {
            assert_eq!(timestamp_from_json(&value), Ok(expected), "{value}");
        }
    }

    #[test]
    fn the_range_is_the_same_whatever_the_spelling() {
        let last = from_epoch_millis(MAX_EPOCH_MILLIS).unwrap();
        assert_eq!(parse_timestamp("9999-12-31T23:59:59.999Z"), Ok(last));
        assert_eq!(parse_timestamp("253402300799999"), Ok(last));
        assert_eq!(
            timestamp_from_json(&json!(253_402_300_799_999_i64)),
            Ok(last)
        );
        // One millisecond later is year 10000, which RFC 3339 cannot write.
        assert!(parse_timestamp("253402300800000").is_err());
        assert!(timestamp_from_json(&json!(253_402_300_800_000_i64)).is_err());
        assert!(parse_timestamp("+10000-01-01T00:00:00Z").is_err());
        let first = from_epoch_millis(0).unwrap();
        assert_eq!(parse_timestamp("1970-01-01T00:00:00Z"), Ok(first));
        assert_eq!(parse_timestamp("0"), Ok(first));
        assert!(parse_timestamp("1969-12-31T23:59:59.999Z").is_err());
        assert!(timestamp_from_json(&json!(-1)).is_err());
    }

    #[test]
    fn other_shapes_are_refused() {
        for value in [
            json!(""),
            json!("yesterday"),
            json!("12.5"),
            json!("-5"),
            json!("+5"),
            json!("99999999999999999999999"),
            json!("2026-13-01T00:00:00Z"),
            json!(1.7e12),
            json!(true),
            json!(null),
            json!(["2026-11-01T00:00:00Z"]),
        ] {
            assert!(timestamp_from_json(&value).is_err(), "{value}");
        }
    }
}
