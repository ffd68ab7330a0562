//! Discord snowflake ids, parsed once at the edge.
//!
//! A snowflake is kept as its decimal string: SPEC 2.1 allows 1-20 digits,
//! which exceeds `u64` (20 nines), and keeping the text means the id a client
//! sent is the id it gets back, leading zeros included.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest accepted snowflake, in digits (SPEC 2.1).
pub const MAX_SNOWFLAKE_DIGITS: usize = 20;

/// Why a string is not a snowflake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be 1-20 decimal digits")]
pub struct InvalidSnowflake;

/// A string of 1-20 ASCII decimal digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Snowflake(String);

impl Snowflake {
    /// Checks `s` and keeps it.
    pub fn parse(s: impl Into<String>) -> Result<Self, InvalidSnowflake> {
        let s = s.into();
        let ok =
            (1..=MAX_SNOWFLAKE_DIGITS).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
        if ok {
            Ok(Self(s))
        } else {
            Err(InvalidSnowflake)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Snowflake {
    type Err = InvalidSnowflake;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Snowflake {
    type Error = InvalidSnowflake;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

impl From<Snowflake> for String {
    fn from(s: Snowflake) -> Self {
        s.0
    }
}

impl fmt::Display for Snowflake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Typed wrappers so a guild id cannot be passed where a user id is expected;
/// all share `Snowflake`'s rules, so they are generated here rather than
/// written out three times.
macro_rules! snowflake_newtype {
    ($(#[$doc:meta] $name:ident),* $(,)?) => {$(
        #[$doc]
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Snowflake);

        impl $name {
            pub fn parse(s: impl Into<String>) -> Result<Self, InvalidSnowflake> {
                Snowflake::parse(s).map(Self)
            }
            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }
        }

        impl FromStr for $name {
            type Err = InvalidSnowflake;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidSnowflake;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::parse(s)
            }
        }

        impl From<Snowflake> for $name {
            fn from(s: Snowflake) -> Self {
                Self(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    )*};
}

snowflake_newtype!(
    /// The guild (Discord server) an event belongs to.
    GuildId,
    /// The user who caused an event.
    UserId,
    /// The channel of a message or typing event.
    ChannelId,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_one_to_twenty_digits() {
        assert!(Snowflake::parse("0").is_ok());
        assert!(Snowflake::parse("99999999999999999999").is_ok());
        assert!(Snowflake::parse("").is_err());
        assert!(Snowflake::parse("123456789012345678901").is_err());
        assert!(Snowflake::parse("12a").is_err());
        assert!(Snowflake::parse("-1").is_err());
        assert!(Snowflake::parse("١٢").is_err(), "non-ASCII digits");
    }

    #[test]
    fn serde_rejects_bad_ids() {
        let id: GuildId = serde_json::from_str("\"42\"").unwrap();
        assert_eq!(id.as_str(), "42");
        assert!(serde_json::from_str::<GuildId>("\"4x2\"").is_err());
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"42\"");
    }
}
