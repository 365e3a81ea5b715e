//! WebSocket adapter: accepts clients and runs one task per connection.
//!
//! Each connection is a single task with one `select!` over: shutdown, a close
//! request from the registry (kick, slow consumer), one timer (the earlier of
//! the heartbeat deadline and the next ping), and socket I/O. Socket I/O is a
//! hand-written poll (`poll_io`) that moves queued pushes into the socket and
//! reads the next frame in the same poll, and never waits on a write: a peer
//! that stops reading leaves its bytes in tungstenite's bounded buffer while
//! the task keeps watching its deadline and close requests (awaiting a
//! `flush()` inside the loop would park it there, the tokio pitfall DESIGN.md
//! warns about).
//!
//! The heartbeat timer is re-armed lazily: inbound frames only record an
//! instant, and when the timer fires it compares that instant with the
//! deadline and either closes the connection or sleeps again. Idle
//! connections therefore cost no work per second, and busy ones no timer
//! operation per frame.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use pushd_proto::admin::MAX_CLOSE_REASON;
use pushd_proto::uid::normalize_uid;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{sleep_until, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes, error::CapacityError};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::Daemon;
use crate::admission::Refusal;
use crate::config::CLOSE_TIMEOUT;
use crate::conn::{CloseRequest, ConnHandle};
use crate::registry::BindError;
use crate::stats;

/// Close codes pushd sends; documented for client authors in the README.
pub mod close_code {
    /// Kicked by an operator; do not reconnect.
    pub const KICKED: u16 = 4000;
    /// No activity for longer than the heartbeat; reconnect.
    pub const HEARTBEAT_TIMEOUT: u16 = 4001;
    /// The connection did not read its pushes fast enough; reconnect.
    pub const SLOW_CONSUMER: u16 = 4002;
    /// The uid is banned (`pushctl kick --ban`); do not reconnect.
    pub const BANNED: u16 = 4003;
    /// A newer connection of the same uid took this one's place
    /// (`--max-connections-per-uid` with `close-oldest`); do not reconnect.
    pub const REPLACED: u16 = 4004;
    /// The server is shutting down; reconnect with backoff.
    pub const GOING_AWAY: u16 = 1001;
    /// Invalid uid; do not reconnect.
    pub const POLICY: u16 = 1008;
    /// Inbound message over the size limit; do not resend it.
    pub const TOO_BIG: u16 = 1009;
    /// The client broke the WebSocket protocol (e.g. an unmasked frame).
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A text frame that is not valid UTF-8.
    pub const INVALID_DATA: u16 = 1007;
}

/// Pushes written to the socket in one go before reads get a turn.
const WRITE_BATCH: usize = 64;

/// Bytes of tungstenite's read buffer per connection, allocated up front.
/// Clients send a uid and small heartbeats, so a small buffer is enough;
/// tungstenite's default (128 KiB) would cost 2.4 GiB at 19,000 connections.
/// 1 KiB → 256 bytes (with the uid shared with the registry) took RSS per
/// idle connection from 3,216 to 2,420 bytes, and 256 → 128 took it from
/// about 2,580 back to about 2,460 after the hardening state was added
/// (docs/PERFORMANCE.md). Larger frames still arrive whole: the buffer grows
/// for a frame whose header announces more (a JWT of ~200 bytes, say), up
/// to `--max-message-size`.
const READ_BUFFER: usize = 128;

/// Bytes of pushes collected before tungstenite writes to the socket; a flush
/// follows every batch anyway, so this only merges small frames.
const WRITE_BUFFER: usize = 16 * 1024;

/// Accepts WebSocket clients until shutdown.
pub(crate) async fn serve(
    listener: TcpListener,
    daemon: Arc<Daemon>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    crate::accept::serve_tcp(
        listener,
        "WebSocket",
        &shutdown,
        &tracker,
        &daemon.registry.counters.connections_refused,
        |stream, peer| connection(stream, peer, daemon.clone(), shutdown.clone()),
    )
    .await;
}

/// tungstenite settings, each chosen for many mostly idle connections.
fn ws_config(max_message_size: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        // Every frame waits for `poll_ready`, so the buffer never holds more
        // than WRITE_BUFFER plus one frame; this is only a safety net.
        .max_write_buffer_size(WRITE_BUFFER + max_message_size + 1024)
        .max_message_size(Some(max_message_size))
        .max_frame_size(Some(max_message_size))
}

/// One client, from handshake to the end of its close.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    daemon: Arc<Daemon>,
    shutdown: CancellationToken,
) {
    let admitted = daemon.admission.admit(peer.ip());
    if let Err(Refusal::Capacity) = admitted {
        let limit = daemon.admission.max_connections;
        let mut warning = daemon.at_capacity.lock().unwrap_or_else(|p| p.into_inner());
        warning.warn(&format_args!(
            "at the limit of {limit} WebSocket connections"
        ));
    }
    // Pushes are small and latency-bound; Nagle would hold them back.
    let _ = stream.set_nodelay(true);
    let config = ws_config(daemon.config.max_message_size);
    let counters = &daemon.registry.counters;
    // With --auth token, a token may come in the URL instead of the first message.
    let mut url_token = None;
    // A refused connection still gets its handshake, answered with an HTTP
    // status (see `admission`), so the client learns why.
    #[allow(clippy::result_large_err)] // the callback's signature is tungstenite's
    let verdict = |request: &Request, response: Response| {
        url_token = token_in_query(request.uri().query());
        let verdict = daemon.admission.verdict(&admitted, request, counters);
        verdict.map(|()| response).map_err(Refusal::response)
    };
    let handshake = tokio_tungstenite::accept_hdr_async_with_config(stream, verdict, Some(config));
    // Boxed: the handshake's state is large and short-lived; inline, it would
    // size this task's future (and so every idle connection) for its whole life.
    let handshake = Box::pin(async {
        tokio::select! {
            _ = shutdown.cancelled() => None,
            ws = timeout(daemon.config.handshake_timeout, handshake) => Some(ws),
        }
    });
    let ws = match handshake.await {
        None => return,
        Some(Ok(Ok(ws))) => ws,
        // Refused by `verdict`, already counted.
        Some(Ok(Err(WsError::Http(_)))) => return,
        Some(Ok(Err(err))) => {
            stats::bump(&counters.handshakes_failed);
            debug!(%peer, %err, "handshake failed");
            return;
        }
        Some(Err(_)) => {
            stats::bump(&counters.handshakes_failed);
            debug!(%peer, "handshake timed out");
            return;
        }
    };
    // The verdict passed, so admission did too; the ticket lives as long as
    // the connection.
    let Ok(_ticket) = admitted else { return };
    let handle = daemon.registry.open(peer);
    // Shutdown asks every registered connection to close; one that registered
    // after that walk finds the token already cancelled here.
    if shutdown.is_cancelled() {
        handle.request_close(CloseRequest::Shutdown);
    }
    let mut session = Session {
        ws,
        handle,
        daemon,
        uid: None,
        write: WriteState::default(),
    };
    // Values with drop glue stay in this task's future until they are
    // dropped; nothing below needs the token, so it goes now.
    drop(shutdown);
    let bound_by_url = match url_token.filter(|_| session.daemon.auth.is_some()) {
        Some(token) => session.bind(&token),
        None => Ok(()),
    };
    let end = match bound_by_url {
        Ok(()) => session.run().await,
        Err(end) => end,
    };
    let (peer, uid) = (session.handle.peer, session.uid.as_deref().unwrap_or(""));
    debug!(%peer, uid, ?end, "connection closed");
    // Unbind first, so pushes stop targeting a connection that is closing.
    session.daemon.registry.close(session.handle.id);
    // Boxed for the same reason as the handshake.
    Box::pin(session.finish(end)).await;
}

impl End {
    /// The close that answers a registry's request.
    fn requested(request: CloseRequest) -> End {
        match request {
            CloseRequest::Kicked { reason } => End::Close(close_code::KICKED, reason),
            CloseRequest::SlowConsumer => End::Close(
                close_code::SLOW_CONSUMER,
                "slow consumer: outbound queue full".into(),
            ),
            CloseRequest::Shutdown => {
                End::Close(close_code::GOING_AWAY, "server shutting down".into())
            }
            CloseRequest::Replaced => End::Close(
                close_code::REPLACED,
                "replaced by a newer connection of this uid".into(),
            ),
        }
    }
}

/// How a connection's main loop ended.
#[derive(Debug)]
enum End {
    /// pushd closes it with this code and reason.
    Close(u16, String),
    /// The peer sent a close frame; tungstenite has queued the reply.
    ClosedByPeer,
    /// The socket is gone or broken; nothing more can be sent.
    Lost,
}

struct Session {
    ws: WebSocketStream<TcpStream>,
    handle: Arc<ConnHandle>,
    daemon: Arc<Daemon>,
    /// The bound uid (the registry's shared copy), once bound.
    uid: Option<Arc<str>>,
    write: WriteState,
}

impl Session {
    async fn run(&mut self) -> End {
        let config = &self.daemon.config;
        let (heartbeat, ping_interval) = (config.heartbeat, config.ping_interval);
        let mut last_activity = self.handle.connected_at;
        let mut next_ping = ping_interval.map(|p| last_activity + p);
        let grain = config.timer_grain();
        let daemon = self.daemon.clone();
        let bind_deadline = config.bind_timeout.map(|t| last_activity + t);
        // The earliest of: heartbeat deadline, next ping, and (while
        // unbound) the bind deadline.
        let next_wake = |last_activity: Instant, next_ping: Option<Instant>, bound: bool| {
            let deadline = heartbeat.map(|h| last_activity + h);
            let bind = bind_deadline.filter(|_| !bound);
            let wake = [deadline, next_ping, bind].into_iter().flatten().min();
            wake.map(|at| daemon.registry.round_up(at, grain))
        };
        let mut wake = next_wake(last_activity, next_ping, false);
        let mut timer = pin!(sleep_until(wake.unwrap_or(last_activity).into()));

        loop {
            tokio::select! {
                biased;
                () = &mut timer, if wake.is_some() => {
                    let now = Instant::now();
                    if heartbeat.is_some_and(|h| now >= last_activity + h) {
                        stats::bump(&self.daemon.registry.counters.heartbeat_timeouts);
                        return End::Close(close_code::HEARTBEAT_TIMEOUT, "heartbeat timeout".into());
                    }
                    if self.uid.is_none() && bind_deadline.is_some_and(|at| now >= at) {
                        stats::bump(&self.daemon.registry.counters.bind_timeouts);
                        return End::Close(close_code::POLICY, "no uid within the bind timeout".into());
                    }
                    if let (Some(interval), Some(at)) = (ping_interval, next_ping)
                        && now >= at
                    {
                        self.write.ping_due = true;
                        next_ping = Some(now + interval);
                    }
                    wake = next_wake(last_activity, next_ping, self.uid.is_some());
                    if let Some(at) = wake {
                        timer.as_mut().reset(at.into());
                    }
                }
                io = poll_fn(|cx| poll_io(cx, &mut self.ws, &self.handle, &mut self.write)) => {
                    let frame = match io {
                        Io::Frame(frame) => frame,
                        Io::CloseRequested(request) => return End::requested(request),
                        Io::Closed => return End::Lost,
                        Io::Failed(WsError::Capacity(CapacityError::MessageTooLong { .. })) => {
                            stats::bump(&self.daemon.registry.counters.oversized_messages);
                            return End::Close(close_code::TOO_BIG, "message too big".into());
                        }
                        Io::Failed(WsError::Utf8(_)) => {
                            return End::Close(close_code::INVALID_DATA, "invalid UTF-8 in a text frame".into());
                        }
                        Io::Failed(WsError::Protocol(err)) => {
                            debug!(peer = %self.handle.peer, %err, "protocol error");
                            return End::Close(close_code::PROTOCOL_ERROR, err.to_string());
                        }
                        Io::Failed(err) => {
                            debug!(peer = %self.handle.peer, %err, "websocket error");
                            return End::Lost;
                        }
                    };
                    last_activity = Instant::now();
                    self.handle.touch(self.daemon.registry.ms_at(last_activity));
                    match frame {
                        Message::Text(text) if self.uid.is_none() => {
                            if let Err(end) = self.bind(&text) {
                                return end;
                            }
                        }
                        // tungstenite queued the pong; make sure it is flushed.
                        Message::Ping(_) => self.write.dirty = true,
                        Message::Close(_) => return End::ClosedByPeer,
                        // Later text, binary and pong frames only count as activity.
                        _ => {}
                    }
                }
            }
        }
    }

    /// Binds the connection to the uid in its first text message: the uid
    /// itself, or with `--auth token` a token that carries it.
    fn bind(&mut self, text: &str) -> Result<(), End> {
        let counters = &self.daemon.registry.counters;
        let uid = match &self.daemon.auth {
            Some(verifier) => verifier.verify(text).map_err(|err| {
                stats::bump(&counters.invalid_tokens);
                End::Close(close_code::POLICY, err.to_string())
            })?,
            None => normalize_uid(text)
                .map_err(|err| {
                    stats::bump(&counters.invalid_uids);
                    End::Close(close_code::POLICY, format!("invalid uid: {err}"))
                })?
                .to_owned(),
        };
        match self.daemon.registry.bind(self.handle.id, &uid) {
            Ok(shared) => {
                debug!(peer = %self.handle.peer, uid = &*shared, "connection bound");
                self.uid = Some(shared);
            }
            // A close request is already on its way.
            Err(BindError::Closing) => {}
            Err(BindError::Banned) => return Err(End::Close(close_code::BANNED, "banned".into())),
            Err(BindError::Kicking(reason)) => {
                return Err(End::Close(close_code::KICKED, reason.to_string()));
            }
            Err(BindError::TooMany) => {
                return Err(End::Close(
                    close_code::POLICY,
                    "too many connections for this uid".into(),
                ));
            }
        }
        Ok(())
    }

    /// Sends the close frame (if any) and waits, bounded, for the peer to
    /// finish the closing handshake, then drops the socket.
    async fn finish(mut self, end: End) {
        let ws = &mut self.ws;
        let closing = async {
            match end {
                End::Close(code, reason) => {
                    let frame = CloseFrame {
                        code: CloseCode::from(code),
                        reason: close_reason(&reason),
                    };
                    if ws.close(Some(frame)).await.is_err() {
                        return;
                    }
                }
                End::ClosedByPeer => {
                    if ws.flush().await.is_err() {
                        return;
                    }
                }
                End::Lost => return,
            }
            // Read until the peer's close frame or EOF; tungstenite answers for us.
            while let Some(Ok(_)) = ws.next().await {}
        };
        let _ = timeout(CLOSE_TIMEOUT, closing).await;
    }
}

/// The `token` parameter of a URL query, if any (JWTs need no decoding:
/// they are made of URL-safe characters).
fn token_in_query(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
        .map(str::to_owned)
}

/// Cuts a close reason to the 123 bytes a close frame allows, on a character boundary.
fn close_reason(reason: &str) -> Utf8Bytes {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    Utf8Bytes::from(&reason[..end])
}

/// Outcome of one [`poll_io`].
enum Io {
    /// The registry asked the connection to close.
    CloseRequested(CloseRequest),
    /// A frame arrived.
    Frame(Message),
    /// The peer closed the TCP stream.
    Closed,
    /// Reading or writing failed.
    Failed(WsError),
}

/// Write-side state that must survive between polls (the future built from
/// [`poll_io`] is dropped whenever another `select!` branch wins).
#[derive(Debug, Default)]
struct WriteState {
    /// A ping should go out before the next push.
    ping_due: bool,
    /// Frames were handed to tungstenite but not flushed yet.
    dirty: bool,
}

/// Moves queued frames into the socket as far as it accepts them, then
/// polls for the next inbound frame. Returns `Pending` with wakers registered
/// for whatever it is waiting on; never waits for one side before the other.
fn poll_io(
    cx: &mut Context<'_>,
    ws: &mut WebSocketStream<TcpStream>,
    handle: &ConnHandle,
    write: &mut WriteState,
) -> Poll<Io> {
    // One registration covers both checks below and the queue in pump_writes.
    handle.register(cx);
    if let Some(request) = handle.close_request() {
        return Poll::Ready(Io::CloseRequested(request.clone()));
    }
    if let Err(err) = pump_writes(cx, ws, handle, write) {
        return Poll::Ready(Io::Failed(err));
    }
    match ws.poll_next_unpin(cx) {
        Poll::Ready(Some(Ok(frame))) => Poll::Ready(Io::Frame(frame)),
        Poll::Ready(Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)))
        | Poll::Ready(None) => Poll::Ready(Io::Closed),
        Poll::Ready(Some(Err(err))) => Poll::Ready(Io::Failed(err)),
        Poll::Pending => Poll::Pending,
    }
}

/// The write half of [`poll_io`]: queue → tungstenite → socket, without blocking.
fn pump_writes(
    cx: &mut Context<'_>,
    ws: &mut WebSocketStream<TcpStream>,
    handle: &ConnHandle,
    write: &mut WriteState,
) -> Result<(), WsError> {
    for sent in 0.. {
        if sent == WRITE_BATCH {
            // Let reads and other tasks in; come straight back for the rest.
            cx.waker().wake_by_ref();
            break;
        }
        // Pending: the socket is full and tungstenite is waiting to flush.
        // The write waker is registered; keep queued pushes in the channel.
        match ws.poll_ready_unpin(cx) {
            Poll::Pending => return Ok(()),
            Poll::Ready(result) => result?,
        }
        let frame = if std::mem::take(&mut write.ping_due) {
            Message::Ping(Bytes::new())
        } else {
            match handle.pop() {
                Some(text) => Message::Text(text),
                None => break,
            }
        };
        ws.start_send_unpin(frame)?;
        write.dirty = true;
    }
    if write.dirty {
        match ws.poll_flush_unpin(cx) {
            Poll::Ready(Ok(())) => write.dirty = false,
            Poll::Ready(Err(err)) => return Err(err),
            Poll::Pending => {}
        }
    }
    Ok(())
}
