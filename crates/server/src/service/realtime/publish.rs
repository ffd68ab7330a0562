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

/// Every analytics channel, of every guild: one subscription per instance,
/// demultiplexed by guild in process.
pub(super) const ALL_ANALYTICS_CHANNELS: &str = "analytics:*";

/// Every `cache:invalidated:{guildId}` channel (`keys::invalidated_channel`).
pub(super) const ALL_INVALIDATION_CHANNELS: &str = "cache:invalidated:*";

/// The guild of an `analytics:{type}:{guildId}` channel. Types contain no
/// `:`, so the guild is what follows the second one.
pub(super) fn guild_of_analytics(channel: &str) -> Option<GuildId> {
    let (_, guild) = channel.strip_prefix("analytics:")?.split_once(':')?;
    GuildId::parse(guild).ok()
}

/// The guild of a `cache:invalidated:{guildId}` channel.
pub(super) fn guild_of_invalidation(channel: &str) -> Option<GuildId> {
    GuildId::parse(channel.strip_prefix("cache:invalidated:")?).ok()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::keys::invalidated_channel;

    #[test]
    fn channels_name_their_guild() {
        let guild = GuildId::parse("42").unwrap();
        let channel = analytics_channel(AnalyticsKind::Heatmap, &guild);
        assert_eq!(channel, "analytics:heatmap:42");
        assert_eq!(guild_of_analytics(&channel), Some(guild.clone()));
        assert_eq!(
            guild_of_invalidation(&invalidated_channel(&guild)),
            Some(guild)
        );
        assert_eq!(guild_of_analytics("analytics:heatmap"), None);
        assert_eq!(guild_of_invalidation("cache:invalidated:x"), None);
    }
}
