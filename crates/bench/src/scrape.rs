//! What the servers say about themselves, read before and after the
//! measured window: the database queries they counted (`/metrics`), their
//! cache statistics (the stats route), and Redis' memory (`INFO`).

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::server::TOKEN;

/// One server's counters at one instant.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// `spywatcher_db_queries_total{operation="analytics"}`.
    pub analytics_queries: f64,
    /// `spywatcher_db_queries_total{operation="ingest"}`.
    pub ingest_queries: f64,
    pub stats: CacheFigures,
}

/// The fields of `GET /api/admin/monitoring/cache/stats` the report uses.
/// `stale` and `staleness` come with grace mode; a server without it
/// leaves them `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CacheFigures {
    pub hits: u64,
    pub misses: u64,
    pub stale: Option<u64>,
    pub staleness_max_ms: Option<f64>,
    pub staleness_mean_ms: Option<f64>,
    pub memory_used: String,
    pub key_count: u64,
}

impl Snapshot {
    /// Adds another instance's counters (several servers, one figure).
    pub fn add(&mut self, other: &Snapshot) {
        self.analytics_queries += other.analytics_queries;
        self.ingest_queries += other.ingest_queries;
        let (a, b) = (&mut self.stats, &other.stats);
        a.hits += b.hits;
        a.misses += b.misses;
        // The mean over several instances, weighted by their stale serves.
        let (wa, wb) = (a.stale.unwrap_or(0), b.stale.unwrap_or(0));
        a.staleness_mean_ms = match (a.staleness_mean_ms, b.staleness_mean_ms) {
            (Some(x), Some(y)) if wa + wb > 0 => {
                Some((x * wa as f64 + y * wb as f64) / (wa + wb) as f64)
            }
            (x, y) => x.or(y),
        };
        a.stale = match (a.stale, b.stale) {
            (None, None) => None,
            (x, y) => Some(x.unwrap_or(0) + y.unwrap_or(0)),
        };
        a.staleness_max_ms = max_option(a.staleness_max_ms, b.staleness_max_ms);
        a.key_count += b.key_count;
        if a.memory_used.is_empty() {
            a.memory_used = b.memory_used.clone();
        }
    }
}

fn max_option(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    }
}

/// Reads both sources of one server.
pub async fn snapshot(http: &reqwest::Client, base_url: &str) -> anyhow::Result<Snapshot> {
    let metrics = http
        .get(format!("{base_url}/metrics"))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .context("GET /metrics")?
        .text()
        .await
        .context("GET /metrics")?;
    let stats: Value = http
        .get(format!("{base_url}/api/admin/monitoring/cache/stats"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .context("GET /api/admin/monitoring/cache/stats")?
        .json()
        .await
        .context("GET /api/admin/monitoring/cache/stats: not JSON")?;
    let queries = |operation| {
        metric_value(
            &metrics,
            "spywatcher_db_queries_total",
            &[("operation", operation)],
        )
        .unwrap_or(0.0)
    };
    Ok(Snapshot {
        analytics_queries: queries("analytics"),
        ingest_queries: queries("ingest"),
        stats: cache_figures(&stats),
    })
}

/// The stats route's body, `{stats: {...}, status, timestamp}`.
pub fn cache_figures(body: &Value) -> CacheFigures {
    let stats = &body["stats"];
    let number = |v: &Value| v.as_f64().or_else(|| v.as_u64().map(|n| n as f64));
    CacheFigures {
        hits: stats["hits"].as_u64().unwrap_or(0),
        misses: stats["misses"].as_u64().unwrap_or(0),
        stale: stats["stale"].as_u64(),
        staleness_max_ms: number(&stats["staleness"]["maxMs"]),
        staleness_mean_ms: number(&stats["staleness"]["meanMs"]),
        memory_used: stats["memoryUsed"].as_str().unwrap_or_default().to_owned(),
        key_count: stats["keyCount"].as_u64().unwrap_or(0),
    }
}

/// The value of the sample `name{labels}` in Prometheus text format: the
/// first line of that name whose labels include all of `labels`.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .find_map(|line| {
            let (series, value) = split_sample(line)?;
            let (series_name, series_labels) = match series.find('{') {
                Some(open) => (&series[..open], parse_labels(&series[open..])?),
                None => (series, Vec::new()),
            };
            let matches = series_name == name
                && labels
                    .iter()
                    .all(|(k, v)| series_labels.iter().any(|(sk, sv)| sk == k && sv == v));
            if !matches {
                return None;
            }
            match value {
                "+Inf" => Some(f64::INFINITY),
                "-Inf" => Some(f64::NEG_INFINITY),
                v => v.parse().ok(),
            }
        })
}

/// `name{a="b"} 12 [timestamp]` → (`name{a="b"}`, `12`). The label values
/// may hold spaces, so the series ends at the closing brace.
fn split_sample(line: &str) -> Option<(&str, &str)> {
    let series_end = match line.find('{') {
        Some(_) => line.rfind('}')? + 1,
        None => line.find(char::is_whitespace)?,
    };
    let (series, rest) = line.split_at(series_end);
    let value = rest.split_whitespace().next()?;
    Some((series, value))
}

/// `{a="b",c="d \"e\""}` → [(a, b), (c, d "e")].
fn parse_labels(braced: &str) -> Option<Vec<(String, String)>> {
    let inner = braced.strip_prefix('{')?.strip_suffix('}')?;
    let mut labels = Vec::new();
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Some(labels);
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if chars.next()? != '"' {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '"' => break,
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                c => value.push(c),
            }
        }
        labels.push((key.trim().to_owned(), value));
    }
}

/// A `field:value` line of Redis `INFO` output.
pub fn info_field(info: &str, field: &str) -> Option<String> {
    info.lines()
        .find_map(|line| line.trim().strip_prefix(field)?.strip_prefix(':'))
        .map(|v| v.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{CacheFigures, Snapshot, cache_figures, info_field, metric_value};

    const METRICS: &str = r#"# HELP spywatcher_db_queries_total what reaches the database
# TYPE spywatcher_db_queries_total counter
spywatcher_db_queries_total{operation="ingest"} 17
spywatcher_db_queries_total{operation="analytics"} 1234
spywatcher_analytics_requests_total{type="ghosts",cache="hit"} 5
spywatcher_cache_hits 99
weird{label="a b, \"c\"",operation="analytics"} 3 1700000000000
"#;

    #[test]
    fn reads_a_labelled_counter() {
        let get = |op| metric_value(METRICS, "spywatcher_db_queries_total", &[("operation", op)]);
        assert_eq!(get("analytics"), Some(1234.0));
        assert_eq!(get("ingest"), Some(17.0));
        assert_eq!(get("other"), None);
    }

    #[test]
    fn reads_unlabelled_escaped_and_timestamped_samples() {
        assert_eq!(
            metric_value(METRICS, "spywatcher_cache_hits", &[]),
            Some(99.0)
        );
        assert_eq!(
            metric_value(METRICS, "weird", &[("label", "a b, \"c\"")]),
            Some(3.0)
        );
        assert_eq!(
            metric_value(
                METRICS,
                "spywatcher_analytics_requests_total",
                &[("cache", "hit")]
            ),
            Some(5.0)
        );
        assert_eq!(metric_value(METRICS, "spywatcher_cache", &[]), None);
        assert_eq!(metric_value("garbage{x=1} 2\n{}", "garbage", &[]), None);
    }

    #[test]
    fn reads_the_stats_with_and_without_grace_fields() {
        let strict = cache_figures(&json!({"stats": {"hits": 9, "misses": 1, "hitRate": 90.0,
            "memoryUsed": "1.2M", "keyCount": 4}, "status": "healthy"}));
        assert_eq!(
            strict,
            CacheFigures {
                hits: 9,
                misses: 1,
                stale: None,
                staleness_max_ms: None,
                staleness_mean_ms: None,
                memory_used: "1.2M".into(),
                key_count: 4
            }
        );
        let grace = cache_figures(&json!({"stats": {"hits": 9, "misses": 1, "stale": 3,
            "staleness": {"maxMs": 1500, "meanMs": 420.5}}}));
        assert_eq!(grace.stale, Some(3));
        assert_eq!(grace.staleness_max_ms, Some(1500.0));
        assert_eq!(grace.staleness_mean_ms, Some(420.5));
    }

    #[test]
    fn instances_add_up() {
        let one = |hits, stale, max, mean| Snapshot {
            analytics_queries: 10.0,
            ingest_queries: 1.0,
            stats: CacheFigures {
                hits,
                stale: Some(stale),
                staleness_max_ms: Some(max),
                staleness_mean_ms: Some(mean),
                ..CacheFigures::default()
            },
        };
        let mut total = one(5, 1, 100.0, 100.0);
        total.add(&one(7, 3, 300.0, 200.0));
        assert_eq!(total.analytics_queries, 20.0);
        assert_eq!(total.stats.hits, 12);
        assert_eq!(total.stats.stale, Some(4));
        assert_eq!(total.stats.staleness_max_ms, Some(300.0));
        assert_eq!(total.stats.staleness_mean_ms, Some(175.0));
    }

    #[test]
    fn reads_redis_info() {
        let info = "# Memory\r\nused_memory:1000\r\nused_memory_human:1000B\r\n";
        assert_eq!(
            info_field(info, "used_memory_human").as_deref(),
            Some("1000B")
        );
        assert_eq!(info_field(info, "used_memory").as_deref(), Some("1000"));
        assert_eq!(info_field(info, "maxmemory"), None);
    }
}
