//! The cache's insights (`spywatcher_cache::insights`) in the service's
//! terms: groups named by analytics type, subjects by guild, and each
//! suggestion with the variable that would apply it. Suggestions are never
//! applied by the service: an operator reads them (stats route, `/metrics`,
//! the dashboard, `spywatcher cache insights`) and decides.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use spywatcher_analytics::AnalyticsKind;
use spywatcher_cache::insights::SubjectInsights;
use spywatcher_cache::{Cache, InsightsReport, Setting, Suggestion, TypeInsights};

use crate::config::{grace_variable, ttl_variable};

/// The stats route's `insights`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalyticsInsights {
    /// Per analytics type (`ghosts`, ...).
    pub by_type: BTreeMap<String, TypeInsights>,
    /// The most read guilds, at most ten (hits sampled one in 16).
    pub busiest_guilds: Vec<GuildInsights>,
    pub suggestions: Vec<AnalyticsSuggestion>,
    /// Entries whose life is tracked now, and entries stored untracked
    /// because the table was full (then the figures are a sample).
    pub tracked_entries: u64,
    pub untracked_entries: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GuildInsights {
    pub guild_id: String,
    pub reads: u64,
    pub hit_rate: f64,
    pub misses: u64,
    pub stale: u64,
    /// How much `reads` may overstate (0 when exact).
    pub error: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalyticsSuggestion {
    /// The analytics type (the cache's group `analytics:{type}`).
    #[serde(rename = "type")]
    pub kind: String,
    pub setting: Setting,
    pub seconds: Option<u64>,
    pub reason: String,
    pub figures: BTreeMap<String, f64>,
    /// The configuration change, e.g. `CACHE_GRACE_GHOSTS=15`.
    pub apply: String,
}

/// The cache's insights now, for the analytics types only.
pub fn insights(cache: &Cache) -> AnalyticsInsights {
    from_report(cache.insights())
}

fn from_report(report: InsightsReport) -> AnalyticsInsights {
    let by_type = report
        .by_type
        .into_iter()
        .filter_map(|(group, figures)| Some((kind_of(&group)?.as_str().to_string(), figures)))
        .collect();
    let suggestions = report
        .suggestions
        .into_iter()
        .filter_map(suggestion)
        .collect();
    AnalyticsInsights {
        by_type,
        busiest_guilds: report.busiest.into_iter().map(guild).collect(),
        suggestions,
        tracked_entries: report.tracked_entries,
        untracked_entries: report.untracked_entries,
    }
}

/// `analytics:ghosts` → ghosts.
fn kind_of(group: &str) -> Option<AnalyticsKind> {
    group.strip_prefix("analytics:")?.parse().ok()
}

fn suggestion(s: Suggestion) -> Option<AnalyticsSuggestion> {
    let kind = kind_of(&s.group)?;
    let apply = match (s.setting, s.seconds) {
        (Setting::Grace, Some(seconds)) => format!("{}={seconds}", grace_variable(kind)),
        (Setting::LongerTtl, Some(seconds)) => format!("{}={seconds}", ttl_variable(kind)),
        (Setting::ShorterTtl, _) => format!("a shorter {}, or no warming", ttl_variable(kind)),
        (_, None) => ttl_variable(kind).to_string(),
    };
    Some(AnalyticsSuggestion {
        kind: kind.as_str().to_string(),
        setting: s.setting,
        seconds: s.seconds,
        reason: s.reason,
        figures: s.figures,
        apply,
    })
}

fn guild(s: SubjectInsights) -> GuildInsights {
    GuildInsights {
        guild_id: s.subject,
        reads: s.reads,
        hit_rate: s.hit_rate,
        misses: s.misses,
        stale: s.stale,
        error: s.error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_become_types_and_suggestions_name_their_variable() {
        let report = InsightsReport {
            suggestions: vec![
                Suggestion {
                    group: "analytics:ghosts".into(),
                    setting: Setting::Grace,
                    seconds: Some(15),
                    reason: "r".into(),
                    figures: BTreeMap::new(),
                },
                Suggestion {
                    group: "other".into(),
                    setting: Setting::Grace,
                    seconds: Some(15),
                    reason: "r".into(),
                    figures: BTreeMap::new(),
                },
            ],
            ..InsightsReport::default()
        };
        let view = from_report(report);
        assert_eq!(view.suggestions.len(), 1, "not an analytics: dropped");
        assert_eq!(view.suggestions[0].kind, "ghosts");
        assert_eq!(view.suggestions[0].apply, "CACHE_GRACE_GHOSTS=15");
    }
}
