//! The one place that knows who is online on this node.
//!
//! Connections are opened and closed here (this file), bound to a uid
//! ([`binding`]), pushed to ([`fanout`]), kicked and banned ([`kick`]), and
//! listed and counted ([`snapshot`]), saved for the next process (`saved`). The state sits behind one
//! `std::sync::Mutex`: every critical section is short and synchronous (map
//! updates, `try_push`), so an async mutex would only add cost, and no lock is
//! ever held across `.await` (the workspace denies `clippy::await_holding_lock`).
//! Work proportional to the number of connections (broadcast, list) copies the
//! handles out and runs after the lock is released; writes to sockets happen
//! after it too.
//!
//! What happens around a bind or a push (token checks, events, the cluster
//! step, counters) is told in `crate::bind` and `crate::push`; this module
//! only keeps the tables consistent.

mod binding;
mod fanout;
mod groups;
mod handover;
mod kick;
mod saved;
mod snapshot;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use pushd_proto::uid::Uid;

pub(crate) use binding::{BindError, HandedOver};
pub(crate) use fanout::{Pushed, PushedHere};
pub(crate) use groups::{GroupAdded, GroupPushed, Member};
pub(crate) use kick::KickedIdle;
pub(crate) use snapshot::{Held, MailboxTotals, Sizes};

use super::clock::Clock;
use super::conn::{CloseRequest, ConnHandle, ConnId, QueueLimits};
use super::counters::{Counter, Counters};
use super::events::Events;
use super::groups::{GroupLimits, Groups};
use super::ids::{Ids, Since};
use super::index::{ById, ByUid, Entry};
use super::mailbox::{MailboxLimits, Mailboxes};
use crate::logging::Throttled;

/// What to do with one connection too many for a uid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PerUidPolicy {
    /// Refuse the new connection.
    RefuseNew,
    /// Close the uid's oldest connection (4004).
    CloseOldest,
}

/// The uids whose number of bound connections changed since they were last
/// taken: in cluster mode, what the presence writer must copy to Redis. Marking
/// is one insert under its own short lock; many changes of one uid coalesce.
#[derive(Debug, Default)]
pub(crate) struct ChangedUids {
    uids: Mutex<HashSet<Uid>>,
    /// Woken after every mark.
    pub(crate) notify: tokio::sync::Notify,
}

impl ChangedUids {
    fn mark(&self, uids: impl IntoIterator<Item = Uid>) {
        let mut set = self.uids.lock().unwrap_or_else(|p| p.into_inner());
        let before = set.len();
        set.extend(uids);
        let grew = set.len() > before;
        drop(set);
        if grew {
            self.notify.notify_one();
        }
    }

    /// Takes every uid marked so far.
    pub(crate) fn take(&self) -> Vec<Uid> {
        let mut set = self.uids.lock().unwrap_or_else(|p| p.into_inner());
        set.drain().collect()
    }
}

/// How a [`Registry`] is set up.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RegistryLimits {
    /// Bounds of every connection's outbound queue.
    pub(crate) queue: QueueLimits,
    /// Most connections per uid, and what to do with one more.
    pub(crate) per_uid: Option<(usize, PerUidPolicy)>,
    /// The mailbox's bounds; `None` turns it off.
    pub(crate) mailbox: Option<MailboxLimits>,
    /// Cluster mode with mailboxes in Redis: a connection that binds gets
    /// nothing written until its uid's mailbox was handed over ([`ConnHandle::release`]).
    pub(crate) hold_at_bind: bool,
    /// The groups' bounds.
    pub(crate) groups: GroupLimits,
}

/// The uid registry.
#[derive(Debug)]
pub(crate) struct Registry {
    clock: Clock,
    next_conn: AtomicU64,
    /// Message ids: made here on a single node, read here in cluster mode.
    ids: Ids,
    queue: QueueLimits,
    per_uid: Option<(usize, PerUidPolicy)>,
    hold_at_bind: bool,
    state: Mutex<State>,
    counters: Arc<Counters>,
    /// In cluster mode, the uids whose connection count changed.
    changed: Option<Arc<ChangedUids>>,
}

/// Everything behind the registry's lock.
#[derive(Debug)]
struct State {
    /// Every open connection, bound or not.
    conns: ById,
    /// Bound connections by uid; a uid with no connection has no entry.
    uids: ByUid,
    /// Banned uids and when their ban ends; expired entries are removed
    /// when next looked at.
    bans: HashMap<Uid, Instant>,
    /// Cluster mode: uids being kicked cluster-wide, refused until the kick is
    /// done or the deadline passes, with the kick's reason.
    kicking: HashMap<Uid, (Instant, Arc<str>)>,
    /// Messages waiting for uids with no connection; `None` with `--mailbox-ttl 0`.
    mailboxes: Option<Mailboxes>,
    /// "Mailbox full" and "mailbox memory full" warnings, throttled.
    mailbox_warnings: (Throttled, Throttled),
    /// Told, under this lock, when a uid gains its first bound connection and
    /// loses its last (`online` / `offline` events).
    events: Option<Arc<Events>>,
    /// A live upgrade is handing everything to the next process: pushes and
    /// binds are refused (see `handover`).
    frozen: bool,
    /// Groups of uids (see `groups`).
    groups: Groups,
}

impl State {
    /// Removes a connection from its uid's list, if it is there, for
    /// `reason` (its `disconnect` event's, told before any `offline` it causes).
    fn unbind(&mut self, id: ConnId, reason: &str) -> Option<Uid> {
        let handle = &self.conns.get(&id)?.0;
        if !handle.set_listed(false) {
            return None;
        }
        let uid = handle.uid()?.clone();
        if let Some(events) = &self.events {
            events.disconnected(&uid, handle.event_ref(), reason);
        }
        if self.uids.remove_one(handle) {
            self.groups.uid_online(&uid, false);
            if let Some(events) = &self.events {
                events.last_unbound(&uid);
            }
        }
        Some(uid)
    }

    /// Unlists the connections that could not take a push and asks each to
    /// close as a slow consumer (4002); returns the uids that lost one.
    fn disconnect_slow(&mut self, slow: &[ConnId]) -> Vec<Uid> {
        let mut unbound = Vec::new();
        for &id in slow {
            unbound.extend(self.unbind(id, "slow_consumer"));
            if let Some(Entry(handle)) = self.conns.get(&id) {
                handle.request_close(CloseRequest::SlowConsumer);
            }
        }
        unbound
    }
}

impl Registry {
    /// The daemon's counters.
    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }

    /// An empty registry. With `changed` (cluster mode) it marks there every uid
    /// whose number of connections changes, and message ids are the cluster's.
    pub(crate) fn new(
        limits: RegistryLimits,
        clock: Clock,
        counters: Arc<Counters>,
        changed: Option<Arc<ChangedUids>>,
    ) -> Self {
        Registry {
            clock,
            next_conn: AtomicU64::new(1),
            ids: Ids::new(changed.is_some()),
            queue: limits.queue,
            per_uid: limits.per_uid,
            hold_at_bind: limits.hold_at_bind,
            state: Mutex::new(State {
                conns: ById::default(),
                uids: ByUid::default(),
                bans: HashMap::new(),
                kicking: HashMap::new(),
                mailboxes: limits.mailbox.map(Mailboxes::new),
                mailbox_warnings: (
                    Throttled::new("--mailbox-size", "the oldest messages are dropped"),
                    Throttled::new("--mailbox-memory", "pushes to offline uids answer fail"),
                ),
                events: None,
                frozen: false,
                groups: Groups::new(limits.groups),
            }),
            counters,
            changed,
        }
    }

    /// This registry, telling `events` when uids come and go.
    pub(crate) fn with_events(self, events: Arc<Events>) -> Self {
        self.lock().events = Some(events);
        self
    }

    fn mark_changed(&self, uids: impl IntoIterator<Item = Uid>) {
        if let Some(changed) = &self.changed {
            changed.mark(uids);
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in
        // a way that matters more than stopping the daemon would.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Where a `pushd.v2` client's `?since=` is (see `core::ids`).
    pub(crate) fn since(&self, text: &str) -> Since {
        self.ids.since(text)
    }

    /// Registers a new, unbound connection.
    /// `v2`: it speaks `pushd.v2` (frames `ID PAYLOAD`, resumable).
    pub(crate) fn open(&self, peer: SocketAddr, v2: bool) -> Arc<ConnHandle> {
        self.open_handle(ConnHandle::new(
            self.next_id(),
            v2,
            peer,
            self.clock.now_ms(),
        ))
    }

    /// Registers a page's event stream: a `pushd.v2` connection that only
    /// its task writes to.
    pub(crate) fn open_sse(&self, peer: SocketAddr) -> Arc<ConnHandle> {
        let mut handle = ConnHandle::new(self.next_id(), true, peer, self.clock.now_ms());
        handle.mark_sse();
        self.open_handle(handle)
    }

    fn next_id(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    fn open_handle(&self, handle: ConnHandle) -> Arc<ConnHandle> {
        let handle = Arc::new(handle);
        self.lock().conns.insert(Entry(handle.clone()));
        self.counters.bump(Counter::ConnectionsOpened);
        handle
    }

    /// Forgets a connection whose task is ending, for `reason` (its
    /// `disconnect` event's, if it was still bound). If it was its uid's last
    /// connection and closed for a reason its uid may come back from (not a
    /// kick, not shutdown), the messages it had taken but not written go back
    /// to the front of the uid's mailbox.
    pub(crate) fn close(&self, id: ConnId, reason: &str) {
        let mut guard = self.lock();
        let state = &mut *guard;
        let uid = state.unbind(id, reason);
        let Some(Entry(handle)) = state.conns.take(&id) else {
            drop(guard);
            self.mark_changed(uid);
            return;
        };
        let mut returned = (0, 0);
        if let (Some(mailboxes), Some(bound)) = (&mut state.mailboxes, handle.uid()) {
            let request = handle.close_request();
            let kicked = matches!(request, Some(CloseRequest::Kicked { .. }));
            if handle.v2 && !kicked {
                // Its client may come back with `since` within the TTL (after a
                // restart too: the state file keeps the copies).
                let ttl = mailboxes.ttl();
                mailboxes.keep_resumable(bound, Instant::now() + ttl);
            }
            // At shutdown the connection writes what it was sent before its
            // close frame: nothing to put back.
            let shutdown = matches!(request, Some(CloseRequest::Shutdown));
            if !kicked && !shutdown && !state.uids.contains(bound) {
                let unwritten = handle.take_queue();
                let n = unwritten.len();
                if n > 0 {
                    let lost = mailboxes.put_back(bound, unwritten, Instant::now());
                    returned = (n - lost, lost);
                }
            }
        }
        drop(guard);
        self.counters.bump(Counter::ConnectionsClosed);
        self.counters.add(Counter::MailboxStored, returned.0 as u64);
        self.counters
            .add(Counter::MailboxDropped, returned.1 as u64);
        self.mark_changed(uid);
    }
}
