//! Presence events: a uid's connections coming and going (`connect`,
//! `disconnect`), and the uid itself (`online`, `offline`).
//!
//! Each event is serialized once and published on a bounded broadcast ring
//! that every consumer (SSE streams, `pushctl events`, the webhook) reads at
//! its own pace. The last `--events-retain` are kept too ([`history`]), so
//! that a consumer that comes back with the id of the last event it saw gets
//! what it missed, and one that falls more than [`RING`] events behind reads
//! on from there; one that falls behind the history too is told of a gap,
//! counted in `events_dropped`, and memory stays put.
//!
//! In cluster mode a node does not publish its events itself: they go to the
//! cluster's Redis stream (`cluster::events` writes what [`Events::outgoing`]
//! gathers), whose entry ids are the events' ids, and every node publishes
//! what it reads there ([`Events::deliver`]), its own events included: every
//! node's consumers see the whole cluster's events, in one order.
//!
//! `online` and `offline` come from the registry, called under its lock at
//! the moment a uid gains its first bound connection or loses its last one,
//! so that their order is the registry's own. `offline` waits
//! `--offline-grace`: a uid that binds again within it (a page navigation, a
//! reload) was never offline, and neither event is emitted. In cluster mode
//! both describe the whole cluster instead: Redis decides them as each node's
//! presence is written (`cluster::presence`, `cluster::lease`), and the same
//! script adds them to the cluster's stream, once, so that a node killed just
//! after does not take them with it.

mod history;

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use pushd_proto::uid::Uid;
use serde::Serialize;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

use super::counters::{Counter, Counters};
pub(crate) use history::EventId;
use history::History;

/// Events kept for consumers that fall behind.
pub(crate) const RING: usize = 4096;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Kind {
    /// A connection bound to the uid.
    Connect,
    /// A bound connection of the uid ended.
    Disconnect,
    /// The uid's first connection bound.
    Online,
    /// The uid's last connection closed, and `--offline-grace` passed.
    Offline,
    /// A bound connection sent a text message (`--upstream`).
    Message,
    /// A resume started before the oldest event still held: some are missing.
    Gap,
}

impl Kind {
    /// The `type` field's value.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Connect => "connect",
            Kind::Disconnect => "disconnect",
            Kind::Online => "online",
            Kind::Offline => "offline",
            Kind::Message => "message",
            Kind::Gap => "gap",
        }
    }

    /// The kind named `name`, of those a consumer can ask for.
    pub(crate) fn parse(name: &str) -> Option<Kind> {
        [
            Kind::Connect,
            Kind::Disconnect,
            Kind::Online,
            Kind::Offline,
            Kind::Message,
        ]
        .into_iter()
        .find(|kind| kind.name() == name)
    }
}

/// One event as published: its kind, for filtering, its id and its JSON.
#[derive(Debug, Clone)]
pub(crate) struct Published {
    pub(crate) kind: Kind,
    pub(crate) id: EventId,
    /// One JSON object without its `id` (which is known only once the event
    /// is in the cluster's stream), and without a newline.
    pub(crate) body: Bytes,
}

impl Published {
    /// Appends the event's JSON, `{"id":"ID",` then the rest of the body.
    pub(crate) fn write_json(&self, out: &mut Vec<u8>) {
        out.reserve(self.body.len() + 32);
        out.extend_from_slice(b"{\"id\":\"");
        out.extend_from_slice(self.id.to_string().as_bytes());
        out.push(b'"');
        match self.body.get(1..) {
            Some(b"}") | None => out.push(b'}'),
            Some(rest) => {
                out.push(b',');
                out.extend_from_slice(rest);
            }
        }
    }

    /// The event's JSON, with its id.
    #[cfg(test)]
    pub(crate) fn json(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_json(&mut out);
        out
    }
}

/// An event made on this node in cluster mode, for the cluster's stream.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) kind: Kind,
    /// As [`Published::body`].
    pub(crate) body: Bytes,
}

/// Events made here waiting to go to the cluster's stream. Bounded: while
/// Redis is away the newest beyond [`OUTBOX`] are dropped, counted.
#[derive(Debug, Default)]
struct Outbox {
    queue: Mutex<Vec<Outgoing>>,
    ready: Notify,
}

/// Events waiting for the cluster's stream at most.
pub(crate) const OUTBOX: usize = 65_536;

/// The wire form of an event (docs/http-api.md, "Events"), but for its id.
#[derive(Serialize)]
struct Wire<'a> {
    #[serde(rename = "type")]
    kind: Kind,
    uid: &'a str,
    node: &'a str,
    at_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    conn: Option<u64>,
    /// The connection's id, unique in the cluster (`kick --connection`).
    #[serde(skip_serializing_if = "Option::is_none")]
    connection: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    peer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    /// `sse` for a page's event stream; absent for a WebSocket.
    #[serde(rename = "kind", skip_serializing_if = "Option::is_none")]
    conn_kind: Option<&'static str>,
    /// A message's number on its connection, from 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
    /// A message's text, as the page sent it.
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a str>,
}

/// Where events are made and published.
#[derive(Debug)]
pub(crate) struct Events {
    sender: broadcast::Sender<Published>,
    node: String,
    /// What connection ids start with.
    connections: String,
    /// First part of every id: this process's start, in ms since the epoch.
    boot: u64,
    /// The next event's number, taken under the history's lock so that ids
    /// are published in order.
    next: AtomicU64,
    /// `--events-retain`.
    retain: usize,
    history: Mutex<History>,
    /// A consumer subscribed once: from then on events are made and kept
    /// even while none listens (a single node).
    listened: std::sync::atomic::AtomicBool,
    counters: Arc<Counters>,
    grace: Duration,
    /// Uids whose last connection closed and whose grace has not passed, with
    /// a generation that a rebind or a later close changes.
    pending: Mutex<HashMap<Uid, u64>>,
    /// The closes waiting for their grace to pass, oldest first: the grace is
    /// the same for all, so this is also deadline order, and one task
    /// ([`Events::run_offline`]) serves them all.
    graces: Mutex<VecDeque<Grace>>,
    /// A close was queued while none waited: the grace task looks again.
    graces_queued: Notify,
    generation: AtomicU64,
    /// Cluster mode: events go to the cluster's stream, and `online` and
    /// `offline` describe the whole cluster: Redis decides and tells them.
    outbox: Option<Outbox>,
    /// Cancelled at shutdown once the last events are out: every consumer
    /// reads what is left, then its stream ends.
    ended: CancellationToken,
}

/// One close waiting for its grace to pass.
#[derive(Debug)]
struct Grace {
    ends: tokio::time::Instant,
    uid: Uid,
    generation: u64,
}

/// Closes whose grace runs at once, at most: past it, a close is announced
/// `offline` at once (a churn of uids cannot grow pushd's memory without bound).
pub(crate) const MAX_GRACES: usize = 100_000;

/// A connection, as its events describe it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnRef {
    pub(crate) id: u64,
    pub(crate) peer: SocketAddr,
    /// A page's event stream, not a WebSocket.
    pub(crate) sse: bool,
}

/// How a node's events are made.
#[derive(Debug)]
pub(crate) struct EventsSetup {
    /// The node's name, in every event.
    pub(crate) node: String,
    /// `--offline-grace`.
    pub(crate) grace: Duration,
    /// Cluster mode: events go to the cluster's stream (see the module's doc).
    pub(crate) cluster: bool,
    /// What the ids of this process's connections start with
    /// (`Node::connection_prefix`).
    pub(crate) connections: String,
    /// `--events-retain`: events kept for resumes.
    pub(crate) retain: usize,
    pub(crate) counters: Arc<Counters>,
}

impl Events {
    /// A node's events, as `setup` says.
    pub(crate) fn new(setup: EventsSetup) -> Arc<Self> {
        let (sender, _) = broadcast::channel(RING);
        let boot = crate::core::ids::boot_ms();
        // Events of an earlier process (or, in cluster mode, before this node
        // read the stream: `cluster::events` says what it holds) are gone.
        let lost = (!setup.cluster).then_some(EventId::new(boot, 0));
        Arc::new(Events {
            sender,
            node: setup.node,
            connections: setup.connections,
            boot,
            next: AtomicU64::new(1),
            retain: setup.retain,
            history: Mutex::new(History::new(setup.retain, lost)),
            listened: std::sync::atomic::AtomicBool::new(false),
            counters: setup.counters,
            grace: setup.grace,
            pending: Mutex::new(HashMap::new()),
            graces: Mutex::new(VecDeque::new()),
            graces_queued: Notify::new(),
            generation: AtomicU64::new(1),
            outbox: setup.cluster.then(Outbox::default),
            ended: CancellationToken::new(),
        })
    }

    /// Shutdown, after every connection closed: the `offline` of each uid
    /// still within its grace is told now (nobody will come back to this
    /// process), then the streams end, each after reading what is left.
    pub(crate) fn end(&self) {
        self.lock_graces().clear();
        let pending: Vec<Uid> = self.lock_pending().drain().map(|(uid, _)| uid).collect();
        for uid in pending {
            self.emit(Kind::Offline, &uid, None, None);
        }
        self.ended.cancel();
    }

    /// Whether [`Events::end`] was called: consumers are reading their last events.
    pub(crate) fn has_ended(&self) -> bool {
        self.ended.is_cancelled()
    }

    /// Returns once [`Events::end`] was called.
    pub(crate) async fn ending(&self) {
        self.ended.cancelled().await;
    }

    /// The id of this process's connection number `n`, unique in the cluster.
    pub(crate) fn connection_id(&self, n: u64) -> String {
        format!("{}.{n}", self.connections)
    }

    /// What the ids of this process's connections start with.
    pub(crate) fn connection_prefix(&self) -> &str {
        &self.connections
    }

    /// `--offline-grace`.
    pub(crate) fn grace(&self) -> Duration {
        self.grace
    }

    /// `--events-retain`.
    pub(crate) fn retain(&self) -> usize {
        self.retain
    }

    /// Where consumers count what they miss.
    pub(crate) fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// A new consumer of the `kinds` given (every kind when empty): from now
    /// on, or first every event held after `since` (and a `gap` event when
    /// some of those are gone). One that falls more than the ring behind
    /// reads on from the history; past that it is told of a gap, counted.
    pub(crate) fn subscribe(
        self: &Arc<Self>,
        kinds: Vec<Kind>,
        since: Option<EventId>,
    ) -> Subscription {
        self.listened.store(true, Ordering::Relaxed);
        let history = self.lock_history();
        // Under the history's lock: nothing is published between the two.
        let receiver = self.sender.subscribe();
        let mut backlog = VecDeque::new();
        if let Some(since) = since {
            let held = history.since(since);
            backlog = held.events;
            if let Some(lost) = held.gap {
                backlog.push_front(self.gap(since, lost));
            }
        }
        let last = since.or_else(|| history.position());
        drop(history);
        Subscription {
            events: self.clone(),
            receiver,
            backlog,
            kinds,
            last,
        }
    }

    /// The `gap` event of a resume from `since` when events up to `lost` are
    /// gone. Its id is `lost`'s: a client that resumes from it again has no gap.
    fn gap(&self, since: EventId, lost: EventId) -> Published {
        let body = serde_json::json!({
            "type": "gap",
            "after": since.to_string(),
            "node": self.node,
            "at_ms": crate::core::ids::unix_ms(),
        });
        Published {
            kind: Kind::Gap,
            id: lost,
            body: serde_json::to_vec(&body).expect("events serialize").into(),
        }
    }

    /// How many consumers read the events now.
    pub(crate) fn subscribers(&self) -> u64 {
        self.sender.receiver_count() as u64
    }

    /// Connection `conn` of `uid` sent message number `seq`, `data`.
    pub(crate) fn message(&self, uid: &str, conn: ConnRef, seq: u64, data: &str) {
        self.publish(Kind::Message, uid, Some(conn), None, Some((seq, data)));
    }

    /// Makes and publishes one event.
    fn emit(&self, kind: Kind, uid: &str, conn: Option<ConnRef>, reason: Option<&str>) {
        self.publish(kind, uid, conn, reason, None);
    }

    fn publish(
        &self,
        kind: Kind,
        uid: &str,
        conn: Option<ConnRef>,
        reason: Option<&str>,
        message: Option<(u64, &str)>,
    ) {
        // A single node makes no event before its first consumer (nobody could
        // resume from one); then it keeps them for resumes, with or without
        // consumers, unless `--events-retain 0`.
        let kept = self.retain > 0 && self.listened.load(Ordering::Relaxed);
        if self.outbox.is_none() && !kept && self.sender.receiver_count() == 0 {
            return;
        }
        let wire = Wire {
            kind,
            uid,
            node: &self.node,
            at_ms: crate::core::ids::unix_ms(),
            conn: conn.map(|c| c.id),
            connection: conn.map(|c| self.connection_id(c.id)),
            peer: conn.map(|c| c.peer.to_string()),
            reason,
            conn_kind: conn.and_then(|c| c.sse.then_some("sse")),
            seq: message.map(|(seq, _)| seq),
            data: message.map(|(_, data)| data),
        };
        let body = Bytes::from(serde_json::to_vec(&wire).expect("events serialize"));
        match &self.outbox {
            Some(outbox) => {
                let mut queue = outbox.queue.lock().unwrap_or_else(|p| p.into_inner());
                if queue.len() >= OUTBOX {
                    drop(queue);
                    self.counters.bump(Counter::EventsDropped);
                    return;
                }
                queue.push(Outgoing { kind, body });
                let first = queue.len() == 1;
                drop(queue);
                if first {
                    outbox.ready.notify_one();
                }
            }
            None => {
                let mut history = self.lock_history();
                let id = EventId::new(self.boot, self.next.fetch_add(1, Ordering::Relaxed));
                self.keep_and_send(&mut history, Published { kind, id, body });
            }
        }
    }

    fn keep_and_send(&self, history: &mut History, event: Published) {
        history.push(event.clone());
        let _ = self.sender.send(event);
    }

    /// Cluster mode: the events made here since the last call, for the
    /// cluster's stream, oldest first.
    pub(crate) fn outgoing(&self) -> Vec<Outgoing> {
        match &self.outbox {
            Some(outbox) => {
                std::mem::take(&mut *outbox.queue.lock().unwrap_or_else(|p| p.into_inner()))
            }
            None => Vec::new(),
        }
    }

    /// Cluster mode: returns once an event waits for [`Events::outgoing`].
    pub(crate) async fn outgoing_ready(&self) {
        match &self.outbox {
            Some(outbox) => outbox.ready.notified().await,
            None => std::future::pending().await,
        }
    }

    /// Cluster mode: an event read from the cluster's stream, published here.
    /// One already held (read again after a reconnection) is skipped.
    pub(crate) fn deliver(&self, kind: Kind, id: EventId, body: Bytes) {
        let mut history = self.lock_history();
        if history.newest().is_some_and(|newest| id <= newest) {
            return;
        }
        self.keep_and_send(&mut history, Published { kind, id, body });
    }

    /// Cluster mode: the events up to `lost` are out of reach (the stream
    /// let them go before this node could read them).
    pub(crate) fn lost_through(&self, lost: EventId) {
        self.lock_history().lose_through(lost);
    }

    /// Cluster mode: events [`Events::outgoing`] gave that could not be
    /// written, to go first next time (what is over the bound is dropped, counted).
    pub(crate) fn put_back(&self, mut unsent: Vec<Outgoing>) {
        let Some(outbox) = &self.outbox else {
            return;
        };
        let mut queue = outbox.queue.lock().unwrap_or_else(|p| p.into_inner());
        let room = OUTBOX.saturating_sub(queue.len());
        if unsent.len() > room {
            let over = unsent.len() - room;
            self.counters.add(Counter::EventsDropped, over as u64);
            unsent.truncate(room);
        }
        unsent.append(&mut queue);
        *queue = unsent;
    }

    /// The newest event held, where reading the cluster's stream goes on from.
    pub(crate) fn newest(&self) -> Option<EventId> {
        self.lock_history().newest()
    }

    /// A connection bound to `uid`.
    pub(crate) fn connected(&self, uid: &str, conn: ConnRef) {
        self.emit(Kind::Connect, uid, Some(conn), None);
    }

    /// A bound connection of `uid` ended, for `reason`.
    pub(crate) fn disconnected(&self, uid: &str, conn: ConnRef, reason: &str) {
        self.emit(Kind::Disconnect, uid, Some(conn), Some(reason));
    }

    /// `uid` gained its first bound connection (called under the registry's
    /// lock): `online`, unless it was only within its grace.
    pub(crate) fn first_bound(&self, uid: &Uid) {
        if self.outbox.is_some() {
            return;
        }
        let was_pending = self.lock_pending().remove(uid).is_some();
        if !was_pending {
            self.emit(Kind::Online, uid, None, None);
        }
    }

    /// `uid` lost its last bound connection (called under the registry's
    /// lock): `offline` once the grace passes without a rebind.
    pub(crate) fn last_unbound(&self, uid: &Uid) {
        if self.outbox.is_some() {
            return;
        }
        let mut graces = self.lock_graces();
        if graces.len() >= MAX_GRACES {
            drop(graces);
            self.emit(Kind::Offline, uid, None, None);
            return;
        }
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        self.lock_pending().insert(uid.clone(), generation);
        graces.push_back(Grace {
            ends: tokio::time::Instant::now() + self.grace,
            uid: uid.clone(),
            generation,
        });
        let first = graces.len() == 1;
        drop(graces);
        if first {
            self.graces_queued.notify_one();
        }
    }

    /// Announces `offline` for each close whose grace passed without a
    /// rebind, until the events end.
    pub(crate) async fn run_offline(self: Arc<Self>) {
        loop {
            let next = self.lock_graces().front().map(|grace| grace.ends);
            tokio::select! {
                () = self.ended.cancelled() => return,
                () = self.graces_queued.notified(), if next.is_none() => continue,
                () = tokio::time::sleep_until(next.unwrap_or_else(tokio::time::Instant::now)), if next.is_some() => {}
            }
            let now = tokio::time::Instant::now();
            loop {
                let mut graces = self.lock_graces();
                if graces.front().is_none_or(|grace| grace.ends > now) {
                    break;
                }
                let grace = graces.pop_front().expect("looked at above");
                drop(graces);
                let mut pending = self.lock_pending();
                if let Entry::Occupied(entry) = pending.entry(grace.uid) {
                    // A rebind removed it; a later close gave it a newer generation.
                    if *entry.get() == grace.generation {
                        let (uid, _) = entry.remove_entry();
                        drop(pending);
                        self.emit(Kind::Offline, &uid, None, None);
                    }
                }
            }
        }
    }

    fn lock_history(&self) -> std::sync::MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_graces(&self) -> std::sync::MutexGuard<'_, VecDeque<Grace>> {
        self.graces.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, HashMap<Uid, u64>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One consumer's view of the events.
#[derive(Debug)]
pub(crate) struct Subscription {
    events: Arc<Events>,
    receiver: broadcast::Receiver<Published>,
    /// What a resume (or a catch-up after falling behind) gets before the
    /// events the ring brings.
    backlog: VecDeque<Published>,
    kinds: Vec<Kind>,
    /// The newest event this consumer was given (or passed over): what the
    /// ring brings again after a catch-up is skipped.
    last: Option<EventId>,
}

impl Subscription {
    /// The next event of the kinds asked for; `None` once events ended
    /// (shutdown) and every event published before that was read.
    pub(crate) async fn next(&mut self) -> Option<Published> {
        loop {
            while let Some(event) = self.backlog.pop_front() {
                if event.kind != Kind::Gap {
                    self.last = Some(event.id);
                }
                if self.wants(event.kind) {
                    return Some(event);
                }
            }
            let received = tokio::select! {
                biased;
                received = self.receiver.recv() => received,
                () = self.events.ended.cancelled() => match self.receiver.try_recv() {
                    Ok(event) => Ok(event),
                    Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                        Err(broadcast::error::RecvError::Lagged(missed))
                    }
                    Err(_) => return None,
                },
            };
            match received {
                // Given already, from the history.
                Ok(event) if self.last.is_some_and(|last| event.id <= last) => {}
                Ok(event) => {
                    self.last = Some(event.id);
                    if self.wants(event.kind) {
                        return Some(event);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => self.catch_up(missed),
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// The ring went on without this consumer: what it missed comes from the
    /// history, and a `gap` event first when the history no longer has all
    /// of it (then the `missed` are counted as dropped).
    fn catch_up(&mut self, missed: u64) {
        let Some(last) = self.last else {
            self.events.counters.add(Counter::EventsDropped, missed);
            return;
        };
        let held = self.events.lock_history().since(last);
        self.backlog = held.events;
        if let Some(lost) = held.gap {
            self.events.counters.add(Counter::EventsDropped, missed);
            self.backlog.push_front(self.events.gap(last, lost));
        }
    }
}

impl Subscription {
    /// Whether the consumer asked for `kind`; every consumer is told of a gap.
    fn wants(&self, kind: Kind) -> bool {
        self.kinds.is_empty() || kind == Kind::Gap || self.kinds.contains(&kind)
    }
}

/// Kinds named in a comma-separated list (`online,offline`); an unknown name
/// is an error that names it.
pub(crate) fn parse_kinds(list: &str) -> Result<Vec<Kind>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(|name| {
            Kind::parse(name).ok_or_else(|| {
                format!(
                    "unknown event type {name:?} (connect, disconnect, online, offline, message)"
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> EventsSetup {
        EventsSetup {
            node: "n1".into(),
            grace: Duration::from_secs(5),
            cluster: false,
            connections: "p".into(),
            retain: 100,
            counters: Arc::default(),
        }
    }

    fn single_node() -> Arc<Events> {
        Events::new(setup())
    }

    fn kinds(receiver: &mut broadcast::Receiver<Published>) -> Vec<(Kind, String)> {
        let mut seen = Vec::new();
        while let Ok(event) = receiver.try_recv() {
            let json: serde_json::Value = serde_json::from_slice(&event.json()).unwrap();
            seen.push((event.kind, json["uid"].as_str().unwrap().to_owned()));
        }
        seen
    }

    #[tokio::test(start_paused = true)]
    async fn a_rebind_within_the_grace_is_neither_offline_nor_online() {
        let events = single_node();
        tokio::spawn(events.clone().run_offline());
        let mut receiver = events.sender.subscribe();
        let uid = Uid::parse("42").unwrap();
        events.first_bound(&uid);
        events.last_unbound(&uid);
        tokio::time::sleep(Duration::from_secs(2)).await;
        events.first_bound(&uid);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(kinds(&mut receiver), [(Kind::Online, "42".to_owned())]);

        events.last_unbound(&uid);
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(kinds(&mut receiver), [(Kind::Offline, "42".to_owned())]);
    }

    #[tokio::test(start_paused = true)]
    async fn only_the_latest_close_counts() {
        let events = single_node();
        tokio::spawn(events.clone().run_offline());
        let mut receiver = events.sender.subscribe();
        let uid = Uid::parse("7").unwrap();
        events.first_bound(&uid);
        events.last_unbound(&uid);
        tokio::time::sleep(Duration::from_secs(3)).await;
        events.first_bound(&uid);
        events.last_unbound(&uid);
        tokio::time::sleep(Duration::from_secs(3)).await;
        // The first close's timer fired here, and found a newer close pending.
        assert_eq!(kinds(&mut receiver), [(Kind::Online, "7".to_owned())]);
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(kinds(&mut receiver), [(Kind::Offline, "7".to_owned())]);
    }

    #[test]
    fn events_are_one_json_object_with_the_documented_fields() {
        let events = single_node();
        let mut receiver = events.sender.subscribe();
        let conn = ConnRef {
            id: 3,
            peer: "192.0.2.7:4711".parse().unwrap(),
            sse: false,
        };
        events.disconnected("42", conn, "heartbeat");
        let event = receiver.try_recv().unwrap();
        let json: serde_json::Value = serde_json::from_slice(&event.json()).unwrap();
        assert_eq!(json["type"], "disconnect");
        assert_eq!(json["uid"], "42");
        assert_eq!(json["node"], "n1");
        assert_eq!(json["conn"], 3);
        assert_eq!(json["peer"], "192.0.2.7:4711");
        assert_eq!(json["reason"], "heartbeat");
        assert_eq!(json["id"].as_str(), Some(&*event.id.to_string()));
        assert!(json["at_ms"].as_u64().unwrap() > 1_700_000_000_000);
    }

    #[tokio::test]
    async fn a_consumer_that_falls_behind_the_ring_reads_on_from_the_history() {
        let events = Events::new(EventsSetup {
            retain: 3 * RING,
            ..setup()
        });
        let conn = ConnRef {
            id: 1,
            peer: "192.0.2.7:4711".parse().unwrap(),
            sse: false,
        };
        let mut slow = events.subscribe(Vec::new(), None);
        for seq in 1..=(2 * RING) as u64 {
            events.message("42", conn, seq, "hi");
        }
        let mut seqs = Vec::new();
        for _ in 0..2 * RING {
            let event = slow.next().await.unwrap();
            let json: serde_json::Value = serde_json::from_slice(&event.json()).unwrap();
            seqs.push(json["seq"].as_u64().unwrap());
        }
        assert_eq!(
            seqs,
            (1..=(2 * RING) as u64).collect::<Vec<_>>(),
            "none lost, none twice"
        );
        assert_eq!(events.counters.get(Counter::EventsDropped), 0);

        // Further behind than the history: told of the gap, counted.
        let small = Events::new(EventsSetup {
            retain: 10,
            ..setup()
        });
        let mut slow = small.subscribe(Vec::new(), None);
        for seq in 1..=(RING + 100) as u64 {
            small.message("42", conn, seq, "hi");
        }
        assert_eq!(slow.next().await.unwrap().kind, Kind::Gap);
        let next: serde_json::Value =
            serde_json::from_slice(&slow.next().await.unwrap().json()).unwrap();
        assert_eq!(
            next["seq"].as_u64(),
            Some((RING + 100 - 9) as u64),
            "the history's oldest"
        );
        assert!(small.counters.get(Counter::EventsDropped) > 0);
    }

    #[tokio::test(start_paused = true)]
    async fn closes_waiting_for_their_grace_are_bounded() {
        let events = single_node();
        let mut receiver = events.sender.subscribe();
        for i in 0..MAX_GRACES {
            events.last_unbound(&Uid::parse(&format!("u{i}")).unwrap());
        }
        assert!(receiver.try_recv().is_err(), "all within their grace");
        // One more close than the bound: announced at once, nothing more kept.
        events.last_unbound(&Uid::parse("one-more").unwrap());
        assert_eq!(
            kinds(&mut receiver),
            [(Kind::Offline, "one-more".to_owned())]
        );
        assert_eq!(events.lock_graces().len(), MAX_GRACES);
    }
}
