//! The set of Discord clients a presence update reports.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A subset of {desktop, mobile, web}, stored as a bit mask so the database
/// can take unions with bitwise operators that SQLite and PostgreSQL share.
/// Bits are in alphabetical order of the names, so iterating bits yields the
/// sorted list SPEC 2.2 asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "Vec<&'static str>", try_from = "Vec<String>")]
pub struct ClientSet(u8);

/// The client names, in bit order (bit i = `CLIENT_NAMES[i]`).
pub const CLIENT_NAMES: [&str; 3] = ["desktop", "mobile", "web"];

/// A client name other than desktop, mobile or web, or a mask with unknown bits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown client {0:?} (expected desktop, mobile or web)")]
pub struct UnknownClient(pub String);

impl ClientSet {
    pub const EMPTY: ClientSet = ClientSet(0);
    pub const DESKTOP: ClientSet = ClientSet(1);
    pub const MOBILE: ClientSet = ClientSet(2);
    pub const WEB: ClientSet = ClientSet(4);

    pub fn from_mask(mask: u8) -> Result<Self, UnknownClient> {
        if mask < 8 {
            Ok(Self(mask))
        } else {
            Err(UnknownClient(format!("mask {mask}")))
        }
    }

    pub fn mask(self) -> u8 {
        self.0
    }

    pub fn union(self, other: ClientSet) -> ClientSet {
        ClientSet(self.0 | other.0)
    }

    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The names in the set, sorted.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        CLIENT_NAMES
            .into_iter()
            .enumerate()
            .filter(move |(bit, _)| self.0 & (1 << bit) != 0)
            .map(|(_, n)| n)
    }
}

impl FromStr for ClientSet {
    type Err = UnknownClient;
    /// One client name.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CLIENT_NAMES
            .iter()
            .position(|n| *n == s)
            .map(|bit| ClientSet(1 << bit))
            .ok_or_else(|| UnknownClient(s.to_owned()))
    }
}

impl From<ClientSet> for Vec<&'static str> {
    fn from(c: ClientSet) -> Self {
        c.names().collect()
    }
}

impl TryFrom<Vec<String>> for ClientSet {
    type Error = UnknownClient;
    fn try_from(names: Vec<String>) -> Result<Self, Self::Error> {
        names
            .iter()
            .try_fold(ClientSet::EMPTY, |acc, n| Ok(acc.union(n.parse()?)))
    }
}

/// The analytics return masks as integers.
impl TryFrom<i64> for ClientSet {
    type Error = UnknownClient;
    fn try_from(mask: i64) -> Result<Self, Self::Error> {
        u8::try_from(mask)
            .map_err(|_| UnknownClient(format!("mask {mask}")))
            .and_then(Self::from_mask)
    }
}

impl fmt::Display for ClientSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().collect::<Vec<_>>().join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_sorted_names() {
        let set: ClientSet = serde_json::from_str(r#"["web","desktop","web"]"#).unwrap();
        assert_eq!(serde_json::to_string(&set).unwrap(), r#"["desktop","web"]"#);
        assert!(serde_json::from_str::<ClientSet>(r#"["tv"]"#).is_err());
        assert_eq!(ClientSet::try_from(7_i64).unwrap().len(), 3);
        assert!(ClientSet::try_from(8_i64).is_err());
    }
}
