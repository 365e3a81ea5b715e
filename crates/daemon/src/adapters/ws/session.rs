//! One connection's life after the handshake: bind, then one `select!` over its
//! timer and its socket until something ends it.
//!
//! The single timer is the earliest of the heartbeat deadline, the next ping
//! and (while unbound) the bind deadline. It is re-armed lazily: inbound frames
//! only record an instant, and when the timer fires it compares that instant
//! with the deadline and either closes the connection or sleeps again. Idle
//! connections therefore cost no work per second, and busy ones no timer
//! operation per frame.

use super::Ws;
use std::future::poll_fn;
use std::pin::pin;
use std::sync::Arc;
use std::time::Instant;

use pushd_proto::uid::Uid;
use tokio::time::sleep_until;
use tracing::debug;

use super::WsServer;
use super::close::{End, code};
use super::frame::FrameError;
use super::io::{Inbound, Io, ReadError, poll_io};
use crate::core::conn::ConnHandle;
use crate::core::counters::Counter;
use crate::core::mailbox::Since;
use crate::core::registry::BindError;

pub(super) struct Session {
    pub(super) ws: Ws,
    pub(super) handle: Arc<ConnHandle>,
    pub(super) server: Arc<WsServer>,
    /// The bound uid (the registry's shared copy), once bound.
    pub(super) uid: Option<Uid>,
    /// A `pushd.v2` client's `?since=`, until it binds.
    pub(super) since: Option<Since>,
}

impl Session {
    pub(super) async fn run(&mut self) -> End {
        let settings = &self.server.settings;
        let (heartbeat, ping_interval) = (settings.heartbeat, settings.ping_interval);
        let mut last_activity = self.handle.connected_at;
        let mut next_ping = ping_interval.map(|p| last_activity + p);
        let grain = settings.timer_grain;
        let server = self.server.clone();
        let bind_deadline = settings.bind_timeout.map(|t| last_activity + t);
        let next_wake = |last_activity: Instant, next_ping: Option<Instant>, bound: bool| {
            let deadline = heartbeat.map(|h| last_activity + h);
            let bind = bind_deadline.filter(|_| !bound);
            let wake = [deadline, next_ping, bind].into_iter().flatten().min();
            wake.map(|at| server.node.clock.round_up(at, grain))
        };
        let mut wake = next_wake(last_activity, next_ping, false);
        let mut timer = pin!(sleep_until(wake.unwrap_or(last_activity).into()));
        let counters = &*server.node.counters;

        loop {
            tokio::select! {
                biased;
                () = &mut timer, if wake.is_some() => {
                    let now = Instant::now();
                    if heartbeat.is_some_and(|h| now >= last_activity + h) {
                        counters.bump(Counter::HeartbeatTimeouts);
                        return End::Close(code::HEARTBEAT_TIMEOUT, "heartbeat timeout".into());
                    }
                    if self.uid.is_none() && bind_deadline.is_some_and(|at| now >= at) {
                        counters.bump(Counter::BindTimeouts);
                        return End::Close(code::POLICY, "no uid within the bind timeout".into());
                    }
                    if let (Some(interval), Some(at)) = (ping_interval, next_ping)
                        && now >= at
                    {
                        self.ws.ping_due = true;
                        next_ping = Some(now + interval);
                    }
                    wake = next_wake(last_activity, next_ping, self.uid.is_some());
                    if let Some(at) = wake {
                        timer.as_mut().reset(at.into());
                    }
                }
                io = poll_fn(|cx| poll_io(cx, &mut self.ws, &self.handle)) => {
                    let inbound = match io {
                        Io::Inbound(inbound) => inbound,
                        Io::CloseRequested(request) => return End::requested(request),
                        // The client went without a closing handshake: nobody to tell.
                        Io::Closed => return End::Lost,
                        Io::ReadFailed(ReadError::Frame(FrameError::TooBig)) => {
                            counters.bump(Counter::OversizedMessages);
                            return End::Close(code::TOO_BIG, "message too big".into());
                        }
                        Io::ReadFailed(ReadError::Frame(FrameError::InvalidUtf8)) => {
                            return End::Close(code::INVALID_DATA, "invalid UTF-8 in a text frame".into());
                        }
                        Io::ReadFailed(ReadError::Frame(FrameError::Protocol(err))) => {
                            debug!(peer = %self.handle.peer, err, "protocol error");
                            return End::Close(code::PROTOCOL_ERROR, err.to_owned());
                        }
                        Io::ReadFailed(ReadError::Io(err)) | Io::WriteFailed(err) => {
                            debug!(peer = %self.handle.peer, %err, "socket error");
                            return End::Lost;
                        }
                    };
                    last_activity = Instant::now();
                    self.handle.touch(self.server.node.clock.ms_at(last_activity));
                    match inbound {
                        Inbound::Text(text) if self.uid.is_none() => {
                            if let Err(end) = self.bind(&text) {
                                return end;
                            }
                        }
                        Inbound::Close(code) => {
                            // Answer with the same code, as RFC 6455 §5.5.1 has it.
                            self.ws.queue_close(code, "");
                            return End::ClosedByPeer;
                        }
                        // Later text, binary, ping (already answered) and pong
                        // frames only count as activity.
                        _ => {}
                    }
                }
            }
        }
    }

    /// Binds the connection to the uid in its first text message: the uid
    /// itself, or with `--auth token` a token that carries it.
    pub(super) fn bind(&mut self, text: &str) -> Result<(), End> {
        let counters = &self.server.node.counters;
        let uid = match self.server.node.secrets.verifier() {
            Some(verifier) => verifier.verify(text).map_err(|err| {
                counters.bump(Counter::InvalidTokens);
                End::Close(code::POLICY, err.to_string())
            })?,
            None => Uid::parse(text).map_err(|err| {
                counters.bump(Counter::InvalidUids);
                End::Close(code::POLICY, format!("invalid uid: {err}"))
            })?,
        };
        let since = self.since.take();
        match self.server.node.registry.bind(self.handle.id, &uid, since) {
            Ok(shared) => {
                debug!(peer = %self.handle.peer, uid = %shared, "connection bound");
                let node = &self.server.node;
                node.events.connected(&shared, self.handle.event_ref());
                crate::push::after_bind(&self.server.node, &shared, &self.handle, since);
                self.uid = Some(shared);
            }
            // A close request is already on its way.
            Err(BindError::Closing) => {}
            Err(BindError::Banned) => return Err(End::Close(code::BANNED, "banned".into())),
            Err(BindError::Kicking(reason)) => {
                return Err(End::Close(code::KICKED, reason.to_string()));
            }
            Err(BindError::TooMany) => {
                return Err(End::Close(
                    code::POLICY,
                    "too many connections for this uid".into(),
                ));
            }
        }
        Ok(())
    }
}
