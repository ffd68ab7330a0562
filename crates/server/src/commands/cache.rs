//! `spywatcher cache {stats,clear,invalidate TAG}`: through a running
//! server's admin API, so they act on the cache that server uses (the
//! embedded cache lives inside the server process) and report its counters.

use anyhow::{Context, bail};
use reqwest::Method;

use crate::cli::CacheAction;
use crate::config::Settings;

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
        CacheAction::Stats => (Method::GET, "/api/admin/monitoring/cache/stats".to_string()),
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
    println!("{}", serde_json::to_string_pretty(&body)?);
    Ok(())
}
