//! What gateway events name by id only: channel and role names, and each
//! member's roles and username (SPEC 2.5). Filled by `GUILD_CREATE`,
//! `CHANNEL_*`, `THREAD_*`, `GUILD_ROLE_*` and the member events; read by
//! the mapping.
//!
//! Kept per guild, so that a guild the bot leaves (`GUILD_DELETE` that is
//! not an outage) takes its names with it: the caches hold what the
//! guilds the bot is in hold, no more. A member that leaves is forgotten.

use std::collections::HashMap;

/// A Discord id as the gateway gives it.
pub type RawId = u64;

/// The names of every guild the shard has seen.
#[derive(Debug, Default)]
pub struct Names {
    guilds: HashMap<RawId, GuildNames>,
}

/// One guild's names.
#[derive(Debug, Default)]
struct GuildNames {
    channels: HashMap<RawId, String>,
    roles: HashMap<RawId, String>,
    members: HashMap<RawId, CachedMember>,
}

/// A member as last seen: its roles (sorted, without duplicates) and
/// username.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedMember {
    pub roles: Vec<RawId>,
    pub username: String,
}

impl CachedMember {
    pub fn new(mut roles: Vec<RawId>, username: impl Into<String>) -> Self {
        roles.sort_unstable();
        roles.dedup();
        CachedMember {
            roles,
            username: username.into(),
        }
    }
}

impl Names {
    pub fn new() -> Self {
        Names::default()
    }

    fn guild(&mut self, guild: RawId) -> &mut GuildNames {
        self.guilds.entry(guild).or_default()
    }

    /// Forgets a guild (the bot left it, or was removed).
    pub fn remove_guild(&mut self, guild: RawId) {
        self.guilds.remove(&guild);
    }

    /// Forgets a guild's channels and roles, not its members: a
    /// GUILD_CREATE lists every channel and role, but a large guild's lists
    /// only some members, and forgetting the others would lose their next
    /// role change (an uncached member's first update only caches it).
    pub fn forget_channels_and_roles(&mut self, guild: RawId) {
        if let Some(names) = self.guilds.get_mut(&guild) {
            names.channels.clear();
            names.roles.clear();
        }
    }

    pub fn set_channel(&mut self, guild: RawId, channel: RawId, name: impl Into<String>) {
        self.guild(guild).channels.insert(channel, name.into());
    }

    pub fn remove_channel(&mut self, guild: RawId, channel: RawId) {
        if let Some(names) = self.guilds.get_mut(&guild) {
            names.channels.remove(&channel);
        }
    }

    pub fn channel(&self, guild: RawId, channel: RawId) -> Option<&str> {
        self.guilds
            .get(&guild)?
            .channels
            .get(&channel)
            .map(String::as_str)
    }

    pub fn set_role(&mut self, guild: RawId, role: RawId, name: impl Into<String>) {
        self.guild(guild).roles.insert(role, name.into());
    }

    pub fn remove_role(&mut self, guild: RawId, role: RawId) {
        if let Some(names) = self.guilds.get_mut(&guild) {
            names.roles.remove(&role);
        }
    }

    pub fn role(&self, guild: RawId, role: RawId) -> Option<&str> {
        self.guilds
            .get(&guild)?
            .roles
            .get(&role)
            .map(String::as_str)
    }

    /// Caches a member, returning what was cached before.
    pub fn set_member(
        &mut self,
        guild: RawId,
        user: RawId,
        member: CachedMember,
    ) -> Option<CachedMember> {
        self.guild(guild).members.insert(user, member)
    }

    pub fn remove_member(&mut self, guild: RawId, user: RawId) {
        if let Some(names) = self.guilds.get_mut(&guild) {
            names.members.remove(&user);
        }
    }

    pub fn member(&self, guild: RawId, user: RawId) -> Option<&CachedMember> {
        self.guilds.get(&guild)?.members.get(&user)
    }

    /// The username of a cached member.
    pub fn username(&self, guild: RawId, user: RawId) -> Option<&str> {
        self.member(guild, user).map(|m| m.username.as_str())
    }

    /// How many guilds, channels, roles and members are cached, for the
    /// health report.
    pub fn counts(&self) -> NameCounts {
        let mut counts = NameCounts {
            guilds: self.guilds.len(),
            ..NameCounts::default()
        };
        for names in self.guilds.values() {
            counts.channels += names.channels.len();
            counts.roles += names.roles.len();
            counts.members += names.members.len();
        }
        counts
    }
}

/// Sizes of the caches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NameCounts {
    pub guilds: usize,
    pub channels: usize,
    pub roles: usize,
    pub members: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guilds_keep_their_own_names_and_leave_with_them() {
        let mut names = Names::new();
        names.set_channel(1, 10, "general");
        names.set_channel(2, 10, "other");
        names.set_role(1, 20, "mod");
        names.set_member(1, 30, CachedMember::new(vec![21, 20, 21], "ann"));
        assert_eq!(names.channel(1, 10), Some("general"));
        assert_eq!(names.channel(2, 10), Some("other"));
        assert_eq!(names.member(1, 30).unwrap().roles, [20, 21]);
        assert_eq!(names.username(2, 30), None);
        names.remove_guild(1);
        assert_eq!(names.channel(1, 10), None);
        assert_eq!(names.role(1, 20), None);
        assert_eq!(names.counts().channels, 1);
    }
}
