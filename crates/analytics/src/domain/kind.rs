//! The five event kinds and the six analytics kinds, and the table that ties
//! them together (SPEC 2.4).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An unknown event or analytics name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {name:?} (expected one of: {expected})")]
pub struct UnknownKind {
    pub what: &'static str,
    pub name: String,
    pub expected: String,
}

/// Implements the string conversions of a fieldless enum from one table of
/// (variant, name), so each enum lists its names once.
macro_rules! named_enum {
    ($ty:ident, $what:literal, [$(($variant:ident, $name:literal)),* $(,)?]) => {
        impl $ty {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),*];

            pub const fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $name),* }
            }
        }

        impl FromStr for $ty {
            type Err = UnknownKind;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok($ty::$variant),)*
                    _ => Err(UnknownKind {
                        what: $what,
                        name: s.to_owned(),
                        expected: [$($name),*].join(", "),
                    }),
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// The kind of an event. `as_str` gives the URL segment of
/// `POST /api/events/{segment}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    Message,
    Typing,
    Presence,
    RoleChange,
    MemberJoin,
}

named_enum!(
    EventKind,
    "event kind",
    [
        (Message, "messages"),
        (Typing, "typing"),
        (Presence, "presence"),
        (RoleChange, "role-changes"),
        (MemberJoin, "member-joins"),
    ]
);

impl EventKind {
    /// The analytics of the event's guild whose inputs this kind of event
    /// changes (SPEC 2.4, derived from the definitions in 2.2: lurkers need
    /// "no typing or message", so typing and messages invalidate them too).
    pub const fn invalidates(self) -> &'static [AnalyticsKind] {
        use AnalyticsKind::*;
        match self {
            EventKind::Message => &[Ghosts, Lurkers, Shifts],
            EventKind::Typing => &[Ghosts, Lurkers, Heatmap, Shifts],
            EventKind::Presence => &[Lurkers, Clients],
            EventKind::RoleChange => &[Roles],
            EventKind::MemberJoin => &[],
        }
    }

    /// The value of the `kind` column. Part of the schema: never renumber.
    pub(crate) const fn code(self) -> i16 {
        match self {
            EventKind::Message => 1,
            EventKind::Typing => 2,
            EventKind::Presence => 3,
            EventKind::RoleChange => 4,
            EventKind::MemberJoin => 5,
        }
    }

    /// The singular name used in messages and pub/sub payloads (`message`,
    /// `role-change`, ...).
    pub const fn singular(self) -> &'static str {
        match self {
            EventKind::Message => "message",
            EventKind::Typing => "typing",
            EventKind::Presence => "presence",
            EventKind::RoleChange => "role-change",
            EventKind::MemberJoin => "member-join",
        }
    }
}

/// One of the six analytics (SPEC 2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnalyticsKind {
    Ghosts,
    Lurkers,
    Heatmap,
    Roles,
    Clients,
    Shifts,
}

named_enum!(
    AnalyticsKind,
    "analytics",
    [
        (Ghosts, "ghosts"),
        (Lurkers, "lurkers"),
        (Heatmap, "heatmap"),
        (Roles, "roles"),
        (Clients, "clients"),
        (Shifts, "shifts"),
    ]
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in EventKind::ALL {
            assert_eq!(k.as_str().parse::<EventKind>().unwrap(), *k);
        }
        for k in AnalyticsKind::ALL {
            assert_eq!(k.as_str().parse::<AnalyticsKind>().unwrap(), *k);
        }
        assert!("message".parse::<EventKind>().is_err());
        assert_eq!(AnalyticsKind::ALL.len(), 6);
    }

    #[test]
    fn invalidation_table_matches_spec_2_4() {
        use AnalyticsKind::*;
        assert_eq!(EventKind::Message.invalidates(), &[Ghosts, Lurkers, Shifts]);
        assert_eq!(
            EventKind::Typing.invalidates(),
            &[Ghosts, Lurkers, Heatmap, Shifts]
        );
        assert_eq!(EventKind::Presence.invalidates(), &[Lurkers, Clients]);
        assert_eq!(EventKind::RoleChange.invalidates(), &[Roles]);
        assert!(EventKind::MemberJoin.invalidates().is_empty());
    }
}
