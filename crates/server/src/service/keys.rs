//! Cache keys and tags of the analytics (SPEC 2.3, 2.4).
//!
//! Each entry carries the two tags of the reference design, `guild:{id}` and
//! `analytics:{type}`, plus a finer one, `analytics:{type}:{id}`: an event
//! invalidates exactly the analytics of its own guild that it changes, which
//! neither coarse tag can express alone (the reference invalidated the global
//! type tags and emptied every guild's entries).

use spywatcher_analytics::{AnalyticsKind, EventKind, GuildId, Since};

// Keys and tags are built by concatenation rather than `format!`: they are
// built on every analytics request, cached or not.

/// `analytics:{type}:{guildId}:{since}`, `{since}` in epoch ms or `all`.
pub fn entry_key(kind: AnalyticsKind, guild: &GuildId, since: Option<&Since>) -> String {
    [
        "analytics:",
        kind.as_str(),
        ":",
        guild.as_str(),
        ":",
        &Since::key_segment(since),
    ]
    .concat()
}

/// The tags an analytics entry is stored under.
pub fn entry_tags(kind: AnalyticsKind, guild: &GuildId) -> [String; 3] {
    [
        ["guild:", guild.as_str()].concat(),
        ["analytics:", kind.as_str()].concat(),
        analytics_of_guild(kind, guild),
    ]
}

/// The tags an event of `kind` in `guild` invalidates.
pub fn event_tags(kind: EventKind, guild: &GuildId) -> impl Iterator<Item = String> + '_ {
    kind.invalidates()
        .iter()
        .map(move |&analytics| analytics_of_guild(analytics, guild))
}

fn analytics_of_guild(kind: AnalyticsKind, guild: &GuildId) -> String {
    ["analytics:", kind.as_str(), ":", guild.as_str()].concat()
}

/// The pub/sub channel announcing a guild's invalidations.
pub fn invalidated_channel(guild: &GuildId) -> String {
    format!("cache:invalidated:{}", guild.as_str())
}

/// The stats groups of the cache: one per analytics type.
pub fn stat_groups() -> Vec<String> {
    AnalyticsKind::ALL
        .iter()
        .map(|kind| format!("analytics:{}:", kind.as_str()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_tags_follow_the_spec() {
        let guild = GuildId::parse("123").unwrap();
        let since = Since::from_epoch_millis(1_700_000_000_000).unwrap();
        assert_eq!(
            entry_key(AnalyticsKind::Ghosts, &guild, None),
            "analytics:ghosts:123:all"
        );
        assert_eq!(
            entry_key(AnalyticsKind::Heatmap, &guild, Some(&since)),
            "analytics:heatmap:123:1700000000000"
        );
        assert_eq!(
            entry_tags(AnalyticsKind::Roles, &guild),
            ["guild:123", "analytics:roles", "analytics:roles:123"]
        );
        let typing: Vec<String> = event_tags(EventKind::Typing, &guild).collect();
        assert_eq!(
            typing,
            [
                "analytics:ghosts:123",
                "analytics:lurkers:123",
                "analytics:heatmap:123",
                "analytics:shifts:123"
            ]
        );
        assert_eq!(event_tags(EventKind::MemberJoin, &guild).count(), 0);
    }
}
