//! `GET /ws` with a real WebSocket client (SPEC 3): subscribers of a guild
//! receive its invalidations and its fresh analytics; a burst of events
//! costs a few recomputations, not one per event.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use spywatcher::config::Settings;
use spywatcher::startup::Application;
use spywatcher::state::AppState;
use spywatcher_analytics::{AnalyticsKind, EventKind, GuildId, UserId};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use crate::helpers::*;
use crate::invalidation::event;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// An instance with its state in hand: the hub's counters are per instance,
/// while the Prometheus recorder is shared by every test of this process.
struct WsApp {
    state: AppState,
    address: String,
    client: reqwest::Client,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for WsApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl WsApp {
    async fn spawn(env: &TestEnv, push_interval: Duration) -> WsApp {
        let mut settings = env.settings();
        settings.ws_push_interval = push_interval;
        WsApp::spawn_with(settings).await
    }

    async fn spawn_with(settings: Settings) -> WsApp {
        let app = Application::build(&settings)
            .await
            .expect("application builds");
        let address = format!("127.0.0.1:{}", app.port());
        let state = app.state().clone();
        let server = tokio::spawn(app.run_until_stopped(std::future::pending()));
        WsApp {
            state,
            address,
            client: reqwest::Client::new(),
            server,
        }
    }

    async fn post_events(&self, kind: EventKind, body: Value) {
        let response = self
            .client
            .post(format!("http://{}/api/events/{kind}", self.address))
            .bearer_auth(INGEST)
            .json(&body)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status().as_u16(), 201, "{kind}");
    }

    async fn get_ws(&self, query: &str, token: Option<&str>) -> reqwest::Response {
        let request = self
            .client
            .get(format!("http://{}/ws{query}", self.address));
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
        .send()
        .await
        .expect("request")
    }

    /// A client with the token in the `Authorization` header.
    async fn connect(&self, token: &str) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
        let mut request = format!("ws://{}/ws", self.address)
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        connect_async(request).await.map(|(socket, _)| socket)
    }

    /// A client with the token in the query, as a browser sends it.
    async fn connect_with_query_token(&self, token: &str) -> Socket {
        let (socket, _) = connect_async(format!("ws://{}/ws?token={token}", self.address))
            .await
            .expect("handshake");
        socket
    }

    /// The value of a `/metrics` sample, such as
    /// `spywatcher_ws_refused_total{reason="connections"}` (0 when absent).
    async fn metric(&self, sample: &str) -> f64 {
        let text = self
            .client
            .get(format!("http://{}/metrics", self.address))
            .bearer_auth(ADMIN)
            .send()
            .await
            .expect("request")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .find_map(|line| line.strip_prefix(sample)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    fn fresh(&self, kind: AnalyticsKind, guild: &GuildId) -> impl Future<Output = Value> {
        let store = self.state.service.store.clone();
        let guild = guild.clone();
        async move {
            store
                .analytics_now(kind, &guild, None)
                .await
                .unwrap()
                .to_json()
        }
    }

    /// Waits until `done` holds of the hub, or fails after 2 s.
    async fn eventually(&self, what: &str, done: impl Fn(&AppState) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while !done(&self.state) {
            assert!(Instant::now() < deadline, "timed out waiting: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn send(socket: &mut Socket, message: Value) {
    socket
        .send(Message::text(message.to_string()))
        .await
        .expect("send");
}

/// The next JSON frame, skipping control frames; fails after `within`.
async fn next_json(socket: &mut Socket, within: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let message = tokio::time::timeout_at(deadline, socket.next())
            .await
            .expect("a frame in time")
            .expect("connection open")
            .expect("a frame");
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).expect("JSON frame");
        }
    }
}

/// Connections of the API token, each subscribed to 100 of `guilds`.
async fn subscribe_by_hundreds(app: &WsApp, guilds: &[GuildId]) -> Vec<Socket> {
    let mut sockets = Vec::new();
    for chunk in guilds.chunks(100) {
        let mut socket = app.connect(API).await.expect("handshake");
        for guild in chunk {
            subscribe(&mut socket, guild).await;
        }
        sockets.push(socket);
    }
    sockets
}

async fn subscribe(socket: &mut Socket, guild: &GuildId) {
    send(
        socket,
        json!({ "type": "subscribe", "guildId": guild.as_str() }),
    )
    .await;
    let reply = next_json(socket, Duration::from_secs(2)).await;
    assert_eq!(
        reply,
        json!({ "type": "subscribed", "guildId": guild.as_str() })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_receive_invalidations_and_fresh_analytics() {
    for with_redis in [true, false] {
        let mode = if with_redis { "redis" } else { "embedded" };
        let env = TestEnv::new(Db::Sqlite, with_redis).await;
        let app = WsApp::spawn(&env, Duration::from_millis(200)).await;
        let guilds = seed(&app.state.service.store).await;
        let (guild, other) = (&guilds[0], &guilds[1]);

        let mut client = app.connect(API).await.expect("handshake");
        let mut browser = app.connect_with_query_token(ADMIN).await;
        subscribe(&mut client, guild).await;
        subscribe(&mut browser, other).await;

        // Bad messages are answered, and the connection stays usable.
        for bad in [
            json!({ "type": "subscribe", "guildId": "12ab" }),
            json!({ "type": "subscribe" }),
            json!({ "type": "shout", "guildId": "1" }),
            json!("subscribe"),
        ] {
            send(&mut client, bad.clone()).await;
            let reply = next_json(&mut client, Duration::from_secs(1)).await;
            assert_eq!(reply["type"], "error", "{bad} -> {reply}");
            assert!(reply["message"].is_string(), "{reply}");
        }
        client.send(Message::text("not json")).await.expect("send");
        assert_eq!(
            next_json(&mut client, Duration::from_secs(1)).await["type"],
            "error"
        );
        // Keepalive: pings are answered.
        client
            .send(Message::Ping(b"alive?".to_vec().into()))
            .await
            .unwrap();
        let pong = tokio::time::timeout(Duration::from_secs(1), client.next())
            .await
            .expect("a pong in time")
            .unwrap()
            .unwrap();
        assert_eq!(pong, Message::Pong(b"alive?".to_vec().into()));

        // An event: its invalidation, then each analytics it changed, fresh.
        let kind = EventKind::Typing;
        let sent = Instant::now();
        app.post_events(kind, event(kind, guild, "990001")).await;
        let invalidated = next_json(&mut client, Duration::from_secs(1)).await;
        let invalidation_latency = sent.elapsed();
        assert_eq!(invalidated["type"], "invalidated", "{invalidated}");
        assert_eq!(invalidated["event"], "typing");
        assert_eq!(invalidated["guildId"], guild.as_str());
        assert!(invalidated["timestamp"].is_string());
        let mut pushed = HashMap::new();
        while pushed.len() < kind.invalidates().len() {
            let frame = next_json(&mut client, Duration::from_secs(1)).await;
            assert_eq!(frame["type"], "analytics", "{frame}");
            assert_eq!(frame["guildId"], guild.as_str());
            assert!(frame["timestamp"].is_string());
            let analytics: AnalyticsKind = frame["analytics"].as_str().unwrap().parse().unwrap();
            pushed.insert(analytics, frame["data"].clone());
        }
        let latency = sent.elapsed();
        assert!(latency < Duration::from_secs(1), "{latency:?}");
        println!(
            "ws ({mode}): after posting the event, its invalidation in {invalidation_latency:?}, \
             the {} fresh analytics in {latency:?}",
            pushed.len()
        );
        for &analytics in kind.invalidates() {
            assert_eq!(
                pushed.get(&analytics),
                Some(&app.fresh(analytics, guild).await),
                "{mode}: pushed {analytics} is not fresh"
            );
        }
        for &analytics in AnalyticsKind::ALL {
            assert_eq!(
                app.state.realtime.recomputations(analytics) > 0,
                kind.invalidates().contains(&analytics)
            );
        }
        // The other guild's subscriber heard nothing of it.
        assert!(
            tokio::time::timeout(Duration::from_millis(300), browser.next())
                .await
                .is_err(),
            "{mode}: a push for a guild not subscribed to"
        );

        // Unsubscribing, then leaving: nothing stays behind.
        assert_eq!(app.state.realtime.connections(), 2);
        assert_eq!(app.state.realtime.subscriptions(), 2);
        send(
            &mut client,
            json!({ "type": "unsubscribe", "guildId": guild.as_str() }),
        )
        .await;
        assert_eq!(
            next_json(&mut client, Duration::from_secs(1)).await,
            json!({ "type": "unsubscribed", "guildId": guild.as_str() })
        );
        app.eventually("the unsubscribed guild is forgotten", |s| {
            s.realtime.subscriptions() == 1 && s.realtime.watched_guilds() == 1
        })
        .await;
        client.close(None).await.unwrap();
        drop(client);
        drop(browser); // no close frame: the connection just goes away
        app.eventually("closed connections are cleaned up", |s| {
            s.realtime.connections() == 0
                && s.realtime.subscriptions() == 0
                && s.realtime.watched_guilds() == 0
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_checked_before_the_upgrade() {
    let env = TestEnv::new(Db::Sqlite, false).await;
    let app = WsApp::spawn(&env, Duration::from_millis(200)).await;
    for token in ["wrong-token-0000000000", INGEST] {
        let refused = app.connect(token).await.expect_err("refused");
        let tokio_tungstenite::tungstenite::Error::Http(response) = refused else {
            panic!("{refused:?}");
        };
        let expected = if token == INGEST { 403 } else { 401 };
        assert_eq!(response.status().as_u16(), expected);
    }
    assert_error(app.get_ws("", None).await, 401).await;
    assert_error(app.get_ws("?token=wrong-token-000000", None).await, 401).await;
    assert_error(app.get_ws("", Some(INGEST)).await, 403).await;
    assert_error(app.get_ws(&format!("?token={INGEST}"), None).await, 403).await;
    // A token, but no WebSocket handshake.
    assert_error(app.get_ws("", Some(API)).await, 400).await;
    assert_eq!(app.state.realtime.connections(), 0);
    let doc: Value = app
        .client
        .get(format!("http://{}/api/openapi.json", app.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        doc["paths"]["/ws"]["get"].is_object(),
        "GET /ws undocumented"
    );
}

/// 1,000 events in about a second for a guild with 10 subscribers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_events_costs_a_few_recomputations() {
    let interval = Duration::from_millis(500);
    let env = TestEnv::new(Db::Sqlite, true).await;
    let app = WsApp::spawn(&env, interval).await;
    let guilds = seed(&app.state.service.store).await;
    let guild = &guilds[0];

    let mut readers = Vec::new();
    for _ in 0..10 {
        let mut socket = app.connect(API).await.expect("handshake");
        subscribe(&mut socket, guild).await;
        // Each subscriber reads all the time, as a live client does.
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Value)>();
        tokio::spawn(async move {
            while let Some(Ok(message)) = socket.next().await {
                if let Message::Text(text) = message
                    && tx
                        .send((Instant::now(), serde_json::from_str(&text).unwrap()))
                        .is_err()
                {
                    return;
                }
            }
        });
        readers.push(rx);
    }

    // Every event kind but member joins, so every analytics is affected.
    let kinds = [
        EventKind::Typing,
        EventKind::Message,
        EventKind::Presence,
        EventKind::RoleChange,
    ];
    // In batches of 5 (one request, one commit, one invalidation each), so
    // that a debug build on a small machine posts them in about a second.
    let (events, batch) = (1_000, 5);
    let started = Instant::now();
    futures::stream::iter(0..events / batch)
        .map(|b| {
            let kind = kinds[b % kinds.len()];
            let body: Vec<Value> = (0..batch)
                .map(|i| event(kind, guild, &format!("{}", 880_000 + (b * batch + i) % 37)))
                .collect();
            app.post_events(kind, Value::Array(body))
        })
        .buffer_unordered(4)
        .collect::<Vec<()>>()
        .await;
    let burst = started.elapsed();

    let mut fresh = HashMap::new();
    for &kind in AnalyticsKind::ALL {
        fresh.insert(kind.as_str().to_string(), app.fresh(kind, guild).await);
    }
    let mut last_push = started;
    let mut frames = 0;
    for mut reader in readers {
        let mut latest: HashMap<String, Value> = HashMap::new();
        while latest != fresh {
            let (at, frame) =
                tokio::time::timeout(interval * 2 + Duration::from_secs(2), reader.recv())
                    .await
                    .unwrap_or_else(|_| {
                        let stale: Vec<_> = fresh
                            .keys()
                            .filter(|k| latest.get(*k) != fresh.get(*k))
                            .collect();
                        panic!("no final push of {stale:?}")
                    })
                    .expect("reader alive");
            frames += 1;
            assert_ne!(frame["type"], "error", "{frame}");
            if frame["type"] == "analytics" {
                latest.insert(
                    frame["analytics"].as_str().unwrap().to_string(),
                    frame["data"].clone(),
                );
                last_push = last_push.max(at);
            }
        }
    }
    // Nothing is left to do once the last push is out.
    tokio::time::sleep(interval + Duration::from_millis(100)).await;

    let per_kind: Vec<(AnalyticsKind, u64)> = AnalyticsKind::ALL
        .iter()
        .map(|&kind| (kind, app.state.realtime.recomputations(kind)))
        .collect();
    let total: u64 = per_kind.iter().map(|(_, n)| n).sum();
    println!(
        "ws burst: {events} events ({} requests) in {burst:?} ({:.0}/s), 10 subscribers, push interval {interval:?}: \
         {total} recomputations {per_kind:?}; {frames} frames read; last push {:?} after the last event was stored",
        events / batch,
        events as f64 / burst.as_secs_f64(),
        last_push.saturating_duration_since(started + burst),
    );
    // At most one at once and one per interval per analytics, so the bound
    // is the burst's length in intervals, plus the one at its start and the
    // one after its end (with this interval, at most 3 per second plus one).
    let bound = (burst.as_millis() / interval.as_millis()) as u64 + 2;
    for (kind, n) in per_kind {
        assert!(n >= 1, "{kind} never recomputed");
        assert!(n <= bound, "{kind}: {n} recomputations > {bound}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_helpers_carry_a_timestamp() {
    for with_redis in [true, false] {
        let env = TestEnv::new(Db::Sqlite, with_redis).await;
        let app = WsApp::spawn(&env, Duration::from_millis(200)).await;
        let service = &app.state.service;
        let pubsub = service.cache.pubsub();
        let guild = GuildId::parse("42").unwrap();
        let user = UserId::parse("7").unwrap();
        let mut analytics = pubsub.subscribe("analytics:roles:42").await;
        let mut notifications = pubsub.subscribe("notifications:7").await;
        let mut presence = pubsub.subscribe("presence:7").await;

        assert!(
            service
                .publish_analytics_update(&guild, AnalyticsKind::Roles, &json!([]))
                .await
        );
        assert!(
            service
                .publish_notification(&user, &json!({ "text": "hi" }))
                .await
        );
        assert!(
            service
                .publish_presence_update(&user, &json!({ "status": "online" }))
                .await
        );
        for (subscription, expected) in [
            (
                &mut analytics,
                json!({ "guildId": "42", "type": "roles", "data": [] }),
            ),
            (
                &mut notifications,
                json!({ "userId": "7", "notification": { "text": "hi" } }),
            ),
            (
                &mut presence,
                json!({ "userId": "7", "presence": { "status": "online" } }),
            ),
        ] {
            let message = tokio::time::timeout(Duration::from_secs(1), subscription.recv())
                .await
                .expect("in time")
                .expect("a message");
            let mut body: Value = message.json().unwrap();
            let timestamp = body["timestamp"].take();
            assert!(
                chrono::DateTime::parse_from_rfc3339(timestamp.as_str().unwrap()).is_ok(),
                "{timestamp}"
            );
            body.as_object_mut().unwrap().remove("timestamp");
            assert_eq!(body, expected);
        }
    }
}

/// `count` distinct guilds from `first` on, none with data.
fn guild_range(first: u64, count: u64) -> Vec<GuildId> {
    (first..first + count)
        .map(|g| GuildId::parse(g.to_string()).unwrap())
        .collect()
}

/// Nothing but control frames within `within`.
async fn assert_silent(socket: &mut Socket, within: Duration, what: &str) {
    let deadline = tokio::time::Instant::now() + within;
    while let Ok(message) = tokio::time::timeout_at(deadline, socket.next()).await {
        if let Some(Ok(Message::Text(text))) = message {
            panic!("{what}: unexpected frame {text}");
        }
    }
}

/// 10 connections × 100 guilds: the instance holds two pattern
/// subscriptions, not one (or two) per guild; an event of one guild reaches
/// its two subscribers and nobody else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_watched_guilds_cost_two_pattern_subscriptions_and_events_reach_only_their_subscribers()
 {
    for with_redis in [true, false] {
        let mode = if with_redis { "redis" } else { "embedded" };
        let env = TestEnv::new(Db::Sqlite, with_redis).await;
        let app = WsApp::spawn(&env, Duration::from_millis(200)).await;
        let pubsub = app.state.service.cache.pubsub().clone();
        let before = pubsub.subscriptions();

        let guilds = guild_range(700_000, 1_000);
        let mut sockets = subscribe_by_hundreds(&app, &guilds).await;
        // A second subscriber of one of them, on a connection of its own.
        let target = &guilds[345];
        let mut other = app.connect(ADMIN).await.expect("handshake");
        subscribe(&mut other, target).await;
        assert_eq!(app.state.realtime.watched_guilds(), 1_000);
        assert_eq!(app.state.realtime.subscriptions(), 1_001);

        let during = pubsub.subscriptions();
        assert_eq!(
            (during.channels, during.patterns),
            (before.channels, before.patterns + 2),
            "{mode}: pub/sub subscriptions grow with the guilds watched"
        );
        if let Some(redis) = &env.redis {
            assert_eq!(redis.cli(&["PUBSUB", "NUMPAT"]).trim(), "2", "{mode}");
        }

        app.post_events(
            EventKind::Typing,
            event(EventKind::Typing, target, "990002"),
        )
        .await;
        for (name, socket) in [
            ("its subscriber", &mut sockets[3]),
            ("the other", &mut other),
        ] {
            let frame = next_json(socket, Duration::from_secs(2)).await;
            assert_eq!(frame["type"], "invalidated", "{mode}, {name}: {frame}");
            assert_eq!(frame["guildId"], target.as_str(), "{mode}, {name}");
        }
        for (i, socket) in sockets.iter_mut().enumerate() {
            if i != 3 {
                assert_silent(socket, Duration::from_millis(50), mode).await;
            }
        }
        // Its subscribers also get its analytics, recomputed once each.
        let mut analytics = HashMap::new();
        while analytics.len() < EventKind::Typing.invalidates().len() {
            let frame = next_json(&mut other, Duration::from_secs(2)).await;
            assert_eq!(frame["guildId"], target.as_str(), "{mode}: {frame}");
            analytics.insert(frame["analytics"].to_string(), frame);
        }
        assert_silent(&mut sockets[0], Duration::from_millis(300), mode).await;

        drop(sockets);
        drop(other);
        app.eventually("everything is given back", |s| {
            s.realtime.connections() == 0
                && s.realtime.watched_guilds() == 0
                && s.service.cache.pubsub().subscriptions() == before
        })
        .await;
    }
}

/// A batch over 500 watched guilds (2,000 recomputations) with a limit of
/// 3: never more than 3 at once, the HTTP routes served meanwhile, and
/// every one done in the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recomputations_for_a_burst_over_many_guilds_queue_under_the_concurrency_limit() {
    let limit = 3;
    let env = TestEnv::new(Db::Sqlite, false).await;
    let mut settings = env.settings();
    settings.ws_push_interval = Duration::from_millis(200);
    settings.ws_recompute_concurrency = limit;
    let app = WsApp::spawn_with(settings).await;
    let seeded = seed(&app.state.service.store).await;

    let guilds = guild_range(710_000, 500);
    let sockets = subscribe_by_hundreds(&app, &guilds).await;
    let batch: Vec<Value> = guilds
        .iter()
        .map(|guild| event(EventKind::Typing, guild, "990003"))
        .collect();
    app.post_events(EventKind::Typing, Value::Array(batch))
        .await;

    // The routes are served while the queue drains (a miss: a query).
    let started = Instant::now();
    let response = app
        .client
        .get(format!(
            "http://{}/api/analytics/ghosts?guildId={}",
            app.address,
            seeded[0].as_str()
        ))
        .bearer_auth(API)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("analytics answered during the recomputations");
    assert_eq!(response.status().as_u16(), 200);
    let total = || -> u64 {
        AnalyticsKind::ALL
            .iter()
            .map(|&kind| app.state.realtime.recomputations(kind))
            .sum()
    };
    println!(
        "ws queue: analytics answered in {:?} with {} of 2000 recomputations done",
        started.elapsed(),
        total()
    );

    let expected = (guilds.len() * EventKind::Typing.invalidates().len()) as u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while total() < expected || app.state.realtime.recomputations_running() > 0 {
        assert!(Instant::now() < deadline, "{} of {expected} done", total());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        total(),
        expected,
        "one recomputation per guild and analytics"
    );
    assert_eq!(
        app.state.realtime.most_recomputations_at_once(),
        limit,
        "at most {limit} at once (and the limit reached)"
    );
    drop(sockets);
}

/// The refusal of a handshake: its status and JSON body.
async fn refused(app: &WsApp, token: &str) -> (u16, Value, String) {
    let error = app.connect(token).await.expect_err("refused");
    let tokio_tungstenite::tungstenite::Error::Http(response) = error else {
        panic!("{error:?}");
    };
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = serde_json::from_slice(response.body().as_deref().unwrap_or_default())
        .expect("a JSON body");
    (response.status().as_u16(), body, retry_after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_and_subscription_caps_refuse_and_are_counted() {
    let env = TestEnv::new(Db::Sqlite, false).await;
    let mut settings = env.settings();
    settings.ws_max_connections = 3;
    settings.ws_max_connections_per_token = 2;
    settings.ws_max_subscriptions = 2;
    let app = WsApp::spawn_with(settings).await;
    let count = |reason: &str| format!("spywatcher_ws_refused_total{{reason=\"{reason}\"}}");
    let (per_token_before, instance_before, subscriptions_before) = (
        app.metric(&count("token_connections")).await,
        app.metric(&count("connections")).await,
        app.metric(&count("subscriptions")).await,
    );

    let mut first = app.connect(API).await.expect("first");
    let _second = app.connect(API).await.expect("second");
    let (status, body, retry_after) = refused(&app, API).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"], "too_many_connections");
    assert!(
        body["message"].as_str().unwrap().contains("per token"),
        "{body}"
    );
    assert!(!retry_after.is_empty());

    let _admin = app.connect(ADMIN).await.expect("another token");
    let (status, body, retry_after) = refused(&app, ADMIN).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "too_many_connections");
    assert!(!retry_after.is_empty());
    assert_eq!(app.state.realtime.connections(), 3);

    // Guilds per connection.
    for guild in guild_range(720_000, 2) {
        subscribe(&mut first, &guild).await;
    }
    send(
        &mut first,
        json!({ "type": "subscribe", "guildId": "720002" }),
    )
    .await;
    let reply = next_json(&mut first, Duration::from_secs(1)).await;
    assert_eq!(reply["type"], "error", "{reply}");
    assert!(
        reply["message"]
            .as_str()
            .unwrap()
            .contains("at most 2 guilds")
    );
    assert_eq!(app.state.realtime.subscriptions(), 2);

    assert!(app.metric(&count("token_connections")).await > per_token_before);
    assert!(app.metric(&count("connections")).await > instance_before);
    assert!(app.metric(&count("subscriptions")).await > subscriptions_before);

    // A connection that ends gives its slot back.
    first.close(None).await.unwrap();
    drop(first);
    app.eventually("the slot is given back", |s| s.realtime.connections() == 2)
        .await;
    app.connect(API).await.expect("a slot again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_go_through_the_rate_limiter() {
    let env = TestEnv::new(Db::Sqlite, false).await;
    let mut settings = env.settings();
    settings.rate_limit_per_minute = 3;
    let app = WsApp::spawn_with(settings).await;
    let sample = "spywatcher_ws_refused_total{reason=\"handshake_rate\"}";
    let before = app.metric(sample).await;
    for _ in 0..3 {
        let mut socket = app.connect(API).await.expect("within the limit");
        socket.close(None).await.unwrap();
    }
    let (status, body, retry_after) = refused(&app, API).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"], "rate_limited");
    assert!(retry_after.parse::<u64>().unwrap() >= 1);
    assert!(app.metric(sample).await > before);
}

/// The frame whose header announces 10 MB is refused as the header
/// arrives: the close comes although not one byte of payload was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_is_refused_with_close_code_1009() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    let env = TestEnv::new(Db::Sqlite, false).await;
    let app = WsApp::spawn(&env, Duration::from_millis(200)).await;
    let sample = "spywatcher_ws_refused_total{reason=\"message_size\"}";
    let before = app.metric(sample).await;

    // A whole 1 MB text frame.
    let mut socket = app.connect(API).await.expect("handshake");
    let big = "x".repeat(1024 * 1024);
    let _ = socket.send(Message::text(big)).await;
    let close = loop {
        let message = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("an answer in time")
            .expect("a close frame before the end")
            .expect("a close frame, not an error");
        if let Message::Close(close) = message {
            break close;
        }
    };
    let close = close.expect("a close code");
    assert_eq!(close.code, CloseCode::Size, "{close:?}");

    // The header of a 10 MB frame, and no payload.
    let mut request = format!("ws://{}/ws", app.address)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {API}").parse().unwrap());
    let tcp = TcpStream::connect(&app.address).await.unwrap();
    let (mut socket, _) = tokio_tungstenite::client_async(request, tcp)
        .await
        .expect("handshake");
    let raw = socket.get_mut();
    let mut header = vec![0x81, 0x80 | 127];
    header.extend_from_slice(&(10u64 * 1024 * 1024).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]); // the mask
    raw.write_all(&header).await.unwrap();
    let mut answer = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), raw.read_exact(&mut answer))
        .await
        .expect("closed while the payload is still awaited")
        .expect("a close frame");
    // A close frame (FIN + opcode 8), unmasked, whose code is 1009.
    assert_eq!(answer[0], 0x88, "{answer:?}");
    assert_eq!(u16::from_be_bytes([answer[2], answer[3]]), 1009);
    assert!(app.metric(sample).await >= before + 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_numeric_guild_id_is_refused() {
    let env = TestEnv::new(Db::Sqlite, false).await;
    let app = WsApp::spawn(&env, Duration::from_millis(200)).await;
    let mut socket = app.connect(API).await.expect("handshake");
    for kind in ["subscribe", "unsubscribe"] {
        send(&mut socket, json!({ "type": kind, "guildId": 123 })).await;
        let reply = next_json(&mut socket, Duration::from_secs(1)).await;
        assert_eq!(reply["type"], "error", "{reply}");
        let message = reply["message"].as_str().unwrap();
        assert!(
            message.contains("guildId") && message.contains("string"),
            "{message}"
        );
    }
    assert_eq!(app.state.realtime.subscriptions(), 0);
    subscribe(&mut socket, &GuildId::parse("123").unwrap()).await;
}

/// Two instances on one Redis, a subscriber on each: an event ingested by
/// one reaches both subscribers once, and each analytics it changed once,
/// although both instances recompute and publish it (each update arrives
/// twice at each instance).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_instances_each_subscriber_sees_each_change_once() {
    let env = TestEnv::new(Db::Sqlite, true).await;
    let (a, b) = (
        WsApp::spawn(&env, Duration::from_millis(200)).await,
        WsApp::spawn(&env, Duration::from_millis(200)).await,
    );
    let guilds = seed(&a.state.service.store).await;
    let guild = &guilds[0];
    let mut on_a = a.connect(API).await.expect("handshake");
    let mut on_b = b.connect(API).await.expect("handshake");
    subscribe(&mut on_a, guild).await;
    subscribe(&mut on_b, guild).await;

    let kind = EventKind::Typing;
    a.post_events(kind, event(kind, guild, "990004")).await;
    for (name, socket) in [("on a", &mut on_a), ("on b", &mut on_b)] {
        let invalidated = next_json(socket, Duration::from_secs(2)).await;
        assert_eq!(invalidated["type"], "invalidated", "{name}: {invalidated}");
        let mut seen = Vec::new();
        while seen.len() < kind.invalidates().len() {
            let frame = next_json(socket, Duration::from_secs(2)).await;
            assert_eq!(frame["type"], "analytics", "{name}: {frame}");
            let analytics = frame["analytics"].as_str().unwrap().to_string();
            assert!(!seen.contains(&analytics), "{name}: {analytics} twice");
            seen.push(analytics);
        }
        assert_silent(socket, Duration::from_millis(500), name).await;
    }
    for app in [&a, &b] {
        assert!(app.state.realtime.recomputations(AnalyticsKind::Ghosts) >= 1);
    }
}
