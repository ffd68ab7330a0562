//! The channels and messages of SPEC 3, and the service's helpers that
//! publish them. Each returns whether the message left this process (in
//! the embedded mode: was delivered); pub/sub is fire-and-forget.

use chrono::Utc;
use serde::{Deserialize, Serialize};
use spywatcher_analytics::{AnalyticsKind, GuildId, UserId};

use crate::service::Spywatcher;

/// `analytics:{type}:{guildId}` (SPEC 3).
pub fn analytics_channel(kind: AnalyticsKind, guild: &GuildId) -> String {
    format!("analytics:{}:{}", kind.as_str(), guild.as_str())
}

/// Every analytics channel of a guild. Exact: types contain no `:` and
/// guild ids are digits, so `*` cannot reach into another guild's channel.
pub(super) fn analytics_channels_of(guild: &GuildId) -> String {
    format!("analytics:*:{}", guild.as_str())
}

/// `notifications:{userId}` (SPEC 3).
pub fn notification_channel(user: &UserId) -> String {
    format!("notifications:{}", user.as_str())
}

/// `presence:{userId}` (SPEC 3).
pub fn presence_channel(user: &UserId) -> String {
    format!("presence:{}", user.as_str())
}

/// The message on `analytics:{type}:{guildId}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalyticsUpdate<T> {
    pub guild_id: GuildId,
    #[serde(rename = "type")]
    pub kind: AnalyticsKind,
    pub data: T,
    pub timestamp: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Notification<'a, T: ?Sized> {
    user_id: &'a UserId,
    notification: &'a T,
    timestamp: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PresenceUpdate<'a, T: ?Sized> {
    user_id: &'a UserId,
    presence: &'a T,
    timestamp: String,
}

pub(super) fn now() -> String {
    Utc::now().to_rfc3339()
}

/// The helpers of SPEC 3. Each returns whether the message left this
/// process (in the embedded mode: was delivered); pub/sub is
/// fire-and-forget.
impl Spywatcher {
    /// `{guildId, type, data, timestamp}` on `analytics:{type}:{guildId}`.
    pub async fn publish_analytics_update<T: Serialize + ?Sized>(
        &self,
        guild: &GuildId,
        kind: AnalyticsKind,
        data: &T,
    ) -> bool {
        let message = AnalyticsUpdate {
            guild_id: guild.clone(),
            kind,
            data,
            timestamp: now(),
        };
        self.cache
            .pubsub()
            .publish(&analytics_channel(kind, guild), &message)
            .await
    }

    /// `{userId, notification, timestamp}` on `notifications:{userId}`.
    pub async fn publish_notification<T: Serialize + ?Sized>(
        &self,
        user: &UserId,
        notification: &T,
    ) -> bool {
        let message = Notification {
            user_id: user,
            notification,
            timestamp: now(),
        };
        self.cache
            .pubsub()
            .publish(&notification_channel(user), &message)
            .await
    }

    /// `{userId, presence, timestamp}` on `presence:{userId}`.
    pub async fn publish_presence_update<T: Serialize + ?Sized>(
        &self,
        user: &UserId,
        presence: &T,
    ) -> bool {
        let message = PresenceUpdate {
            user_id: user,
            presence,
            timestamp: now(),
        };
        self.cache
            .pubsub()
            .publish(&presence_channel(user), &message)
            .await
    }
}
