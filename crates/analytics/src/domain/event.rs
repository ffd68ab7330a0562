//! The five events of SPEC 2.1: one shared header, a payload per kind.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{ChannelId, ClientSet, EventKind, GuildId, UserId};

/// Longest username or channel name, in characters (Discord allows 32 and
/// 100; we accept up to 100 for both).
pub const MAX_NAME_CHARS: usize = 100;
/// Longest message content, in characters (Discord Nitro's limit).
pub const MAX_CONTENT_CHARS: usize = 4000;
/// Most roles in one role change (Discord's per-guild role limit).
pub const MAX_ROLES: usize = 250;
/// Largest `accountAgeDays` (a century).
pub const MAX_ACCOUNT_AGE_DAYS: u32 = 36_500;

/// One recorded event. Fields common to every kind sit here; what differs is
/// in [`Payload`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub guild_id: GuildId,
    pub user_id: UserId,
    pub username: String,
    pub created_at: DateTime<Utc>,
    #[serde(flatten)]
    pub payload: Payload,
}

/// The kind-specific fields. Serialized untagged so that an event
/// serializes to the same JSON object a client posts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged, rename_all_fields = "camelCase")]
pub enum Payload {
    Message {
        channel_id: ChannelId,
        channel: String,
        content: String,
    },
    Typing {
        channel_id: ChannelId,
        channel: String,
    },
    Presence {
        clients: ClientSet,
    },
    RoleChange {
        added_roles: Vec<String>,
    },
    MemberJoin {
        account_age_days: u32,
    },
}

impl Payload {
    pub fn kind(&self) -> EventKind {
        match self {
            Payload::Message { .. } => EventKind::Message,
            Payload::Typing { .. } => EventKind::Typing,
            Payload::Presence { .. } => EventKind::Presence,
            Payload::RoleChange { .. } => EventKind::RoleChange,
            Payload::MemberJoin { .. } => EventKind::MemberJoin,
        }
    }
}

/// A rule an event breaks: the JSON field name and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub field: &'static str,
    pub message: String,
}

impl Event {
    pub fn kind(&self) -> EventKind {
        self.payload.kind()
    }

    /// Checks the rules that types alone do not enforce (lengths, blank
    /// names). Ids are valid by construction. Called on parsed input and
    /// again by the store, so events built in code meet the same rules.
    pub fn validate(&self) -> Result<(), Violation> {
        name("username", &self.username)?;
        let year = chrono::Datelike::year(&self.created_at);
        if !(1970..=9999).contains(&year) {
            return Err(violation("createdAt", "must be between 1970 and 9999"));
        }
        match &self.payload {
            Payload::Message {
                channel, content, ..
            } => {
                name("channel", channel)?;
                max_chars("content", content, MAX_CONTENT_CHARS)
            }
            Payload::Typing { channel, .. } => name("channel", channel),
            Payload::Presence { .. } => Ok(()),
            Payload::RoleChange { added_roles } => {
                if added_roles.len() > MAX_ROLES {
                    return Err(violation(
                        "addedRoles",
                        format!("at most {MAX_ROLES} roles"),
                    ));
                }
                added_roles.iter().try_for_each(|r| name("addedRoles", r))
            }
            Payload::MemberJoin { account_age_days }
                if *account_age_days > MAX_ACCOUNT_AGE_DAYS =>
            {
                Err(violation(
                    "accountAgeDays",
                    format!("must be at most {MAX_ACCOUNT_AGE_DAYS}"),
                ))
            }
            Payload::MemberJoin { .. } => Ok(()),
        }
    }
}

fn violation(field: &'static str, message: impl Into<String>) -> Violation {
    Violation {
        field,
        message: message.into(),
    }
}

fn name(field: &'static str, value: &str) -> Result<(), Violation> {
    if value.trim().is_empty() {
        return Err(violation(field, "must not be empty"));
    }
    max_chars(field, value, MAX_NAME_CHARS)
}

fn max_chars(field: &'static str, value: &str, max: usize) -> Result<(), Violation> {
    // PostgreSQL cannot store NUL in text; refuse it on both databases alike.
    if value.contains('\0') {
        return Err(violation(field, "must not contain NUL characters"));
    }
    if value.chars().count() > max {
        return Err(violation(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    Ok(())
}
