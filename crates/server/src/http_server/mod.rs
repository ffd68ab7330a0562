//! The accept loop: every connection is served by hyper's HTTP/1.1
//! connection with a header read timeout, under a cap on open connections,
//! and shut down gracefully.
//!
//! Why not `axum::serve`: it exposes neither hyper's header read timeout nor
//! a bound on connections, so a client that sends nothing, or a header a
//! byte a second, held its descriptor for good, and a few hundred of them
//! ran the process out of descriptors (`accept: Too many open files`).
//!
//! Why HTTP/1.1 only: hyper-util's auto (HTTP/1 or 2) connection first waits
//! for the client's first bytes to tell the versions apart, with no timeout
//! at all, and hyper's HTTP/2 has no header or idle timeout either. HTTP/2
//! belongs to the TLS-terminating proxy in front.
//!
//! Above the router, per request: the body must arrive within
//! `HTTP_BODY_TIMEOUT_MS` of its headers (tower-http's body deadline; the
//! body extractor answers 408), and the answer must be ready within
//! `HTTP_REQUEST_TIMEOUT_MS` (tower-http's timeout; 503). A WebSocket's
//! handshake is one request; its life after the upgrade is not bounded.
//! They sit here rather than on the router, where each layer would box a
//! future per request.
//!
//! At the cap, the connection that has waited longest for a request head
//! is shed to make room (`shedding.rs`).
//!
//! hyper starts the header timer whenever the connection waits for a
//! request head: right after accept, and again after each response on a
//! kept-alive connection. So one timeout bounds a silent new connection, a
//! slowly sent head, and an idle keep-alive connection alike.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tower::{Service, ServiceBuilder};
use tower_http::timeout::{RequestBodyDeadlineLayer, TimeoutLayer};
use tracing::{debug, info, warn};

mod shedding;

use self::shedding::{Connections, Registered};
use crate::config::HttpLimits;
use crate::error::ApiError;

/// Descriptors kept out of the connection cap for everything else the
/// process opens: the database pool (16 at most), Redis connections, the
/// SQLite files, the listener.
const DESCRIPTOR_RESERVE: u64 = 64;

/// How long a connection may wait for its request head before it can be
/// shed at the cap (at most a quarter of the header timeout): far longer
/// than a real client takes to send its head once connected.
const SHED_GRACE: Duration = Duration::from_secs(1);

/// Pause after an accept error that is not the peer's (no descriptor left,
/// no memory): retrying at once would spin a core on the same error.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `app` on `listener` until `shutdown` resolves; then stops
/// accepting and waits for the connections' requests in flight.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &HttpLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let max_connections = limits
        .max_connections
        .unwrap_or_else(default_max_connections)
        .min(Semaphore::MAX_PERMITS);
    info!(
        max_connections,
        header_timeout_ms = limits.header_timeout.as_millis() as u64,
        "accepting HTTP/1.1 connections"
    );
    let slots = Arc::new(Semaphore::new(max_connections));
    let connections = Connections::new();
    let shed_grace = SHED_GRACE.min(limits.header_timeout / 4);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let mut make_service = app.into_make_service_with_connect_info::<SocketAddr>();
    // hyper-util's `GracefulShutdown` does not take an HTTP/1 connection
    // with upgrades: the same with two channels, as `axum::serve` does. One
    // tells connections to finish; the other is held by every connection
    // and closes when the last one ends.
    let (stop_tx, stop_rx) = watch::channel(());
    let (ended_tx, ended_rx) = watch::channel(());
    tokio::pin!(shutdown);
    loop {
        // A slot before the accept: new connections wait in the kernel's
        // backlog (served as slots free) instead of being accepted only to
        // be closed. At the cap, one more is accepted (the descriptor
        // reserve has room for it) and the connection that has waited
        // longest for a request head is shed to make room for it.
        let (slot, accepted) = match slots.clone().try_acquire_owned() {
            Ok(slot) => (slot, None),
            Err(_) => tokio::select! {
                slot = slots.clone().acquire_owned() => {
                    (slot.expect("the semaphore is never closed"), None)
                }
                accepted = accept(&listener) => tokio::select! {
                    slot = room_for_one_more(&slots, &connections, shed_grace) => (slot, Some(accepted)),
                    () = &mut shutdown => break,
                },
                () = &mut shutdown => break,
            },
        };
        let accepted = match accepted {
            Some(accepted) => accepted,
            None => tokio::select! {
                accepted = accept(&listener) => accepted,
                () = &mut shutdown => break,
            },
        };
        let Some((stream, peer)) = accepted else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let Ok(app) = make_service.call(peer).await;
        let request_timeout = limits.request_timeout;
        let registered = connections.open();
        let activity = registered.activity.clone();
        let (began, answered) = (activity.clone(), activity.clone());
        let service = ServiceBuilder::new()
            .map_request(move |request| {
                began.busy();
                request
            })
            .map_response(move |response: Response| {
                answered.answered(response.status());
                response
            })
            .map_response(move |response| timeout_as_json(response, request_timeout))
            .layer(TimeoutLayer::with_status_code(
                StatusCode::SERVICE_UNAVAILABLE,
                request_timeout,
            ))
            .layer(RequestBodyDeadlineLayer::new(limits.body_timeout))
            .service(app);
        let io = TokioIo::new(Counted {
            stream,
            _slot: slot,
            _registered: registered,
        });
        let connection = http
            .serve_connection(io, TowerToHyperService::new(service))
            .with_upgrades();
        let mut stop = stop_rx.clone();
        let ended = ended_rx.clone();
        tokio::spawn(async move {
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = stop.changed() => {
                    // Requests in flight finish; an idle connection closes.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
                // Waiting for a head, with every slot taken: dropped.
                () = activity.shed() => Ok(()),
            };
            if let Err(e) = result {
                debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(ended);
        });
    }
    drop(listener);
    let _ = stop_tx.send(());
    drop(ended_rx);
    ended_tx.closed().await;
    Ok(())
}

/// A slot for a connection accepted past the cap: the connection that has
/// waited longest for a request head (at least `grace`) is shed, or else
/// the first slot to free itself is taken.
async fn room_for_one_more(
    slots: &Arc<Semaphore>,
    connections: &Connections,
    grace: Duration,
) -> OwnedSemaphorePermit {
    loop {
        connections.shed_longest_waiting(grace);
        tokio::select! {
            slot = slots.clone().acquire_owned() => return slot.expect("the semaphore is never closed"),
            () = tokio::time::sleep(grace / 4) => {}
        }
    }
}

/// The next connection; `None` after an accept error (paused after, when
/// the error is not about the peer: retrying at once would spin).
async fn accept(listener: &TcpListener) -> Option<(TcpStream, SocketAddr)> {
    match listener.accept().await {
        Ok(accepted) => Some(accepted),
        Err(e) if is_peer_error(&e) => None,
        Err(e) => {
            warn!(error = %e, "accept error; pausing before the next accept");
            tokio::time::sleep(ACCEPT_BACKOFF).await;
            None
        }
    }
}

/// tower-http's timeout answers with an empty body; SPEC 4 wants JSON.
fn timeout_as_json(response: Response, timeout: Duration) -> Response {
    let from_the_timeout = response.status() == StatusCode::SERVICE_UNAVAILABLE
        && !response.headers().contains_key(header::CONTENT_TYPE);
    if from_the_timeout {
        ApiError::Timeout(timeout.as_millis() as u64).into_response()
    } else {
        response
    }
}

/// The connection cap when `HTTP_MAX_CONNECTIONS` is unset: the descriptor
/// limit (its soft value raised to the hard one where allowed) less a
/// reserve for the rest of the process.
pub fn default_max_connections() -> usize {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            warn!(error = %e, "cannot read the descriptor limit; assuming 1024");
            1024
        }
    };
    let cap = limit.saturating_sub(DESCRIPTOR_RESERVE).max(16);
    usize::try_from(cap)
        .unwrap_or(usize::MAX)
        .min(Semaphore::MAX_PERMITS)
}

/// Errors about one connection that went away before it was accepted: the
/// next accept may well succeed at once.
fn is_peer_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    )
}

/// A connection holding its slot under the cap, and its place among the
/// connections that may be shed. Both go with the socket, not with hyper's
/// connection: after a WebSocket upgrade hyper lets go of the connection,
/// but the socket (and its descriptor) lives on.
struct Counted {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    _registered: Registered,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
