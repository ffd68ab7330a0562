//! Types parsed at the edge: once you hold one, it is valid.

mod clients;
mod event;
mod kind;
mod parse;
mod since;
mod snowflake;
mod timestamp;

pub use clients::{CLIENT_NAMES, ClientSet, UnknownClient};
pub use event::{
    Event, MAX_ACCOUNT_AGE_DAYS, MAX_CONTENT_CHARS, MAX_NAME_CHARS, MAX_ROLES, Payload, Violation,
};
pub use kind::{AnalyticsKind, EventKind, UnknownKind};
pub use parse::{
    DEFAULT_MAX_FUTURE_SKEW, MAX_BATCH, ValidationError, parse_events, parse_events_at,
};
pub use since::{InvalidSince, Since};
pub use snowflake::{
    ChannelId, GuildId, InvalidSnowflake, MAX_SNOWFLAKE_DIGITS, Snowflake, UserId,
};
pub use timestamp::{
    InvalidTimestamp, MAX_EPOCH_MILLIS, MIN_EPOCH_MILLIS, parse_timestamp, timestamp_from_json,
};
