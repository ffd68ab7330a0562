//! A fake Discord gateway: a WebSocket server on loopback that speaks the
//! part of the gateway protocol a bot sees (JSON, no compression), and
//! builders for realistic dispatch payloads.
//!
//! The protocol, as Discord documents it:
//! - on connect the server sends HELLO (op 10, `heartbeat_interval`);
//! - the client sends IDENTIFY (op 2); the server answers READY (op 0,
//!   `t: READY`, sequence 1) with a new `session_id` and a
//!   `resume_gateway_url` pointing back at this server;
//! - dispatches (op 0) carry increasing sequence numbers (`s`);
//! - HEARTBEAT (op 1) is answered with HEARTBEAT ACK (op 11);
//! - RECONNECT (op 7) asks the client to reconnect and RESUME (op 6, with
//!   its session id and last sequence): the server replays the dispatches
//!   after that sequence, then RESUMED; an unknown session gets INVALID
//!   SESSION (op 9, `d: false`).
//!
//! Dispatched events are kept in the session's log, so none is lost when
//! the client is between connections: a resume replays them, and events
//! dispatched before the first READY are sent right after it. Everything
//! the client sends (identifies, resumes) is recorded for assertions.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// Options of a [`FakeGateway`].
#[derive(Debug, Clone)]
pub struct FakeGatewayOptions {
    /// The `heartbeat_interval` HELLO announces. Long by default, so that a
    /// test is not a heartbeat test unless it wants to be.
    pub heartbeat_interval: Duration,
    /// The guild ids READY lists (as unavailable, as Discord does; their
    /// GUILD_CREATE is the test's to dispatch).
    pub guilds: Vec<u64>,
}

impl Default for FakeGatewayOptions {
    fn default() -> Self {
        FakeGatewayOptions {
            heartbeat_interval: Duration::from_secs(41),
            guilds: Vec::new(),
        }
    }
}

/// What the fake gateway has seen, for tests to wait on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    pub connections: usize,
    pub identifies: usize,
    pub resumes: usize,
    pub heartbeats: usize,
    /// Dispatches the live connection has been given (replays included).
    pub sent: u64,
}

/// A running fake gateway; stops when dropped.
pub struct FakeGateway {
    address: SocketAddr,
    shared: Arc<Shared>,
    seen: watch::Receiver<Seen>,
    accept: tokio::task::JoinHandle<()>,
}

struct Shared {
    options: FakeGatewayOptions,
    url: String,
    state: Mutex<State>,
    seen: watch::Sender<Seen>,
}

#[derive(Default)]
struct State {
    session: Option<Session>,
    /// Dispatched while there was no session: sent after the next READY.
    pending: Vec<(String, Value)>,
    /// The connection that receives dispatches (identified or resumed).
    live: Option<Live>,
    next_connection: u64,
    next_session: u64,
    identifies: Vec<Value>,
    resumes: Vec<Value>,
}

struct Session {
    id: String,
    /// Sequence of the last dispatch (READY is 1).
    sequence: u64,
    /// Every dispatch after READY, for replay on resume.
    log: Vec<(u64, String)>,
}

struct Live {
    connection: u64,
    out: mpsc::UnboundedSender<Outgoing>,
}

enum Outgoing {
    Text(String),
    Close(u16, String),
}

impl FakeGateway {
    pub async fn start() -> FakeGateway {
        FakeGateway::start_with(FakeGatewayOptions::default()).await
    }

    pub async fn start_with(options: FakeGatewayOptions) -> FakeGateway {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake gateway");
        let address = listener.local_addr().expect("local address");
        let (seen_tx, seen) = watch::channel(Seen::default());
        let shared = Arc::new(Shared {
            options,
            url: format!("ws://{address}"),
            state: Mutex::new(State::default()),
            seen: seen_tx,
        });
        let accept = tokio::spawn({
            let shared = shared.clone();
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(serve_connection(stream, shared.clone()));
                }
            }
        });
        FakeGateway {
            address,
            shared,
            seen,
            accept,
        }
    }

    /// `ws://127.0.0.1:PORT`, for `DISCORD_GATEWAY_URL`.
    pub fn url(&self) -> String {
        self.shared.url.clone()
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Sends a dispatch (op 0) of type `t` with data `d` to the client, with
    /// the session's next sequence number; kept for replay. Without a
    /// session yet, it is sent after the next READY.
    pub fn dispatch(&self, t: &str, d: Value) {
        let mut state = self.shared.lock();
        let Some(session) = state.session.as_mut() else {
            state.pending.push((t.to_string(), d));
            return;
        };
        let text = dispatch_frame(session, t, &d);
        if let Some(live) = &state.live {
            let _ = live.out.send(Outgoing::Text(text));
            self.shared.seen.send_modify(|s| s.sent += 1);
        }
    }

    /// Many dispatches, in order (the throughput benchmark's burst).
    pub fn dispatch_all(&self, events: impl IntoIterator<Item = (&'static str, Value)>) {
        for (t, d) in events {
            self.dispatch(t, d);
        }
    }

    /// RECONNECT (op 7): the client should resume on a new connection.
    pub fn reconnect(&self) {
        self.send_to_live(json!({ "op": 7, "d": null }).to_string());
    }

    /// INVALID SESSION (op 9). Not resumable: the session is forgotten,
    /// the client must identify again.
    pub fn invalidate_session(&self, resumable: bool) {
        if !resumable {
            self.shared.lock().session = None;
        }
        self.send_to_live(json!({ "op": 9, "d": resumable }).to_string());
    }

    /// Closes the live connection with `code` (e.g. 4014, disallowed
    /// intents).
    pub fn close(&self, code: u16, reason: &str) {
        if let Some(live) = self.shared.lock().live.take() {
            let _ = live.out.send(Outgoing::Close(code, reason.to_string()));
        }
    }

    fn send_to_live(&self, text: String) {
        // The connection stays open until the client closes it, but gets
        // no more dispatches: they wait in the log for the resume.
        if let Some(live) = self.shared.lock().live.take() {
            let _ = live.out.send(Outgoing::Text(text));
        }
    }

    /// The IDENTIFY payloads (`d`) received, in order.
    pub fn identifies(&self) -> Vec<Value> {
        self.shared.lock().identifies.clone()
    }

    /// The RESUME payloads (`d`) received, in order.
    pub fn resumes(&self) -> Vec<Value> {
        self.shared.lock().resumes.clone()
    }

    /// The current session's last sequence number (0 without a session).
    pub fn sequence(&self) -> u64 {
        self.shared
            .lock()
            .session
            .as_ref()
            .map_or(0, |s| s.sequence)
    }

    pub fn seen(&self) -> Seen {
        self.seen.borrow().clone()
    }

    /// Waits until `condition` holds of what the gateway has seen, at most
    /// `timeout`; returns whether it held.
    pub async fn wait_for(&self, timeout: Duration, condition: impl Fn(&Seen) -> bool) -> bool {
        let mut seen = self.seen.clone();
        tokio::time::timeout(timeout, seen.wait_for(|s| condition(s)))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

impl Drop for FakeGateway {
    fn drop(&mut self) {
        self.accept.abort();
        if let Some(live) = self.shared.lock().live.take() {
            let _ = live
                .out
                .send(Outgoing::Close(1001, "fake gateway stopped".into()));
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not hide the state from the others.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn dispatch_frame(session: &mut Session, t: &str, d: &Value) -> String {
    session.sequence += 1;
    let text = json!({ "op": 0, "s": session.sequence, "t": t, "d": d }).to_string();
    session.log.push((session.sequence, text.clone()));
    text
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (mut sink, mut source) = ws.split();
    let (out, mut outgoing) = mpsc::unbounded_channel();
    let connection = {
        let mut state = shared.lock();
        state.next_connection += 1;
        state.next_connection
    };
    shared.seen.send_modify(|s| s.connections += 1);
    let hello = json!({
        "op": 10,
        "d": { "heartbeat_interval": shared.options.heartbeat_interval.as_millis() as u64 },
    });
    if sink.send(Message::text(hello.to_string())).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            incoming = source.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else { continue };
                    receive(&shared, connection, &out, &frame);
                }
                Some(Ok(Message::Close(_))) => {
                    // Sends the close answer tungstenite has queued.
                    let _ = sink.flush().await;
                    break;
                }
                Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            next = outgoing.recv() => match next {
                Some(Outgoing::Text(text)) => {
                    if sink.send(Message::text(text)).await.is_err() {
                        break;
                    }
                }
                Some(Outgoing::Close(code, reason)) => {
                    let frame = CloseFrame { code: CloseCode::from(code), reason: reason.into() };
                    let _ = sink.send(Message::Close(Some(frame))).await;
                    // Read until the client's close answer ends the stream.
                    while let Some(Ok(_)) = source.next().await {}
                    break;
                }
                None => break,
            },
        }
    }
    let mut state = shared.lock();
    if state
        .live
        .as_ref()
        .is_some_and(|l| l.connection == connection)
    {
        state.live = None;
    }
}

/// Answers one frame from the client.
fn receive(shared: &Shared, connection: u64, out: &mpsc::UnboundedSender<Outgoing>, frame: &Value) {
    let d = frame.get("d").cloned().unwrap_or(Value::Null);
    match frame.get("op").and_then(Value::as_u64) {
        Some(1) => {
            let _ = out.send(Outgoing::Text(json!({ "op": 11 }).to_string()));
            shared.seen.send_modify(|s| s.heartbeats += 1);
        }
        Some(2) => {
            let mut state = shared.lock();
            state.identifies.push(d.clone());
            state.next_session += 1;
            let mut session = Session {
                id: format!("fake-session-{}", state.next_session),
                sequence: 1,
                log: Vec::new(),
            };
            let ready = ready(&session.id, &shared.url, &shared.options.guilds, &d);
            let _ = out.send(Outgoing::Text(
                json!({ "op": 0, "s": 1, "t": "READY", "d": ready }).to_string(),
            ));
            let pending = std::mem::take(&mut state.pending);
            let sent = pending.len() as u64;
            for (t, d) in pending {
                let _ = out.send(Outgoing::Text(dispatch_frame(&mut session, &t, &d)));
            }
            state.session = Some(session);
            state.live = Some(Live {
                connection,
                out: out.clone(),
            });
            drop(state);
            shared.seen.send_modify(|s| {
                s.identifies += 1;
                s.sent += sent;
            });
        }
        Some(6) => {
            let mut state = shared.lock();
            state.resumes.push(d.clone());
            let after = d.get("seq").and_then(Value::as_u64).unwrap_or(0);
            let wanted = d.get("session_id").and_then(Value::as_str);
            let State { session, live, .. } = &mut *state;
            match session.as_mut().filter(|s| Some(s.id.as_str()) == wanted) {
                Some(session) => {
                    let mut sent = 0;
                    for (_, text) in session.log.iter().filter(|(s, _)| *s > after) {
                        let _ = out.send(Outgoing::Text(text.clone()));
                        sent += 1;
                    }
                    let resumed =
                        json!({ "op": 0, "s": session.sequence, "t": "RESUMED", "d": {} });
                    let _ = out.send(Outgoing::Text(resumed.to_string()));
                    *live = Some(Live {
                        connection,
                        out: out.clone(),
                    });
                    drop(state);
                    shared.seen.send_modify(|s| {
                        s.resumes += 1;
                        s.sent += sent;
                    });
                }
                None => {
                    drop(state);
                    let _ = out.send(Outgoing::Text(json!({ "op": 9, "d": false }).to_string()));
                }
            }
        }
        _ => {}
    }
}

/// READY's data: the fields Discord sends (twilight-model requires
/// `v`, `user`, `guilds`, `session_id`, `resume_gateway_url` and
/// `application`).
fn ready(session_id: &str, url: &str, guilds: &[u64], identify: &Value) -> Value {
    json!({
        "v": 10,
        "user": {
            "id": "100000000000000001",
            "username": "spywatcher-test-bot",
            "discriminator": "0",
            "global_name": null,
            "avatar": null,
            "bot": true,
            "mfa_enabled": false,
            "verified": true,
            "flags": 0,
        },
        "guilds": guilds.iter().map(|g| json!({ "id": g.to_string(), "unavailable": true })).collect::<Vec<_>>(),
        "session_id": session_id,
        "resume_gateway_url": url,
        "shard": identify.get("shard").cloned().unwrap_or(json!([0, 1])),
        "application": { "id": "100000000000000001", "flags": 0 },
    })
}

/// Builders for the `d` of the dispatches spywatcher reads, in the shapes
/// Discord documents, with every field twilight-model requires. Ids are
/// numbers here and strings on the wire, as Discord sends them.
pub mod payload {
    use serde_json::{Value, json};

    /// A user object (a person unless `bot`).
    pub fn user(id: u64, username: &str) -> Value {
        json!({
            "id": id.to_string(),
            "username": username,
            "discriminator": "0",
            "global_name": username,
            "avatar": null,
            "public_flags": 0,
        })
    }

    /// A bot's user object.
    pub fn bot(id: u64, username: &str) -> Value {
        let mut user = user(id, username);
        user["bot"] = json!(true);
        user
    }

    /// A guild member object with its user.
    pub fn member(user: Value, roles: &[u64], joined_at: &str) -> Value {
        json!({
            "user": user,
            "nick": null,
            "avatar": null,
            "roles": ids(roles),
            "joined_at": joined_at,
            "premium_since": null,
            "deaf": false,
            "mute": false,
            "flags": 0,
            "pending": false,
            "communication_disabled_until": null,
        })
    }

    /// A guild text channel.
    pub fn channel(guild: u64, id: u64, name: &str) -> Value {
        json!({
            "id": id.to_string(),
            "type": 0,
            "guild_id": guild.to_string(),
            "name": name,
            "position": 0,
            "permission_overwrites": [],
            "nsfw": false,
            "topic": null,
            "last_message_id": null,
            "rate_limit_per_user": 0,
            "parent_id": null,
            "flags": 0,
        })
    }

    /// A role object.
    pub fn role(id: u64, name: &str) -> Value {
        json!({
            "id": id.to_string(),
            "name": name,
            "color": 0,
            "colors": { "primary_color": 0, "secondary_color": null, "tertiary_color": null },
            "hoist": false,
            "icon": null,
            "unicode_emoji": null,
            "position": 1,
            "permissions": "1024",
            "managed": false,
            "mentionable": false,
            "flags": 0,
        })
    }

    /// GUILD_CREATE of an available guild with these channels, roles and
    /// members (as built by [`channel`], [`role`], [`member`]).
    pub fn guild_create(
        guild: u64,
        name: &str,
        channels: Vec<Value>,
        roles: Vec<Value>,
        members: Vec<Value>,
    ) -> Value {
        json!({
            "id": guild.to_string(),
            "name": name,
            "icon": null,
            "splash": null,
            "discovery_splash": null,
            "owner_id": "100000000000000002",
            "afk_channel_id": null,
            "afk_timeout": 300,
            "widget_enabled": false,
            "verification_level": 1,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "roles": roles,
            "emojis": [],
            "features": [],
            "mfa_level": 0,
            "application_id": null,
            "system_channel_id": null,
            "system_channel_flags": 0,
            "rules_channel_id": null,
            "max_members": 500000,
            "vanity_url_code": null,
            "description": null,
            "banner": null,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": "en-US",
            "public_updates_channel_id": null,
            "nsfw_level": 0,
            "premium_progress_bar_enabled": false,
            "safety_alerts_channel_id": null,
            "stickers": [],
            "joined_at": "2026-01-01T00:00:00.000000+00:00",
            "large": false,
            "unavailable": false,
            "member_count": members.len(),
            "voice_states": [],
            "members": members,
            "channels": channels,
            "threads": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
        })
    }

    /// MESSAGE_CREATE in a guild channel by `author` (a [`user`] or
    /// [`bot`]), at `timestamp` (ISO 8601).
    pub fn message_create(
        id: u64,
        guild: u64,
        channel: u64,
        author: Value,
        content: &str,
        timestamp: &str,
    ) -> Value {
        json!({
            "id": id.to_string(),
            "channel_id": channel.to_string(),
            "guild_id": guild.to_string(),
            "author": author,
            "member": {
                "nick": null,
                "avatar": null,
                "roles": [],
                "joined_at": "2026-01-01T00:00:00.000000+00:00",
                "premium_since": null,
                "deaf": false,
                "mute": false,
                "flags": 0,
                "pending": false,
                "communication_disabled_until": null,
            },
            "content": content,
            "timestamp": timestamp,
            "edited_timestamp": null,
            "tts": false,
            "mention_everyone": false,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "pinned": false,
            "type": 0,
            "flags": 0,
            "components": [],
        })
    }

    /// MESSAGE_CREATE posted by a webhook (its author is the webhook's
    /// pseudo-user).
    pub fn webhook_message_create(
        id: u64,
        guild: u64,
        channel: u64,
        webhook: u64,
        content: &str,
        timestamp: &str,
    ) -> Value {
        let mut message = message_create(
            id,
            guild,
            channel,
            user(webhook, "Captain Hook"),
            content,
            timestamp,
        );
        message["webhook_id"] = json!(webhook.to_string());
        message.as_object_mut().map(|m| m.remove("member"));
        message
    }

    /// MESSAGE_CREATE in a DM: no `guild_id`, no `member`.
    pub fn dm_message_create(
        id: u64,
        channel: u64,
        author: Value,
        content: &str,
        timestamp: &str,
    ) -> Value {
        let mut message = message_create(id, 0, channel, author, content, timestamp);
        let object = message.as_object_mut().expect("an object");
        object.remove("guild_id");
        object.remove("member");
        message
    }

    /// TYPING_START in a guild; `member` (a [`member`]) as Discord sends
    /// it, or none. `timestamp` in Unix seconds.
    pub fn typing_start(
        guild: u64,
        channel: u64,
        user: u64,
        member: Option<Value>,
        timestamp: u64,
    ) -> Value {
        let mut typing = json!({
            "channel_id": channel.to_string(),
            "guild_id": guild.to_string(),
            "user_id": user.to_string(),
            "timestamp": timestamp,
        });
        if let Some(member) = member {
            typing["member"] = member;
        }
        typing
    }

    /// TYPING_START in a DM.
    pub fn dm_typing_start(channel: u64, user: u64, timestamp: u64) -> Value {
        json!({ "channel_id": channel.to_string(), "user_id": user.to_string(), "timestamp": timestamp })
    }

    /// PRESENCE_UPDATE. `user` is a [`user`], or `{"id": ...}` alone (see
    /// [`user_id_only`]); `clients` are the `client_status` keys present,
    /// each with `status`.
    pub fn presence_update(guild: u64, user: Value, status: &str, clients: &[&str]) -> Value {
        let client_status: serde_json::Map<String, Value> = clients
            .iter()
            .map(|c| (c.to_string(), json!(status)))
            .collect();
        json!({
            "user": user,
            "guild_id": guild.to_string(),
            "status": status,
            "activities": [],
            "client_status": client_status,
        })
    }

    /// The partial user of most presence updates: the id alone.
    pub fn user_id_only(id: u64) -> Value {
        json!({ "id": id.to_string() })
    }

    /// GUILD_MEMBER_UPDATE: the member's whole role list.
    pub fn guild_member_update(guild: u64, user: Value, roles: &[u64]) -> Value {
        json!({
            "guild_id": guild.to_string(),
            "roles": ids(roles),
            "user": user,
            "nick": null,
            "avatar": null,
            "joined_at": "2026-01-01T00:00:00.000000+00:00",
            "premium_since": null,
            "deaf": false,
            "mute": false,
            "pending": false,
            "communication_disabled_until": null,
            "flags": 0,
        })
    }

    /// GUILD_MEMBER_ADD: a [`member`] with its `guild_id`.
    pub fn guild_member_add(guild: u64, member: Value) -> Value {
        let mut added = member;
        added["guild_id"] = json!(guild.to_string());
        added
    }

    /// GUILD_MEMBER_REMOVE.
    pub fn guild_member_remove(guild: u64, user: Value) -> Value {
        json!({ "guild_id": guild.to_string(), "user": user })
    }

    /// GUILD_ROLE_CREATE and GUILD_ROLE_UPDATE.
    pub fn guild_role(guild: u64, role: Value) -> Value {
        json!({ "guild_id": guild.to_string(), "role": role })
    }

    /// GUILD_ROLE_DELETE.
    pub fn guild_role_delete(guild: u64, role: u64) -> Value {
        json!({ "guild_id": guild.to_string(), "role_id": role.to_string() })
    }

    fn ids(ids: &[u64]) -> Vec<String> {
        ids.iter().map(u64::to_string).collect()
    }
}
