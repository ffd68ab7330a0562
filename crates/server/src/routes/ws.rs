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
//! `guildId` is a string of 1-20 digits (a JSON number is refused: ids are
//! strings everywhere). A message it cannot take gets
//! `{"type":"error","message"}`; the connection stays open. A message or
//! frame over 16 KiB is refused as its header arrives (never buffered): the
//! connection is closed with code 1009. The server pings every 30 s and
//! closes a connection it has not heard from in two intervals.
//!
//! # Caps (refused before the upgrade, JSON bodies)
//! - the handshake goes through the rate limiter of the analytics routes
//!   (429 with `Retry-After`);
//! - `WS_MAX_CONNECTIONS` per instance: 503 `too_many_connections` with
//!   `Retry-After` (another instance, or this one later, may take it);
//! - `WS_MAX_CONNECTIONS_PER_TOKEN`: 429 `too_many_connections` with
//!   `Retry-After`;
//! - `WS_MAX_SUBSCRIPTIONS` guilds per connection: an error frame.
//!
//! Each refusal is counted in `spywatcher_ws_refused_total{reason}`
//! (`handshake_rate`, `connections`, `token_connections`, `subscriptions`,
//! `message_size`).

use std::time::Duration;

use axum::Json;
use axum::extract::ws::{
    CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code,
    rejection::WebSocketUpgradeRejection,
};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use spywatcher_analytics::GuildId;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite;

use super::extract;
use crate::auth::{Authorized, Reader};
use crate::error::ApiError;
use crate::rate_limit::ClientIp;
use crate::service::realtime::{Connection, Frame, Refused, count_refusal, error_frame};
use crate::state::AppState;

const PING_INTERVAL: Duration = Duration::from_secs(30);
/// Client messages are small: anything larger is refused as its frame
/// header arrives.
const MAX_CLIENT_MESSAGE: usize = 16 * 1024;
/// Read buffer of a socket, allocated (and zeroed) per connection; the
/// default, 128 KiB, would be most of an idle connection's memory. Client
/// messages are a few dozen bytes.
const READ_BUFFER: usize = 4 * 1024;
/// What a client refused for a connection cap is told to wait.
const RETRY_AFTER_SECONDS: u64 = 5;

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
    auth: Authorized<Reader>,
    ip: ClientIp,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, Refusal> {
    let admitted = state.rate_limiter.admit(auth.caller, ip).await;
    if admitted.is_err() {
        count_refusal("handshake_rate");
    }
    admitted?;
    let upgrade = upgrade.map_err(|e| {
        ApiError::BadRequest(format!("not a WebSocket handshake: {}", e.body_text()))
    })?;
    let connection = state.realtime.connect(auth.caller.as_str())?;
    Ok(upgrade
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| session(connection, socket)))
}

/// Why a handshake is refused: any API error, or a connection cap.
pub enum Refusal {
    Api(ApiError),
    Cap(Refused),
}

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Self {
        Refusal::Api(e)
    }
}

impl From<Refused> for Refusal {
    fn from(refused: Refused) -> Self {
        Refusal::Cap(refused)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let refused = match self {
            Refusal::Api(e) => return e.into_response(),
            Refusal::Cap(refused) => refused,
        };
        let status = match refused {
            // The instance is full, not the client at fault.
            Refused::Connections(_) => StatusCode::SERVICE_UNAVAILABLE,
            Refused::TokenConnections(_) | Refused::Subscriptions(_) => {
                StatusCode::TOO_MANY_REQUESTS
            }
        };
        let body = json!({ "error": "too_many_connections", "message": refused.to_string() });
        let mut response = (status, Json(body)).into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        response
    }
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
/// subscriptions and its count in the hub go with the [`Connection`].
async fn session(mut connection: Connection, mut socket: WebSocket) {
    let mut ping = tokio::time::interval_at(Instant::now() + PING_INTERVAL, PING_INTERVAL);
    let mut last_heard = Instant::now();
    loop {
        let frame = tokio::select! {
            incoming = socket.recv() => {
                let message = match incoming {
                    Some(Ok(message)) => message,
                    Some(Err(e)) if too_large(&e) => {
                        count_refusal("message_size");
                        let close = CloseFrame {
                            code: close_code::SIZE,
                            reason: Utf8Bytes::from_static("message too big"),
                        };
                        let _ = socket.send(Message::Close(Some(close))).await;
                        break;
                    }
                    _ => break,
                };
                last_heard = Instant::now();
                match message {
                    Message::Text(text) => request(&mut connection, text.as_str()).await,
                    Message::Binary(_) => error_frame("send JSON text frames"),
                    // Pings are answered by the socket itself.
                    Message::Ping(_) | Message::Pong(_) => continue,
                    Message::Close(_) => break,
                }
            }
            Some(frame) = connection.recv() => frame,
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

/// Whether the socket refused a message or frame over the size limit.
fn too_large(e: &axum::Error) -> bool {
    std::error::Error::source(e)
        .and_then(|source| source.downcast_ref::<tungstenite::Error>())
        .is_some_and(|e| matches!(e, tungstenite::Error::Capacity(_)))
}

/// Handles one client message; returns the reply.
async fn request(connection: &mut Connection, text: &str) -> Frame {
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
            if let Err(refused) = connection.subscribe(&guild).await {
                return error_frame(&refused.to_string());
            }
            Reply::Subscribed {
                guild_id: guild.as_str(),
            }
        }
        ClientMessage::Unsubscribe { .. } => {
            connection.unsubscribe(&guild);
            Reply::Unsubscribed {
                guild_id: guild.as_str(),
            }
        }
    };
    Bytes::from(serde_json::to_vec(&reply).unwrap_or_default())
}

/// `guildId`, a JSON string checked as the analytics routes check it.
fn guild_id_of(value: &Value) -> Result<GuildId, ApiError> {
    match value {
        Value::String(raw) => extract::guild_id(Some(raw)),
        Value::Number(n) => Err(ApiError::BadRequest(format!(
            "guildId must be a string (\"{n}\"), not a number: ids are strings"
        ))),
        _ => Err(ApiError::BadRequest(
            "guildId must be a string of 1-20 digits".into(),
        )),
    }
}
