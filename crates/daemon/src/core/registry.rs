//! The one place that knows who is online on this node.
//!
//! Connections are opened, bound, pushed to, kicked and closed here. The state sits behind a `std::sync::Mutex`: every
//! critical section is short and synchronous (map updates, `try_send`), so an
//! async mutex would only add cost, and no lock is ever held across `.await`
//! (the workspace denies `clippy::await_holding_lock`). Work proportional to
//! the number of connections (broadcast, list) copies the handles out and runs
//! after the lock is released.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pushd_proto::uid::Uid;
use smallvec::SmallVec;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::clock::Clock;
use super::conn::{CloseRequest, ConnHandle, ConnId, QueueLimits};
use super::counters::{Counter, Counters};
use super::events::Events;
use super::index::{ById, ByUid, Connections, Entry};
use super::mailbox::{
    Handover, MailboxLimits, MailboxSummary, Mailboxes, MessageId, Since, Stored,
};
use crate::logging::Throttled;

/// What became of a push to one uid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// This many connections took it (at least one).
    Delivered(u64),
    /// No connection here; it waits in the uid's mailbox.
    Queued,
    /// No connection here, and not kept: mailbox off or full, uid banned, or
    /// the push was transient.
    NotKept,
    /// No connection here, not transient, not banned, and no mailbox on this
    /// node: in cluster mode the uid's mailbox in Redis may keep it.
    Offline,
}

/// What to do with one connection too many for a uid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PerUidPolicy {
    /// Refuse the new connection.
    RefuseNew,
    /// Close the uid's oldest connection (4004).
    CloseOldest,
}

/// N of a cluster id `ms-N`.
fn cluster_number(id: &str) -> Option<MessageId> {
    let (ms, n) = id.split_once('-')?;
    ms.parse::<u64>().ok()?;
    n.parse().ok()
}

/// How one push went over a set of connections.
#[derive(Debug, Default)]
struct Offered {
    /// Connections that took it.
    delivered: u64,
    /// Those whose queue was full: slow consumers, to be disconnected.
    slow: Vec<ConnId>,
    /// Whether this pusher writes to the sockets itself (see `ConnHandle`).
    direct: bool,
    /// Connections it queued for and will write to, once the registry's lock
    /// is released: a syscall per recipient must not hold everyone back.
    to_write: SmallVec<[Arc<ConnHandle>; 2]>,
}

impl Offered {
    /// A pusher that writes to the sockets itself: one push to a uid. A
    /// broadcast leaves its writes to the connections' tasks, so that every
    /// worker writes its share.
    fn direct() -> Self {
        Offered {
            direct: true,
            ..Offered::default()
        }
    }

    /// Queues `frame` (message `id`) for `handle`, or notes it as slow.
    fn queue(
        &mut self,
        handle: &Arc<ConnHandle>,
        id: MessageId,
        frame: &Utf8Bytes,
        limits: QueueLimits,
    ) {
        let direct = self.direct && handle.writes_directly();
        match handle.try_push(id, frame, limits, !direct) {
            Ok(()) => {
                self.delivered += 1;
                if direct {
                    self.to_write.push(handle.clone());
                }
            }
            Err(()) => self.slow.push(handle.id),
        }
    }

    /// Writes what was queued for the direct connections; call without the
    /// registry's lock.
    fn write(&mut self) {
        for handle in self.to_write.drain(..) {
            handle.write_or_wake();
        }
    }
}

/// The frame a resuming `pushd.v2` client gets first when messages after its
/// `since` are no longer kept.
pub(crate) const GAP_FRAME: &str = "!gap";

/// Mailbox messages examined per lock hold when expiring, so a mass expiry
/// never holds the registry for long.
const EXPIRY_BUDGET: usize = 1024;

/// Why a bind did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BindError {
    /// The connection is closing (kicked, shutting down) or already bound.
    Closing,
    /// The uid has `--max-connections-per-uid` connections and the policy
    /// is to refuse new ones.
    TooMany,
    /// The uid is banned (`pushctl kick --ban`).
    Banned,
    /// A cluster-wide kick of the uid is in progress; the reason is the kick's.
    Kicking(Arc<str>),
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

/// One connection as listed: a copy taken under the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConnSnapshot {
    /// Connection number.
    pub(crate) id: ConnId,
    /// The client's address.
    pub(crate) peer: SocketAddr,
    /// Milliseconds since its last inbound frame.
    pub(crate) idle_ms: u64,
    /// Milliseconds since it connected.
    pub(crate) connected_ms: u64,
}

/// The uid registry.
#[derive(Debug)]
pub(crate) struct Registry {
    clock: Clock,
    next_id: AtomicU64,
    /// The next message id.
    next_message: AtomicU64,
    /// When this registry started, in milliseconds since the Unix epoch: the
    /// first part of every message id, so ids never repeat across restarts.
    boot: u64,
    queue: QueueLimits,
    per_uid: Option<(usize, PerUidPolicy)>,
    hold_at_bind: bool,
    state: Mutex<State>,
    counters: Arc<Counters>,
    /// In cluster mode, the uids whose connection count changed.
    changed: Option<Arc<ChangedUids>>,
}

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
}

impl State {
    /// Removes a connection from its uid's list, if it is there.
    fn unbind(&mut self, id: ConnId) -> Option<Uid> {
        let handle = &self.conns.get(&id)?.0;
        if !handle.set_listed(false) {
            return None;
        }
        let uid = handle.uid()?.clone();
        if self.uids.remove_one(&uid, id)
            && let Some(events) = &self.events
        {
            events.last_unbound(&uid);
        }
        Some(uid)
    }

    /// Unlists the connections that could not take a push and asks each to
    /// close as a slow consumer (4002); returns the uids that lost one.
    fn disconnect_slow(&mut self, slow: &[ConnId]) -> Vec<Uid> {
        let mut unbound = Vec::new();
        for &id in slow {
            unbound.extend(self.unbind(id));
            if let Some(Entry(handle)) = self.conns.get(&id) {
                handle.request_close(CloseRequest::SlowConsumer);
            }
        }
        unbound
    }

    /// The reason of a cluster-wide kick of `uid` still in progress, if any.
    fn kicking_reason(&mut self, uid: &str, now: Instant) -> Option<Arc<str>> {
        match self.kicking.get(uid) {
            Some((until, reason)) if *until > now => Some(reason.clone()),
            Some(_) => {
                self.kicking.remove(uid);
                None
            }
            None => None,
        }
    }

    /// Whether `uid` is banned at `now`; forgets an expired ban.
    fn is_banned(&mut self, uid: &str, now: Instant) -> bool {
        match self.bans.get(uid) {
            Some(&until) if until > now => true,
            Some(_) => {
                self.bans.remove(uid);
                false
            }
            None => false,
        }
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
}

impl Registry {
    /// An empty registry. With `changed` (cluster mode) it marks there every uid
    /// whose number of connections changes.
    pub(crate) fn new(
        limits: RegistryLimits,
        clock: Clock,
        counters: Arc<Counters>,
        changed: Option<Arc<ChangedUids>>,
    ) -> Self {
        Registry {
            clock,
            next_id: AtomicU64::new(1),
            next_message: AtomicU64::new(1),
            boot: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
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

    /// Registers a new, unbound connection.
    /// `v2`: it speaks `pushd.v2` (frames `ID PAYLOAD`, resumable).
    pub(crate) fn open(&self, peer: SocketAddr, v2: bool) -> Arc<ConnHandle> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let handle = Arc::new(ConnHandle::new(id, v2, peer, self.clock.now_ms()));
        self.lock().conns.insert(Entry(handle.clone()));
        self.counters.bump(Counter::ConnectionsOpened);
        handle
    }

    /// Binds an open, unbound connection to `uid` and returns the registry's
    /// shared copy of the uid. Over the per-uid limit, either refuses or asks
    /// the uid's oldest connection to close (4004), as the policy says. The
    /// uid's waiting messages, if any, are queued for it before anything else;
    /// a `pushd.v2` connection that gives `since` gets instead everything kept
    /// after it, `!gap` first if some of that is gone.
    pub(crate) fn bind(
        &self,
        id: ConnId,
        uid: &Uid,
        since: Option<Since>,
    ) -> Result<Uid, BindError> {
        let mut guard = self.lock();
        let state = &mut *guard;
        let Entry(handle) = state.conns.get(&id).ok_or(BindError::Closing)?;
        if handle.uid().is_some() || handle.close_request().is_some() {
            return Err(BindError::Closing);
        }
        let handle = handle.clone();
        if state.is_banned(uid, Instant::now()) {
            drop(guard);
            self.counters.bump(Counter::BannedRefused);
            return Err(BindError::Banned);
        }
        if let Some(reason) = state.kicking_reason(uid, Instant::now()) {
            return Err(BindError::Kicking(reason));
        }
        if let Some((limit, policy)) = self.per_uid {
            let bound = state
                .uids
                .get(uid)
                .map_or(0, |connections| connections.len());
            if bound >= limit {
                match policy {
                    PerUidPolicy::RefuseNew => {
                        drop(guard);
                        self.counters.bump(Counter::PerUidRefused);
                        return Err(BindError::TooMany);
                    }
                    PerUidPolicy::CloseOldest => {
                        // Oldest first: connections are pushed in bind order.
                        let oldest: Vec<ConnId> = (state.uids.get(uid).into_iter().flatten())
                            .take(bound + 1 - limit)
                            .map(|h| h.id)
                            .collect();
                        for old in oldest {
                            state.unbind(old);
                            if let Some(Entry(old)) = state.conns.get(&old) {
                                old.request_close(CloseRequest::Replaced);
                            }
                            self.counters.bump(Counter::PerUidReplaced);
                        }
                    }
                }
            }
        }
        let key = state.uids.shared(uid).unwrap_or_else(|| uid.clone());
        handle.set_uid(key.clone());
        handle.set_listed(true);
        let now = Instant::now();
        let handover = match &mut state.mailboxes {
            Some(mailboxes) => {
                if handle.v2 {
                    mailboxes.keep_resumable(&key, now + mailboxes.ttl());
                }
                match since.filter(|_| handle.v2) {
                    Some(since) => mailboxes.resume(&key, since, now),
                    None => mailboxes.take_waiting(&key, now),
                }
            }
            // No mailbox here: in cluster mode with a mailbox, Redis hands over (and
            // says whether there is a gap); with none at all a resume always has one.
            None => Handover {
                gap: handle.v2 && since.is_some() && !self.hold_at_bind,
                ..Handover::default()
            },
        };
        let handed = handover.messages.len() as u64;
        let resent = handed - handover.waiting as u64;
        let mut frames = Vec::with_capacity(handover.messages.len() + 1);
        if handover.gap {
            frames.push((0, Utf8Bytes::from_static(GAP_FRAME)));
        }
        frames.extend(handover.messages.into_iter().map(|(id, message)| {
            let frame = if handle.v2 {
                self.v2_frame(id, &message)
            } else {
                message
            };
            (id, frame)
        }));
        if !frames.is_empty() {
            handle.push_waiting(frames);
        }
        if self.hold_at_bind {
            // Before it is listed: nothing pushed to it can be written ahead of its mailbox.
            handle.hold();
        }
        if state.uids.insert(handle)
            && let Some(events) = &state.events
        {
            events.first_bound(&key);
        }
        drop(guard);
        self.counters.bump(Counter::Binds);
        self.counters
            .add(Counter::MailboxDelivered, handover.waiting as u64);
        self.counters.add(Counter::MailboxResent, resent);
        self.counters
            .add(Counter::ResumeGaps, u64::from(handover.gap));
        self.counters.add(Counter::MessagesDelivered, handed);
        self.counters
            .add(Counter::MailboxExpired, handover.expired as u64);
        self.mark_changed([key.clone()]);
        Ok(key)
    }

    /// The `pushd.v2` frame of message `id`: `ID PAYLOAD`.
    fn v2_frame(&self, id: MessageId, payload: &Utf8Bytes) -> Utf8Bytes {
        Utf8Bytes::from(format!("{}-{id} {payload}", self.boot))
    }

    /// A connection's frame for message `id` (the cluster's `ms-N`) handed over
    /// from Redis: the message itself, or `ID PAYLOAD` for a `pushd.v2` connection.
    pub(crate) fn frame_for(
        &self,
        handle: &ConnHandle,
        id: &str,
        message: Utf8Bytes,
    ) -> (MessageId, Utf8Bytes) {
        let n = cluster_number(id).unwrap_or(0);
        if handle.v2 {
            handle.note_number(n);
            (n, Utf8Bytes::from(format!("{id} {message}")))
        } else {
            (n, message)
        }
    }

    /// Where a `pushd.v2` client's `since` is. A node's own ids look like `BOOT-N`,
    /// BOOT being when this registry started, so an id from before a restart (or
    /// anything else) is [`Since::Unknown`]; in cluster mode ids are the cluster's,
    /// `ms-N`, and N places them.
    pub(crate) fn since(&self, text: &str) -> Since {
        if self.changed.is_some() {
            return cluster_number(text).map_or(Since::Unknown, Since::After);
        }
        match text.split_once('-') {
            Some((boot, n)) if boot.parse() == Ok(self.boot) => {
                n.parse().map_or(Since::Unknown, Since::After)
            }
            _ => Since::Unknown,
        }
    }

    /// Forgets a connection whose task is ending. If it was its uid's last
    /// connection and closed for a reason its uid may come back from (not a
    /// kick, not shutdown), the messages it had taken but not written go back
    /// to the front of the uid's mailbox.
    pub(crate) fn close(&self, id: ConnId) {
        let mut guard = self.lock();
        let state = &mut *guard;
        let uid = state.unbind(id);
        let Some(Entry(handle)) = state.conns.take(&id) else {
            drop(guard);
            self.mark_changed(uid);
            return;
        };
        let mut returned = (0, 0);
        if let (Some(mailboxes), Some(bound)) = (&mut state.mailboxes, handle.uid()) {
            let final_close = matches!(
                handle.close_request(),
                Some(CloseRequest::Kicked { .. } | CloseRequest::Shutdown)
            );
            if handle.v2 && !final_close {
                // Its client may come back with `since` within the TTL.
                let ttl = mailboxes.ttl();
                mailboxes.keep_resumable(bound, Instant::now() + ttl);
            }
            if !final_close && !state.uids.contains(bound) {
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

    /// Queues `message` for every connection of `uid`; with none (or none that
    /// could take it), keeps it in the uid's mailbox unless `transient`.
    #[cfg(test)]
    pub(crate) fn push_to_uid(&self, uid: &Uid, message: &Utf8Bytes, transient: bool) -> Pushed {
        self.push(uid, message, transient).0
    }

    /// [`Registry::push_to_uid`], and how many `pushd.v2` connections of the uid
    /// are left to the bus: in cluster mode they get the push from there, with the
    /// cluster's id, and count as having taken it.
    pub(crate) fn push(&self, uid: &Uid, message: &Utf8Bytes, transient: bool) -> (Pushed, u64) {
        let mut guard = self.lock();
        let state = &mut *guard;
        // Taken under the lock: ids of one uid increase in push order.
        let id = self.next_message.fetch_add(1, Ordering::Relaxed);
        let handles = state.uids.get(uid.as_str()).into_iter().flatten();
        let by_bus = self.changed.is_some();
        let v2_left = if by_bus {
            handles.clone().filter(|h| h.v2).count() as u64
        } else {
            0
        };
        let handles = handles.filter(|h| !(by_bus && h.v2));
        let (mut offered, any_v2) = self.offer(handles, id, message, Offered::direct());
        let (delivered, slow) = (offered.delivered, std::mem::take(&mut offered.slow));
        let delivered_or_due = delivered + v2_left;
        let unbound = state.disconnect_slow(&slow);
        let pushed = if delivered_or_due > 0 {
            if let Some(mailboxes) = &mut state.mailboxes {
                let now = Instant::now();
                if any_v2 {
                    mailboxes.keep_resumable(uid, now + mailboxes.ttl());
                }
                mailboxes.retain(uid, id, message, now);
            }
            Pushed::Delivered(delivered_or_due)
        } else if transient || state.is_banned(uid, Instant::now()) {
            Pushed::NotKept
        } else {
            self.keep(state, uid, id, message)
        };
        drop(guard);
        offered.write();
        self.counters.add(Counter::MessagesDelivered, delivered);
        self.counters.add(Counter::SlowConsumers, slow.len() as u64);
        self.mark_changed(unbound);
        (pushed, v2_left)
    }

    /// Queues a push that came over the bus for `uid`'s connections here: with
    /// `id`, `pushd.v2` ones get `ID PAYLOAD`; raw ones get the message unless
    /// `!raw`. Nothing is kept: in cluster mode the mailbox is in Redis. Returns
    /// how many took it.
    pub(crate) fn push_from_bus(
        &self,
        uid: &Uid,
        message: &Utf8Bytes,
        id: Option<&str>,
        raw: bool,
    ) -> u64 {
        let n = id.and_then(cluster_number).unwrap_or(0);
        let mut v2_frame = None;
        let mut offered = Offered::direct();
        {
            let state = self.lock();
            for handle in state.uids.get(uid.as_str()).into_iter().flatten() {
                let frame = match (handle.v2, id) {
                    (true, Some(id)) => {
                        handle.note_number(n);
                        &*v2_frame.get_or_insert_with(|| Utf8Bytes::from(format!("{id} {message}")))
                    }
                    // A node that gave no id is older than the cluster's ids; a
                    // pushd.v2 client then places nothing, and resumes with a gap.
                    (true, None) => &*v2_frame.get_or_insert_with(|| self.v2_frame(n, message)),
                    (false, _) if raw => message,
                    (false, _) => continue,
                };
                offered.queue(handle, n, frame, self.queue);
            }
        }
        self.finish_push(offered)
    }

    /// The uids that have a `pushd.v2` connection here.
    pub(crate) fn v2_uids(&self) -> Vec<Uid> {
        let state = self.lock();
        (state.uids.iter())
            .filter(|(_, handles)| handles.iter().any(|h| h.v2))
            .map(|(uid, _)| uid.clone())
            .collect()
    }

    /// Offers `message` to `uid`'s mailbox, counting and (throttled) logging
    /// what its bounds did to it.
    fn keep(&self, state: &mut State, uid: &Uid, id: MessageId, message: &Utf8Bytes) -> Pushed {
        let Some(mailboxes) = &mut state.mailboxes else {
            return Pushed::Offline;
        };
        match mailboxes.store(uid, id, message, Instant::now()) {
            Stored::Queued { dropped } => {
                self.counters.bump(Counter::MailboxStored);
                if dropped > 0 {
                    self.counters.add(Counter::MailboxDropped, dropped as u64);
                    state.mailbox_warnings.0.warn(&format_args!(
                        "the mailbox of {uid} is full ({dropped} dropped)"
                    ));
                }
                Pushed::Queued
            }
            Stored::OverMemory => {
                self.counters.bump(Counter::MailboxRefused);
                state
                    .mailbox_warnings
                    .1
                    .warn(&"the mailboxes together are at their memory limit");
                Pushed::NotKept
            }
        }
    }

    /// Queues `message` for every bound connection; returns how many took it.
    ///
    /// In cluster mode a broadcast has no number of the cluster's: `pushd.v2`
    /// connections get it under the number of the last message they were given
    /// (`0-N`), so that a resume from it neither skips nor repeats anything.
    pub(crate) fn broadcast(&self, message: &Utf8Bytes) -> u64 {
        let handles: Vec<Arc<ConnHandle>> = self.lock().uids.connections().cloned().collect();
        if self.changed.is_none() {
            let id = self.next_message.fetch_add(1, Ordering::Relaxed);
            let offered = Offered::default();
            return self.finish_push(self.offer(&handles, id, message, offered).0);
        }
        let (raw, v2): (Vec<_>, Vec<_>) = handles.iter().partition(|h| !h.v2);
        let (mut offered, _) = self.offer(raw, 0, message, Offered::default());
        for handle in v2 {
            let n = handle.last_number();
            let frame = Utf8Bytes::from(format!("0-{n} {message}"));
            offered.queue(handle, n, &frame, self.queue);
        }
        self.finish_push(offered)
    }

    /// Queues message `id` for each of `handles`: the bare message, or for
    /// `pushd.v2` connections `ID PAYLOAD`, encoded once for all of them. Returns
    /// how many took it, those that could not (slow consumers), and whether a
    /// `pushd.v2` connection was among them.
    fn offer<'a>(
        &self,
        handles: impl IntoIterator<Item = &'a Arc<ConnHandle>>,
        id: MessageId,
        message: &Utf8Bytes,
        mut offered: Offered,
    ) -> (Offered, bool) {
        let mut v2_frame = None;
        for handle in handles {
            let frame = if handle.v2 {
                &*v2_frame.get_or_insert_with(|| self.v2_frame(id, message))
            } else {
                message
            };
            offered.queue(handle, id, frame, self.queue);
        }
        (offered, v2_frame.is_some())
    }

    /// Writes what a push queued for direct connections, counts it, and
    /// disconnects the connections that could not take it.
    fn finish_push(&self, mut offered: Offered) -> u64 {
        offered.write();
        let Offered {
            delivered, slow, ..
        } = offered;
        self.counters.add(Counter::MessagesDelivered, delivered);
        if !slow.is_empty() {
            let unbound = self.lock().disconnect_slow(&slow);
            self.counters.add(Counter::SlowConsumers, slow.len() as u64);
            self.mark_changed(unbound);
        }
        delivered
    }

    /// Unbinds every connection of `uid` at once and asks each to close with
    /// 4000; from the moment this returns, the uid is offline. Returns the
    /// number of connections kicked.
    ///
    /// With `ban`, the uid also cannot bind again for that long (close
    /// 4003), whether or not it was online.
    ///
    /// The uid's mailbox is emptied too.
    pub(crate) fn kick(&self, uid: &Uid, reason: &str, ban: Option<Duration>) -> u64 {
        let mut state = self.lock();
        if let Some(ban) = ban {
            state.bans.insert(uid.clone(), Instant::now() + ban);
        }
        if let Some(mailboxes) = &mut state.mailboxes {
            let (cleared, _) = mailboxes.clear(uid);
            self.counters.add(Counter::MailboxCleared, cleared as u64);
        }
        let Some((key, handles)) = state.uids.remove(uid) else {
            return 0;
        };
        if let Some(events) = &state.events {
            events.last_unbound(&key);
        }
        for handle in &handles {
            handle.set_listed(false);
            handle.request_close(CloseRequest::Kicked {
                reason: reason.to_owned(),
            });
        }
        drop(state);
        self.counters.add(Counter::Kicked, handles.len() as u64);
        self.mark_changed([key]);
        handles.len() as u64
    }

    /// Cluster mode: refuses binds of `uid` (close 4000 with `reason`) until
    /// [`Registry::kick_done`] or `until`, so that a client reconnecting in a
    /// loop cannot slip back in on this node while other nodes are still kicking it.
    pub(crate) fn hold_kicked(&self, uid: &Uid, reason: &str, until: Instant) {
        let mut state = self.lock();
        // Holds whose kick_done never came (the coordinator died) go here, not later.
        let now = Instant::now();
        state.kicking.retain(|_, (ends, _)| *ends > now);
        state
            .kicking
            .insert(uid.clone(), (until, Arc::from(reason)));
    }

    /// Ends the hold of [`Registry::hold_kicked`].
    pub(crate) fn kick_done(&self, uid: &str) {
        self.lock().kicking.remove(uid);
    }

    /// Kicks every connection, bound or not, idle for longer than
    /// `idle_over_ms`. Returns the total and the affected uids, sorted.
    pub(crate) fn kick_idle(&self, idle_over_ms: u64, reason: &str) -> (u64, Vec<(Uid, u64)>) {
        let now = self.clock.now_ms();
        let mut state = self.lock();
        let idle: Vec<ConnId> = state
            .conns
            .iter()
            .filter(|Entry(handle)| now.saturating_sub(handle.last_activity_ms()) > idle_over_ms)
            .map(|Entry(handle)| handle.id)
            .collect();
        let mut per_uid: HashMap<Uid, u64> = HashMap::new();
        for &id in &idle {
            if let Some(uid) = state.unbind(id) {
                *per_uid.entry(uid).or_default() += 1;
            }
            let request = CloseRequest::Kicked {
                reason: reason.to_owned(),
            };
            if let Some(Entry(handle)) = state.conns.get(&id) {
                handle.request_close(request);
            }
        }
        drop(state);
        self.counters.add(Counter::Kicked, idle.len() as u64);
        self.mark_changed(per_uid.keys().cloned());
        let mut uids: Vec<(Uid, u64)> = per_uid.into_iter().collect();
        uids.sort_unstable();
        (idle.len() as u64, uids)
    }

    /// Lifts the ban on `uid`; false if it was not banned.
    pub(crate) fn unban(&self, uid: &str) -> bool {
        let mut state = self.lock();
        let banned = state.is_banned(uid, Instant::now());
        state.bans.remove(uid);
        banned
    }

    /// Active bans with their remaining time in milliseconds, sorted by uid.
    pub(crate) fn bans(&self) -> Vec<(Uid, u64)> {
        let now = Instant::now();
        let mut state = self.lock();
        state.bans.retain(|_, until| *until > now);
        let mut bans: Vec<(Uid, u64)> = state
            .bans
            .iter()
            .map(|(uid, until)| (uid.clone(), until.duration_since(now).as_millis() as u64))
            .collect();
        drop(state);
        bans.sort_unstable();
        bans
    }

    /// How many bans are active.
    pub(crate) fn ban_count(&self) -> u64 {
        let now = Instant::now();
        let mut state = self.lock();
        state.bans.retain(|_, until| *until > now);
        state.bans.len() as u64
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

    /// Uids with waiting messages, messages, payload bytes.
    pub(crate) fn mailbox_totals(&self) -> (u64, u64, u64) {
        let state = self.lock();
        state
            .mailboxes
            .as_ref()
            .map_or((0, 0, 0), Mailboxes::totals)
    }

    /// Asks every open connection to close for shutdown.
    pub(crate) fn close_all_for_shutdown(&self) {
        let handles: Vec<Arc<ConnHandle>> = self
            .lock()
            .conns
            .iter()
            .map(|Entry(handle)| handle.clone())
            .collect();
        for handle in handles {
            handle.request_close(CloseRequest::Shutdown);
        }
    }

    /// How many connections each of `uids` has now (0: offline).
    pub(crate) fn counts(&self, uids: &[Uid]) -> Vec<u64> {
        let state = self.lock();
        uids.iter()
            .map(|uid| state.uids.get(uid).map_or(0, |list| list.len() as u64))
            .collect()
    }

    /// Every bound uid with its number of connections.
    pub(crate) fn all_counts(&self) -> Vec<(Uid, u64)> {
        let state = self.lock();
        state
            .uids
            .iter()
            .map(|(uid, list)| (uid.clone(), list.len() as u64))
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

    /// Every bound uid with its connections, sorted by uid, oldest connection first.
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
                let connections = handles
                    .iter()
                    .map(|h| ConnSnapshot {
                        id: h.id,
                        peer: h.peer,
                        idle_ms: now_ms.saturating_sub(h.last_activity_ms()),
                        connected_ms: now_ms.saturating_sub(h.connected_ms),
                    })
                    .collect();
                (uid, connections)
            })
            .collect();
        uids.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        uids
    }

    /// Open connections (bound or not) and distinct bound uids.
    pub(crate) fn sizes(&self) -> (u64, u64) {
        let state = self.lock();
        (state.conns.len() as u64, state.uids.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(queue: QueueLimits, per_uid: Option<(usize, PerUidPolicy)>) -> Registry {
        let limits = RegistryLimits {
            queue,
            per_uid,
            mailbox: None,
            hold_at_bind: false,
        };
        Registry::new(limits, Clock::new(), Arc::default(), None)
    }

    fn limits(messages: usize) -> QueueLimits {
        QueueLimits {
            messages,
            bytes: 1 << 20,
        }
    }

    fn uid(text: &str) -> Uid {
        Uid::parse(text).unwrap()
    }

    fn peer() -> SocketAddr {
        "127.0.0.1:9".parse().unwrap()
    }

    /// Connections that took the push (0 when kept or not).
    fn push(registry: &Registry, to: &str, message: &str) -> u64 {
        match registry.push_to_uid(&uid(to), &message.into(), false) {
            Pushed::Delivered(n) => n,
            Pushed::Queued | Pushed::NotKept | Pushed::Offline => 0,
        }
    }

    fn with_mailbox(size: usize) -> Registry {
        let limits = RegistryLimits {
            queue: limits(8),
            per_uid: None,
            mailbox: Some(MailboxLimits {
                ttl: Duration::from_secs(30),
                size,
                memory: 1 << 20,
            }),
            hold_at_bind: false,
        };
        Registry::new(limits, Clock::new(), Arc::default(), None)
    }

    fn drain(handle: &ConnHandle) -> Vec<String> {
        std::iter::from_fn(|| handle.pop())
            .map(|m| m.to_string())
            .collect()
    }

    #[test]
    fn a_push_to_an_offline_uid_waits_for_its_next_connection_before_newer_pushes() {
        let registry = with_mailbox(10);
        for m in ["1", "2"] {
            assert_eq!(
                registry.push_to_uid(&uid("42"), &m.into(), false),
                Pushed::Queued
            );
        }
        assert_eq!(
            registry.push_to_uid(&uid("42"), &"t".into(), true),
            Pushed::NotKept,
            "transient"
        );
        let a = bound(&registry, "42");
        assert_eq!(push(&registry, "42", "3"), 1);
        assert_eq!(drain(&a), ["1", "2", "3"]);
        let b = bound(&registry, "42");
        assert!(
            drain(&b).is_empty(),
            "the mailbox went to the first connection only"
        );
        assert_eq!(registry.mailbox_totals(), (0, 0, 0));
    }

    #[test]
    fn what_the_last_connection_did_not_write_goes_back_to_the_front() {
        let registry = with_mailbox(10);
        let a = bound(&registry, "42");
        push(&registry, "42", "1");
        push(&registry, "42", "2");
        assert_eq!(a.pop().unwrap(), "1", "written");
        registry.close(a.id);
        assert_eq!(
            registry.push_to_uid(&uid("42"), &"3".into(), false),
            Pushed::Queued
        );
        let b = bound(&registry, "42");
        assert_eq!(drain(&b), ["2", "3"]);
    }

    #[test]
    fn a_kick_empties_the_mailbox_and_its_connections_give_nothing_back() {
        let registry = with_mailbox(10);
        let a = bound(&registry, "42");
        push(&registry, "42", "unwritten");
        registry.kick(&uid("42"), "bye", Some(Duration::from_secs(60)));
        registry.close(a.id);
        assert_eq!(registry.mailbox_totals(), (0, 0, 0));
        assert_eq!(
            registry.push_to_uid(&uid("42"), &"x".into(), false),
            Pushed::NotKept,
            "a banned uid's push is not kept"
        );
        registry.push_to_uid(&uid("7"), &"x".into(), false);
        registry.kick(&uid("7"), "bye", None);
        assert_eq!(registry.mailbox_totals(), (0, 0, 0), "offline uids too");
    }

    #[test]
    fn a_slow_consumer_unlisted_by_a_push_leaves_that_push_in_the_mailbox() {
        let registry = with_mailbox(10);
        let a = bound(&registry, "42");
        for i in 0..8 {
            assert_eq!(push(&registry, "42", &i.to_string()), 1);
        }
        assert_eq!(
            registry.push_to_uid(&uid("42"), &"8".into(), false),
            Pushed::Queued
        );
        registry.close(a.id);
        let b = bound(&registry, "42");
        let got = drain(&b);
        assert_eq!(got.len(), 9, "{got:?}");
        assert_eq!(got.first().map(String::as_str), Some("0"));
        assert_eq!(got.last().map(String::as_str), Some("8"));
    }

    /// A new connection, bound to `to`.
    fn bound(registry: &Registry, to: &str) -> Arc<ConnHandle> {
        let handle = registry.open(peer(), false);
        registry.bind(handle.id, &uid(to), None).unwrap();
        handle
    }

    fn close_request(handle: &ConnHandle) -> Option<CloseRequest> {
        handle.close_request().cloned()
    }

    #[test]
    fn the_queue_is_bounded_in_bytes_too() {
        let registry = registry(
            QueueLimits {
                messages: 100,
                bytes: 10,
            },
            None,
        );
        let a = bound(&registry, "a");
        assert_eq!(push(&registry, "a", "123456"), 1);
        assert_eq!(push(&registry, "a", "1234"), 1);
        assert_eq!(push(&registry, "a", "1"), 0, "11 bytes > 10");
        assert_eq!(close_request(&a), Some(CloseRequest::SlowConsumer));
    }

    #[test]
    fn push_reaches_every_connection_of_the_uid_only() {
        let registry = registry(limits(8), None);
        let a = registry.open(peer(), false);
        let b = registry.open(peer(), false);
        let c = registry.open(peer(), false);
        assert!(registry.bind(a.id, &uid("42"), None).is_ok());
        assert!(registry.bind(b.id, &uid("42"), None).is_ok());
        assert!(registry.bind(c.id, &uid("7"), None).is_ok());
        assert_eq!(push(&registry, "42", "hi"), 2);
        assert_eq!(a.pop().unwrap(), "hi");
        assert_eq!(b.pop().unwrap(), "hi");
        assert!(c.pop().is_none());
        assert_eq!(push(&registry, "nobody", "hi"), 0);
    }

    #[test]
    fn per_uid_limit_refuses_or_replaces_the_oldest() {
        let refuse = registry(limits(8), Some((2, PerUidPolicy::RefuseNew)));
        let (a, b, c) = (
            refuse.open(peer(), false),
            refuse.open(peer(), false),
            refuse.open(peer(), false),
        );
        assert!(
            refuse.bind(a.id, &uid("42"), None).is_ok()
                && refuse.bind(b.id, &uid("42"), None).is_ok()
        );
        assert_eq!(refuse.bind(c.id, &uid("42"), None), Err(BindError::TooMany));
        assert!(
            refuse.bind(c.id, &uid("43"), None).is_ok(),
            "other uids are not affected"
        );

        let replace = registry(limits(8), Some((1, PerUidPolicy::CloseOldest)));
        let (old, new) = (replace.open(peer(), false), replace.open(peer(), false));
        assert!(replace.bind(old.id, &uid("42"), None).is_ok());
        assert!(replace.bind(new.id, &uid("42"), None).is_ok());
        assert_eq!(close_request(&old), Some(CloseRequest::Replaced));
        assert_eq!(replace.online("42"), 1);
        assert_eq!(push(&replace, "42", "m"), 1);
        assert_eq!(new.pop().unwrap(), "m");
    }

    #[test]
    fn a_connection_binds_once() {
        let registry = registry(limits(8), None);
        let a = registry.open(peer(), false);
        assert!(registry.bind(a.id, &uid("42"), None).is_ok());
        assert!(registry.bind(a.id, &uid("43"), None).is_err());
        assert_eq!(registry.online("43"), 0);
    }

    #[test]
    fn kick_takes_the_uid_offline_before_the_tasks_close() {
        let registry = registry(limits(8), None);
        let a = bound(&registry, "42");
        let b = bound(&registry, "42");
        assert_eq!(registry.kick(&uid("42"), "bye", None), 2);
        assert_eq!(registry.online("42"), 0);
        assert_eq!(push(&registry, "42", "x"), 0);
        assert_eq!(
            close_request(&a),
            Some(CloseRequest::Kicked {
                reason: "bye".into()
            })
        );
        // Still open until the task closes it, but no longer bindable.
        assert_eq!(registry.sizes(), (2, 0));
        assert!(registry.bind(a.id, &uid("42"), None).is_err());
        registry.close(a.id);
        registry.close(b.id);
        assert_eq!(registry.sizes(), (0, 0));
        assert_eq!(registry.kick(&uid("42"), "bye", None), 0);
    }

    #[test]
    fn a_ban_refuses_binds_until_it_ends_or_is_lifted() {
        let registry = registry(limits(8), None);
        let _a = bound(&registry, "42");
        assert_eq!(
            registry.kick(&uid("42"), "out", Some(Duration::from_secs(60))),
            1
        );
        let b = registry.open(peer(), false);
        assert_eq!(
            registry.bind(b.id, &uid("42"), None),
            Err(BindError::Banned)
        );
        assert_eq!(registry.bans().len(), 1);
        assert!(registry.unban("42"));
        assert!(!registry.unban("42"));
        assert!(registry.bind(b.id, &uid("42"), None).is_ok());
        // A ban on an offline uid still applies, and expires by itself.
        assert_eq!(
            registry.kick(&uid("7"), "x", Some(Duration::from_millis(1))),
            0
        );
        std::thread::sleep(Duration::from_millis(5));
        let c = registry.open(peer(), false);
        assert!(registry.bind(c.id, &uid("7"), None).is_ok());
        assert!(registry.bans().is_empty());
    }

    #[test]
    fn a_kick_hold_refuses_binds_until_done() {
        let registry = registry(limits(8), None);
        let far = Instant::now() + Duration::from_secs(60);
        registry.hold_kicked(&uid("42"), "moving", far);
        let a = registry.open(peer(), false);
        assert_eq!(
            registry.bind(a.id, &uid("42"), None),
            Err(BindError::Kicking(Arc::from("moving")))
        );
        registry.kick_done("42");
        assert!(registry.bind(a.id, &uid("42"), None).is_ok());
    }

    #[test]
    fn close_unbinds_and_keeps_the_other_connections() {
        let registry = registry(limits(8), None);
        let a = bound(&registry, "42");
        let b = bound(&registry, "42");
        registry.close(a.id);
        assert_eq!(registry.online("42"), 1);
        registry.close(b.id);
        assert_eq!(registry.online("42"), 0);
        assert!(registry.list().is_empty());
    }

    #[test]
    fn a_full_queue_disconnects_the_slow_consumer_only() {
        let registry = registry(limits(2), None);
        let slow = bound(&registry, "s");
        let fast = bound(&registry, "f");
        for _ in 0..2 {
            assert_eq!(registry.broadcast(&"m".into()), 2);
            fast.pop().unwrap();
        }
        assert_eq!(registry.broadcast(&"m".into()), 1);
        assert_eq!(close_request(&slow), Some(CloseRequest::SlowConsumer));
        assert_eq!(registry.online("s"), 0);
        assert_eq!(registry.online("f"), 1);
    }

    #[test]
    fn kick_idle_uses_last_activity() {
        let registry = registry(limits(8), None);
        let a = bound(&registry, "old");
        let b = bound(&registry, "new");
        a.touch(0);
        b.touch(registry.clock.now_ms() + 10_000);
        std::thread::sleep(std::time::Duration::from_millis(5));
        let (n, uids) = registry.kick_idle(1, "idle");
        assert_eq!(n, 1);
        assert_eq!(uids, vec![(uid("old"), 1)]);
        assert_eq!(registry.online("new"), 1);
    }

    #[test]
    fn binds_and_closes_mark_the_uid_changed() {
        let limits = RegistryLimits {
            queue: limits(8),
            per_uid: None,
            mailbox: None,
            hold_at_bind: false,
        };
        let changed = Arc::new(ChangedUids::default());
        let tracking = Registry::new(limits, Clock::new(), Arc::default(), Some(changed.clone()));
        let a = bound(&tracking, "42");
        assert_eq!(changed.take(), vec![uid("42")]);
        tracking.close(a.id);
        assert_eq!(changed.take(), vec![uid("42")]);
        assert!(changed.take().is_empty());
    }

    #[test]
    fn list_is_sorted_and_reports_peers() {
        let registry = registry(limits(8), None);
        for name in ["b", "a", "c"] {
            let h = registry.open(peer(), false);
            registry.bind(h.id, &uid(name), None).unwrap();
        }
        let list = registry.list();
        let uids: Vec<_> = list.iter().map(|(uid, _)| uid.as_str()).collect();
        assert_eq!(uids, ["a", "b", "c"]);
        assert_eq!(list[0].1[0].peer, peer());
    }
}
