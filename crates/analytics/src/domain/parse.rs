//! JSON request bodies to [`Event`]s, with errors that name the event and
//! the field.
//!
//! Bodies are read field by field from a `serde_json::Value` rather than
//! through `#[derive(Deserialize)]`, because serde's errors do not reliably
//! name the offending field, and SPEC 4 wants "event 3, field userId".
//! Unknown fields are rejected: a misspelt `createdat` would otherwise be
//! silently replaced by "now".

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::event::{Event, Payload, Violation};
use super::timestamp::timestamp_from_json;
use super::{ClientSet, EventKind, Snowflake};

/// Largest batch accepted in one request.
pub const MAX_BATCH: usize = 10_000;

/// How far past the time of receipt a `createdAt` may lie, by default: room
/// for a sender's clock running ahead, not for an event stamped in the
/// future (which every `since` would count as recent for ever).
pub const DEFAULT_MAX_FUTURE_SKEW: Duration = Duration::from_secs(5 * 60);

/// An event that cannot be accepted. `index` is its position in the batch
/// (0 for a single object); `field` is the JSON field name, or `(body)` when
/// the body as a whole is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    pub index: usize,
    pub field: String,
    pub message: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "event {}: field {:?}: {}",
            self.index, self.field, self.message
        )
    }
}

impl ValidationError {
    pub(crate) fn new(index: usize, field: &str, message: impl Into<String>) -> Self {
        Self {
            index,
            field: field.to_owned(),
            message: message.into(),
        }
    }

    pub(crate) fn from_violation(index: usize, v: Violation) -> Self {
        Self::new(index, v.field, v.message)
    }
}

/// Parses one event object or an array of them (a batch). Events without
/// `createdAt` are stamped with the current time; a `createdAt` more than
/// `max_future_skew` after it is refused.
pub fn parse_events(
    kind: EventKind,
    body: Value,
    max_future_skew: Duration,
) -> Result<Vec<Event>, ValidationError> {
    parse_events_at(kind, body, Utc::now(), max_future_skew)
}

/// [`parse_events`] received at `now`.
pub fn parse_events_at(
    kind: EventKind,
    body: Value,
    now: DateTime<Utc>,
    max_future_skew: Duration,
) -> Result<Vec<Event>, ValidationError> {
    let received = Received {
        now,
        latest: chrono::Duration::from_std(max_future_skew)
            .ok()
            .and_then(|skew| now.checked_add_signed(skew))
            .unwrap_or(DateTime::<Utc>::MAX_UTC),
    };
    let body_error = |m: &str| ValidationError::new(0, "(body)", m);
    let items = match body {
        Value::Array(items) => items,
        obj @ Value::Object(_) => vec![obj],
        _ => return Err(body_error("expected a JSON object or an array of objects")),
    };
    if items.is_empty() {
        return Err(body_error("the batch is empty"));
    }
    if items.len() > MAX_BATCH {
        return Err(body_error(&format!(
            "a batch holds at most {MAX_BATCH} events"
        )));
    }
    items
        .iter()
        .enumerate()
        .map(|(index, item)| parse_one(kind, index, item, &received))
        .collect()
}

/// When a batch arrived, and the latest `createdAt` it may carry.
struct Received {
    now: DateTime<Utc>,
    latest: DateTime<Utc>,
}

fn parse_one(
    kind: EventKind,
    index: usize,
    item: &Value,
    received: &Received,
) -> Result<Event, ValidationError> {
    let Value::Object(obj) = item else {
        return Err(ValidationError::new(
            index,
            "(body)",
            "expected a JSON object",
        ));
    };
    let mut f = Fields {
        obj,
        index,
        read: Vec::new(),
    };
    let guild_id = f.snowflake("guildId")?.into();
    let user_id = f.snowflake("userId")?.into();
    let username = f.string("username")?;
    let created_at = f.created_at(received)?;
    // The only per-kind code: which fields make up the payload.
    let payload = match kind {
        EventKind::Message => Payload::Message {
            channel_id: f.snowflake("channelId")?.into(),
            channel: f.string("channel")?,
            content: f.string("content")?,
        },
        EventKind::Typing => Payload::Typing {
            channel_id: f.snowflake("channelId")?.into(),
            channel: f.string("channel")?,
        },
        EventKind::Presence => Payload::Presence {
            clients: f.clients("clients")?,
        },
        EventKind::RoleChange => Payload::RoleChange {
            added_roles: f.strings("addedRoles")?,
        },
        EventKind::MemberJoin => Payload::MemberJoin {
            account_age_days: f.count("accountAgeDays")?,
        },
    };
    f.reject_unknown()?;
    let event = Event {
        guild_id,
        user_id,
        username,
        created_at,
        payload,
    };
    event
        .validate()
        .map_err(|v| ValidationError::from_violation(index, v))?;
    Ok(event)
}

/// Reads typed fields from one JSON object, remembering which it has read so
/// that the rest can be reported as unknown.
struct Fields<'a> {
    obj: &'a Map<String, Value>,
    index: usize,
    read: Vec<&'static str>,
}

impl<'a> Fields<'a> {
    fn error(&self, field: &str, message: impl Into<String>) -> ValidationError {
        ValidationError::new(self.index, field, message)
    }

    fn optional(&mut self, name: &'static str) -> Option<&'a Value> {
        self.read.push(name);
        self.obj.get(name).filter(|v| !v.is_null())
    }

    fn required(&mut self, name: &'static str) -> Result<&'a Value, ValidationError> {
        self.optional(name)
            .ok_or_else(|| self.error(name, "is required"))
    }

    fn string(&mut self, name: &'static str) -> Result<String, ValidationError> {
        match self.required(name)? {
            Value::String(s) => Ok(s.clone()),
            _ => Err(self.error(name, "must be a string")),
        }
    }

    fn snowflake(&mut self, name: &'static str) -> Result<Snowflake, ValidationError> {
        match self.required(name)? {
            Value::String(s) => {
                Snowflake::parse(s.as_str()).map_err(|e| self.error(name, e.to_string()))
            }
            _ => Err(self.error(name, "must be a string of 1-20 decimal digits")),
        }
    }

    /// An instant in any of the forms of `timestamp.rs`, no later than the
    /// receipt allows; absent or null means the time of receipt.
    fn created_at(&mut self, received: &Received) -> Result<DateTime<Utc>, ValidationError> {
        const FIELD: &str = "createdAt";
        let Some(value) = self.optional(FIELD) else {
            return Ok(received.now);
        };
        let created_at =
            timestamp_from_json(value).map_err(|e| self.error(FIELD, e.to_string()))?;
        if created_at > received.latest {
            return Err(self.error(
                FIELD,
                format!(
                    "must not be later than the time of receipt plus the allowed clock skew ({})",
                    received
                        .latest
                        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                ),
            ));
        }
        Ok(created_at)
    }

    fn array(&mut self, name: &'static str) -> Result<&'a Vec<Value>, ValidationError> {
        match self.required(name)? {
            Value::Array(items) => Ok(items),
            _ => Err(self.error(name, "must be an array")),
        }
    }

    fn strings(&mut self, name: &'static str) -> Result<Vec<String>, ValidationError> {
        self.array(name)?
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| self.error(name, "must be an array of strings"))
            })
            .collect()
    }

    fn clients(&mut self, name: &'static str) -> Result<ClientSet, ValidationError> {
        self.array(name)?
            .iter()
            .try_fold(ClientSet::EMPTY, |acc, v| {
                let one: ClientSet = v
                    .as_str()
                    .ok_or_else(|| self.error(name, "must be an array of strings"))?
                    .parse()
                    .map_err(|e: super::UnknownClient| self.error(name, e.to_string()))?;
                Ok(acc.union(one))
            })
    }

    /// A non-negative integer that fits `u32`.
    fn count(&mut self, name: &'static str) -> Result<u32, ValidationError> {
        self.required(name)?
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| self.error(name, "must be a non-negative integer"))
    }

    fn reject_unknown(&self) -> Result<(), ValidationError> {
        match self.obj.keys().find(|k| !self.read.contains(&k.as_str())) {
            Some(k) => Err(self.error(k, "unknown field")),
            None => Ok(()),
        }
    }
}
