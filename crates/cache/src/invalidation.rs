//! The order of an invalidation, and the journal that carries the ones Redis
//! could not take (SPEC 1.2.2, 1.2.6, 1.2.10–13).
//!
//! With Redis, an invalidation is applied:
//! 1. to this instance's L1 and fences, so that no load or fill that starts
//!    from now on can store what it reads under the old versions;
//! 2. to Redis;
//! 3. to L1 again: a read that took its fence after step 1 but read Redis
//!    before step 2 may have filled L1 with the old value (this instance
//!    ignores its own bus message, so nothing else would remove it);
//! 4. announced on the bus, for the other instances' L1.
//!
//! If Redis cannot take it, it is journaled (unless the caller did already)
//! and the breaker opened, so that no read reaches Redis before the journal
//! has been applied there (`maintenance.rs`); see `breaker.rs` for why an
//! invalidation journaled while recovery closes the breaker is not left
//! behind.
//!
//! The journal is also replayed whole (its retention window) into a Redis
//! whose identity changed, and fed to L1 at every journal interval, whatever
//! Redis does.

use std::collections::HashSet;
use std::time::Duration;

use tracing::{error, info, warn};

use crate::cache::Inner;
use crate::error::StoreError;
use crate::journal::{JournalEntry, PendingInvalidation, now_ms};
use crate::stats::Counters;
use crate::store::Store;
use crate::testing::Step;

/// Tags per replayed invalidation: bounds one pipeline.
pub(crate) const REPLAY_CHUNK: usize = 1_000;
/// Op timeouts given to a walk of the whole keyspace (SCAN).
pub(crate) const SCAN_BUDGET: u32 = 8;

impl Inner {
    /// Applies an invalidation; if Redis cannot take it now, journals it
    /// (unless the caller recorded it already as `journal_id`) and returns
    /// `None`. Returns per-item counts (per tag for a tag invalidation).
    pub(crate) async fn invalidate(
        &self,
        op: PendingInvalidation,
        journal_id: Option<i64>,
    ) -> Option<Vec<u64>> {
        let Some(l1) = &self.l1 else {
            // Embedded: the store is the only tier, and its own cells fence.
            if !matches!(op, PendingInvalidation::Tags { .. }) {
                self.keys.bump();
            }
            self.insights.invalidated(&op);
            return self.apply(&op).await.ok();
        };
        match journal_id {
            Some(id) => l1.apply_journaled(id, now_ms(), &op).await,
            None => l1.apply(&op).await,
        }
        self.hooks.reach(Step::InvalidateBeforeStore).await;
        let attempt = self.redis_call(self.budget(&op), self.apply(&op)).await;
        self.hooks.reach(Step::InvalidateAfterStore).await;
        if let Err(cause) = &attempt {
            // Before L1's second step: a read that takes its fence after
            // that step must find Redis skipped, or it could fill L1 with
            // what Redis still holds.
            self.trip(cause);
        }
        l1.apply(&op).await;
        if let Err(cause) = &attempt {
            // Counted whoever journals it: the caller may have recorded it
            // already (`invalidate_recorded`), with the event that caused it.
            warn!(error = %cause, ?op, "invalidation could not reach Redis: journaled");
            Counters::add(&self.counters.journaled, 1);
        }
        let journal_id = match journal_id {
            Some(id) => Some(id),
            None => {
                // Pending if Redis did not take it; kept for the window
                // (in case Redis comes back older) if it did.
                let id = self.record(&op, attempt.is_ok()).await;
                if let Some(id) = id {
                    // Applied here already: the feed from the journal skips it.
                    l1.note_journal_id(id, now_ms());
                }
                id
            }
        };
        match attempt {
            Ok(counts) => {
                l1.announce(&self.pubsub, op, journal_id, false).await;
                Some(counts)
            }
            Err(cause) => {
                l1.announce(&self.pubsub, op.clone(), journal_id, true)
                    .await;
                self.skipped(op, journal_id.is_some(), cause).await
            }
        }
    }

    /// The time Redis gets to apply `op`: one op timeout per
    /// [`REPLAY_CHUNK`] tags or keys. An ingest batch over 10,000 guilds
    /// invalidates 40,000 tags in one pipeline, which a healthy Redis takes
    /// a few hundred milliseconds to run: under one op timeout it would
    /// count as an outage, open the breaker and stop caching for everyone.
    ///
    /// A pattern (and a flush) SCANs the whole keyspace under the prefix, on
    /// every master of a cluster, and deletes what matches: it gets the
    /// budget that counting keys for the stats gets.
    fn budget(&self, op: &PendingInvalidation) -> Duration {
        let items = match op {
            PendingInvalidation::Tags { tags } => tags.len(),
            PendingInvalidation::Keys { keys } => keys.len(),
            PendingInvalidation::Pattern { .. } | PendingInvalidation::FlushAll => {
                return self.op_timeout() * SCAN_BUDGET;
            }
        };
        let chunks = u32::try_from(items.div_ceil(REPLAY_CHUNK).max(1)).unwrap_or(u32::MAX);
        self.op_timeout().saturating_mul(chunks)
    }

    /// Opens the breaker after a failed invalidation: no read may reach
    /// Redis before the journal has been applied there.
    fn trip(&self, cause: &StoreError) {
        if !matches!(cause, StoreError::CircuitOpen) && self.breaker.trip() {
            error!("Redis connection error: {cause}; skipping Redis until it answers again");
            self.wake.notify_one();
        }
    }

    /// Journals `op`; returns its id, or `None` if the journal failed.
    async fn record(&self, op: &PendingInvalidation, applied: bool) -> Option<i64> {
        match self.journal.record(op.clone(), applied).await {
            Ok(id) => Some(id),
            Err(e) if applied => {
                warn!(error = %e, "could not journal an invalidation: a Redis that comes back older may serve what it invalidated");
                None
            }
            Err(e) => {
                error!(error = %e, "could not journal an invalidation; cached entries may be stale until they expire");
                None
            }
        }
    }

    /// An invalidation Redis did not take, journaled (`recorded`): it is
    /// applied before reads reach Redis again. Returns the counts if it
    /// could be applied after all (the breaker closed meanwhile).
    async fn skipped(
        &self,
        op: PendingInvalidation,
        recorded: bool,
        cause: StoreError,
    ) -> Option<Vec<u64>> {
        let mut cause = cause;
        for _ in 0..3 {
            self.trip(&cause);
            if recorded && self.breaker.journaled() {
                return None;
            }
            // Closed since our attempt: the recovery that closed it may
            // have read the journal before our entry was in it. (Or the
            // journal failed us: then applying it is all we can do.)
            match self.redis_call(self.budget(&op), self.apply(&op)).await {
                Ok(counts) => {
                    if let Some(l1) = &self.l1 {
                        l1.apply(&op).await;
                    }
                    return Some(counts);
                }
                Err(e) => cause = e,
            }
        }
        None
    }

    /// Entries written anew over possibly cached ones: no instance's L1 may
    /// keep the old value. Called after the write.
    pub(crate) async fn replaced(&self, keys: Vec<String>) {
        if let Some(l1) = &self.l1 {
            let op = PendingInvalidation::Keys { keys };
            l1.apply(&op).await;
            l1.announce(&self.pubsub, op, None, false).await;
        }
    }

    /// Performs an invalidation on the store, without the fail-open policy.
    /// Returns a count per tag for a tag invalidation, else one count.
    pub(crate) async fn apply(&self, op: &PendingInvalidation) -> Result<Vec<u64>, StoreError> {
        match &self.store {
            Store::Embedded(store) => Ok(match op {
                PendingInvalidation::Tags { tags } => store.invalidate_tags(tags),
                PendingInvalidation::Keys { keys } => vec![store.delete_many(keys).await],
                PendingInvalidation::Pattern { pattern } => {
                    vec![match crate::glob::redis_glob(pattern) {
                        Some(glob) => store.clear_pattern(&glob).await,
                        None => 0,
                    }]
                }
                PendingInvalidation::FlushAll => vec![store.flush_all().await],
            }),
            Store::Redis(store) => match op {
                PendingInvalidation::Tags { tags } => store.invalidate_tags(tags).await,
                PendingInvalidation::Keys { keys } => {
                    store.delete_many(keys).await.map(|n| vec![n])
                }
                PendingInvalidation::Pattern { pattern } => {
                    store.clear_pattern(pattern).await.map(|n| vec![n])
                }
                PendingInvalidation::FlushAll => store.clear_pattern("*").await.map(|n| vec![n]),
            },
        }
    }

    /// Applies the pending entries of the journal to Redis (and to L1, in
    /// the same order as a live invalidation), then marks them applied.
    /// Returns false if some could not be applied yet.
    pub(crate) async fn apply_journal(&self) -> bool {
        let pending = match self.journal.pending().await {
            Ok(pending) => pending,
            Err(e) => {
                warn!(error = %e, "could not read the invalidation journal");
                return false;
            }
        };
        self.hooks.reach(Step::JournalRead).await;
        if pending.is_empty() {
            return true;
        }
        if let Some(l1) = &self.l1 {
            for entry in &pending {
                l1.apply_journaled(entry.id, entry.recorded_at_ms, &entry.op)
                    .await;
            }
        }
        let mut applied = Vec::with_capacity(pending.len());
        let mut complete = true;
        for (op, ids) in merge(&pending) {
            match tokio::time::timeout(self.op_timeout() * 4, self.apply(&op)).await {
                Ok(Ok(_)) => {
                    if let Some(l1) = &self.l1 {
                        l1.apply(&op).await;
                        l1.announce(&self.pubsub, op, None, false).await;
                    }
                    applied.extend(ids);
                }
                _ => {
                    complete = false;
                    break;
                }
            }
        }
        let count = applied.len();
        if !applied.is_empty()
            && let Err(e) = self.journal.mark_applied(applied).await
        {
            warn!(error = %e, "could not mark invalidation journal entries applied");
        }
        if count > 0 {
            info!("Applied {count} pending invalidations from the journal");
        }
        complete
    }

    /// Applies every invalidation of the retention window to Redis again:
    /// for a server that may have lost some (a restart from an older
    /// snapshot, a failover). Returns false if it could not.
    pub(crate) async fn replay_window(&self) -> bool {
        let since = now_ms() - self.config.journal_retention.as_millis() as i64;
        let entries = match self.journal.recorded_since(since).await {
            Ok(entries) => entries,
            Err(e) => {
                warn!(error = %e, "could not read the invalidation journal");
                return false;
            }
        };
        let ops = merge(&entries);
        for (op, _) in &ops {
            let budget = self.op_timeout() * 4;
            if !matches!(
                tokio::time::timeout(budget, self.apply(op)).await,
                Ok(Ok(_))
            ) {
                return false;
            }
        }
        info!(
            "Replayed {} invalidations of the last {:?} into Redis",
            entries.len(),
            self.config.journal_retention
        );
        true
    }

    /// Applies to L1 the journal entries recorded in the last `within`
    /// that it has not applied yet: what other instances invalidated, even
    /// while the bus or Redis is down.
    pub(crate) async fn feed_l1(&self, within: Duration) {
        let Some(l1) = &self.l1 else {
            return;
        };
        let since = now_ms() - within.as_millis() as i64;
        match self.journal.recorded_since(since).await {
            Ok(entries) => {
                for entry in &entries {
                    l1.apply_journaled(entry.id, entry.recorded_at_ms, &entry.op)
                        .await;
                }
                l1.forget_journal_ids(since);
            }
            Err(e) => warn!(error = %e, "could not read the invalidation journal"),
        }
    }
}

/// Journal entries as few invalidations as do the same: the tags of every
/// tag entry together (in chunks), the keys together, each pattern once.
/// Each comes with the ids of the entries it stands for.
fn merge(entries: &[JournalEntry]) -> Vec<(PendingInvalidation, Vec<i64>)> {
    let mut tags: Vec<String> = Vec::new();
    let mut seen_tags = HashSet::new();
    let mut tag_ids = Vec::new();
    let mut keys: Vec<String> = Vec::new();
    let mut seen_keys = HashSet::new();
    let mut key_ids = Vec::new();
    let mut others: Vec<(PendingInvalidation, Vec<i64>)> = Vec::new();
    for entry in entries {
        match &entry.op {
            PendingInvalidation::Tags { tags: t } => {
                tag_ids.push(entry.id);
                tags.extend(t.iter().filter(|t| seen_tags.insert(*t)).cloned());
            }
            PendingInvalidation::Keys { keys: k } => {
                key_ids.push(entry.id);
                keys.extend(k.iter().filter(|k| seen_keys.insert(*k)).cloned());
            }
            op => match others.iter_mut().find(|(o, _)| o == op) {
                Some((_, ids)) => ids.push(entry.id),
                None => others.push((op.clone(), vec![entry.id])),
            },
        }
    }
    let mut merged = Vec::new();
    let chunks: Vec<&[String]> = tags.chunks(REPLAY_CHUNK).collect();
    let last = chunks.len().saturating_sub(1);
    for (i, chunk) in chunks.into_iter().enumerate() {
        // The ids are marked applied once the last chunk is.
        let ids = if i == last {
            std::mem::take(&mut tag_ids)
        } else {
            Vec::new()
        };
        let op = PendingInvalidation::Tags {
            tags: chunk.to_vec(),
        };
        merged.push((op, ids));
    }
    if !keys.is_empty() {
        merged.push((PendingInvalidation::Keys { keys }, key_ids));
    }
    merged.extend(others);
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: i64, op: PendingInvalidation) -> JournalEntry {
        JournalEntry {
            id,
            op,
            recorded_at_ms: 0,
            applied: false,
        }
    }

    fn tags(t: &[&str]) -> PendingInvalidation {
        PendingInvalidation::Tags {
            tags: t.iter().map(|t| t.to_string()).collect(),
        }
    }

    #[test]
    fn journal_entries_merge_into_few_invalidations_that_cover_them_all() {
        let entries = [
            entry(1, tags(&["guild:1", "analytics:ghosts"])),
            entry(2, tags(&["guild:1", "guild:2"])),
            entry(
                3,
                PendingInvalidation::Pattern {
                    pattern: "a*".into(),
                },
            ),
            entry(
                4,
                PendingInvalidation::Keys {
                    keys: vec!["k".into()],
                },
            ),
            entry(
                5,
                PendingInvalidation::Pattern {
                    pattern: "a*".into(),
                },
            ),
        ];
        let merged = merge(&entries);
        assert_eq!(
            merged,
            vec![
                (
                    tags(&["guild:1", "analytics:ghosts", "guild:2"]),
                    vec![1, 2]
                ),
                (
                    PendingInvalidation::Keys {
                        keys: vec!["k".into()]
                    },
                    vec![4]
                ),
                (
                    PendingInvalidation::Pattern {
                        pattern: "a*".into()
                    },
                    vec![3, 5]
                ),
            ]
        );
    }
}
