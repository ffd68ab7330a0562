//! A gateway event becomes at most one spywatcher event (SPEC 2.5).
//!
//! Pure: no clock, no I/O. The time an event was received is passed in
//! (presence and role changes carry no time of their own), so a test gets
//! the same result on every run. The names caches are the only state; the
//! events that fill them store nothing.
//!
//! Every event it returns passes [`Event::validate`]: a gateway event the
//! store would refuse (a NUL in a message, an over-long name) would be
//! retried for ever and hold up every event behind it, so text is cleaned
//! here (NULs removed, cut to the limits of SPEC 2.1, a blank name
//! replaced by the id) rather than refused there.

use chrono::{DateTime, Utc};
use spywatcher_analytics::domain::{MAX_ACCOUNT_AGE_DAYS, MAX_CONTENT_CHARS, MAX_NAME_CHARS};
use spywatcher_analytics::{ClientSet, Event, Payload};
use twilight_model::channel::Channel;
use twilight_model::gateway::event::Event as GatewayEvent;
use twilight_model::gateway::payload::incoming::GuildCreate;
use twilight_model::gateway::presence::UserOrId;
use twilight_model::guild::Member;
use twilight_model::util::Timestamp;

use crate::names::{CachedMember, Names, RawId};

/// Discord's epoch (2015-01-01T00:00:00Z) in Unix milliseconds: a
/// snowflake's top 42 bits count milliseconds from it.
pub const DISCORD_EPOCH_MILLIS: i64 = 1_420_070_400_000;

const DAY_MILLIS: i64 = 86_400_000;

/// Maps gateway events, keeping the names caches they fill.
#[derive(Debug, Default)]
pub struct Mapper {
    names: Names,
}

impl Mapper {
    pub fn new() -> Self {
        Mapper::default()
    }

    pub fn names(&self) -> &Names {
        &self.names
    }

    /// The spywatcher event `event` becomes, if any; the names caches
    /// learn what it tells them either way.
    pub fn map(&mut self, event: &GatewayEvent, received_at: DateTime<Utc>) -> Option<Event> {
        let names = &mut self.names;
        let mapped = match event {
            GatewayEvent::GuildCreate(guild) => {
                if let GuildCreate::Available(guild) = guild.as_ref() {
                    let id = guild.id.get();
                    // A GUILD_CREATE after an outage or on a new session
                    // lists the guild's channels and roles again: what it
                    // no longer lists is gone.
                    names.forget_channels_and_roles(id);
                    for channel in guild.channels.iter().chain(&guild.threads) {
                        learn_channel(names, id, channel);
                    }
                    for role in &guild.roles {
                        names.set_role(id, role.id.get(), role.name.clone());
                    }
                    for member in &guild.members {
                        learn_member(names, id, member);
                    }
                }
                None
            }
            // `unavailable` set: an outage, the guild comes back with a
            // GUILD_CREATE; unset: the bot left.
            GatewayEvent::GuildDelete(guild) if guild.unavailable != Some(true) => {
                names.remove_guild(guild.id.get());
                None
            }
            GatewayEvent::ChannelCreate(channel) => channel_named(names, channel),
            GatewayEvent::ChannelUpdate(channel) => channel_named(names, channel),
            GatewayEvent::ThreadCreate(thread) => channel_named(names, thread),
            GatewayEvent::ThreadUpdate(thread) => channel_named(names, thread),
            GatewayEvent::ChannelDelete(channel) => {
                if let Some(guild) = channel.guild_id {
                    names.remove_channel(guild.get(), channel.id.get());
                }
                None
            }
            GatewayEvent::ThreadDelete(thread) => {
                names.remove_channel(thread.guild_id.get(), thread.id.get());
                None
            }
            GatewayEvent::RoleCreate(role) => {
                names.set_role(
                    role.guild_id.get(),
                    role.role.id.get(),
                    role.role.name.clone(),
                );
                None
            }
            GatewayEvent::RoleUpdate(role) => {
                names.set_role(
                    role.guild_id.get(),
                    role.role.id.get(),
                    role.role.name.clone(),
                );
                None
            }
            GatewayEvent::RoleDelete(role) => {
                names.remove_role(role.guild_id.get(), role.role_id.get());
                None
            }
            GatewayEvent::MemberChunk(chunk) => {
                for member in &chunk.members {
                    learn_member(names, chunk.guild_id.get(), member);
                }
                None
            }
            GatewayEvent::MemberRemove(member) => {
                names.remove_member(member.guild_id.get(), member.user.id.get());
                None
            }
            GatewayEvent::MessageCreate(message) => {
                let guild = message.guild_id?;
                if message.author.bot || message.webhook_id.is_some() {
                    return None;
                }
                let (guild, channel) = (guild.get(), message.channel_id.get());
                Some(Event {
                    guild_id: snowflake(guild)?,
                    user_id: snowflake(message.author.id.get())?,
                    username: name_or_id(&message.author.name, message.author.id.get()),
                    created_at: instant(message.timestamp).unwrap_or(received_at),
                    payload: Payload::Message {
                        channel_id: snowflake(channel)?,
                        channel: channel_name(names, guild, channel),
                        content: clean(&message.content, MAX_CONTENT_CHARS),
                    },
                })
            }
            GatewayEvent::TypingStart(typing) => {
                let guild = typing.guild_id?.get();
                let member_user = typing.member.as_ref().map(|m| &m.user);
                if member_user.is_some_and(|u| u.bot) {
                    return None;
                }
                let (user, channel) = (typing.user_id.get(), typing.channel_id.get());
                let username = match member_user {
                    Some(u) => u.name.as_str(),
                    None => names.username(guild, user).unwrap_or_default(),
                };
                let created_at = i64::try_from(typing.timestamp)
                    .ok()
                    .and_then(|secs| DateTime::from_timestamp(secs, 0))
                    .unwrap_or(received_at);
                Some(Event {
                    guild_id: snowflake(guild)?,
                    user_id: snowflake(user)?,
                    username: name_or_id(username, user),
                    created_at,
                    payload: Payload::Typing {
                        channel_id: snowflake(channel)?,
                        channel: channel_name(names, guild, channel),
                    },
                })
            }
            GatewayEvent::PresenceUpdate(presence) => {
                let status = &presence.client_status;
                let clients = [
                    (status.desktop.is_some(), ClientSet::DESKTOP),
                    (status.mobile.is_some(), ClientSet::MOBILE),
                    (status.web.is_some(), ClientSet::WEB),
                ]
                .into_iter()
                .filter(|(present, _)| *present)
                .fold(ClientSet::EMPTY, |set, (_, client)| set.union(client));
                if clients.is_empty() {
                    return None;
                }
                let guild = presence.guild_id.get();
                let user = presence.user.id().get();
                let username = match &presence.user {
                    UserOrId::User(u) if u.bot => return None,
                    UserOrId::User(u) => u.name.as_str(),
                    UserOrId::UserId { .. } => names.username(guild, user).unwrap_or_default(),
                };
                Some(Event {
                    guild_id: snowflake(guild)?,
                    user_id: snowflake(user)?,
                    username: name_or_id(username, user),
                    created_at: received_at,
                    payload: Payload::Presence { clients },
                })
            }
            GatewayEvent::MemberUpdate(update) => {
                if update.user.bot {
                    return None;
                }
                let (guild, user) = (update.guild_id.get(), update.user.id.get());
                let member = CachedMember::new(
                    update.roles.iter().map(|r| r.get()).collect(),
                    update.user.name.clone(),
                );
                // GUILD_MEMBER_UPDATE carries the whole role list, not a
                // diff: what was added is what the cached list lacked.
                let before = names.set_member(guild, user, member.clone())?;
                let mut added: Vec<String> = member
                    .roles
                    .iter()
                    .filter(|role| before.roles.binary_search(role).is_err())
                    .map(|&role| role_name(names, guild, role))
                    .collect();
                if added.is_empty() {
                    return None;
                }
                added.sort();
                Some(Event {
                    guild_id: snowflake(guild)?,
                    user_id: snowflake(user)?,
                    username: name_or_id(&update.user.name, user),
                    created_at: received_at,
                    payload: Payload::RoleChange { added_roles: added },
                })
            }
            GatewayEvent::MemberAdd(added) => {
                let member = &added.member;
                if member.user.bot {
                    return None;
                }
                let (guild, user) = (added.guild_id.get(), member.user.id.get());
                learn_member(names, guild, member);
                let joined_at = member.joined_at.and_then(instant).unwrap_or(received_at);
                Some(Event {
                    guild_id: snowflake(guild)?,
                    user_id: snowflake(user)?,
                    username: name_or_id(&member.user.name, user),
                    created_at: joined_at,
                    payload: Payload::MemberJoin {
                        account_age_days: account_age_days(user, joined_at),
                    },
                })
            }
            _ => None,
        };
        // Unreachable with the cleaning above; a guard so that an event the
        // store would refuse is never buffered (it would block the buffer).
        mapped.filter(|e| e.validate().is_ok())
    }
}

/// Whole days, rounded down, from the account's creation (the time in its
/// snowflake) to `joined_at`; 0 for a join that predates it (a bad clock
/// or a bad id), at most [`MAX_ACCOUNT_AGE_DAYS`].
pub fn account_age_days(user: RawId, joined_at: DateTime<Utc>) -> u32 {
    let created = snowflake_millis(user);
    let days = (joined_at.timestamp_millis() - created).div_euclid(DAY_MILLIS);
    u32::try_from(days.max(0))
        .unwrap_or(u32::MAX)
        .min(MAX_ACCOUNT_AGE_DAYS)
}

/// The creation time in a snowflake, in Unix milliseconds.
pub fn snowflake_millis(id: RawId) -> i64 {
    // 64 - 22 bits: always fits in an i64.
    (id >> 22) as i64 + DISCORD_EPOCH_MILLIS
}

fn channel_named(names: &mut Names, channel: &Channel) -> Option<Event> {
    if let Some(guild) = channel.guild_id {
        learn_channel(names, guild.get(), channel);
    }
    None
}

fn learn_channel(names: &mut Names, guild: RawId, channel: &Channel) {
    match &channel.name {
        Some(name) => names.set_channel(guild, channel.id.get(), name.clone()),
        None => names.remove_channel(guild, channel.id.get()),
    }
}

fn learn_member(names: &mut Names, guild: RawId, member: &Member) {
    let roles = member.roles.iter().map(|r| r.get()).collect();
    names.set_member(
        guild,
        member.user.id.get(),
        CachedMember::new(roles, member.user.name.clone()),
    );
}

fn channel_name(names: &Names, guild: RawId, channel: RawId) -> String {
    name_or_id(names.channel(guild, channel).unwrap_or_default(), channel)
}

fn role_name(names: &Names, guild: RawId, role: RawId) -> String {
    name_or_id(names.role(guild, role).unwrap_or_default(), role)
}

/// `name` cleaned, or the id when nothing is left of it.
fn name_or_id(name: &str, id: RawId) -> String {
    let name = clean(name, MAX_NAME_CHARS);
    if name.trim().is_empty() {
        id.to_string()
    } else {
        name
    }
}

/// Without NULs (PostgreSQL cannot store them), at most `max` characters.
fn clean(text: &str, max: usize) -> String {
    text.chars().filter(|&c| c != '\0').take(max).collect()
}

/// A gateway id as a spywatcher id. A `u64` has at most 20 digits, so
/// this is always `Some`.
fn snowflake<T: std::str::FromStr>(id: RawId) -> Option<T> {
    id.to_string().parse().ok()
}

fn instant(timestamp: Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(timestamp.as_micros())
}
