//! Slow, stalled and careless clients over raw TCP: connections that send
//! nothing, half a request, headers a byte at a time or a short body are
//! closed within the timeouts; an idle keep-alive connection is closed; the
//! connection cap holds; bodies must be uncompressed JSON within the limit.
//! Timeouts are 500 ms here; the server without them kept such connections
//! for good.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use spywatcher::config::Settings;
use spywatcher_analytics::EventKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;

const TIMEOUT: Duration = Duration::from_millis(500);
/// Generous: a connection closed by a 500 ms timeout is closed well within.
const CLOSED_WITHIN: Duration = Duration::from_secs(4);

fn settings(env: &TestEnv) -> Settings {
    let mut settings = env.settings();
    settings.http.header_timeout = TIMEOUT;
    settings.http.body_timeout = TIMEOUT;
    settings.http.request_timeout = Duration::from_secs(5);
    settings
}

async fn connect(app: &TestApp) -> TcpStream {
    let address = app.address.trim_start_matches("http://");
    TcpStream::connect(address).await.expect("connect")
}

/// Reads until the server closes the connection: what it sent, and when it
/// closed; `None` if it was still open after `CLOSED_WITHIN`.
async fn read_until_closed(stream: &mut (impl AsyncReadExt + Unpin)) -> Option<(Duration, String)> {
    let start = Instant::now();
    let mut received = Vec::new();
    let read = tokio::time::timeout(CLOSED_WITHIN, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok()?;
    Some((
        start.elapsed(),
        String::from_utf8_lossy(&received).into_owned(),
    ))
}

/// One response of a kept-alive connection: status, and the JSON body.
async fn read_response(stream: &mut TcpStream) -> (u16, Value) {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&received).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if received.len() >= end + 4 + length {
                let status = text[9..12].parse().expect("status code");
                let body = &received[end + 4..end + 4 + length];
                return (status, serde_json::from_slice(body).unwrap_or(Value::Null));
            }
        }
        let n = tokio::time::timeout(CLOSED_WITHIN, stream.read(&mut buf))
            .await
            .expect("a response in time")
            .expect("read");
        assert!(n > 0, "closed before a whole response: {text}");
        received.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_connections_are_closed_within_the_timeouts() {
    let env = TestEnv::new(Db::Sqlite, false).await;
    let app = env.spawn_with(settings(&env)).await;

    let silent = connect(&app).await;
    let mut half_line = connect(&app).await;
    half_line.write_all(b"GET /health/li").await.unwrap();
    let mut dribble = connect(&app).await;
    dribble
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut short_body = connect(&app).await;
    let head = format!(
        "POST /api/events/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {INGEST}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n[{{\"a\""
    );
    short_body.write_all(head.as_bytes()).await.unwrap();

    // A header line a byte every 100 ms, until the server hangs up.
    let (mut dribble_read, mut dribble_write) = dribble.into_split();
    let writer = tokio::spawn(async move {
        for byte in b"X-Slow: ".iter().chain([b'a'; 100].iter()).cycle() {
            if dribble_write.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });

    let mut silent = silent;
    let (silent, half_line, dribble, short_body) = tokio::join!(
        read_until_closed(&mut silent),
        read_until_closed(&mut half_line),
        read_until_closed(&mut dribble_read),
        read_until_closed(&mut short_body),
    );
    writer.abort();
    for (name, closed) in [
        ("nothing sent", &silent),
        ("half a request line", &half_line),
        ("headers a byte at a time", &dribble),
        ("a short body", &short_body),
    ] {
        let (after, _) = closed
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: still open after {CLOSED_WITHIN:?}"));
        assert!(*after >= TIMEOUT / 2, "{name}: closed after {after:?}");
    }
    // The body's stall is answered, in JSON, before the close.
    let (_, answer) = short_body.unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"request_timeout\""), "{answer}");
    assert_eq!(app.store.event_count().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let env = TestEnv::new(Db::Sqlite, false).await;
    let app = env.spawn_with(settings(&env)).await;
    let mut stream = connect(&app).await;
    // Two requests on one connection: it is kept alive...
    for _ in 0..2 {
        stream
            .write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let (status, body) = read_response(&mut stream).await;
        assert_eq!((status, &body["status"]), (200, &json!("ok")));
    }
    // ...and closed once idle for the header timeout (hyper restarts that
    // timer when the connection waits for the next request).
    let (after, rest) = read_until_closed(&mut stream)
        .await
        .expect("an idle connection is closed");
    assert!(after >= TIMEOUT / 2, "closed after {after:?}");
    assert!(
        rest.is_empty() || rest.starts_with("HTTP/1.1 408"),
        "{rest}"
    );
}

/// A POST whose body never comes: a request in flight, which shedding spares.
async fn stall_in_a_body(app: &TestApp) -> TcpStream {
    let mut stream = connect(app).await;
    let head = format!(
        "POST /api/events/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {INGEST}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n[{{\"a\""
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// Still open: nothing to read and no close within a moment.
async fn still_open(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf))
        .await
        .is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_cap_the_longest_waiting_connection_makes_room() {
    let env = TestEnv::new(Db::Sqlite, false).await;
    let mut settings = settings(&env);
    // Longer than the test: only shedding can free a slot in time.
    settings.http.header_timeout = Duration::from_secs(60);
    settings.http.body_timeout = Duration::from_secs(60);
    settings.http.max_connections = Some(3);
    let app = env.spawn_with(settings).await;
    let mut oldest = connect(&app).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut half_line = connect(&app).await;
    half_line.write_all(b"GET /health/li").await.unwrap();
    let mut in_a_body = stall_in_a_body(&app).await;
    // Past the grace a connection gets for its first head (1 s).
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let response = tokio::time::timeout(CLOSED_WITHIN, app.get("/health/live", None))
        .await
        .expect("answered at once: a stalled connection made room");
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        read_until_closed(&mut oldest).await.is_some(),
        "the longest waiting connection was shed"
    );
    assert!(still_open(&mut half_line).await, "one shed was enough");
    assert!(
        still_open(&mut in_a_body).await,
        "a request in flight is spared"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_cap_requests_in_flight_are_spared_and_a_new_client_waits() {
    let env = TestEnv::new(Db::Sqlite, false).await;
    let mut settings = settings(&env);
    settings.http.max_connections = Some(3);
    let app = env.spawn_with(settings).await;
    let mut stalled = Vec::new();
    for _ in 0..3 {
        stalled.push(stall_in_a_body(&app).await);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let start = Instant::now();
    let response = tokio::time::timeout(CLOSED_WITHIN, app.get("/health/live", None))
        .await
        .expect("answered once a slot is free");
    let waited = start.elapsed();
    assert_eq!(response.status().as_u16(), 200);
    // It waited for the body timeout: the cap held, nothing in flight shed.
    assert!(waited >= TIMEOUT / 2, "answered after {waited:?}");
    for mut stream in stalled {
        let (_, answer) = read_until_closed(&mut stream).await.expect("closed");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_announced_above_the_limit_is_refused_before_it_is_sent() {
    let env = TestEnv::new(Db::Sqlite, false).await;
    let app = env.spawn_with(settings(&env)).await;
    for (path, token) in [
        ("/api/events/messages", INGEST),
        ("/api/analytics/ghosts?guildId=1", API),
    ] {
        let mut stream = connect(&app).await;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: 10737418240\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let start = Instant::now();
        let (status, body) = read_response(&mut stream).await;
        assert_eq!(status, 413, "{path}: {body}");
        assert_eq!(body["error"], "payload_too_large", "{path}: {body}");
        assert!(
            start.elapsed() < TIMEOUT,
            "{path}: not before the body timeout"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_must_be_uncompressed_json() {
    let env = TestEnv::new(Db::Sqlite, false).await;
    let app = env.spawn_with(settings(&env)).await;
    let guild = spywatcher_analytics::GuildId::parse("1").unwrap();
    let batch = json!([event(EventKind::Message, &guild, "5")]).to_string();
    let post = |path: &str, token: &str, headers: &[(&str, &str)], body: String| {
        let mut request = app.request(reqwest::Method::POST, path, Some(token));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(body).send()
    };
    let events = "/api/events/messages";
    for (headers, mentions) in [
        (vec![("content-type", "text/plain")], "Content-Type"),
        (
            vec![("content-type", "multipart/form-data; boundary=x")],
            "Content-Type",
        ),
        (vec![], "Content-Type"),
        (
            vec![
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ],
            "Content-Encoding",
        ),
    ] {
        let response = post(events, INGEST, &headers, batch.clone()).await.unwrap();
        assert_eq!(header(&response, "accept-encoding"), "identity");
        let body = assert_error(response, 415).await;
        assert_eq!(body["error"], "unsupported_media_type");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(mentions), "{headers:?}: {message}");
    }
    assert_eq!(app.store.event_count().await.unwrap(), 0, "nothing stored");
    let charset = [("content-type", "application/json; charset=utf-8")];
    let stored = post(events, INGEST, &charset, batch).await.unwrap();
    assert_eq!(stored.status().as_u16(), 201);

    // The analytics POST alias: a body must be JSON; no body needs no type.
    let alias = "/api/analytics/ghosts?guildId=1";
    let plain = [("content-type", "text/plain")];
    let refused = post(alias, API, &plain, "{\"guildId\":\"1\"}".into());
    assert_error(refused.await.unwrap(), 415).await;
    let empty = post(alias, API, &[], String::new()).await.unwrap();
    assert_eq!(empty.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_outlive_the_request_and_header_timeouts() {
    let env = TestEnv::new(Db::Sqlite, false).await;
    let mut settings = settings(&env);
    settings.http.request_timeout = TIMEOUT;
    let app = env.spawn_with(settings).await;
    let address = app.address.replace("http://", "ws://");
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("{address}/ws?token={API}"))
        .await
        .expect("upgraded");
    tokio::time::sleep(TIMEOUT * 3).await;
    let subscribe = json!({ "type": "subscribe", "guildId": "1" }).to_string();
    socket.send(Message::text(subscribe)).await.expect("send");
    let reply = tokio::time::timeout(CLOSED_WITHIN, socket.next())
        .await
        .expect("a reply")
        .expect("the socket is open")
        .expect("a message");
    let reply: Value = serde_json::from_str(reply.to_text().unwrap()).unwrap();
    assert_eq!(reply["type"], "subscribed", "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_not_answered_in_time_gets_a_json_503() {
    let env = TestEnv::new(Db::Sqlite, true).await;
    let mut settings = settings(&env);
    settings.http.request_timeout = TIMEOUT;
    // The cache waits on a hung Redis longer than the request may take.
    settings.cache_op_timeout = Duration::from_secs(10);
    let app = env.spawn_with(settings).await;
    env.redis.as_ref().unwrap().pause();
    let start = Instant::now();
    let response = app
        .analytics(
            "ghosts",
            &spywatcher_analytics::GuildId::parse("1").unwrap(),
        )
        .await;
    let took = start.elapsed();
    env.redis.as_ref().unwrap().resume();
    let body = assert_error(response, 503).await;
    assert_eq!(body["error"], "timeout", "{body}");
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
}
