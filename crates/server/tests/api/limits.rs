//! Authentication failures and the rate limiter under attack: the bearer
//! scheme in any case, failed tokens counted and blocked per address, a
//! Redis limiter that falls back at once when Redis dies or hangs, and
//! misses that cost more of the budget than hits.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use spywatcher::config::Settings;

use crate::helpers::*;

/// The sum of a Prometheus counter over its labels.
/// A client whose connections come from another loopback address.
fn client_from(ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::from(ip))
        .build()
        .unwrap()
}

async fn status(request: reqwest::RequestBuilder) -> u16 {
    request.send().await.expect("request").status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_case_insensitive() {
    let env = TestEnv::new(Db::Sqlite, false).await;
    let app = env.spawn().await;
    let path = format!("{}/api/analytics/roles?guildId=1", app.address);
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let request = app
            .client
            .get(&path)
            .header("authorization", format!("{scheme} {API}"));
        assert_eq!(status(request).await, 200, "{scheme}");
    }
    let basic = app
        .client
        .get(&path)
        .header("authorization", format!("Basic {API}"));
    assert_eq!(status(basic).await, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_authentications_are_counted_and_block_the_address() {
    let env = TestEnv::new(Db::Sqlite, false).await;
    let mut settings = env.settings();
    settings.auth_failures_per_minute = 5;
    let app = env.spawn_with(settings).await;
    let before = metric(&app, "spywatcher_auth_failures_total").await;
    let path = format!("{}/api/analytics/roles?guildId=1", app.address);
    let wrong = || app.client.get(&path).bearer_auth("not-the-token-0000000");
    // No token is no guess: it does not count toward the block.
    for _ in 0..10 {
        assert_eq!(status(app.client.get(&path)).await, 401);
    }
    for _ in 0..5 {
        assert_eq!(status(wrong()).await, 401);
    }
    let blocked = wrong().send().await.unwrap();
    let retry_after: u64 = header(&blocked, "retry-after")
        .parse()
        .expect("Retry-After");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(assert_error(blocked, 429).await["error"], "auth_failures");
    // While blocked, a right token from that address is refused too: a
    // guesser must not learn which guess was right (see auth/failures.rs).
    assert_eq!(status(app.client.get(&path).bearer_auth(API)).await, 429);
    assert_eq!(status(app.client.get(&path)).await, 429, "no token either");
    // Another address is not blocked.
    let other = client_from([127, 0, 0, 2]);
    assert_eq!(status(other.get(&path).bearer_auth(API)).await, 200);
    assert_eq!(
        status(other.get(&path).bearer_auth("nope-nope-nope-nope")).await,
        401
    );
    let after = metric(&app, "spywatcher_auth_failures_total").await;
    assert!(after - before >= 19.0, "{before} -> {after}");
}

fn limited(env: &TestEnv, per_minute: u32, miss_cost: u32, redis: bool) -> Settings {
    let mut settings = env.settings();
    settings.rate_limit_per_minute = per_minute;
    settings.rate_limit_miss_cost = miss_cost;
    settings.redis_rate_limiting = redis;
    settings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_costs_more_of_the_budget_than_a_hit() {
    for redis in [false, true] {
        let env = TestEnv::new(Db::Sqlite, redis).await;
        let app = env.spawn_with(limited(&env, 50, 10, redis)).await;
        // Ever new `since` values: each a miss, ten units of fifty.
        let now_ms = chrono::Utc::now().timestamp_millis();
        let mut misses = Vec::new();
        for i in 0..8 {
            let since = now_ms - (i + 1) * 60_000;
            let path = format!("/api/analytics/ghosts?guildId=1&since={since}");
            misses.push(app.get(&path, Some(API)).await.status().as_u16());
        }
        assert_eq!(
            misses,
            [200, 200, 200, 200, 200, 429, 429, 429],
            "redis: {redis}"
        );
        // The same answer over and over (another budget: the admin token's):
        // one miss, then hits at one unit each.
        for i in 0..35 {
            let response = app
                .get("/api/analytics/ghosts?guildId=1", Some(ADMIN))
                .await;
            assert_eq!(
                response.status().as_u16(),
                200,
                "redis: {redis}, request {i}"
            );
        }
    }
}

/// Stops Redis one way, then checks that requests are limited in process
/// without waiting on it, and that the Redis limiter is used again once it
/// is back.
async fn limiter_survives(fault: fn(&mut RedisServer), recover: fn(&mut RedisServer)) {
    let mut env = TestEnv::new(Db::Sqlite, true).await;
    let mut settings = limited(&env, 20, 1, true);
    // A request that waited on Redis would wait this long.
    settings.rate_limit_redis_timeout = Duration::from_secs(5);
    let app = env.spawn_with(settings).await;
    let path = "/api/analytics/roles?guildId=1";
    assert_eq!(app.get(path, Some(API)).await.status().as_u16(), 200);
    let key = "spywatcher:ratelimit:api:127.0.0.1";
    let redis = env.redis.as_mut().unwrap();
    assert_eq!(redis.cli(&["GET", key]).trim(), "1");

    fault(redis);
    // The first request learns that Redis is away (one wait at most).
    let first = tokio::time::timeout(Duration::from_secs(8), app.get(path, Some(API)))
        .await
        .expect("answered");
    assert_eq!(first.status().as_u16(), 200);
    let start = Instant::now();
    let mut statuses = Vec::new();
    for _ in 0..50 {
        statuses.push(app.get(path, Some(API)).await.status().as_u16());
    }
    let took = start.elapsed();
    eprintln!("50 requests with Redis away: {took:?}");
    assert!(took < Duration::from_secs(3), "50 requests took {took:?}");
    // Limited in process: 20 a minute, the first request after the fault
    // included.
    let served = statuses.iter().filter(|&&s| s == 200).count();
    assert_eq!(served, 19, "{statuses:?}");
    assert!(statuses[19..].iter().all(|&s| s == 429), "{statuses:?}");

    recover(env.redis.as_mut().unwrap());
    // Once a probe hears Redis, the budget is Redis' again: a request moves
    // the count there.
    let count = |env: &TestEnv| -> u64 {
        let reply = env.redis.as_ref().unwrap().cli(&["GET", key]);
        reply.trim().parse().unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let before = count(&env);
        app.get(path, Some(API)).await;
        if count(&env) > before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the Redis limiter did not come back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_limiter_falls_back_at_once_when_redis_dies() {
    limiter_survives(|redis| redis.kill(), |redis| redis.restart()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_limiter_falls_back_at_once_when_redis_hangs() {
    limiter_survives(|redis| redis.pause(), |redis| redis.resume()).await;
}
