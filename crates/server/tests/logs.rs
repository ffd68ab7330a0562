//! What an ingest request writes to the log: one INFO line however many
//! guilds and tags its batch touches, the per-tag detail at DEBUG; and the
//! operator's single-tag invalidation keeps the reference design's line
//! (SPEC 6). A test binary of its own: it installs the process's log
//! subscriber, and counts every line written while a request runs.

#[path = "api/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use std::io::Write;
use std::sync::{Mutex, Once};
use std::time::Duration;

use helpers::*;
use reqwest::Method;
use serde_json::{Value, json};

static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "info,spywatcher=debug,spywatcher_cache=debug",
            ))
            .with_ansi(false)
            .with_writer(|| Capture)
            .init();
    });
}

/// The lines written since the last call.
fn take_lines() -> Vec<String> {
    let bytes = std::mem::take(&mut *LOG.lock().unwrap());
    String::from_utf8_lossy(&bytes)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn at_level<'a>(lines: &'a [String], level: &str) -> Vec<&'a String> {
    let level = format!(" {level} ");
    lines.iter().filter(|line| line.contains(&level)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingest_request_writes_one_info_line_whatever_the_number_of_guilds() {
    capture_logs();
    for db in BOTH_DATABASES {
        for with_redis in [false, true] {
            let setup = format!("{db:?}, Redis: {with_redis}");
            let env = TestEnv::new(db, with_redis).await;
            let mut settings = env.settings();
            // Nothing of the background's own in the window: the journal
            // is read once a minute, not every 200 ms.
            settings.journal_interval = Duration::from_secs(60);
            // 4,000 tags in one call to Redis take longer than the tests'
            // usual 100 ms budget on a busy machine (it would be journaled:
            // one INFO line too, but another one).
            settings.cache_op_timeout = Duration::from_secs(5);
            let app = env.spawn_with(settings).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            take_lines();

            let batch: Vec<Value> = (1..=1_000)
                .map(|guild| {
                    json!({ "guildId": guild.to_string(), "channelId": "10", "channel": "general",
                            "userId": "2", "username": "ann" })
                })
                .collect();
            let response = app.post_events("typing", Value::Array(batch)).await;
            assert_eq!(response.status().as_u16(), 201, "{setup}");
            let lines = take_lines();
            let info = at_level(&lines, "INFO");
            assert_eq!(info.len(), 1, "{setup}: {info:#?}");
            assert!(
                info[0].contains("Invalidated 0 cache entries for 4000 tags (guilds: 1000) after 1000 events on /api/events/typing"),
                "{setup}: {}",
                info[0]
            );
            let per_tag = at_level(&lines, "DEBUG")
                .into_iter()
                .filter(|line| line.contains("cache entries for tag: analytics:"))
                .count();
            assert_eq!(per_tag, 4_000, "{setup}: the detail is at DEBUG");

            let response = app
                .request(
                    Method::DELETE,
                    "/api/admin/monitoring/cache/invalidate/guild:7",
                    Some(ADMIN),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 200, "{setup}");
            let lines = take_lines();
            let info = at_level(&lines, "INFO");
            assert_eq!(info.len(), 1, "{setup}: {info:#?}");
            assert!(
                info[0].ends_with("Invalidated 0 cache entries for tag: guild:7"),
                "{setup}: {}",
                info[0]
            );
        }
    }
}
