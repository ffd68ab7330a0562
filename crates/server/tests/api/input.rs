//! Strict input: `createdAt` and `since` take one documented set of forms
//! within one range whatever the spelling, `createdAt` at most the allowed
//! skew in the future, and ids are JSON strings everywhere.

use std::time::Duration;

use chrono::Utc;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

fn typing(guild: &str, created_at: Value) -> Value {
    json!({ "guildId": guild, "channelId": "10", "channel": "general", "userId": "2",
            "username": "ann", "createdAt": created_at })
}

async fn heatmap_count(app: &TestApp, guild: &str, since: &str) -> u64 {
    let response = app
        .request(Method::GET, "/api/analytics/heatmap", Some(API))
        .query(&[("guildId", guild), ("since", since)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200, "since={since}");
    json(response)
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["count"].as_u64().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_at_in_the_future_is_refused_and_nothing_of_the_batch_stored() {
    for db in BOTH_DATABASES {
        let env = TestEnv::new(db, false).await;
        let app = env.spawn().await;
        let now = Utc::now().timestamp_millis();
        for (late, what) in [
            (json!(now + 3_600_000), "an hour ahead, epoch ms"),
            (json!("9999-12-31T23:59:59Z"), "year 9999"),
            (
                json!((now + 600_000).to_string()),
                "ten minutes ahead, digits",
            ),
        ] {
            let batch = json!([typing("1", json!(now)), typing("1", late)]);
            let body = assert_error(app.post_events("typing", batch).await, 422).await;
            assert_eq!(
                (body["index"].as_u64(), body["field"].as_str()),
                (Some(1), Some("createdAt")),
                "{db:?} {what}: {body}"
            );
        }
        assert_eq!(
            app.store.event_count().await.unwrap(),
            0,
            "{db:?}: nothing stored"
        );
        // Within the default skew (5 minutes): a sender's clock running ahead.
        let ahead = app
            .post_events("typing", typing("1", json!(now + 60_000)))
            .await;
        assert_eq!(ahead.status().as_u16(), 201, "{db:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_future_skew_is_configurable() {
    let env = TestEnv::new(Db::Sqlite, false).await;
    let mut settings = env.settings();
    settings.event_max_future_skew = Duration::from_secs(2 * 3600);
    let app = env.spawn_with(settings).await;
    let an_hour_ahead = Utc::now().timestamp_millis() + 3_600_000;
    let response = app
        .post_events("typing", typing("1", json!(an_hour_ahead)))
        .await;
    assert_eq!(response.status().as_u16(), 201);
    let mut settings = env.settings();
    settings.event_max_future_skew = Duration::ZERO;
    let strict = env.spawn_with(settings).await;
    let a_second_ahead = Utc::now().timestamp_millis() + 1_000;
    let body = assert_error(
        strict
            .post_events("typing", typing("1", json!(a_second_ahead)))
            .await,
        422,
    )
    .await;
    assert_eq!(body["field"], "createdAt", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_at_takes_every_spelling_of_an_instant_alike() {
    for db in BOTH_DATABASES {
        let env = TestEnv::new(db, false).await;
        let app = env.spawn().await;
        let instant =
            chrono::DateTime::from_timestamp_millis(Utc::now().timestamp_millis() - 60_000)
                .unwrap();
        let ms = instant.timestamp_millis();
        let batch = json!([
            typing("1", json!(instant.to_rfc3339())),
            typing(
                "1",
                json!(
                    instant
                        .with_timezone(&chrono::FixedOffset::east_opt(3600).unwrap())
                        .to_rfc3339()
                )
            ),
            typing("1", json!(ms)),
            typing("1", json!(ms.to_string())),
        ]);
        let stored = app.post_events("typing", batch).await;
        assert_eq!(
            stored.status().as_u16(),
            201,
            "{db:?}: an epoch-ms string is accepted too"
        );
        // All four at the same millisecond: `since` at it counts them all,
        // one millisecond later none.
        assert_eq!(heatmap_count(&app, "1", &ms.to_string()).await, 4, "{db:?}");
        assert_eq!(
            heatmap_count(&app, "1", &(ms + 1).to_string()).await,
            0,
            "{db:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn since_has_the_same_range_in_both_spellings() {
    let env = TestEnv::new(Db::Sqlite, false).await;
    let app = env.spawn().await;
    let get = |since: &'static str| {
        app.request(Method::GET, "/api/analytics/ghosts", Some(API))
            .query(&[("guildId", "1"), ("since", since)])
            .send()
    };
    for accepted in [
        "9999-12-31T23:59:59.999Z",
        "253402300799999",
        "1970-01-01T00:00:00Z",
        "0",
    ] {
        assert_eq!(
            get(accepted).await.unwrap().status().as_u16(),
            200,
            "{accepted}"
        );
    }
    // Year 10000 as epoch ms (RFC 3339 cannot write it), and before 1970 in either.
    for refused in [
        "253402300800000",
        "+10000-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "-1",
    ] {
        let body = assert_error(get(refused).await.unwrap(), 400).await;
        assert!(
            body["message"].as_str().unwrap().contains("since"),
            "{refused}: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_post_alias_body_takes_ids_as_strings_only() {
    let env = TestEnv::new(Db::Sqlite, false).await;
    let app = env.spawn().await;
    let post = |body: Value| {
        app.request(Method::POST, "/api/analytics/ghosts", Some(API))
            .json(&body)
            .send()
    };
    for (body, names) in [
        (json!({ "guildId": 1 }), "guildId"),
        (json!({ "guildId": 123456789012345678u64 }), "guildId"),
        (json!({ "guildId": ["1"] }), "guildId"),
        (json!({ "guildId": "1", "since": true }), "since"),
        (json!({ "guildId": "1", "since": 1.5e12 }), "since"),
        (
            json!({ "guildId": "1", "since": 253_402_300_800_000_i64 }),
            "since",
        ),
        (
            json!({ "guildId": "1", "since": "253402300800000" }),
            "since",
        ),
        (json!({ "guildId": "1", "since": -1 }), "since"),
    ] {
        let error = assert_error(post(body.clone()).await.unwrap(), 400).await;
        assert!(
            error["message"].as_str().unwrap().contains(names),
            "{body}: {error}"
        );
    }
    let ms = 1_793_491_200_000_i64;
    for since in [
        json!(ms),
        json!(ms.to_string()),
        json!("2026-11-01T00:00:00Z"),
    ] {
        let response = post(json!({ "guildId": "1", "since": since }))
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{since}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_these_forms() {
    let env = TestEnv::new(Db::Sqlite, false).await;
    let app = env.spawn().await;
    let doc = json(app.get("/api/openapi.json", None).await).await;
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["Event"]["properties"]["createdAt"]["$ref"],
        "#/components/schemas/Instant"
    );
    let forms = schemas["Instant"]["oneOf"].as_array().unwrap();
    assert!(
        forms.contains(&json!({ "type": "string", "format": "date-time" })),
        "{forms:?}"
    );
    assert!(
        forms
            .iter()
            .any(|f| f["type"] == "string" && f["pattern"].is_string()),
        "{forms:?}"
    );
    assert!(
        forms.iter().any(|f| f["type"] == "integer"
            && f["minimum"] == 0
            && f["maximum"] == 253_402_300_799_999_i64),
        "{forms:?}"
    );
    let since = doc["paths"]["/api/analytics/{type}"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "since")
        .unwrap()
        .clone();
    assert_eq!(
        since["schema"]["$ref"],
        "#/components/schemas/InstantString"
    );
    let post_body = &doc["paths"]["/api/analytics/{type}"]["post"]["requestBody"]["content"]["application/json"]
        ["schema"];
    assert_eq!(
        post_body["properties"]["guildId"]["$ref"],
        "#/components/schemas/Snowflake"
    );
    assert_eq!(
        post_body["properties"]["since"]["$ref"],
        "#/components/schemas/Instant"
    );
}
