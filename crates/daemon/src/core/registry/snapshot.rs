//! Reading the registry for `list`, `online`, `stats`, `/metrics` and the
//! cluster's presence writer, and the mailbox's operator view: copies taken
//! under the lock, shaped after it.

use std::sync::Arc;
use std::time::Instant;

use pushd_proto::uid::Uid;

use super::Registry;
use crate::core::conn::{ConnHandle, ConnId};
use crate::core::counters::Counter;
use crate::core::index::{Connections, Entry};
use crate::core::mailbox::{MailboxSummary, Mailboxes};

/// Mailbox messages examined per lock hold when expiring, so a mass expiry
/// never holds the registry for long.
const EXPIRY_BUDGET: usize = 1024;

/// One connection as listed: a copy taken under the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConnSnapshot {
    /// Connection number.
    pub(crate) id: ConnId,
    /// The client's address.
    pub(crate) peer: std::net::SocketAddr,
    /// Milliseconds since its last inbound frame.
    pub(crate) idle_ms: u64,
    /// Milliseconds since it connected.
    pub(crate) connected_ms: u64,
    /// A page's event stream, not a WebSocket.
    pub(crate) sse: bool,
}

/// How much the registry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sizes {
    /// Open connections, bound or not.
    pub(crate) connections: u64,
    /// Distinct uids with a bound connection.
    pub(crate) uids: u64,
}

/// What every mailbox holds together.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MailboxTotals {
    /// Uids with waiting messages.
    pub(crate) uids: u64,
    /// Waiting messages.
    pub(crate) messages: u64,
    /// Their payload bytes.
    pub(crate) bytes: u64,
}

/// A uid's connections on this node.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Held {
    /// How many (0: offline here).
    pub(crate) connections: u64,
    /// Whether any of them is raw (not `pushd.v2`): in cluster mode such a uid
    /// is subscribed to its own channel (`cluster::channels`).
    pub(crate) raw: bool,
}

impl Held {
    fn of(list: &[Arc<ConnHandle>]) -> Self {
        Held {
            connections: list.len() as u64,
            raw: list.iter().any(|h| !h.v2),
        }
    }
}

impl Registry {
    /// What each of `uids` has here now.
    pub(crate) fn counts(&self, uids: &[Uid]) -> Vec<Held> {
        let state = self.lock();
        uids.iter()
            .map(|uid| state.uids.get(uid).map_or(Held::default(), |l| Held::of(l)))
            .collect()
    }

    /// Every bound uid with what it has here.
    pub(crate) fn all_counts(&self) -> Vec<(Uid, Held)> {
        let state = self.lock();
        state
            .uids
            .iter()
            .map(|(uid, list)| (uid.clone(), Held::of(list)))
            .collect()
    }

    /// The open connections among `ids`, found under one hold of the lock.
    pub(crate) fn handles(&self, ids: &[ConnId]) -> Vec<Arc<ConnHandle>> {
        let state = self.lock();
        (ids.iter())
            .filter_map(|id| state.conns.get(id).map(|Entry(handle)| handle.clone()))
            .collect()
    }

    /// Whether connection `id` is still open and bound to its uid.
    pub(crate) fn is_listed(&self, id: ConnId) -> bool {
        self.lock()
            .conns
            .get(&id)
            .is_some_and(|Entry(handle)| handle.is_listed())
    }

    /// Number of connections bound to `uid`.
    pub(crate) fn online(&self, uid: &str) -> u64 {
        self.lock()
            .uids
            .get(uid)
            .map_or(0, |list| list.len() as u64)
    }

    /// Every bound uid with its connections, sorted by uid, oldest connection
    /// (lowest id) first.
    pub(crate) fn list(&self) -> Vec<(Uid, Vec<ConnSnapshot>)> {
        let snapshot: Vec<(Uid, Connections)> = self
            .lock()
            .uids
            .iter()
            .map(|(uid, list)| (uid.clone(), list.clone()))
            .collect();
        let now_ms = self.clock.now_ms();
        let mut uids: Vec<(Uid, Vec<ConnSnapshot>)> = snapshot
            .into_iter()
            .map(|(uid, handles)| {
                let mut connections: Vec<ConnSnapshot> = handles
                    .iter()
                    .map(|h| ConnSnapshot {
                        id: h.id,
                        peer: h.peer,
                        idle_ms: now_ms.saturating_sub(h.last_activity_ms()),
                        connected_ms: now_ms.saturating_sub(h.connected_ms),
                        sse: h.is_sse(),
                    })
                    .collect();
                connections.sort_unstable_by_key(|c| c.id);
                (uid, connections)
            })
            .collect();
        uids.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        uids
    }

    /// Open connections (bound or not) and distinct bound uids.
    pub(crate) fn sizes(&self) -> Sizes {
        let state = self.lock();
        Sizes {
            connections: state.conns.len() as u64,
            uids: state.uids.len() as u64,
        }
    }

    /// Every uid with waiting messages, sorted (empty with the mailbox off).
    pub(crate) fn mailboxes(&self) -> Vec<MailboxSummary> {
        let state = self.lock();
        let list = state.mailboxes.as_ref().map(|m| m.list(Instant::now()));
        list.unwrap_or_default()
    }

    /// Empties the mailbox of each of `uids`; returns what each that had
    /// messages held.
    pub(crate) fn clear_mailboxes(&self, uids: &[Uid]) -> Vec<MailboxSummary> {
        let now = Instant::now();
        let mut state = self.lock();
        let Some(mailboxes) = &mut state.mailboxes else {
            return Vec::new();
        };
        let before = mailboxes.list(now);
        let mut cleared = Vec::new();
        for uid in uids {
            if let Some(summary) = before.iter().find(|s| s.uid == *uid) {
                mailboxes.clear(uid);
                cleared.push(summary.clone());
            }
        }
        drop(state);
        let messages = cleared.iter().map(|s| s.messages).sum();
        self.counters.add(Counter::MailboxCleared, messages);
        cleared
    }

    /// Drops mailbox messages whose TTL has passed, a bounded number per call;
    /// true when more are due (call again after yielding).
    pub(crate) fn expire_mailboxes(&self) -> bool {
        let mut state = self.lock();
        let Some(mailboxes) = &mut state.mailboxes else {
            return false;
        };
        let (expired, more) = mailboxes.expire(Instant::now(), EXPIRY_BUDGET);
        drop(state);
        self.counters.add(Counter::MailboxExpired, expired as u64);
        more
    }

    /// What the mailboxes hold together.
    pub(crate) fn mailbox_totals(&self) -> MailboxTotals {
        let state = self.lock();
        let (uids, messages, bytes) = state
            .mailboxes
            .as_ref()
            .map_or((0, 0, 0), Mailboxes::totals);
        MailboxTotals {
            uids,
            messages,
            bytes,
        }
    }
}
