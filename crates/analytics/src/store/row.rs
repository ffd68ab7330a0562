//! An [`Event`] as the columns of the `events` table: the one place that
//! maps the five payloads to storage, used by both databases' insert paths.

use crate::domain::{Event, Payload};

/// Column list, in the order [`EventRow`]'s fields are bound.
pub(crate) const COLUMNS: &str = "kind, guild_id, user_id, username, created_at, channel_id, channel, content, clients, added_roles, account_age_days";
/// Number of bound values per row.
pub(crate) const COLUMN_COUNT: usize = 11;

pub(crate) struct EventRow<'a> {
    pub kind: i16,
    pub guild_id: &'a str,
    pub user_id: &'a str,
    pub username: &'a str,
    pub created_at: i64,
    pub channel_id: Option<&'a str>,
    pub channel: Option<&'a str>,
    pub content: Option<&'a str>,
    pub clients: Option<i16>,
    /// JSON array: no analytics looks inside it, and text keeps the two
    /// schemas alike.
    pub added_roles: Option<String>,
    pub account_age_days: Option<i32>,
}

impl<'a> EventRow<'a> {
    pub fn new(e: &'a Event) -> Self {
        let mut row = EventRow {
            kind: e.kind().code(),
            guild_id: e.guild_id.as_str(),
            user_id: e.user_id.as_str(),
            username: &e.username,
            created_at: e.created_at.timestamp_millis(),
            channel_id: None,
            channel: None,
            content: None,
            clients: None,
            added_roles: None,
            account_age_days: None,
        };
        match &e.payload {
            Payload::Message {
                channel_id,
                channel,
                content,
            } => {
                row.channel_id = Some(channel_id.as_str());
                row.channel = Some(channel);
                row.content = Some(content);
            }
            Payload::Typing {
                channel_id,
                channel,
            } => {
                row.channel_id = Some(channel_id.as_str());
                row.channel = Some(channel);
            }
            Payload::Presence { clients } => row.clients = Some(i16::from(clients.mask())),
            Payload::RoleChange { added_roles } => {
                // Serializing a Vec<String> cannot fail.
                row.added_roles = Some(serde_json::to_string(added_roles).unwrap_or_default());
            }
            Payload::MemberJoin { account_age_days } => {
                // Bounded by validation (MAX_ACCOUNT_AGE_DAYS).
                row.account_age_days = Some(i32::try_from(*account_age_days).unwrap_or(i32::MAX));
            }
        }
        row
    }
}
