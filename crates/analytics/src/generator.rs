//! Deterministic synthetic events shaped like real Discord servers.
//!
//! The same [`GeneratorConfig`] always yields the same events: every guild
//! draws from its own ChaCha8 stream (a portable, version-stable algorithm,
//! unlike `StdRng`), seeded from the config seed and the guild's index, so a
//! guild's events do not depend on how many other guilds are generated.
//!
//! Shape: user activity follows a Zipf-like law (a few members produce most
//! events), and members are given archetypes so that every analytics has
//! something to find: ghosts (type, rarely send), lurkers (presence only),
//! quitters (messages stop in the last week), spikers (typing surges in the
//! last week), role churners, client drifters (add a client in the last
//! week) and renamed users.

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::domain::{ChannelId, ClientSet, Event, GuildId, Payload, UserId};
use crate::store::{EventStore, StoreError};

/// What to generate. Events are split across guilds evenly, or by a Zipf
/// law of the guild's index when `guild_skew` is positive.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorConfig {
    pub seed: u64,
    pub guilds: u32,
    /// Members per guild.
    pub users: u32,
    /// Days of history, ending at `end`.
    pub days: u32,
    /// Total events, over all guilds.
    pub events: u64,
    /// The instant the history ends (the analytics' `now` to use with it).
    pub end: DateTime<Utc>,
    /// Zipf exponent of guild sizes: guild `i` (in generation order) gets
    /// events in proportion to `1 / (i + 1)^guild_skew`, so the first guild
    /// is the largest. 0 splits evenly (real servers are anything but
    /// even: a benchmark wants a few busy guilds and a long tail).
    pub guild_skew: f64,
}

impl Default for GeneratorConfig {
    /// 3 guilds × 500 members, 30 days, 60,000 events, ending at the start
    /// of the current UTC day (so a day's runs agree).
    fn default() -> Self {
        let today = Utc::now()
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc();
        Self {
            seed: 42,
            guilds: 3,
            users: 500,
            days: 30,
            events: 60_000,
            end: today,
            guild_skew: 0.0,
        }
    }
}

/// What [`generate_into`] did.
#[derive(Debug, Clone)]
pub struct Summary {
    pub events: u64,
    pub guilds: Vec<GuildId>,
    pub elapsed: Duration,
}

impl Summary {
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Events handed to the store per transaction.
const CHUNK: usize = 5_000;

/// The ids of the guilds `config` generates, in generation order.
pub fn generated_guild_ids(config: &GeneratorConfig) -> Vec<GuildId> {
    // At least one guild, as `generate_into` does.
    (0..config.guilds.max(1))
        .map(|i| guild_id(config.seed, i))
        .collect()
}

/// Generates `config.events` events into `store`, in chunks of one
/// transaction each, calling `progress(done, total)` after every chunk.
/// Into an empty store it is a bulk load ([`EventStore::begin_bulk_load`]):
/// the covering index is built once at the end, after the last progress
/// call.
/// Guilds take turns chunk by chunk, as real traffic interleaves them.
pub async fn generate_into(
    store: &EventStore,
    config: &GeneratorConfig,
    mut progress: impl FnMut(u64, u64),
) -> Result<Summary, StoreError> {
    let started = Instant::now();
    let mut sims: Vec<GuildSim> = guild_quotas(config)
        .into_iter()
        .zip(0..)
        .map(|(quota, i)| GuildSim::new(config, i, quota))
        .collect();
    let mut done = 0;
    progress(0, config.events);
    // Into an empty store, without the covering index's upkeep (built
    // once at the end); into one that holds events, as any ingestion.
    store.begin_bulk_load().await?;
    // One chunk is written while the next is generated (on a
    // multi-threaded runtime the two run on two cores); one at a time, so
    // rows keep the generation order.
    let mut writing: Option<tokio::task::JoinHandle<Result<u64, StoreError>>> = None;
    while sims.iter().any(|s| s.remaining > 0) {
        for sim in sims.iter_mut().filter(|s| s.remaining > 0) {
            let chunk = sim.next_chunk(CHUNK);
            if let Some(previous) = writing.take() {
                done += joined(previous.await)?;
                progress(done, config.events);
            }
            let store = store.clone();
            writing = Some(tokio::spawn(async move { store.ingest(&chunk).await }));
        }
    }
    if let Some(last) = writing {
        done += joined(last.await)?;
        progress(done, config.events);
    }
    store.finish_bulk_load().await?;
    Ok(Summary {
        events: done,
        guilds: generated_guild_ids(config),
        elapsed: started.elapsed(),
    })
}

/// Events per guild, in generation order; they add up to `config.events`.
pub fn guild_quotas(config: &GeneratorConfig) -> Vec<u64> {
    let guilds = u64::from(config.guilds.max(1));
    let events = config.events;
    // A skew that is not a positive number (0, negative, NaN) is the even
    // split, computed in integers so that it stays exactly what it was.
    if config.guild_skew.is_nan() || config.guild_skew <= 0.0 {
        return (0..guilds)
            .map(|i| events / guilds + u64::from(i < events % guilds))
            .collect();
    }
    let weights: Vec<f64> = (0..guilds)
        .map(|i| 1.0 / ((i + 1) as f64).powf(config.guild_skew))
        .collect();
    let total: f64 = weights.iter().sum();
    let mut quotas: Vec<u64> = weights
        .iter()
        .map(|w| (events as f64 * w / total).floor() as u64)
        .collect();
    // Flooring leaves fewer than `guilds` events over (rounding may even
    // overshoot by a few at huge counts): settle the difference on the
    // largest guilds first, so the order of sizes is kept.
    let assigned: u64 = quotas.iter().sum();
    if assigned <= events {
        for i in 0..(events - assigned) {
            quotas[(i % guilds) as usize] += 1;
        }
    } else {
        let mut excess = assigned - events;
        for q in quotas.iter_mut().rev() {
            let take = excess.min(*q);
            *q -= take;
            excess -= take;
        }
    }
    quotas
}

/// The result of a chunk's write task.
fn joined(
    result: Result<Result<u64, StoreError>, tokio::task::JoinError>,
) -> Result<u64, StoreError> {
    result.map_err(|e| StoreError::Aborted(e.to_string()))?
}

fn guild_id(seed: u64, index: u32) -> GuildId {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6775_696c_6473); // "guilds"
    rng.set_stream(u64::from(index));
    snowflake(&mut rng)
}

/// An 18-digit id, like Discord's current snowflakes.
fn snowflake<T: From<crate::domain::Snowflake>>(rng: &mut ChaCha8Rng) -> T {
    let n: u64 = rng.random_range(100_000_000_000_000_000..1_000_000_000_000_000_000);
    // Digits only, 18 of them: always a valid snowflake.
    crate::domain::Snowflake::parse(n.to_string())
        .map(T::from)
        .unwrap_or_else(|_| unreachable!())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Archetype {
    Regular,
    Ghost,
    Lurker,
    /// Sends messages, then stops in the last week.
    Quitter,
    /// Types a lot more in the last week.
    Spiker,
}

impl Archetype {
    /// Relative weights of message, typing, presence, role change, join.
    fn kind_weights(self) -> [u32; 5] {
        match self {
            Archetype::Regular | Archetype::Quitter => [40, 35, 22, 2, 1],
            Archetype::Spiker => [25, 50, 22, 2, 1],
            Archetype::Ghost => [3, 70, 25, 1, 1],
            Archetype::Lurker => [0, 0, 96, 3, 1],
        }
    }
}

struct Member {
    id: UserId,
    name: String,
    /// A later name and when it was taken.
    rename: Option<(i64, String)>,
    archetype: Archetype,
    role_churner: bool,
    clients: ClientSet,
    /// Clients added in the last week (client drift); empty for most.
    added_clients: ClientSet,
}

impl Member {
    fn name_at(&self, t: i64) -> &str {
        match &self.rename {
            Some((at, name)) if t >= *at => name,
            _ => &self.name,
        }
    }
}

struct GuildSim {
    id: GuildId,
    rng: ChaCha8Rng,
    members: Vec<Member>,
    /// Cumulative Zipf weights over `members` (activity rank = index).
    member_cdf: Vec<f64>,
    channels: Vec<(ChannelId, String)>,
    channel_cdf: Vec<f64>,
    start: i64,
    end: i64,
    remaining: u64,
}

const WEEK_MS: i64 = 7 * 24 * 3600 * 1000;
const WORDS: &[&str] = &[
    "the", "a", "raid", "tonight", "anyone", "up", "for", "games", "lol", "nice", "build", "patch",
    "notes", "bug", "server", "music", "art", "check", "this", "out", "meeting", "later", "thanks",
    "gg", "ok", "new", "role", "when", "is", "event", "stream", "clip", "wild", "update", "help",
    "please", "question", "about", "docs", "deploy",
];
const NAME_PARTS: (&[&str], &[&str]) = (
    &[
        "quiet", "swift", "lucky", "sleepy", "brave", "shy", "loud", "misty", "neon", "cosmic",
        "tiny", "grumpy",
    ],
    &[
        "otter", "falcon", "panda", "fox", "golem", "wizard", "pixel", "comet", "badger", "raven",
        "koala", "yeti",
    ],
);
const CHANNELS: &[&str] = &[
    "general",
    "random",
    "memes",
    "dev",
    "music",
    "gaming",
    "art",
    "help",
    "announcements",
    "off-topic",
    "bots",
    "media",
    "events",
    "feedback",
    "lounge",
    "support",
];
const ROLES: &[&str] = &[
    "Member",
    "Moderator",
    "VIP",
    "Artist",
    "Gamer",
    "Helper",
    "Booster",
    "Verified",
];

impl GuildSim {
    fn new(config: &GeneratorConfig, index: u32, quota: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        rng.set_stream(u64::from(index) + 1);
        let end = config.end.timestamp_millis();
        let start = end - i64::from(config.days.max(1)) * 24 * 3600 * 1000;

        let members = (0..config.users.max(1))
            .map(|i| member(&mut rng, i, start, end))
            .collect();
        let channel_count = rng.random_range(4..=CHANNELS.len());
        let channels = (0..channel_count)
            .map(|i| (snowflake(&mut rng), CHANNELS[i].to_owned()))
            .collect::<Vec<(ChannelId, String)>>();
        Self {
            id: guild_id(config.seed, index),
            member_cdf: zipf_cdf(config.users.max(1) as usize, 1.05),
            channel_cdf: zipf_cdf(channels.len(), 0.9),
            channels,
            members,
            rng,
            start,
            end,
            remaining: quota,
        }
    }

    fn next_chunk(&mut self, max: usize) -> Vec<Event> {
        let n = self.remaining.min(max as u64);
        self.remaining -= n;
        (0..n).map(|_| self.event()).collect()
    }

    fn event(&mut self) -> Event {
        let m = pick(&mut self.rng, &self.member_cdf);
        let mut weights = self.members[m].archetype.kind_weights();
        if self.members[m].role_churner {
            weights[3] += 10;
        }
        let kind = pick_weighted(&mut self.rng, &weights);
        let mut t = self.rng.random_range(self.start..self.end);
        let member = &self.members[m];
        let last_week = self.end - WEEK_MS;
        // Archetypes bend time: quitters stop writing in the last week,
        // spikers do most of their typing in it.
        if member.archetype == Archetype::Quitter && kind == 0 && t >= last_week {
            t = self
                .rng
                .random_range(self.start.min(last_week - 1)..last_week);
        }
        if member.archetype == Archetype::Spiker && kind == 1 && self.rng.random_bool(0.6) {
            t = self.rng.random_range(last_week.max(self.start)..self.end);
        }
        let payload = match kind {
            0 | 1 => {
                let (channel_id, channel) =
                    self.channels[pick(&mut self.rng, &self.channel_cdf)].clone();
                if kind == 0 {
                    Payload::Message {
                        channel_id,
                        channel,
                        content: sentence(&mut self.rng),
                    }
                } else {
                    Payload::Typing {
                        channel_id,
                        channel,
                    }
                }
            }
            2 => {
                let mut clients = member.clients;
                if t >= last_week {
                    clients = clients.union(member.added_clients);
                }
                if self.rng.random_bool(0.03) {
                    // Now and then someone opens another client.
                    clients = ClientSet::from_mask(self.rng.random_range(1..8)).unwrap_or(clients);
                }
                Payload::Presence { clients }
            }
            3 => {
                let roles = (0..self.rng.random_range(1..=3))
                    .map(|_| ROLES[self.rng.random_range(0..ROLES.len())].to_owned())
                    .collect();
                Payload::RoleChange { added_roles: roles }
            }
            _ => Payload::MemberJoin {
                account_age_days: self.rng.random_range(0..3000),
            },
        };
        let member = &self.members[m];
        Event {
            guild_id: self.id.clone(),
            user_id: member.id.clone(),
            username: member.name_at(t).to_owned(),
            created_at: Utc.timestamp_millis_opt(t).single().unwrap_or_default(),
            payload,
        }
    }
}

fn member(rng: &mut ChaCha8Rng, i: u32, start: i64, end: i64) -> Member {
    let archetype = match rng.random_range(0..100) {
        0..45 => Archetype::Regular,
        45..60 => Archetype::Ghost,
        60..80 => Archetype::Lurker,
        80..90 => Archetype::Quitter,
        _ => Archetype::Spiker,
    };
    let name = format!(
        "{}_{}{}",
        NAME_PARTS.0[rng.random_range(0..NAME_PARTS.0.len())],
        NAME_PARTS.1[rng.random_range(0..NAME_PARTS.1.len())],
        i
    );
    let rename = rng
        .random_bool(0.05)
        .then(|| (rng.random_range(start..end), format!("{name}_v2")));
    let clients = [ClientSet::DESKTOP, ClientSet::MOBILE, ClientSet::WEB][rng.random_range(0..3)];
    let added_clients = if rng.random_bool(0.12) {
        [ClientSet::DESKTOP, ClientSet::MOBILE, ClientSet::WEB][rng.random_range(0..3)]
    } else {
        ClientSet::EMPTY
    };
    let role_churner = rng.random_bool(0.08);
    Member {
        id: snowflake(rng),
        name,
        rename,
        archetype,
        role_churner,
        clients,
        added_clients,
    }
}

/// Cumulative weights 1/(rank+1)^s, normalised to end at 1.
fn zipf_cdf(n: usize, s: f64) -> Vec<f64> {
    let mut acc = 0.0;
    let mut cdf: Vec<f64> = (0..n)
        .map(|r| {
            acc += 1.0 / ((r + 1) as f64).powf(s);
            acc
        })
        .collect();
    cdf.iter_mut().for_each(|c| *c /= acc);
    cdf
}

fn pick(rng: &mut ChaCha8Rng, cdf: &[f64]) -> usize {
    let x: f64 = rng.random();
    cdf.partition_point(|c| *c < x).min(cdf.len() - 1)
}

fn pick_weighted(rng: &mut ChaCha8Rng, weights: &[u32]) -> usize {
    let total: u32 = weights.iter().sum();
    let mut x = rng.random_range(0..total);
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    weights.len() - 1
}

fn sentence(rng: &mut ChaCha8Rng) -> String {
    let n = rng.random_range(1..16);
    (0..n)
        .map(|_| WORDS[rng.random_range(0..WORDS.len())])
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::{GeneratorConfig, guild_quotas};

    fn config(guilds: u32, events: u64, guild_skew: f64) -> GeneratorConfig {
        GeneratorConfig {
            guilds,
            events,
            guild_skew,
            ..GeneratorConfig::default()
        }
    }

    #[test]
    fn no_skew_splits_evenly_the_first_guilds_taking_the_remainder() {
        assert_eq!(guild_quotas(&config(3, 10, 0.0)), [4, 3, 3]);
        assert_eq!(guild_quotas(&config(4, 8, 0.0)), [2, 2, 2, 2]);
        assert_eq!(guild_quotas(&config(3, 10, f64::NAN)), [4, 3, 3]);
    }

    #[test]
    fn skew_follows_zipf_by_index_and_adds_up() {
        let quotas = guild_quotas(&config(50, 2_000_000, 1.0));
        assert_eq!(quotas.iter().sum::<u64>(), 2_000_000);
        assert!(quotas.windows(2).all(|w| w[0] >= w[1]), "{quotas:?}");
        // 1/H(50) of the events for the first guild, 1/50 of that for the last.
        let h50: f64 = (1..=50).map(|i| 1.0 / f64::from(i)).sum();
        let first = 2_000_000.0 / h50;
        assert!((quotas[0] as f64 - first).abs() <= 1.0, "{}", quotas[0]);
        assert!((quotas[49] as f64 - first / 50.0).abs() <= 1.0);
    }

    #[test]
    fn skew_with_fewer_events_than_guilds_still_adds_up() {
        let quotas = guild_quotas(&config(10, 3, 2.0));
        assert_eq!(quotas.iter().sum::<u64>(), 3);
        assert!(quotas.windows(2).all(|w| w[0] >= w[1]), "{quotas:?}");
    }
}
