//! `GET /ws`: a guild's invalidations and fresh analytics, pushed over a
//! WebSocket (SPEC 3).
//!
//! The token is checked before the upgrade, as on every route (read role:
//! the admin or API token; 401/403 as JSON). Browsers cannot set headers on
//! a WebSocket, so `?token=` may stand in for `Authorization: Bearer`.
//!
//! # Protocol (JSON text frames)
//! The client sends:
//! - `{"type":"subscribe","guildId":"123"}`, answered by
//!   `{"type":"subscribed","guildId":"123"}` once the guild's events are
//!   listened to;
//! - `{"type":"unsubscribe","guildId":"123"}`, answered by
//!   `{"type":"unsubscribed","guildId":"123"}`.
//!
//! The server pushes, for each subscribed guild:
//! - `{"type":"invalidated","event","guildId","timestamp"}` after an event
//!   changed the guild's analytics (`event` as in
//!   `cache:invalidated:{guildId}`: `message`, `typing`, `presence`,
//!   `role-change`, `member-join`);
//! - `{"type":"analytics","guildId","analytics":"ghosts","data":[...],"timestamp"}`
//!   with the rows of an analytics (as `GET /api/analytics/ghosts` returns
//!   them) whenever they changed, at most one per analytics per
//!   `WS_PUSH_INTERVAL_MS`.
//!
//! A message it cannot take gets `{"type":"error","message"}`; the
//! connection stays open. The server pings every 30 s and closes a
//! connection it has not heard from in two intervals.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::ws::{
    Message, Utf8Bytes, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use spywatcher_analytics::GuildId;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::extract;
use crate::auth::{Authorized, Reader};
use crate::error::ApiError;
use crate::service::realtime::{Feed, Frame, Realtime, error_frame};
use crate::state::AppState;

const PING_INTERVAL: Duration = Duration::from_secs(30);
/// Client messages are small; anything larger is refused by the socket.
const MAX_CLIENT_MESSAGE: usize = 16 * 1024;
const MAX_GUILDS_PER_CONNECTION: usize = 100;
/// Frames waiting for a slow socket before the guild feeds back up.
const OUTBOX: usize = 64;

/// Middleware before [`crate::auth::require`]: `?token=` becomes the bearer
/// token when no `Authorization` header came.
pub async fn token_from_query(mut request: Request, next: Next) -> Response {
    if !request.headers().contains_key(header::AUTHORIZATION)
        && let Some(token) = extract::param(request.uri().query(), "token")
        && let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}"))
    {
        request.headers_mut().insert(header::AUTHORIZATION, value);
    }
    next.run(request).await
}

pub async fn connect(
    State(state): State<AppState>,
    _: Authorized<Reader>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = upgrade.map_err(|e| {
        ApiError::BadRequest(format!("not a WebSocket handshake: {}", e.body_text()))
    })?;
    let realtime = state.realtime.clone();
    Ok(upgrade
        .max_message_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| session(realtime, socket)))
}

#[derive(Deserialize)]
#[serde(
    tag = "type",
    rename_all = "lowercase",
    rename_all_fields = "camelCase"
)]
enum ClientMessage {
    Subscribe { guild_id: Value },
    Unsubscribe { guild_id: Value },
}

#[derive(Serialize)]
#[serde(
    tag = "type",
    rename_all = "lowercase",
    rename_all_fields = "camelCase"
)]
enum Reply<'a> {
    Subscribed { guild_id: &'a str },
    Unsubscribed { guild_id: &'a str },
}

/// One connection: its client's requests, its guilds' pushes, keepalive.
/// Everything it holds is dropped when it ends, however it ends: its guild
/// subscriptions and its count in the hub go with it.
async fn session(realtime: Realtime, mut socket: WebSocket) {
    let _connection = realtime.connect();
    let (outbox, mut pushes) = mpsc::channel::<Frame>(OUTBOX);
    let mut guilds: HashMap<GuildId, Forwarder> = HashMap::new();
    let mut ping = tokio::time::interval_at(Instant::now() + PING_INTERVAL, PING_INTERVAL);
    let mut last_heard = Instant::now();
    loop {
        let frame = tokio::select! {
            incoming = socket.recv() => {
                let Some(Ok(message)) = incoming else { break };
                last_heard = Instant::now();
                match message {
                    Message::Text(text) => {
                        request(&realtime, &mut guilds, &outbox, text.as_str()).await
                    }
                    Message::Binary(_) => error_frame("send JSON text frames"),
                    // Pings are answered by the socket itself.
                    Message::Ping(_) | Message::Pong(_) => continue,
                    Message::Close(_) => break,
                }
            }
            Some(frame) = pushes.recv() => frame,
            _ = ping.tick() => {
                if last_heard.elapsed() > 2 * PING_INTERVAL {
                    break;
                }
                if socket.send(Message::Ping(Bytes::new())).await.is_err() {
                    break;
                }
                continue;
            }
        };
        let Ok(text) = Utf8Bytes::try_from(frame) else {
            continue;
        };
        if socket.send(Message::Text(text)).await.is_err() {
            break;
        }
    }
}

/// Handles one client message; returns the reply.
async fn request(
    realtime: &Realtime,
    guilds: &mut HashMap<GuildId, Forwarder>,
    outbox: &mpsc::Sender<Frame>,
    text: &str,
) -> Frame {
    let message = match serde_json::from_str::<ClientMessage>(text) {
        Ok(message) => message,
        Err(e) => return error_frame(&format!("invalid message: {e}")),
    };
    let (ClientMessage::Subscribe { guild_id } | ClientMessage::Unsubscribe { guild_id }) =
        &message;
    let guild = match guild_id_of(guild_id) {
        Ok(guild) => guild,
        Err(e) => return error_frame(&e.to_string()),
    };
    let reply = match message {
        ClientMessage::Subscribe { .. } => {
            if !guilds.contains_key(&guild) {
                if guilds.len() >= MAX_GUILDS_PER_CONNECTION {
                    return error_frame(&format!(
                        "at most {MAX_GUILDS_PER_CONNECTION} guilds per connection"
                    ));
                }
                let feed = realtime.watch(&guild).await;
                guilds.insert(guild.clone(), Forwarder::start(feed, outbox.clone()));
            }
            Reply::Subscribed {
                guild_id: guild.as_str(),
            }
        }
        ClientMessage::Unsubscribe { .. } => {
            guilds.remove(&guild);
            Reply::Unsubscribed {
                guild_id: guild.as_str(),
            }
        }
    };
    Bytes::from(serde_json::to_vec(&reply).unwrap_or_default())
}

/// `guildId` as a string or a number, checked as the analytics routes do.
fn guild_id_of(value: &Value) -> Result<GuildId, ApiError> {
    let raw = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => {
            return Err(ApiError::BadRequest(
                "guildId must be a string or a number".into(),
            ));
        }
    };
    extract::guild_id(Some(&raw))
}

/// Copies one guild's pushes into the connection's outbox, until dropped
/// (which drops the guild's feed: the hub then forgets this subscriber).
struct Forwarder(JoinHandle<()>);

impl Forwarder {
    fn start(mut feed: Feed, outbox: mpsc::Sender<Frame>) -> Forwarder {
        Forwarder(tokio::spawn(async move {
            while let Some(frame) = feed.recv().await {
                if outbox.send(frame).await.is_err() {
                    break;
                }
            }
        }))
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.0.abort();
    }
}
