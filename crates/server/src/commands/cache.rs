//! `spywatcher cache {stats,insights,clear,invalidate TAG}`: through a
//! running server's admin API, so they act on the cache that server uses
//! (the embedded cache lives inside the server process) and report its
//! counters.

use anyhow::{Context, bail};
use reqwest::Method;

use crate::cli::CacheAction;
use crate::config::Settings;
use crate::service::insights::AnalyticsInsights;

pub async fn run(
    settings: &Settings,
    action: &CacheAction,
    server: Option<&str>,
    token: Option<&str>,
) -> anyhow::Result<()> {
    let base = server
        .map(|s| s.trim_end_matches('/').to_string())
        .unwrap_or_else(|| format!("http://127.0.0.1:{}", settings.port));
    let Some(token) = token else {
        bail!(
            "ADMIN_TOKEN: the cache commands need the server's admin token (set ADMIN_TOKEN or pass --token)"
        );
    };
    let (method, path) = match action {
        CacheAction::Stats | CacheAction::Insights => {
            (Method::GET, "/api/admin/monitoring/cache/stats".to_string())
        }
        CacheAction::Clear => (
            Method::DELETE,
            "/api/admin/monitoring/cache/clear".to_string(),
        ),
        CacheAction::Invalidate { tag } => (
            Method::DELETE,
            format!("/api/admin/monitoring/cache/invalidate/{tag}"),
        ),
    };
    let response = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| format!("--server: no spywatcher answering at {base}"))?;
    let status = response.status();
    let body: serde_json::Value = response
        .json()
        .await
        .context("reading the server's answer")?;
    if !status.is_success() {
        let message = body["message"].as_str().unwrap_or("request failed");
        bail!("{status}: {message}");
    }
    if matches!(action, CacheAction::Insights) {
        let insights: AnalyticsInsights = serde_json::from_value(body["insights"].clone())
            .context("the server's answer has no insights (is it an older spywatcher?)")?;
        print!("{}", render_insights(&insights));
        return Ok(());
    }
    println!("{}", serde_json::to_string_pretty(&body)?);
    Ok(())
}

/// The insights as the command prints them: one table per kind of figure,
/// then the suggestions.
pub fn render_insights(insights: &AnalyticsInsights) -> String {
    let ms = |v: u64| format!("{v} ms");
    let rows: Vec<Vec<String>> = insights
        .by_type
        .iter()
        .map(|(kind, t)| {
            vec![
                kind.clone(),
                t.reads.to_string(),
                format!("{:.2} %", t.hit_rate),
                t.stale.to_string(),
                // Known from the first load on.
                if t.loads == 0 {
                    "-".to_string()
                } else {
                    format!("{} s", t.ttl_seconds)
                },
                if t.grace_seconds == 0.0 {
                    "none".to_string()
                } else {
                    format!("{} s", t.grace_seconds)
                },
                ms(t.lifetime.p50_ms),
                format!("{}/{}", t.ended.invalidated, t.ended.expired),
                format!("{:.2} %", t.expired_unread_percent),
                ms(t.miss_cost.p50_ms),
                ms(t.miss_cost.p95_ms),
                t.bytes_per_entry.to_string(),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "type",
            "reads",
            "hit rate",
            "stale",
            "ttl",
            "grace",
            "lifetime p50",
            "ended inval/exp",
            "expired unread",
            "miss p50",
            "miss p95",
            "bytes/entry",
        ],
        &rows,
    );
    out.push('\n');
    let guilds: Vec<Vec<String>> = insights
        .busiest_guilds
        .iter()
        .map(|g| {
            vec![
                g.guild_id.clone(),
                g.reads.to_string(),
                format!("{:.2} %", g.hit_rate),
                g.misses.to_string(),
                g.stale.to_string(),
            ]
        })
        .collect();
    out.push_str(&table(
        &["busiest guild", "reads", "hit rate", "misses", "stale"],
        &guilds,
    ));
    out.push_str("(busiest guilds: hits sampled one in 16, misses and stale serves exact)\n");
    out.push('\n');
    if insights.suggestions.is_empty() {
        out.push_str("No suggestion: the settings fit the workload measured so far.\n");
    }
    for s in &insights.suggestions {
        out.push_str(&format!("- {}\n  apply: {}\n", s.reason, s.apply));
    }
    if insights.untracked_entries > 0 {
        out.push_str(&format!(
            "({} entries were stored untracked: the lifetimes are a sample)\n",
            insights.untracked_entries
        ));
    }
    out
}

/// Columns padded to their widest cell, numbers and text alike left-aligned.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_string() + "\n"
    };
    let mut out = line(headers.to_vec());
    let rules: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&line(rules.iter().map(String::as_str).collect()));
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}
