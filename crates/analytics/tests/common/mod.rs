//! Shared test helpers: event builders on a fixed clock, and stores on both
//! databases loaded with the same events.
#![allow(dead_code)]

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::Value;
use spywatcher_analytics::{
    AnalyticsKind, ChannelId, ClientSet, Event, EventStore, GuildId, Payload, Since, UserId,
};
use spywatcher_testkit::postgres::TestDatabase;

/// The fixed "now" of every fixture.
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0)
        .single()
        .expect("valid date")
}

/// `now` minus some days.
pub fn days_ago(days: i64) -> DateTime<Utc> {
    now() - Duration::days(days)
}

pub const GUILD: &str = "100";
pub const OTHER_GUILD: &str = "200";

pub fn guild(id: &str) -> GuildId {
    id.parse().expect("valid guild id")
}

fn event(guild: &str, user: &str, name: &str, at: DateTime<Utc>, payload: Payload) -> Event {
    Event {
        guild_id: guild.parse().expect("valid guild id"),
        user_id: user.parse::<UserId>().expect("valid user id"),
        username: name.to_owned(),
        created_at: at,
        payload,
    }
}

pub fn message(guild: &str, user: &str, name: &str, channel: &str, at: DateTime<Utc>) -> Event {
    let payload = Payload::Message {
        channel_id: channel.parse::<ChannelId>().expect("valid channel id"),
        channel: format!("channel-{channel}"),
        content: "hello".to_owned(),
    };
    event(guild, user, name, at, payload)
}

pub fn typing(guild: &str, user: &str, name: &str, channel: &str, at: DateTime<Utc>) -> Event {
    let payload = Payload::Typing {
        channel_id: channel.parse::<ChannelId>().expect("valid channel id"),
        channel: format!("channel-{channel}"),
    };
    event(guild, user, name, at, payload)
}

pub fn presence(guild: &str, user: &str, name: &str, clients: &[&str], at: DateTime<Utc>) -> Event {
    let clients = clients.iter().fold(ClientSet::EMPTY, |acc, c| {
        acc.union(c.parse().expect("client"))
    });
    event(guild, user, name, at, Payload::Presence { clients })
}

pub fn role_change(guild: &str, user: &str, name: &str, at: DateTime<Utc>) -> Event {
    event(
        guild,
        user,
        name,
        at,
        Payload::RoleChange {
            added_roles: vec!["VIP".to_owned()],
        },
    )
}

pub fn member_join(guild: &str, user: &str, name: &str, at: DateTime<Utc>) -> Event {
    event(
        guild,
        user,
        name,
        at,
        Payload::MemberJoin {
            account_age_days: 12,
        },
    )
}

/// `n` copies of an event built by `f`, one minute apart going back from `at`.
pub fn repeat(n: usize, at: DateTime<Utc>, f: impl Fn(DateTime<Utc>) -> Event) -> Vec<Event> {
    (0..n)
        .map(|i| f(at - Duration::minutes(i as i64)))
        .collect()
}

/// A store on each database. Holds the PostgreSQL test database so that it
/// lives as long as the store.
pub struct Backend {
    pub name: &'static str,
    pub store: EventStore,
    _db: Option<TestDatabase>,
}

pub async fn sqlite() -> Backend {
    let store = EventStore::connect("sqlite::memory:")
        .await
        .expect("sqlite store");
    Backend {
        name: "sqlite",
        store,
        _db: None,
    }
}

pub async fn postgres() -> Backend {
    let db = TestDatabase::create()
        .await
        .expect("PostgreSQL test database (is SPYWATCHER_TEST_PG_URL set?)");
    let store = EventStore::connect(db.url()).await.expect("postgres store");
    Backend {
        name: "postgres",
        store,
        _db: Some(db),
    }
}

/// One store per database, each loaded with `events`.
pub async fn both_with(events: &[Event]) -> Vec<Backend> {
    let backends = vec![sqlite().await, postgres().await];
    for b in &backends {
        if !events.is_empty() {
            b.store.ingest(events).await.expect("ingest fixture");
        }
    }
    backends
}

/// Runs one analytics on every backend and checks that each returns
/// exactly `expected` (so the databases agree with each other too).
pub async fn check(
    backends: &[Backend],
    kind: AnalyticsKind,
    since: Option<Since>,
    expected: Value,
) {
    for b in backends {
        let rows = b
            .store
            .analytics(kind, &guild(GUILD), since, now())
            .await
            .expect("analytics");
        assert_eq!(rows.kind(), kind);
        assert_eq!(
            rows.to_json(),
            expected,
            "{kind} (since {since:?}) on {}",
            b.name
        );
    }
}

/// Number of rows of one analytics on every backend (all must agree).
pub async fn row_count(backends: &[Backend], kind: AnalyticsKind) -> usize {
    let mut counts = Vec::new();
    for b in backends {
        counts.push(
            b.store
                .analytics(kind, &guild(GUILD), None, now())
                .await
                .expect("analytics")
                .len(),
        );
    }
    assert!(
        counts.windows(2).all(|w| w[0] == w[1]),
        "{kind}: {counts:?}"
    );
    counts[0]
}
