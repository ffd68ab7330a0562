//! Settings suggested by the insights, each with its reason and the figures
//! behind it. A suggestion is never applied by the cache itself.
//!
//! The rules, per group, each only once the group has the evidence
//! ([`MIN_READS`] reads, [`MIN_ENDED`] entries ended):
//!
//! - **grace** (a strict group): entries are ended by invalidations, long
//!   before their TTL, and at least [`MIN_MISS_RATE`] % of reads miss: the
//!   shortest grace among the candidates that would have served at least
//!   half of the misses (measured: the age each invalidated value had when
//!   its key missed), else the one that serves most, if it serves at least
//!   [`MIN_SERVED`] %.
//! - **shorter TTL** (or stop warming): at least [`MAX_EXPIRED_UNREAD`] % of
//!   the entries that ended expired without a single read.
//! - **longer TTL**: entries end by their TTL, not by invalidations, they
//!   were read, and at least [`MIN_MISS_RATE`] % of reads miss: a longer TTL
//!   turns those misses into hits, and invalidation keeps the entries
//!   fresh.
//!
//! When none applies, the settings fit the workload: no suggestion.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::TypeInsights;

pub(crate) const MIN_READS: u64 = 100;
pub(crate) const MIN_ENDED: u64 = 20;
pub(crate) const MIN_MISS_RATE: f64 = 10.0;
pub(crate) const MIN_SERVED: f64 = 10.0;
pub(crate) const MAX_EXPIRED_UNREAD: f64 = 50.0;
/// A lifetime shorter than this share of the TTL is "long before it".
const SHORT_OF_TTL: f64 = 0.25;

/// What a suggestion would change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Setting {
    /// Serve invalidated entries stale for a while (expire by tag).
    Grace,
    /// A shorter TTL, or no warming of the group.
    ShorterTtl,
    LongerTtl,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Suggestion {
    /// The group (as `byType` names it).
    pub group: String,
    pub setting: Setting,
    /// The value suggested, in seconds, when there is one.
    pub seconds: Option<u64>,
    /// The suggestion and its reason, in a sentence.
    pub reason: String,
    /// The figures the reason quotes.
    pub figures: BTreeMap<String, f64>,
}

pub(crate) fn suggest(group: &str, t: &TypeInsights) -> Vec<Suggestion> {
    let ended = t.ended.invalidated + t.ended.expired;
    if t.reads < MIN_READS || ended < MIN_ENDED {
        return Vec::new();
    }
    let mut out = Vec::new();
    let short_name = group.rsplit(':').next().unwrap_or(group);
    let ttl_ms = t.ttl_seconds * 1000.0;
    let invalidated_share = t.ended.invalidated as f64 / ended as f64;
    let expired_share = t.ended.expired as f64 / ended as f64;

    if t.grace_seconds == 0.0
        && invalidated_share >= 0.8
        && (t.lifetime.p50_ms as f64) < ttl_ms * SHORT_OF_TTL
        && t.miss_rate >= MIN_MISS_RATE
    {
        let candidates = t
            .grace_would_serve
            .iter()
            .filter(|w| (w.grace_seconds as f64) < t.ttl_seconds);
        let pick = candidates
            .clone()
            .find(|w| w.percent_of_misses >= 50.0)
            .or_else(|| {
                candidates.max_by(|a, b| a.percent_of_misses.total_cmp(&b.percent_of_misses))
            })
            .filter(|w| w.percent_of_misses >= MIN_SERVED);
        if let Some(w) = pick {
            let ttl_ends = if t.ended.expired == 0 {
                "never ends one".to_string()
            } else {
                format!("ends {:.0} % of them", expired_share * 100.0)
            };
            out.push(Suggestion {
                group: group.to_string(),
                setting: Setting::Grace,
                seconds: Some(w.grace_seconds),
                reason: format!(
                    "{short_name}: entries are invalidated after {} on median and the TTL of {} {ttl_ends}; \
                     {:.0} % of reads miss; a grace of {} s would have served {:.0} % of those misses (measured)",
                    human_ms(t.lifetime.p50_ms),
                    human_ms(ttl_ms as u64),
                    t.miss_rate,
                    w.grace_seconds,
                    w.percent_of_misses,
                ),
                figures: BTreeMap::from([
                    ("lifetimeP50Ms".to_string(), t.lifetime.p50_ms as f64),
                    ("ttlSeconds".to_string(), t.ttl_seconds),
                    ("missRate".to_string(), t.miss_rate),
                    ("invalidatedPercent".to_string(), round2(invalidated_share * 100.0)),
                    ("graceSeconds".to_string(), w.grace_seconds as f64),
                    ("percentOfMissesServed".to_string(), w.percent_of_misses),
                ]),
            });
        }
    }

    if t.expired_unread_percent >= MAX_EXPIRED_UNREAD {
        out.push(Suggestion {
            group: group.to_string(),
            setting: Setting::ShorterTtl,
            seconds: None,
            reason: format!(
                "{short_name}: {:.0} % of entries expire unread: shorten the TTL or stop warming it",
                t.expired_unread_percent
            ),
            figures: BTreeMap::from([
                ("expiredUnreadPercent".to_string(), t.expired_unread_percent),
                ("expiredUnread".to_string(), t.ended.expired_unread as f64),
                ("ended".to_string(), ended as f64),
                ("ttlSeconds".to_string(), t.ttl_seconds),
            ]),
        });
    } else if expired_share >= 0.8 && t.miss_rate >= MIN_MISS_RATE {
        let longer = ((t.ttl_seconds * 4.0).ceil() as u64).clamp(1, 3600);
        out.push(Suggestion {
            group: group.to_string(),
            setting: Setting::LongerTtl,
            seconds: Some(longer),
            reason: format!(
                "{short_name}: {:.0} % of entries live out their TTL of {} (invalidations end {:.0} %) and \
                 {:.0} % of reads miss: a TTL of {longer} s would turn misses after expiry into hits, \
                 invalidation keeps the entries fresh",
                expired_share * 100.0,
                human_ms(ttl_ms as u64),
                invalidated_share * 100.0,
                t.miss_rate,
            ),
            figures: BTreeMap::from([
                ("expiredPercent".to_string(), round2(expired_share * 100.0)),
                ("missRate".to_string(), t.miss_rate),
                ("missesAfterExpiry".to_string(), t.misses_after_expiry as f64),
                ("ttlSeconds".to_string(), t.ttl_seconds),
            ]),
        });
    }
    out
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// `850 ms`, `9 s`, `5 min`.
fn human_ms(ms: u64) -> String {
    if ms < 1_000 {
        format!("{ms} ms")
    } else if ms < 120_000 {
        format!("{} s", (ms as f64 / 1000.0).round())
    } else {
        format!("{} min", (ms as f64 / 60_000.0).round())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Endings, GraceWhatIf, Timing};
    use super::*;

    fn figures() -> TypeInsights {
        TypeInsights {
            reads: 1_000,
            hits: 590,
            misses: 410,
            stale: 0,
            hit_rate: 59.0,
            miss_rate: 41.0,
            ttl_seconds: 300.0,
            grace_seconds: 0.0,
            loads: 400,
            ended: Endings {
                invalidated: 390,
                expired: 0,
                replaced: 0,
                expired_unread: 0,
                invalidated_unread: 10,
            },
            expired_unread_percent: 0.0,
            lifetime: Timing {
                count: 390,
                mean_ms: 9_500,
                p50_ms: 9_000,
                p95_ms: 14_000,
            },
            lifetime_histogram: Vec::new(),
            miss_cost: Timing::default(),
            bytes_per_entry: 2_000,
            misses_after_invalidation: 380,
            misses_after_expiry: 0,
            grace_would_serve: [(5, 40), (10, 120), (15, 156), (30, 300), (60, 380)]
                .iter()
                .map(|&(s, n)| GraceWhatIf {
                    grace_seconds: s,
                    misses_served: n,
                    percent_of_misses: super::super::percent(n, 410),
                })
                .collect(),
        }
    }

    #[test]
    fn invalidated_long_before_the_ttl_suggests_the_grace_that_serves_half_the_misses() {
        let s = suggest("analytics:ghosts", &figures());
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!((s[0].setting, s[0].seconds), (Setting::Grace, Some(30)));
        assert_eq!(
            s[0].reason,
            "ghosts: entries are invalidated after 9 s on median and the TTL of 5 min never ends one; \
             41 % of reads miss; a grace of 30 s would have served 73 % of those misses (measured)"
        );
    }

    #[test]
    fn entries_that_expire_unread_suggest_a_shorter_ttl() {
        let mut t = figures();
        t.ended = Endings {
            invalidated: 4,
            expired: 96,
            expired_unread: 92,
            ..Endings::default()
        };
        t.expired_unread_percent = 92.0;
        let s = suggest("analytics:heatmap", &t);
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!(s[0].setting, Setting::ShorterTtl);
        assert!(
            s[0].reason
                .starts_with("heatmap: 92 % of entries expire unread")
        );
    }

    #[test]
    fn read_entries_that_outlive_their_ttl_suggest_a_longer_one() {
        let mut t = figures();
        t.ttl_seconds = 60.0;
        t.ended = Endings {
            invalidated: 5,
            expired: 95,
            ..Endings::default()
        };
        let s = suggest("analytics:roles", &t);
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!(
            (s[0].setting, s[0].seconds),
            (Setting::LongerTtl, Some(240))
        );
    }

    #[test]
    fn fitting_settings_or_too_little_evidence_suggest_nothing() {
        let mut t = figures();
        t.misses = 20;
        t.hits = 980;
        t.miss_rate = 2.0;
        assert!(suggest("analytics:ghosts", &t).is_empty(), "few misses");
        let mut t = figures();
        t.reads = 50;
        assert!(suggest("analytics:ghosts", &t).is_empty(), "too few reads");
        let mut t = figures();
        t.grace_seconds = 30.0;
        assert!(suggest("analytics:ghosts", &t).is_empty(), "graced already");
    }
}
