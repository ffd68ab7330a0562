//! `GET /ws` with a real WebSocket client (SPEC 3): subscribers of a guild
//! receive its invalidations and its fresh analytics; a burst of events
//! costs a few recomputations, not one per event.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
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
