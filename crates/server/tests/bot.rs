//! `spywatcher bot`, the real binary, against the fake gateway: it stores
//! what the gateway sends, and a close with 4014 ends it with the message
//! that tells the operator which intents to enable.

use std::process::Stdio;
use std::time::{Duration, Instant};

use spywatcher_analytics::EventStore;
use spywatcher_testkit::gateway::{FakeGateway, payload};
use tokio::io::AsyncReadExt;
use tokio::process::Command;

const PATIENCE: Duration = Duration::from_secs(60);

fn bot(gateway: &FakeGateway, database_url: &str, port: u16) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_spywatcher"));
    command
        .arg("bot")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("DATABASE_URL", database_url)
        .env("DISCORD_TOKEN", "test-bot-token")
        .env("DISCORD_GATEWAY_URL", gateway.url())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

#[tokio::test]
async fn bot_stores_the_gateway_events_and_exits_on_4014_naming_the_intents() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}", dir.path().join("bot.db").display());
    let gateway = FakeGateway::start().await;
    let port = spywatcher_testkit::redis::free_port();
    let mut child = bot(&gateway, &database_url, port)
        .spawn()
        .expect("start spywatcher bot");
    // Discord's own identify queue: the first IDENTIFY does not wait.
    assert!(
        gateway.wait_for(PATIENCE, |s| s.identifies == 1).await,
        "no IDENTIFY"
    );
    let identify = &gateway.identifies()[0];
    assert_eq!(identify["token"], "Bot test-bot-token");
    assert_eq!(identify["shard"], serde_json::json!([0, 1]));

    let guild = 800_000_000_000_000_001;
    gateway.dispatch(
        "MESSAGE_CREATE",
        payload::message_create(
            1,
            guild,
            810_000_000_000_000_001,
            payload::user(830_000_000_000_000_001, "ann"),
            "hello",
            "2026-11-29T10:00:00.000000+00:00",
        ),
    );
    let store = EventStore::connect(&database_url).await.unwrap();
    let deadline = Instant::now() + PATIENCE;
    while store.event_count().await.unwrap() < 1 {
        assert!(Instant::now() < deadline, "the message was not stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The probes, and nothing else, on PORT.
    let base = format!("http://127.0.0.1:{port}");
    // The row is visible once committed; the count moves once the
    // invalidation and the publish after it are done too.
    let ready = loop {
        let ready: serde_json::Value = reqwest::get(format!("{base}/health/ready"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if ready["gateway"]["eventsStored"] == 1 {
            break ready;
        }
        assert!(Instant::now() < deadline, "{ready}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(ready["gateway"]["status"], "ready", "{ready}");
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("spywatcher_gateway_events_total"),
        "{metrics}"
    );
    let api = reqwest::get(format!("{base}/api/analytics/ghosts?guildId={guild}"))
        .await
        .unwrap();
    assert_eq!(api.status(), 404, "no API in bot mode");

    gateway.close(4014, "Disallowed intent(s).");
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("the bot exits after a fatal close")
        .unwrap();
    assert!(!status.success());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert!(
        stderr.contains("ERROR")
            && stderr.contains(
                "enable GUILD_PRESENCES, GUILD_MEMBERS and MESSAGE_CONTENT in the Developer Portal"
            ),
        "{stderr}"
    );
    assert!(
        !stderr.contains("test-bot-token"),
        "the token is not logged: {stderr}"
    );
    assert_eq!(store.event_count().await.unwrap(), 1);
}

#[tokio::test]
async fn bot_without_a_token_names_the_variable() {
    let gateway = FakeGateway::start().await;
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}", dir.path().join("bot.db").display());
    let output = bot(
        &gateway,
        &database_url,
        spywatcher_testkit::redis::free_port(),
    )
    .env_remove("DISCORD_TOKEN")
    .output()
    .await
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("DISCORD_TOKEN"), "{stderr}");
}
