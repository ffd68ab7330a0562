//! The service: analytics served through the cache, events ingested with
//! precise invalidation, and their real-time pushes ([`realtime`]). It joins
//! the two libraries and knows nothing of HTTP; the routes call it.

pub mod gateway;
pub mod insights;
pub mod journal;
pub mod keys;
pub mod read_counts;
pub mod realtime;
pub mod warm_on_start;

use std::collections::BTreeSet;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use spywatcher_analytics::{
    AnalyticsKind, Event, EventKind, EventStore, GuildId, Since, StoreError,
};
use spywatcher_cache::{Cache, CachedJson, Origin};
use tracing::{info, warn};

#[derive(Clone)]
pub struct Spywatcher {
    pub store: EventStore,
    pub cache: Cache,
    /// Shared: the state is cloned for every request.
    policy: Arc<CachePolicy>,
    requests: Arc<RequestCounters>,
    queries: Arc<QueryCounters>,
    /// Reads per guild, for warming the busiest at the next start.
    reads: Arc<read_counts::ReadCounts>,
}

/// How the analytics are cached.
#[derive(Debug, Clone, Default)]
pub struct CachePolicy {
    /// False: the cache is bypassed, every analytics request is computed
    /// by the database and events invalidate nothing (`CACHE_ENABLED`).
    pub caching: bool,
    /// TTL per analytics (SPEC 2.3 when absent).
    pub ttls: HashMap<AnalyticsKind, Duration>,
    /// Grace per analytics (expire by tag); absent: delete by tag.
    pub graces: HashMap<AnalyticsKind, Duration>,
}

impl Spywatcher {
    pub fn new(store: EventStore, cache: Cache, policy: CachePolicy) -> Self {
        Spywatcher {
            store,
            cache,
            policy: Arc::new(policy),
            requests: Arc::new(RequestCounters::new()),
            queries: Arc::new(QueryCounters::new()),
            reads: Arc::new(read_counts::ReadCounts::new()),
        }
    }

    /// The reads counted per guild since the last flush.
    pub fn read_counts(&self) -> &Arc<read_counts::ReadCounts> {
        &self.reads
    }

    fn ttl(&self, kind: AnalyticsKind) -> Duration {
        self.policy
            .ttls
            .get(&kind)
            .copied()
            .unwrap_or_else(|| crate::config::default_ttl(kind))
    }

    fn grace(&self, kind: AnalyticsKind) -> Duration {
        self.policy.graces.get(&kind).copied().unwrap_or_default()
    }

    /// One analytics as JSON (with its digest), from the cache or computed
    /// by the database.
    ///
    /// With a grace for `kind`, a value an event made stale may be served
    /// within the grace ([`Origin::Stale`]) while it is refreshed.
    ///
    /// Counts a read of `guild`, whatever the origin: warming on start
    /// ranks guilds by these counts.
    pub async fn analytics(
        &self,
        kind: AnalyticsKind,
        guild: &GuildId,
        since: Option<Since>,
    ) -> Result<(CachedJson, Origin), StoreError> {
        self.reads.count(guild);
        self.analytics_within(kind, guild, since, self.grace(kind))
            .await
    }

    /// One analytics as it is now, never a stale value: for the real-time
    /// pushes, which follow the very events that make values stale.
    pub async fn fresh_analytics(
        &self,
        kind: AnalyticsKind,
        guild: &GuildId,
        since: Option<Since>,
    ) -> Result<(CachedJson, Origin), StoreError> {
        self.analytics_within(kind, guild, since, Duration::ZERO)
            .await
    }

    async fn analytics_within(
        &self,
        kind: AnalyticsKind,
        guild: &GuildId,
        since: Option<Since>,
        grace: Duration,
    ) -> Result<(CachedJson, Origin), StoreError> {
        let compute = || {
            self.queries.analytics.increment(1);
            self.store.analytics_now(kind, guild, since)
        };
        if !self.policy.caching {
            let rows = compute().await?;
            let json = CachedJson::of(&rows)
                .map_err(|e| StoreError::Corrupt(format!("analytics not serializable: {e}")))?;
            self.requests.get(kind, Origin::Loader).increment(1);
            return Ok((json, Origin::Loader));
        }
        let key = keys::entry_key(kind, guild, since.as_ref());
        let tags = keys::entry_tags(kind, guild);
        let (json, origin) = if grace.is_zero() {
            self.cache
                .remember_json(&key, self.ttl(kind), &tags, compute)
                .await?
        } else {
            // Owned, and so cloned only here: a graced entry's refresh runs
            // in the background, after this request.
            let (store, queries, guild) = (self.store.clone(), self.queries.clone(), guild.clone());
            let owned = move || async move {
                queries.analytics.increment(1);
                store.analytics_now(kind, &guild, since).await
            };
            self.cache
                .remember_json_graced(&key, self.ttl(kind), grace, &tags, owned)
                .await?
        };
        self.requests.get(kind, origin).increment(1);
        Ok((json, origin))
    }

    /// Stores a batch of events, then invalidates exactly the analytics
    /// they change (SPEC 2.4), then announces it on
    /// `cache:invalidated:{guildId}`.
    ///
    /// With Redis, the invalidation is first recorded in the database in the
    /// same transaction as the events: if Redis cannot take it, or this
    /// process dies before it could, any instance applies it before its
    /// cache serves reads again. Once Redis has taken it, the entry is
    /// marked applied, not removed: it stays for the retention window, to
    /// be replayed if Redis loses or rolls back state (SPEC 1.2.11).
    pub async fn ingest(&self, kind: EventKind, events: &[Event]) -> Result<u64, StoreError> {
        self.ingest_from(Source::Http, kind, events).await
    }

    /// [`Spywatcher::ingest`] for events from `source`, which the log names.
    pub async fn ingest_from(
        &self,
        source: Source,
        kind: EventKind,
        events: &[Event],
    ) -> Result<u64, StoreError> {
        let guilds: BTreeSet<&GuildId> = events.iter().map(|e| &e.guild_id).collect();
        let tags: Vec<String> = guilds
            .iter()
            .flat_map(|guild| keys::event_tags(kind, guild))
            .collect();
        self.queries.ingest.increment(1);
        let (stored, invalidated) = if !self.policy.caching {
            (self.store.ingest(events).await?, Some(0))
        } else if self.cache.backend_name() == "embedded" {
            let stored = self.store.ingest(events).await?;
            let invalidated = if tags.is_empty() {
                Some(0)
            } else {
                Some(self.cache.invalidate_by_tags(&tags).await)
            };
            (stored, invalidated)
        } else {
            let (stored, journal_id) = self.store.ingest_with_journal(events, &tags).await?;
            let invalidated = match journal_id {
                None => Some(0),
                Some(id) => {
                    let invalidated = self.cache.invalidate_recorded(&tags, id).await;
                    if invalidated.is_some()
                        && let Err(e) = self.store.mark_invalidations_applied(&[id]).await
                    {
                        // Harmless: the entry will be applied once more, then marked.
                        warn!(error = %e, "could not mark a journal entry applied");
                    }
                    invalidated
                }
            };
            (stored, invalidated)
        };
        log_ingested(source, kind, stored, guilds.len(), tags.len(), invalidated);
        let timestamp = Utc::now().to_rfc3339();
        let messages: Vec<(String, serde_json::Value)> = guilds
            .iter()
            .map(|guild| {
                let message =
                    json!({ "event": kind, "guildId": guild.as_str(), "timestamp": timestamp });
                (keys::invalidated_channel(guild), message)
            })
            .collect();
        // Pipelined: a batch over 10,000 guilds is a few round trips.
        self.cache.pubsub().publish_all(&messages).await;
        metrics::counter!("spywatcher_events_ingested_total", "kind" => kind.as_str())
            .increment(stored);
        Ok(stored)
    }

    /// Computes and caches all six analytics of a guild. Not counted as
    /// reads: a guild warmed at start would otherwise stay among the
    /// busiest for good.
    pub async fn warm(&self, guild: &GuildId) -> Result<usize, StoreError> {
        for &kind in AnalyticsKind::ALL {
            self.analytics_within(kind, guild, None, self.grace(kind))
                .await?;
        }
        Ok(AnalyticsKind::ALL.len())
    }
}

/// One INFO line per ingested batch, whatever its size: a batch over 10,000
/// guilds invalidates 40,000 tags, whose lines (`Invalidated N cache entries
/// for tag: T`) the cache writes at DEBUG.
fn log_ingested(
    source: Source,
    kind: EventKind,
    stored: u64,
    guilds: usize,
    tags: usize,
    invalidated: Option<u64>,
) {
    let on = match source {
        Source::Http => format!("on /api/events/{kind}"),
        Source::Gateway => format!("of kind {kind} from the Discord gateway"),
    };
    match invalidated {
        _ if tags == 0 => info!(
            "Stored {stored} events {on} (guilds: {guilds}); no cached analytics depend on them"
        ),
        Some(entries) => info!(
            "Invalidated {entries} cache entries for {tags} tags (guilds: {guilds}) after {stored} events {on}"
        ),
        None => info!(
            "Invalidation of {tags} tags (guilds: {guilds}) after {stored} events {on} journaled until Redis answers"
        ),
    }
}

/// Where ingested events come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `POST /api/events/{kind}`.
    Http,
    /// The Discord gateway ingester (SPEC 2.5).
    Gateway,
}

/// `spywatcher_db_queries_total{operation}`: what the service asks of the
/// database, one per analytics computed (`analytics`) and per batch of events
/// stored (`ingest`); what the cache saves the database is the first.
struct QueryCounters {
    analytics: metrics::Counter,
    ingest: metrics::Counter,
}

impl QueryCounters {
    fn new() -> Self {
        let counter = |operation: &'static str| metrics::counter!("spywatcher_db_queries_total", "operation" => operation);
        QueryCounters {
            analytics: counter("analytics"),
            ingest: counter("ingest"),
        }
    }
}

/// `spywatcher_analytics_requests_total{type, cache}`, registered once: a
/// labelled `counter!` hashes its labels into the registry on every call,
/// which the cached path of the analytics route notices.
struct RequestCounters {
    /// Per analytics, in the order of [`AnalyticsKind::ALL`], one counter
    /// per value of `X-Cache`, in the order of [`CACHE_LABELS`].
    counters: Vec<[metrics::Counter; 3]>,
}

/// The `cache` label: what `X-Cache` says.
const CACHE_LABELS: [&str; 3] = ["miss", "hit", "stale"];

/// What `X-Cache` says of a value from `origin`.
pub fn cache_label(origin: Origin) -> &'static str {
    match origin {
        Origin::Cache => "hit",
        Origin::Stale { .. } => "stale",
        Origin::Flight | Origin::Loader => "miss",
    }
}

impl RequestCounters {
    fn new() -> Self {
        let counter = |kind: AnalyticsKind, cache: &'static str| {
            metrics::counter!("spywatcher_analytics_requests_total",
                "type" => kind.as_str(), "cache" => cache)
        };
        RequestCounters {
            counters: AnalyticsKind::ALL
                .iter()
                .map(|&kind| CACHE_LABELS.map(|label| counter(kind, label)))
                .collect(),
        }
    }

    fn get(&self, kind: AnalyticsKind, origin: Origin) -> &metrics::Counter {
        let index = AnalyticsKind::ALL
            .iter()
            .position(|&k| k == kind)
            .expect("every kind is in AnalyticsKind::ALL");
        let label = cache_label(origin);
        let column = CACHE_LABELS
            .iter()
            .position(|&l| l == label)
            .expect("every label is in CACHE_LABELS");
        &self.counters[index][column]
    }
}
