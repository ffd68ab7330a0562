//! `since`: the lower bound of an analytics query.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// Why a string is not a valid `since`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be an RFC 3339 timestamp or epoch milliseconds")]
pub struct InvalidSince;

/// An instant with millisecond precision: the analytics compare stored
/// `createdAt` (epoch ms) against it, so finer precision would be a lie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Since(i64);

impl Since {
    /// Accepts RFC 3339 (`2026-11-01T00:00:00Z`) or epoch milliseconds (`1793491200000`).
    pub fn parse(s: &str) -> Result<Self, InvalidSince> {
        let s = s.trim();
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            let ms: i64 = s.parse().map_err(|_| InvalidSince)?;
            return Self::from_epoch_millis(ms).ok_or(InvalidSince);
        }
        DateTime::parse_from_rfc3339(s)
            .map(|t| Self(t.timestamp_millis()))
            .map_err(|_| InvalidSince)
    }

    /// `None` when `ms` is outside what chrono can represent.
    pub fn from_epoch_millis(ms: i64) -> Option<Self> {
        Utc.timestamp_millis_opt(ms).single().map(|_| Self(ms))
    }

    pub fn as_epoch_millis(&self) -> i64 {
        self.0
    }

    pub fn as_datetime(&self) -> DateTime<Utc> {
        // In range by construction.
        Utc.timestamp_millis_opt(self.0)
            .single()
            .unwrap_or_default()
    }

    /// The `{since}` segment of a cache key (SPEC 2.3): epoch ms or `all`.
    pub fn key_segment(since: Option<&Since>) -> std::borrow::Cow<'static, str> {
        since.map_or(std::borrow::Cow::Borrowed("all"), |s| {
            s.0.to_string().into()
        })
    }
}

impl From<DateTime<Utc>> for Since {
    fn from(t: DateTime<Utc>) -> Self {
        Self(t.timestamp_millis())
    }
}

impl FromStr for Since {
    type Err = InvalidSince;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Since {
    type Error = InvalidSince;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Since> for String {
    fn from(s: Since) -> Self {
        s.0.to_string()
    }
}

impl fmt::Display for Since {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms_to_the_same_instant() {
        let a = Since::parse("2026-11-01T00:00:00Z").unwrap();
        let b = Since::parse("1793491200000").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.as_epoch_millis(), 1_793_491_200_000);
        assert_eq!(Since::parse("2026-11-01T01:00:00+01:00").unwrap(), a);
    }

    #[test]
    fn rejects_garbage() {
        for s in [
            "",
            "yesterday",
            "12.5",
            "-5",
            "99999999999999999999999",
            "2026-13-01T00:00:00Z",
        ] {
            assert!(Since::parse(s).is_err(), "{s}");
        }
    }
}
