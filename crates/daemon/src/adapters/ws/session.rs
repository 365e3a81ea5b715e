//! One connection's life after the handshake: bind, then one poll over its
//! wake-up and its socket until something ends it.
//!
//! The single wake-up is the earliest of the heartbeat deadline, the next
//! ping and (while unbound) the bind deadline, an entry in the server's
//! `Deadlines`. It is re-armed lazily: inbound frames only record an instant,
//! and when the wake-up comes it compares that instant with the deadline and
//! either closes the connection or asks for the next one. Idle connections
//! therefore cost no work per second, and busy ones no timer operation per
//! frame.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tracing::debug;

use super::WsServer;
use super::admission::Ticket;
use super::close::{End, code};
use super::frame::FrameError;
use super::io::{Inbound, Io, ReadError, Ws, poll_io};
use crate::bind::Refused;
use crate::core::conn::ConnHandle;
use crate::core::counters::Counter;
use crate::core::ids::Since;
use crate::core::upstream::Upstream;

/// A connection's life after its handshake, as a future that ends with how
/// the connection ends. Written by hand rather than as an `async fn`: its
/// size is every idle connection's cost, and here it is just its fields (a
/// generated future also kept its locals and `select!` state). It has no
/// timer of its own: its deadlines are entries in the server's one
/// [`Deadlines`](super::deadlines::Deadlines), which wakes it through its
/// handle.
pub(super) struct Session {
    pub(super) conn: Conn,
}

/// Everything of a connection.
pub(super) struct Conn {
    pub(super) ws: Ws,
    pub(super) handle: Arc<ConnHandle>,
    pub(super) server: Arc<WsServer>,
    /// A `pushd.v2` client's `?since=`, until it binds; boxed, since few
    /// connections have one and this struct is every connection's cost.
    pub(super) since: Option<Box<Since>>,
    /// When the next ping is due, with `--ping-interval`. (The last inbound
    /// frame's time is the handle's, in clock milliseconds.)
    next_ping: Option<Instant>,
    /// Its messages to the backend (`--upstream`), from the first one on.
    upstream: Option<Box<Upstream>>,
    /// Its admission slot, given back last, once the socket has closed (a
    /// plain socket closes with the handle, the field before).
    _ticket: Ticket,
}

impl Session {
    pub(super) fn new(
        ws: Ws,
        handle: Arc<ConnHandle>,
        server: Arc<WsServer>,
        since: Option<Since>,
        ticket: Ticket,
    ) -> Self {
        let mut conn = Conn {
            ws,
            handle,
            server,
            since: since.map(Box::new),
            next_ping: None,
            upstream: None,
            _ticket: ticket,
        };
        let ping_interval = conn.server.settings.ping_interval;
        conn.next_ping = ping_interval.map(|p| conn.connected_at() + p);
        conn.arm();
        Session { conn }
    }

    /// A connection handed over by the previous process (a live upgrade),
    /// with its next ping where it was.
    pub(super) fn handed_over(
        ws: Ws,
        handle: Arc<ConnHandle>,
        server: Arc<WsServer>,
        since: Option<Since>,
        ticket: Ticket,
        next_ping: Option<Instant>,
    ) -> Self {
        let ping_interval = server.settings.ping_interval;
        let conn = Conn {
            ws,
            handle,
            since: since.map(Box::new),
            next_ping: next_ping.filter(|_| ping_interval.is_some()),
            upstream: None,
            server,
            _ticket: ticket,
        };
        conn.arm();
        Session { conn }
    }
}

impl Future for Session {
    type Output = End;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<End> {
        let conn = &mut self.get_mut().conn;
        loop {
            if conn.server.handover.requested() {
                return Poll::Ready(End::HandOver);
            }
            // The timer first, so that a busy socket cannot hold a deadline back.
            if conn.handle.take_timer_due() {
                if let Some(end) = conn.on_timer() {
                    return Poll::Ready(end);
                }
                conn.arm();
                continue;
            }
            let max_message = conn.server.settings.max_message_size;
            match poll_io(cx, &mut conn.ws, &conn.handle, max_message) {
                Poll::Ready(io) => {
                    if let Some(end) = conn.on_io(io) {
                        return Poll::Ready(end);
                    }
                }
                // The waker is registered now; a deadline that fired before
                // that set its flag without reaching this task.
                Poll::Pending if conn.handle.timer_due() => continue,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Conn {
    /// When the next ping is due, with `--ping-interval`.
    pub(super) fn next_ping(&self) -> Option<Instant> {
        self.next_ping
    }

    /// When the handshake completed, to the millisecond.
    fn connected_at(&self) -> Instant {
        self.server.node.clock.instant_at(self.handle.connected_ms)
    }

    /// The last inbound frame (at first, the handshake's end), to the millisecond.
    fn last_activity(&self) -> Instant {
        let clock = &self.server.node.clock;
        clock.instant_at(self.handle.last_activity_ms())
    }

    /// Asks the server's deadlines to wake this connection at [`Conn::next_wake`].
    fn arm(&self) {
        if let Some(at) = self.next_wake() {
            self.server.deadlines.wake_at(at, &self.handle);
        }
    }

    /// The earliest of the heartbeat deadline, the next ping and (while
    /// unbound) the bind deadline, rounded up to the timer grain.
    fn next_wake(&self) -> Option<Instant> {
        let settings = &self.server.settings;
        let deadline = settings.heartbeat.map(|h| self.last_activity() + h);
        let bind = settings
            .bind_timeout
            .filter(|_| self.handle.uid().is_none())
            .map(|t| self.connected_at() + t);
        let wake = [deadline, self.next_ping, bind].into_iter().flatten().min();
        let clock = &self.server.node.clock;
        wake.map(|at| clock.round_up(at, settings.timer_grain))
    }

    /// The timer fired: a deadline passed, a ping is due, or (the deadline
    /// having moved with activity) nothing yet. Sets the next wake.
    fn on_timer(&mut self) -> Option<End> {
        let settings = &self.server.settings;
        let counters = &*self.server.node.counters;
        let now = Instant::now();
        if settings
            .heartbeat
            .is_some_and(|h| now >= self.last_activity() + h)
        {
            counters.bump(Counter::HeartbeatTimeouts);
            return Some(End::Close(
                code::HEARTBEAT_TIMEOUT,
                "heartbeat timeout".into(),
            ));
        }
        let bind_deadline = settings.bind_timeout.map(|t| self.connected_at() + t);
        if self.handle.uid().is_none() && bind_deadline.is_some_and(|at| now >= at) {
            counters.bump(Counter::BindTimeouts);
            return Some(End::Close(
                code::POLICY,
                "no uid within the bind timeout".into(),
            ));
        }
        if let (Some(interval), Some(at)) = (settings.ping_interval, self.next_ping)
            && now >= at
        {
            self.ws.ping_due = true;
            self.next_ping = Some(now + interval);
        }
        None
    }

    /// What the socket brought; `Some` when it ends the connection.
    fn on_io(&mut self, io: Io) -> Option<End> {
        let counters = &*self.server.node.counters;
        let inbound = match io {
            Io::Inbound(inbound) => inbound,
            Io::CloseRequested(request) => return Some(End::requested(request)),
            // The client went without a closing handshake: nobody to tell.
            Io::Closed => return Some(End::Lost),
            Io::ReadFailed(ReadError::Frame(FrameError::TooBig)) => {
                counters.bump(Counter::OversizedMessages);
                return Some(End::Close(code::TOO_BIG, "message too big".into()));
            }
            Io::ReadFailed(ReadError::Frame(FrameError::InvalidUtf8)) => {
                let reason = "invalid UTF-8 in a text frame";
                return Some(End::Close(code::INVALID_DATA, reason.into()));
            }
            Io::ReadFailed(ReadError::Frame(FrameError::Protocol(err))) => {
                debug!(peer = %self.handle.peer, err, "protocol error");
                return Some(End::Close(code::PROTOCOL_ERROR, err.to_owned()));
            }
            Io::ReadFailed(ReadError::Io(err)) | Io::WriteFailed(err) => {
                debug!(peer = %self.handle.peer, %err, "socket error");
                return Some(End::Lost);
            }
        };
        // Only an instant is recorded: the timer finds out when it fires.
        self.handle.touch(self.server.node.clock.now_ms());
        match inbound {
            Inbound::Text(text) if self.handle.uid().is_none() => self.bind(&text).err(),
            Inbound::Text(text) => {
                self.upstream(&text);
                None
            }
            Inbound::Close(code) => {
                // Answer with the same code, as RFC 6455 §5.5.1 has it.
                self.ws.queue_close(code, "");
                Some(End::ClosedByPeer)
            }
            // Later text, binary, ping (already answered) and pong frames
            // only count as activity.
            _ => None,
        }
    }

    /// A bound page's text message: with `--upstream` a `message` event,
    /// within its rate (past it dropped, counted); without, only activity,
    /// as it always was (the original recipe's pages send heartbeats so).
    fn upstream(&mut self, text: &str) {
        let node = &self.server.node;
        let (Some(limit), Some(uid)) = (self.server.settings.upstream, self.handle.uid()) else {
            return;
        };
        let now = Instant::now();
        let upstream = self
            .upstream
            .get_or_insert_with(|| Box::new(Upstream::new(limit, now)));
        match upstream.admit(limit, now) {
            Some(seq) => {
                node.counters.bump(Counter::UpstreamMessages);
                node.events.message(uid, self.handle.event_ref(), seq, text);
            }
            None => node.counters.bump(Counter::UpstreamDropped),
        }
    }

    /// Unregisters the connection, tells the events, and closes it with `end`.
    pub(super) async fn close(&mut self, end: End) {
        let (peer, uid) = (
            self.handle.peer,
            self.handle.uid().map_or("", |u| u.as_str()),
        );
        debug!(%peer, uid, ?end, "connection closed");
        // Unbind first, so pushes stop targeting a connection that is closing
        // (its `disconnect` is told there, if it was still bound).
        let node = &self.server.node;
        node.registry.close(self.handle.id, end.reason());
        let max_message = self.server.settings.max_message_size;
        end.finish(&mut self.ws, &self.handle, max_message).await;
    }

    /// Binds the connection to the uid in its first text message (see
    /// `crate::bind`); a refusal becomes the close that tells the client why.
    pub(super) fn bind(&mut self, credential: &str) -> Result<(), End> {
        let since = self.since.take().map(|since| *since);
        match crate::bind::bind(&self.server.node, &self.handle, credential, since) {
            Ok(()) | Err(Refused::Closing) => Ok(()),
            Err(Refused::InvalidToken(why)) => Err(End::Close(code::POLICY, why)),
            Err(Refused::InvalidUid(why)) => {
                Err(End::Close(code::POLICY, format!("invalid uid: {why}")))
            }
            Err(Refused::Banned) => Err(End::Close(code::BANNED, "banned".into())),
            Err(Refused::Kicking(reason)) => Err(End::Close(code::KICKED, reason.to_string())),
            Err(Refused::TooMany) => Err(End::Close(
                code::POLICY,
                "too many connections for this uid".into(),
            )),
        }
    }
}
