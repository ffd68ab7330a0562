//! `since`: the lower bound of an analytics query.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::timestamp::{self, InvalidTimestamp};

/// Why a value is not a valid `since`: the forms and range of every instant
/// a client sends (`timestamp.rs`).
pub type InvalidSince = InvalidTimestamp;

/// An instant with millisecond precision: the analytics compare stored
/// `createdAt` (epoch ms) against it, so finer precision would be a lie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Since(i64);

impl Since {
    /// Accepts RFC 3339 (`2026-11-01T00:00:00Z`) or epoch milliseconds
    /// (`1793491200000`), from 1970 to the end of year 9999.
    pub fn parse(s: &str) -> Result<Self, InvalidSince> {
        timestamp::parse_timestamp(s).map(Self::from)
    }

    /// From a JSON body: a string as for [`parse`](Self::parse), or an
    /// integer of epoch milliseconds.
    pub fn from_json(value: &Value) -> Result<Self, InvalidSince> {
        timestamp::timestamp_from_json(value).map(Self::from)
    }

    /// `None` when `ms` is outside the accepted range.
    pub fn from_epoch_millis(ms: i64) -> Option<Self> {
        timestamp::from_epoch_millis(ms).ok().map(Self::from)
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
            // Year 10000, in either spelling.
            "253402300800000",
            "1969-12-31T23:59:59Z",
        ] {
            assert!(Since::parse(s).is_err(), "{s}");
        }
    }
}
