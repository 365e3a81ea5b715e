//! A live upgrade, as the WebSocket connections see it. In the old process
//! every session is asked to stop where it is ([`HandOver::freeze`]): it
//! reports its state and socket ([`Frozen`]) and waits for the outcome, then
//! either goes on as if nothing happened (the new process did not take over)
//! or ends without a byte sent (it did). In the new process each handed-over
//! connection becomes a session again ([`adopt`]).

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_util::task::TaskTracker;

use super::io::{Parts, Ws};
use super::session::{Conn, Session};
use super::{WsServer, serve_session};
use crate::core::conn::ConnHandle;
use crate::core::ids::Since;
use crate::upgrade::wire::HandedConn;

/// What a stopped session reports (its socket is its handle's: no duplicate
/// is made, which at 19,000 connections would pass the open-file limit).
#[derive(Debug)]
pub(crate) struct Frozen {
    pub(crate) handle: Arc<ConnHandle>,
    pub(crate) parts: Parts,
    /// An unbound `pushd.v2` client's `since`.
    pub(crate) since: Option<Since>,
    /// When its next ping is due, from now.
    pub(crate) next_ping_in: Option<Duration>,
}

/// How an upgrade ended, for the sessions that wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Pending,
    /// The new process did not take over: go on.
    Resume,
    /// The new process has the connection: end without a word.
    Gone,
}

/// The connections' side of a live upgrade, one per server.
#[derive(Debug)]
pub(crate) struct HandOver {
    requested: AtomicBool,
    reports: Mutex<Option<mpsc::UnboundedSender<Frozen>>>,
    outcome: watch::Sender<Outcome>,
}

impl Default for HandOver {
    fn default() -> Self {
        HandOver {
            requested: AtomicBool::new(false),
            reports: Mutex::new(None),
            outcome: watch::Sender::new(Outcome::Pending),
        }
    }
}

impl HandOver {
    /// Whether sessions are asked to stop (checked at every poll: one load).
    pub(super) fn requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }

    /// Asks every session to stop where it is; each reports on the receiver.
    pub(crate) fn freeze(&self, server: &WsServer) -> mpsc::UnboundedReceiver<Frozen> {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.outcome.send_replace(Outcome::Pending);
        *self.reports.lock().unwrap_or_else(|p| p.into_inner()) = Some(sender);
        self.requested.store(true, Ordering::Release);
        for handle in server.node.registry.open_connections() {
            handle.wake();
        }
        receiver
    }

    /// The new process did not take over: every session goes on.
    pub(crate) fn thaw(&self) {
        self.requested.store(false, Ordering::Release);
        *self.reports.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.outcome.send_replace(Outcome::Resume);
    }

    /// The new process serves: the stopped sessions end, sending nothing.
    pub(crate) fn let_go(&self) {
        self.outcome.send_replace(Outcome::Gone);
    }
}

impl Conn {
    /// Stops here for a live upgrade: reports, then waits for the outcome.
    /// `true` when the new process has the connection.
    pub(super) async fn hand_over(&mut self) -> bool {
        let handover = &self.server.handover;
        let mut outcome = handover.outcome.subscribe();
        let frozen = Frozen {
            handle: self.handle.clone(),
            parts: self.ws.parts(),
            since: self.since.as_deref().copied(),
            next_ping_in: self
                .next_ping()
                .map(|at| at.saturating_duration_since(Instant::now())),
        };
        let reported = (handover.reports.lock().unwrap_or_else(|p| p.into_inner()))
            .as_ref()
            .is_some_and(|reports| reports.send(frozen).is_ok());
        if !reported {
            return false;
        }
        loop {
            match *outcome.borrow_and_update() {
                Outcome::Resume => return false,
                Outcome::Gone => return true,
                Outcome::Pending => {}
            }
            if outcome.changed().await.is_err() {
                return false;
            }
        }
    }
}

/// The new process: `conn` (its socket `fd`) becomes a session here, as the
/// old process left it, and serves on.
pub(crate) fn adopt(
    server: &Arc<WsServer>,
    conn: HandedConn,
    fd: OwnedFd,
    tracker: &TaskTracker,
) -> std::io::Result<()> {
    let std = std::net::TcpStream::from(fd);
    std.set_nonblocking(true)?;
    let tcp = TcpStream::from_std(std)?;
    let uid = conn
        .uid
        .as_deref()
        .and_then(|uid| pushd_proto::uid::Uid::parse(uid).ok());
    let registry = &server.node.registry;
    let handle = registry.adopt(
        conn.peer,
        conn.v2,
        uid.as_ref(),
        conn.connected_ms_ago,
        conn.idle_ms,
    );
    handle.restore_outbound(conn.unwritten, conn.queued);
    if conn.last_number > 0 {
        handle.note_number(conn.last_number);
    }
    let ticket = server.admission.admit_handed_over(conn.peer.ip());
    let parts = Parts {
        unread: conn.unread,
        fragments: conn.fragments,
        control: conn.control,
        ping_due: conn.ping_due,
    };
    let ws = Ws::from_parts(tcp, &handle, parts);
    let next_ping = conn
        .next_ping_in_ms
        .map(|ms| Instant::now() + Duration::from_millis(ms));
    let session = Session::handed_over(
        ws,
        handle.clone(),
        server.clone(),
        conn.since,
        ticket,
        next_ping,
    );
    tracker.spawn(serve_session(session));
    handle.wake();
    Ok(())
}
