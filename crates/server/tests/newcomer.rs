//! The newcomer's path of README.md: `serve --demo` on embedded defaults,
//! then the curl walk-through, against the real binary.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use spywatcher_analytics::{GeneratorConfig, generated_guild_ids};

const TOKEN: &str = "demo-admin-token-change-me";

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap()
}

#[test]
fn the_readme_names_the_first_demo_guild() {
    let first = generated_guild_ids(&GeneratorConfig::default())[0].clone();
    assert!(readme().contains(&format!("export GUILD={}", first.as_str())));
    assert!(readme().contains(&format!(
        "ADMIN_TOKEN={TOKEN} cargo run --release -p spywatcher -- serve --demo"
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_demo_then_the_walk_through() {
    let dir = tempfile::tempdir().unwrap();
    let port = spywatcher_testkit::redis::free_port();
    let _server = Server(
        Command::new(env!("CARGO_BIN_EXE_spywatcher"))
            .args(["serve", "--demo"])
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("ADMIN_TOKEN", TOKEN)
            .env("PORT", port.to_string())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start spywatcher"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(r) = client.get(format!("{base}/health/ready")).send().await
            && r.status().is_success()
        {
            break;
        }
        assert!(Instant::now() < deadline, "the demo server did not come up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        dir.path().join("spywatcher.db").exists(),
        "the default SQLite file"
    );
    let guild = generated_guild_ids(&GeneratorConfig::default())[0].clone();
    let get = |path: String| {
        client
            .get(format!("{base}{path}"))
            .bearer_auth(TOKEN)
            .send()
    };

    let first = get(format!("/api/analytics/ghosts?guildId={}", guild.as_str()))
        .await
        .unwrap();
    assert_eq!(first.headers()["x-cache"], "miss");
    let ghosts: Value = first.json().await.unwrap();
    let row = &ghosts.as_array().expect("an array")[0];
    for field in [
        "userId",
        "username",
        "typingCount",
        "messageCount",
        "ghostScore",
    ] {
        assert!(!row[field].is_null(), "{field} in {row}");
    }
    let second = get(format!("/api/analytics/ghosts?guildId={}", guild.as_str()))
        .await
        .unwrap();
    assert_eq!(second.headers()["x-cache"], "hit");

    for kind in ["lurkers", "heatmap", "roles", "clients", "shifts"] {
        let rows: Value = get(format!("/api/analytics/{kind}?guildId={}", guild.as_str()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(
            !rows.as_array().unwrap().is_empty(),
            "the demo data gives {kind} rows"
        );
    }

    let stored: Value = client
        .post(format!("{base}/api/events/messages"))
        .bearer_auth(TOKEN)
        .json(
            &serde_json::json!({ "guildId": guild.as_str(), "channelId": "1", "channel": "general",
                                   "userId": "42", "username": "newcomer", "content": "hello" }),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stored, serde_json::json!({ "stored": 1 }));
    let after = get(format!("/api/analytics/ghosts?guildId={}", guild.as_str()))
        .await
        .unwrap();
    assert_eq!(after.headers()["x-cache"], "miss");

    let invalid = client
        .post(format!("{base}/api/events/role-changes"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(r#"[{"guildId":"1","userId":"2","username":"a","addedRoles":["mod"]},{"guildId":"1","userId":"x","username":"b","addedRoles":[]}]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(invalid.status().as_u16(), 422);
    let invalid: Value = invalid.json().await.unwrap();
    assert_eq!(
        (invalid["index"].as_u64(), invalid["field"].as_str()),
        (Some(1), Some("userId"))
    );

    let stats: Value = get("/api/admin/monitoring/cache/stats".into())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["status"], "embedded");
    for field in [
        "hits",
        "misses",
        "hitRate",
        "memoryUsed",
        "evictedKeys",
        "keyCount",
    ] {
        assert!(!stats["stats"][field].is_null(), "{field}");
    }
    let unauthorized = client
        .get(format!("{base}/api/analytics/ghosts?guildId=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status().as_u16(), 401);
}
