//! The events the stream posts: the request bodies of
//! `POST /api/events/{kind}`, built as the analytics crate's own [`Event`]
//! (so they serialize to exactly what a client sends), stamped now.

use chrono::{TimeZone, Utc};
use rand::Rng;
use spywatcher_analytics::{
    ChannelId, ClientSet, Event, EventKind, GuildId, Payload, Snowflake, UserId,
};

/// Members of a guild the stream writes as: few enough that the analytics
/// see repeat actors, as with real members.
const STREAM_MEMBERS: u64 = 200;
const CHANNELS: [&str; 4] = ["general", "random", "gaming", "help"];
const ROLES: [&str; 4] = ["Member", "VIP", "Gamer", "Helper"];

/// An 18-digit snowflake from a number below 10^17.
fn snowflake<T: From<Snowflake>>(n: u64) -> T {
    let digits = (100_000_000_000_000_000 + n % 100_000_000_000_000_000).to_string();
    // 18 digits, always a valid snowflake.
    T::from(Snowflake::parse(digits).unwrap_or_else(|_| unreachable!()))
}

/// One event of `kind` in the guild of rank `rank`, created now.
pub fn event(rng: &mut impl Rng, kind: EventKind, guild: &GuildId, rank: usize) -> Event {
    let member = rng.random_range(0..STREAM_MEMBERS);
    let rank = rank as u64;
    let channel = rng.random_range(0..CHANNELS.len());
    let channel_id: ChannelId = snowflake(7_000_000 + rank * 100 + channel as u64);
    let channel_name = CHANNELS[channel].to_owned();
    let payload = match kind {
        EventKind::Message => Payload::Message {
            channel_id,
            channel: channel_name,
            content: "bench says hello".to_owned(),
        },
        EventKind::Typing => Payload::Typing {
            channel_id,
            channel: channel_name,
        },
        EventKind::Presence => Payload::Presence {
            // Masks 1..=7 are every non-empty set of the three clients.
            clients: ClientSet::from_mask(rng.random_range(1..8)).unwrap_or(ClientSet::DESKTOP),
        },
        EventKind::RoleChange => Payload::RoleChange {
            added_roles: vec![ROLES[rng.random_range(0..ROLES.len())].to_owned()],
        },
        EventKind::MemberJoin => Payload::MemberJoin {
            account_age_days: rng.random_range(0..3000),
        },
    };
    Event {
        guild_id: guild.clone(),
        user_id: snowflake::<UserId>(9_000_000 + rank * 1_000 + member),
        username: format!("bench_member_{member}"),
        // Whole milliseconds, as the service stores them.
        created_at: Utc
            .timestamp_millis_opt(Utc::now().timestamp_millis())
            .single()
            .unwrap_or_else(Utc::now),
        payload,
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use spywatcher_analytics::{EventKind, GuildId, parse_events};

    use super::event;

    #[test]
    fn every_kind_serializes_to_a_body_the_service_accepts() {
        let mut rng = StdRng::seed_from_u64(4);
        let guild: GuildId = "521397945807335753".parse().unwrap();
        for kind in EventKind::ALL {
            let e = event(&mut rng, *kind, &guild, 3);
            assert_eq!(e.kind(), *kind);
            let body = serde_json::to_value(&e).unwrap();
            let parsed = parse_events(*kind, body, spywatcher_analytics::DEFAULT_MAX_FUTURE_SKEW)
                .unwrap_or_else(|err| panic!("{kind}: {err}"));
            assert_eq!(parsed, vec![e]);
        }
    }
}
