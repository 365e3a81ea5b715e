//! What pushd keeps of a uid's messages: those waiting for a connection (the
//! mailbox), and for uids with a `pushd.v2` client, the recent ones that were
//! delivered too, so that a client reconnecting with `?since=ID` resumes with
//! no gap and no duplicate.
//!
//! One store per uid: its recent messages in push order, each with its id and
//! whether it was delivered. A uid whose clients are all raw keeps only the
//! undelivered ones (an empty mailbox costs nothing); a uid that has or
//! recently had a `pushd.v2` connection is *resumable* for a TTL and keeps the
//! delivered ones as well. This is plain data with no lock of its own: the
//! registry holds it under its own lock, so "no connection, so store" and
//! "bind, so take" can never interleave, and a bind hands every waiting
//! message to the new connection before any newer push can reach it.
//!
//! Bounds: `--mailbox-size` messages per uid (the oldest goes first), and
//! `--mailbox-memory` bytes for all uids together, each message counted as its
//! payload plus [`PER_MESSAGE_OVERHEAD`] so that a flood of tiny messages is
//! bounded too (past it a push is refused, not stored). Expiry costs nothing per
//! idle uid: a message older than the TTL is dropped when its uid is next
//! touched, and [`Mailboxes::expire`] walks only the stores that are due, in
//! deadline order.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::payload::Payload;
use pushd_proto::uid::Uid;

use super::ids::{MessageId, Since};
use super::saved::{Restored, SavedEntry, SavedStore, Wall};

/// Bytes counted for each kept message besides its payload: its queue slot
/// (the shared payload handle, id, deadline), the payload allocation's own
/// overhead, and the store's share of the map. pushd's RSS grew by 134 bytes
/// per waiting message besides the payload with 418k small messages waiting and
/// as many refused (docs/PERFORMANCE.md, "The mailbox"); rounded up so that
/// `--mailbox-memory` bounds the real memory, not only the accounted bytes.
pub(crate) const PER_MESSAGE_OVERHEAD: usize = 160;

/// Bytes counted for each uid's store besides its messages: its map entry
/// (the uid and the store, about 150 bytes with the table's slack), its key in
/// the due index (about 40) and the uid's own allocation, estimated from their
/// sizes and rounded up. An empty store kept for a `pushd.v2` uid that may
/// resume costs memory too, so that a churn of such uids is bounded by
/// `--mailbox-memory` like the messages are.
pub(crate) const PER_STORE_OVERHEAD: usize = 256;

/// The mailbox settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MailboxLimits {
    /// How long a message is kept (`--mailbox-ttl`, not zero: zero turns the mailbox off).
    pub(crate) ttl: Duration,
    /// Most messages per uid (`--mailbox-size`).
    pub(crate) size: usize,
    /// Most bytes for all uids together (`--mailbox-memory`).
    pub(crate) memory: usize,
}

/// What became of a message offered to a mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stored {
    /// It waits; `dropped` older undelivered messages made room for it.
    Queued {
        /// Waiting messages pushed out by `--mailbox-size`.
        dropped: usize,
    },
    /// Every store together is at `--mailbox-memory`.
    OverMemory,
}

/// What a binding connection gets from its uid's store.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Handover {
    /// Tell the client first that messages after its `since` are missing.
    pub(crate) gap: bool,
    /// The messages, oldest first.
    pub(crate) messages: Vec<(MessageId, Payload)>,
    /// Of them, how many had not been delivered before (the mailbox part).
    pub(crate) waiting: usize,
    /// Messages found past their TTL and dropped.
    pub(crate) expired: usize,
}

#[derive(Debug)]
struct Entry {
    id: MessageId,
    message: Payload,
    /// When it is dropped.
    expires: Instant,
    delivered: bool,
}

#[derive(Debug, Default)]
struct Store {
    entries: VecDeque<Entry>,
    /// Entries not delivered yet.
    waiting: usize,
    /// Accounted bytes: payloads plus overhead.
    cost: usize,
    /// While in the future, delivered messages are kept too (a `pushd.v2`
    /// connection had this uid recently).
    resumable_until: Option<Instant>,
    /// The newest message this store let go of before a resuming client could
    /// have it: a resume from before it has a gap.
    lost_through: MessageId,
    /// The newest message of the uid this store saw (kept, or let go of): a
    /// `since` past it was never issued to this uid.
    newest: MessageId,
    /// Its key in [`Mailboxes::due`].
    due: Option<(Instant, u64)>,
}

impl Store {
    fn resumable(&self, now: Instant) -> bool {
        self.resumable_until.is_some_and(|until| until > now)
    }

    /// Where a resume from `since` starts, and whether it misses something.
    /// An id this store knows was issued to its uid (one it holds, the newest
    /// it saw, the last it let go of) places the client: what is after it,
    /// with a gap if the store was not resumable all along or let go of
    /// something after it. Any other claim (another uid's id, one from the
    /// future or another boot) places nothing: a gap, then all it holds.
    fn place(&self, since: Since, now: Instant) -> (MessageId, bool) {
        let Since::After(id) = since else {
            return (0, true);
        };
        let issued = id != 0
            && id <= self.newest
            && (id == self.newest
                || id == self.lost_through
                || self.entries.iter().any(|e| e.id == id));
        if !issued {
            return (0, true);
        }
        (id, !self.resumable(now) || id < self.lost_through)
    }

    /// When something about this store falls due: its oldest message expires,
    /// or it stops being resumable.
    fn next_due(&self) -> Option<Instant> {
        let first = self.entries.front().map(|e| e.expires);
        [first, self.resumable_until].into_iter().flatten().min()
    }
}

/// What one uid's mailbox holds, for `pushctl mailbox`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MailboxSummary {
    pub(crate) uid: Uid,
    /// Messages waiting (not delivered yet).
    pub(crate) messages: u64,
    /// Their payload bytes.
    pub(crate) bytes: u64,
    /// How long ago the oldest of them was pushed.
    pub(crate) oldest: Duration,
}

/// Every uid's store.
#[derive(Debug)]
pub(crate) struct Mailboxes {
    limits: MailboxLimits,
    stores: HashMap<Uid, Store>,
    /// One entry per store with something due, keyed by when (a sequence
    /// number tells equal instants apart).
    due: BTreeMap<(Instant, u64), Uid>,
    sequence: u64,
    /// Accounted bytes of every store together.
    cost: usize,
    /// Messages waiting, and their payload bytes, in every store together.
    waiting: usize,
    waiting_payload: usize,
}

/// `uid`'s store, made (and its overhead added to `cost`) if it has none.
fn store_entry<'a>(
    stores: &'a mut HashMap<Uid, Store>,
    cost: &mut usize,
    uid: &Uid,
) -> &'a mut Store {
    match stores.entry(uid.clone()) {
        std::collections::hash_map::Entry::Occupied(store) => store.into_mut(),
        std::collections::hash_map::Entry::Vacant(vacant) => {
            *cost += PER_STORE_OVERHEAD;
            vacant.insert(Store {
                cost: PER_STORE_OVERHEAD,
                ..Store::default()
            })
        }
    }
}

fn cost_of(message: &Payload) -> usize {
    message.len() + PER_MESSAGE_OVERHEAD
}

impl Mailboxes {
    /// Nothing kept yet.
    pub(crate) fn new(limits: MailboxLimits) -> Self {
        Mailboxes {
            limits,
            stores: HashMap::new(),
            due: BTreeMap::new(),
            sequence: 0,
            cost: 0,
            waiting: 0,
            waiting_payload: 0,
        }
    }

    /// How long a message is kept.
    pub(crate) fn ttl(&self) -> Duration {
        self.limits.ttl
    }

    /// Keeps `message` for `uid`, which has no connection, until its next
    /// connection binds or the TTL passes.
    pub(crate) fn store(
        &mut self,
        uid: &Uid,
        id: MessageId,
        message: &Payload,
        now: Instant,
    ) -> Stored {
        match self.append(uid, id, message, now, false) {
            Some(dropped) => Stored::Queued { dropped },
            None => Stored::OverMemory,
        }
    }

    /// Appends message `id` to `uid`'s store, within its bounds: past
    /// `--mailbox-size` the oldest goes; past `--mailbox-memory` a waiting message
    /// takes the room of copies kept for resumes, a copy takes none and is not kept.
    /// Returns how many waiting messages made room, or `None` when it was not kept
    /// (then a resume from before `id` has a gap).
    fn append(
        &mut self,
        uid: &Uid,
        id: MessageId,
        message: &Payload,
        now: Instant,
        delivered: bool,
    ) -> Option<usize> {
        self.expire_store(uid, now);
        let full = self.stores.get(uid).map_or(0, |s| s.entries.len()) >= self.limits.size;
        // What a full store gives back for this message counts as room.
        let freed = match self.stores.get(uid).and_then(|s| s.entries.front()) {
            Some(oldest) if full => cost_of(&oldest.message),
            _ => 0,
        };
        // A uid's first message brings its store.
        let store = if self.stores.contains_key(uid) {
            0
        } else {
            PER_STORE_OVERHEAD
        };
        let needed =
            (self.cost + cost_of(message) + store).saturating_sub(self.limits.memory + freed);
        if needed > 0 && (delivered || !self.make_room(needed, uid)) {
            if let Some(store) = self.stores.get_mut(uid) {
                store.lost_through = id;
                store.newest = store.newest.max(id);
            }
            return None;
        }
        let dropped = if full { self.pop_front(uid) } else { 0 };
        self.push_back(uid, id, message, now + self.limits.ttl, delivered);
        Some(dropped)
    }

    /// Frees `needed` bytes, if it can, by letting go of delivered messages kept
    /// only for resuming clients, oldest first (a waiting message matters more
    /// than a copy of one that arrived). Looks at a bounded number of stores.
    fn make_room(&mut self, needed: usize, except: &Uid) -> bool {
        const LOOK: usize = 64;
        let start = self.cost;
        let candidates: Vec<Uid> = self.due.values().take(LOOK).cloned().collect();
        for uid in candidates {
            if &uid == except {
                continue;
            }
            while self
                .stores
                .get(&uid)
                .and_then(|s| s.entries.front())
                .is_some_and(|e| e.delivered)
            {
                self.pop_front(&uid);
                if start - self.cost >= needed {
                    return true;
                }
            }
        }
        start - self.cost >= needed
    }

    /// Keeps a message that a connection of `uid` took, if `uid` is resumable:
    /// a `pushd.v2` client that reconnects with an older `since` gets it again.
    pub(crate) fn retain(&mut self, uid: &Uid, id: MessageId, message: &Payload, now: Instant) {
        match self.stores.get_mut(uid) {
            Some(store) if store.resumable(now) => {
                self.append(uid, id, message, now, true);
            }
            // Not kept: a resume from before it must hear of the gap.
            Some(store) => {
                store.lost_through = id;
                store.newest = store.newest.max(id);
            }
            None => {}
        }
    }

    /// Keeps `uid`'s delivered messages until `until` (it has a `pushd.v2`
    /// connection, or had one until now).
    pub(crate) fn keep_resumable(&mut self, uid: &Uid, until: Instant) {
        if !self.stores.contains_key(uid) && self.cost + PER_STORE_OVERHEAD > self.limits.memory {
            // No room for one more store: the uid is not resumable, and a
            // resume of it will say `!gap`.
            return;
        }
        let store = store_entry(&mut self.stores, &mut self.cost, uid);
        store.resumable_until = Some(store.resumable_until.map_or(until, |u| u.max(until)));
        self.reindex(uid);
    }

    /// Hands what a connection binding without `since` gets: the messages
    /// waiting for `uid`, oldest first. They count as delivered from now on.
    pub(crate) fn take_waiting(&mut self, uid: &Uid, now: Instant) -> Handover {
        let expired = self.expire_store(uid, now);
        let mut handover = Handover {
            expired,
            ..Handover::default()
        };
        let Some(store) = self.stores.get_mut(uid) else {
            return handover;
        };
        for entry in store.entries.iter_mut().filter(|e| !e.delivered) {
            entry.delivered = true;
            handover.messages.push((entry.id, entry.message.clone()));
        }
        handover.waiting = handover.messages.len();
        store.waiting = 0;
        self.waiting -= handover.waiting;
        self.waiting_payload -= handover
            .messages
            .iter()
            .map(|(_, m)| m.len())
            .sum::<usize>();
        if !store.resumable(now) {
            self.remove(uid);
        }
        handover
    }

    /// Hands what a `pushd.v2` connection binding with `since` gets, and keeps
    /// `uid` resumable until `until` (it has that connection now): the
    /// messages after `since`, `!gap` first when some are missing, or when
    /// `since` places nothing (see `Store::place`) `!gap` and every message
    /// held. Messages that waited for a connection are handed over either
    /// way: a waiting message is never discarded because of what a client claims.
    pub(crate) fn resume(
        &mut self,
        uid: &Uid,
        since: Since,
        now: Instant,
        until: Instant,
    ) -> Handover {
        let expired = self.expire_store(uid, now);
        let mut handover = Handover {
            expired,
            gap: true,
            ..Handover::default()
        };
        // Judged before this bind makes the uid resumable: only a store that
        // kept everything since the client left can say nothing is missing.
        let after = match self.stores.get(uid) {
            Some(store) => {
                let (after, gap) = store.place(since, now);
                handover.gap = gap;
                after
            }
            None => 0,
        };
        self.keep_resumable(uid, until);
        // No store: nothing was held, and there was no room to begin one.
        let Some(store) = self.stores.get_mut(uid) else {
            return handover;
        };
        for entry in store.entries.iter_mut() {
            if entry.delivered && entry.id <= after {
                continue;
            }
            if !entry.delivered {
                entry.delivered = true;
                handover.waiting += 1;
                self.waiting -= 1;
                self.waiting_payload -= entry.message.len();
                store.waiting -= 1;
            }
            handover.messages.push((entry.id, entry.message.clone()));
        }
        handover
    }

    /// Puts `messages` (oldest first) back at the front of `uid`'s mailbox: what
    /// its last connection had taken but not written when it closed. Returns how
    /// many could not be kept (size or memory), oldest first. A resumable uid
    /// keeps them already (its clients resume by id), so nothing is added there.
    pub(crate) fn put_back(
        &mut self,
        uid: &Uid,
        messages: Vec<(MessageId, Payload)>,
        now: Instant,
    ) -> usize {
        if self.stores.get(uid).is_some_and(|s| s.resumable(now)) {
            return 0;
        }
        let mut lost = 0;
        // Newest first, each in front of the last: the result is in push order,
        // and when room runs out it is the oldest that are left out.
        for (id, message) in messages.into_iter().rev() {
            let len = self.stores.get(uid).map_or(0, |s| s.entries.len());
            let store = if len == 0 { PER_STORE_OVERHEAD } else { 0 };
            if len >= self.limits.size || self.cost + cost_of(&message) + store > self.limits.memory
            {
                lost += 1;
                continue;
            }
            let cost = cost_of(&message);
            let store = store_entry(&mut self.stores, &mut self.cost, uid);
            self.waiting += 1;
            self.waiting_payload += message.len();
            self.cost += cost;
            store.cost += cost;
            store.waiting += 1;
            store.entries.push_front(Entry {
                id,
                message,
                expires: now + self.limits.ttl,
                delivered: false,
            });
            self.reindex(uid);
        }
        lost
    }

    /// Empties `uid`'s store; returns what was waiting (messages, payload bytes).
    pub(crate) fn clear(&mut self, uid: &str) -> (usize, usize) {
        let Some(store) = self.stores.get(uid) else {
            return (0, 0);
        };
        let waiting = store.entries.iter().filter(|e| !e.delivered);
        let held = (store.waiting, waiting.map(|e| e.message.len()).sum());
        self.remove(uid);
        held
    }

    /// Drops every message whose TTL has passed and the stores that are empty
    /// and no longer resumable, looking only at the stores that are due, at
    /// most `budget` of them. Returns the waiting messages dropped and whether
    /// more stores are due.
    pub(crate) fn expire(&mut self, now: Instant, budget: usize) -> (usize, bool) {
        let mut expired = 0;
        for _ in 0..budget {
            let Some((&(at, _), uid)) = self.due.first_key_value() else {
                return (expired, false);
            };
            if at > now {
                return (expired, false);
            }
            let uid = uid.clone();
            expired += self.expire_store(&uid, now);
            if self
                .stores
                .get(&uid)
                .is_some_and(|s| s.due.is_some_and(|(at, _)| at <= now))
            {
                // Due for its resumability, which has ended.
                self.end_resumability(&uid);
            }
        }
        let more = self
            .due
            .first_key_value()
            .is_some_and(|(&(at, _), _)| at <= now);
        (expired, more)
    }

    /// Drops `uid`'s messages past their TTL; returns how many of them were waiting.
    fn expire_store(&mut self, uid: &Uid, now: Instant) -> usize {
        let mut waiting = 0;
        while let Some(first) = self.stores.get(uid).and_then(|s| s.entries.front()) {
            if first.expires > now {
                break;
            }
            waiting += self.pop_front(uid);
        }
        let empty = self
            .stores
            .get(uid)
            .is_some_and(|s| s.entries.is_empty() && !s.resumable(now));
        if empty {
            self.remove(uid);
        }
        waiting
    }

    /// `uid` is no longer resumable: its delivered messages go, the waiting stay.
    fn end_resumability(&mut self, uid: &Uid) {
        let Some(store) = self.stores.get_mut(uid) else {
            return;
        };
        store.resumable_until = None;
        let before = store.cost;
        // A resume from before the copies let go of now has a gap.
        let dropped = store.entries.iter().filter(|e| e.delivered).map(|e| e.id);
        store.lost_through = store.lost_through.max(dropped.max().unwrap_or(0));
        store.entries.retain(|e| !e.delivered);
        store.cost = PER_STORE_OVERHEAD
            + store
                .entries
                .iter()
                .map(|e| cost_of(&e.message))
                .sum::<usize>();
        self.cost -= before - store.cost;
        if store.entries.is_empty() {
            self.remove(uid);
        } else {
            self.reindex(uid);
        }
    }

    /// Appends one entry, keeping the totals and the index right.
    fn push_back(
        &mut self,
        uid: &Uid,
        id: MessageId,
        message: &Payload,
        expires: Instant,
        delivered: bool,
    ) {
        let cost = cost_of(message);
        let store = store_entry(&mut self.stores, &mut self.cost, uid);
        store.newest = store.newest.max(id);
        store.entries.push_back(Entry {
            id,
            message: message.clone(),
            expires,
            delivered,
        });
        store.cost += cost;
        self.cost += cost;
        if !delivered {
            store.waiting += 1;
            self.waiting += 1;
            self.waiting_payload += message.len();
        }
        if store.entries.len() == 1 {
            self.reindex(uid);
        }
    }

    /// Removes `uid`'s oldest entry; returns 1 if it was still waiting.
    fn pop_front(&mut self, uid: &Uid) -> usize {
        let Some(store) = self.stores.get_mut(uid) else {
            return 0;
        };
        let Some(first) = store.entries.pop_front() else {
            return 0;
        };
        let cost = cost_of(&first.message);
        store.cost -= cost;
        store.lost_through = store.lost_through.max(first.id);
        self.cost -= cost;
        let waiting = usize::from(!first.delivered);
        if waiting == 1 {
            store.waiting -= 1;
            self.waiting -= 1;
            self.waiting_payload -= first.message.len();
        }
        self.reindex(uid);
        waiting
    }

    /// Moves `uid`'s index entry to when its store is next due.
    fn reindex(&mut self, uid: &Uid) {
        let Some(store) = self.stores.get_mut(uid) else {
            return;
        };
        if let Some(key) = store.due.take() {
            self.due.remove(&key);
        }
        if let Some(at) = store.next_due() {
            self.sequence += 1;
            let key = (at, self.sequence);
            store.due = Some(key);
            self.due.insert(key, uid.clone());
        }
    }

    /// Forgets `uid`'s store, keeping the totals and the index right.
    fn remove(&mut self, uid: &str) {
        let Some(store) = self.stores.remove(uid) else {
            return;
        };
        if let Some(key) = store.due {
            self.due.remove(&key);
        }
        self.cost -= store.cost;
        self.waiting -= store.waiting;
        let waiting = store.entries.iter().filter(|e| !e.delivered);
        self.waiting_payload -= waiting.map(|e| e.message.len()).sum::<usize>();
    }

    /// Every store as plain data (see [`Saved`](super::saved::Saved)).
    pub(crate) fn save(&self, wall: &Wall) -> Vec<SavedStore> {
        let stores = self.stores.iter();
        stores
            .map(|(uid, store)| SavedStore {
                uid: uid.to_string(),
                resumable_until_ms: (store.resumable_until)
                    .filter(|until| *until > wall.instant())
                    .map(|until| wall.ms_of(until)),
                lost_through: store.lost_through,
                newest: store.newest,
                entries: (store.entries.iter())
                    .map(|entry| SavedEntry {
                        id: entry.id,
                        expires_ms: wall.ms_of(entry.expires),
                        delivered: entry.delivered,
                        message: entry.message.clone(),
                    })
                    .collect(),
            })
            .collect()
    }

    /// Puts saved stores back, within today's bounds: what expired meanwhile
    /// goes, no message outlives today's TTL, and past `--mailbox-size` or
    /// `--mailbox-memory` the oldest go first. Adds what it did to `restored`.
    pub(crate) fn restore(
        &mut self,
        stores: Vec<SavedStore>,
        wall: &Wall,
        restored: &mut Restored,
    ) {
        let latest = wall.instant() + self.limits.ttl;
        for saved in stores {
            let Ok(uid) = Uid::parse(&saved.uid) else {
                let waiting = saved.entries.iter().filter(|e| !e.delivered).count();
                restored.dropped += waiting as u64;
                continue;
            };
            let resumable_until = saved.resumable_until_ms.and_then(|ms| wall.instant_of(ms));
            if let Some(until) = resumable_until {
                self.keep_resumable(&uid, until);
            }
            let mut lost_through = saved.lost_through;
            for entry in saved.entries {
                let expires = wall.instant_of(entry.expires_ms).map(|at| at.min(latest));
                let kept = expires
                    .is_some_and(|expires| self.restore_entry(&uid, &entry, expires, restored));
                if !kept {
                    // A resume from before it has a gap.
                    lost_through = lost_through.max(entry.id);
                    match (entry.delivered, expires) {
                        (true, _) => {}
                        (false, None) => restored.expired += 1,
                        (false, Some(_)) => restored.dropped += 1,
                    }
                }
            }
            if let Some(store) = self.stores.get_mut(&uid) {
                store.lost_through = store.lost_through.max(lost_through);
                store.newest = store.newest.max(saved.newest);
            }
        }
    }

    /// Appends a saved message if it fits, the oldest making room past
    /// `--mailbox-size`; counts it in `restored`.
    fn restore_entry(
        &mut self,
        uid: &Uid,
        entry: &SavedEntry,
        expires: Instant,
        restored: &mut Restored,
    ) -> bool {
        let store = self.stores.get(uid);
        let store_cost = if store.is_some() {
            0
        } else {
            PER_STORE_OVERHEAD
        };
        if self.cost + cost_of(&entry.message) + store_cost > self.limits.memory {
            return false;
        }
        let full = store.filter(|s| s.entries.len() >= self.limits.size);
        if let Some(oldest) = full.and_then(|s| s.entries.front()) {
            if oldest.delivered {
                restored.copies -= 1;
            } else {
                restored.waiting -= 1;
                restored.dropped += 1;
            }
            self.pop_front(uid);
        }
        self.push_back(uid, entry.id, &entry.message, expires, entry.delivered);
        if entry.delivered {
            restored.copies += 1;
        } else {
            restored.waiting += 1;
        }
        true
    }

    /// Every uid with waiting messages, sorted by uid.
    pub(crate) fn list(&self, now: Instant) -> Vec<MailboxSummary> {
        let ttl = self.limits.ttl;
        let mut list: Vec<MailboxSummary> = (self.stores.iter())
            .filter(|(_, store)| store.waiting > 0)
            .map(|(uid, store)| {
                let waiting = store.entries.iter().filter(|e| !e.delivered);
                let oldest = waiting.clone().next().map_or(Duration::ZERO, |e| {
                    (now + ttl).saturating_duration_since(e.expires)
                });
                MailboxSummary {
                    uid: uid.clone(),
                    messages: store.waiting as u64,
                    bytes: waiting.map(|e| e.message.len() as u64).sum(),
                    oldest,
                }
            })
            .collect();
        list.sort_unstable_by(|a, b| a.uid.cmp(&b.uid));
        list
    }

    /// Uids with waiting messages, messages waiting, their payload bytes.
    pub(crate) fn totals(&self) -> (u64, u64, u64) {
        let uids = self.stores.values().filter(|s| s.waiting > 0).count();
        (
            uids as u64,
            self.waiting as u64,
            self.waiting_payload as u64,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(size: usize, memory: usize) -> MailboxLimits {
        MailboxLimits {
            ttl: Duration::from_secs(30),
            size,
            memory,
        }
    }

    fn uid(text: &str) -> Uid {
        Uid::parse(text).unwrap()
    }

    /// Nothing kept, and every total and index back to zero.
    fn assert_empty(boxes: &Mailboxes) {
        assert!(boxes.stores.is_empty() && boxes.due.is_empty());
        assert_eq!(
            (boxes.cost, boxes.waiting, boxes.waiting_payload),
            (0, 0, 0)
        );
    }

    fn texts(handover: &Handover) -> Vec<&str> {
        handover.messages.iter().map(|(_, m)| m.as_str()).collect()
    }

    fn ids(handover: &Handover) -> Vec<MessageId> {
        handover.messages.iter().map(|(id, _)| *id).collect()
    }

    #[test]
    fn messages_wait_in_order_and_are_taken_once() {
        let mut boxes = Mailboxes::new(limits(10, 1 << 20));
        let now = Instant::now();
        for (id, m) in [(1, "a"), (2, "b"), (3, "c")] {
            let stored = boxes.store(&uid("42"), id, &m.into(), now);
            assert_eq!(stored, Stored::Queued { dropped: 0 });
        }
        assert_eq!(boxes.totals(), (1, 3, 3));
        let taken = boxes.take_waiting(&uid("42"), now);
        assert_eq!((texts(&taken), taken.waiting), (vec!["a", "b", "c"], 3));
        assert!(boxes.take_waiting(&uid("42"), now).messages.is_empty());
        assert_empty(&boxes);
    }

    #[test]
    fn a_full_mailbox_drops_its_oldest() {
        let mut boxes = Mailboxes::new(limits(2, 1 << 20));
        let now = Instant::now();
        boxes.store(&uid("42"), 1, &"1".into(), now);
        boxes.store(&uid("42"), 2, &"2".into(), now);
        let third = boxes.store(&uid("42"), 3, &"3".into(), now);
        assert_eq!(third, Stored::Queued { dropped: 1 });
        assert_eq!(texts(&boxes.take_waiting(&uid("42"), now)), ["2", "3"]);
    }

    #[test]
    fn memory_is_shared_by_every_mailbox_and_counts_the_overhead() {
        let one = 4 + PER_MESSAGE_OVERHEAD + PER_STORE_OVERHEAD;
        let mut boxes = Mailboxes::new(limits(10, 2 * one));
        let now = Instant::now();
        let queued = |s| matches!(s, Stored::Queued { .. });
        assert!(queued(boxes.store(&uid("a"), 1, &"1234".into(), now)));
        assert!(queued(boxes.store(&uid("b"), 2, &"1234".into(), now)));
        assert_eq!(
            boxes.store(&uid("c"), 3, &"1".into(), now),
            Stored::OverMemory
        );
        boxes.take_waiting(&uid("a"), now);
        assert!(queued(boxes.store(&uid("c"), 4, &"1".into(), now)));
    }

    #[test]
    fn a_full_mailbox_at_the_memory_limit_still_takes_a_message_of_the_same_size() {
        let mut boxes = Mailboxes::new(limits(1, 1 + PER_MESSAGE_OVERHEAD + PER_STORE_OVERHEAD));
        let now = Instant::now();
        boxes.store(&uid("a"), 1, &"1".into(), now);
        let second = boxes.store(&uid("a"), 2, &"2".into(), now);
        assert_eq!(second, Stored::Queued { dropped: 1 });
        assert_eq!(texts(&boxes.take_waiting(&uid("a"), now)), ["2"]);
    }

    #[test]
    fn expiry_walks_only_what_is_due_and_taking_drops_the_expired() {
        let mut boxes = Mailboxes::new(limits(10, 1 << 20));
        let start = Instant::now();
        let at = |s| start + Duration::from_secs(s);
        boxes.store(&uid("old"), 1, &"x".into(), start);
        boxes.store(&uid("old"), 3, &"y".into(), at(20));
        boxes.store(&uid("new"), 2, &"z".into(), at(10));
        assert_eq!(boxes.expire(at(31), 100), (1, false));
        assert_eq!(boxes.totals(), (2, 2, 2));
        let taken = boxes.take_waiting(&uid("new"), at(45));
        assert_eq!((taken.messages.len(), taken.expired), (0, 1));
        assert_eq!(boxes.expire(at(60), 1), (1, false));
        assert_empty(&boxes);
    }

    #[test]
    fn expiry_is_bounded_by_its_budget() {
        let mut boxes = Mailboxes::new(limits(10, 1 << 20));
        let now = Instant::now();
        for i in 0..5 {
            boxes.store(&uid(&i.to_string()), i, &"x".into(), now);
        }
        let later = now + Duration::from_secs(31);
        assert_eq!(boxes.expire(later, 2), (2, true));
        assert_eq!(boxes.expire(later, 10), (3, false));
    }

    #[test]
    fn put_back_goes_in_front_in_push_order_and_keeps_the_newest_when_short_of_room() {
        let mut boxes = Mailboxes::new(limits(3, 1 << 20));
        let now = Instant::now();
        boxes.store(&uid("42"), 9, &"later".into(), now);
        let back = vec![(1, "a".into()), (2, "b".into()), (3, "c".into())];
        assert_eq!(boxes.put_back(&uid("42"), back, now), 1);
        assert_eq!(
            texts(&boxes.take_waiting(&uid("42"), now)),
            ["b", "c", "later"]
        );
        assert!(boxes.due.is_empty());
    }

    #[test]
    fn a_resumable_uid_keeps_delivered_messages_and_resumes_after_since() {
        let mut boxes = Mailboxes::new(limits(10, 1 << 20));
        let now = Instant::now();
        let tab = uid("42");
        boxes.keep_resumable(&tab, now + Duration::from_secs(30));
        boxes.retain(&tab, 1, &"one".into(), now);
        boxes.retain(&tab, 2, &"two".into(), now);
        boxes.store(&tab, 3, &"three".into(), now);
        assert_eq!(boxes.totals(), (1, 1, 5), "only the undelivered one waits");
        let resumed = boxes.resume(&tab, Since::After(1), now, now + Duration::from_secs(30));
        assert_eq!(
            (resumed.gap, ids(&resumed), resumed.waiting),
            (false, vec![2, 3], 1)
        );
        assert_eq!(boxes.totals(), (0, 0, 0));
        // Again from 2: still kept, nothing twice beyond what was asked.
        let again = boxes.resume(&tab, Since::After(2), now, now + Duration::from_secs(30));
        assert_eq!((again.gap, ids(&again)), (false, vec![3]));
        // A new tab without since gets nothing old.
        assert!(boxes.take_waiting(&tab, now).messages.is_empty());
    }

    #[test]
    fn a_resume_from_before_what_was_let_go_reports_a_gap() {
        let mut boxes = Mailboxes::new(limits(2, 1 << 20));
        let now = Instant::now();
        let tab = uid("42");
        boxes.keep_resumable(&tab, now + Duration::from_secs(30));
        for id in 1..=3 {
            boxes.retain(&tab, id, &id.to_string().into(), now);
        }
        let from_1 = boxes.resume(&tab, Since::After(1), now, now + Duration::from_secs(30));
        assert_eq!(
            (from_1.gap, ids(&from_1)),
            (false, vec![2, 3]),
            "1 is gone, but the client has it"
        );
        let resumed = boxes.resume(&tab, Since::After(0), now, now + Duration::from_secs(30));
        assert_eq!((resumed.gap, ids(&resumed)), (true, vec![2, 3]));
        let unknown = boxes.resume(&tab, Since::Unknown, now, now + Duration::from_secs(30));
        assert_eq!((unknown.gap, ids(&unknown)), (true, vec![2, 3]));
        let unknown_uid = boxes.resume(
            &uid("7"),
            Since::After(5),
            now,
            now + Duration::from_secs(30),
        );
        assert!(unknown_uid.gap && unknown_uid.messages.is_empty());
    }

    #[test]
    fn a_waiting_message_takes_the_room_of_copies_kept_for_resuming() {
        let one = 1 + PER_MESSAGE_OVERHEAD;
        let store = PER_STORE_OVERHEAD;
        let mut boxes = Mailboxes::new(limits(10, 3 * one + 2 * store));
        let now = Instant::now();
        let v2 = uid("v2");
        boxes.keep_resumable(&v2, now + Duration::from_secs(30));
        for id in 1..=3 {
            boxes.retain(&v2, id, &"d".into(), now);
        }
        let stored = boxes.store(&uid("away"), 4, &"w".into(), now);
        assert_eq!(stored, Stored::Queued { dropped: 0 });
        let resumed = boxes.resume(&v2, Since::After(0), now, now + Duration::from_secs(30));
        assert_eq!((resumed.gap, ids(&resumed)), (true, vec![2, 3]));
        assert_eq!(texts(&boxes.take_waiting(&uid("away"), now)), ["w"]);
        // Waiting messages are never given up for room.
        let mut full = Mailboxes::new(limits(10, one + store));
        full.store(&uid("a"), 1, &"w".into(), now);
        assert_eq!(
            full.store(&uid("b"), 2, &"w".into(), now),
            Stored::OverMemory
        );
    }

    #[test]
    fn resumability_ends_and_the_store_goes() {
        let mut boxes = Mailboxes::new(limits(10, 1 << 20));
        let now = Instant::now();
        let tab = uid("42");
        boxes.keep_resumable(&tab, now + Duration::from_secs(5));
        boxes.retain(&tab, 1, &"delivered".into(), now);
        boxes.store(&tab, 2, &"waiting".into(), now);
        assert_eq!(boxes.expire(now + Duration::from_secs(6), 10), (0, false));
        let left = boxes.take_waiting(&tab, now + Duration::from_secs(6));
        assert_eq!(
            texts(&left),
            ["waiting"],
            "the delivered one went, the waiting stayed"
        );
        boxes.retain(&tab, 3, &"x".into(), now + Duration::from_secs(6));
        assert_empty(&boxes); // no longer resumable
    }

    #[test]
    fn list_and_clear() {
        let mut boxes = Mailboxes::new(limits(10, 1 << 20));
        let now = Instant::now();
        boxes.store(&uid("b"), 1, &"12".into(), now);
        boxes.store(&uid("a"), 2, &"1".into(), now);
        let later = now + Duration::from_secs(2);
        let list = boxes.list(later);
        assert_eq!(list.len(), 2);
        assert_eq!((list[0].uid.as_str(), list[0].bytes), ("a", 1));
        assert_eq!(list[1].oldest, Duration::from_secs(2));
        assert_eq!(boxes.clear("b"), (1, 2));
        assert_eq!(boxes.clear("b"), (0, 0));
        assert_eq!(boxes.totals(), (1, 1, 1));
    }

    #[test]
    fn a_since_the_store_cannot_vouch_for_gets_a_gap_and_everything_it_holds() {
        let mut boxes = Mailboxes::new(limits(10, 1 << 20));
        let now = Instant::now();
        let until = now + Duration::from_secs(30);
        let (a, b) = (uid("a"), uid("b"));
        boxes.keep_resumable(&a, until);
        boxes.retain(&a, 1, &"a1".into(), now);
        boxes.store(&b, 2, &"b waits".into(), now);
        boxes.retain(&a, 3, &"a3".into(), now);
        // b's page claims a's id 3: b never had 3, and its waiting message is not dropped.
        let claimed = boxes.resume(&b, Since::After(3), now, until);
        assert_eq!((claimed.gap, texts(&claimed)), (true, vec!["b waits"]));
        // A number from the future, and one between a's own ids that is not a's,
        // place nothing: a gap, then everything held.
        for since in [99, 2] {
            let resumed = boxes.resume(&a, Since::After(since), now, until);
            assert_eq!(
                (resumed.gap, ids(&resumed)),
                (true, vec![1, 3]),
                "since {since}"
            );
        }
        assert_eq!(
            ids(&boxes.resume(&a, Since::After(3), now, until)),
            Vec::<u64>::new()
        );
    }

    #[test]
    fn a_store_that_was_gone_or_not_resumable_meanwhile_cannot_vouch() {
        let mut boxes = Mailboxes::new(limits(10, 1 << 20));
        let now = Instant::now();
        let tab = uid("42");
        boxes.keep_resumable(&tab, now + Duration::from_secs(5));
        boxes.retain(&tab, 1, &"one".into(), now);
        // Away past the TTL: what waited for it expired, the store went.
        boxes.store(&tab, 2, &"two".into(), now);
        let later = now + Duration::from_secs(31);
        boxes.expire(later, 10);
        let back = boxes.resume(
            &tab,
            Since::After(1),
            later,
            later + Duration::from_secs(30),
        );
        assert!(back.gap && back.messages.is_empty());
        // Delivered while not resumable: not kept, so a resume from before it has a gap.
        let raw = uid("raw");
        boxes.store(&raw, 10, &"waits".into(), now);
        boxes.retain(&raw, 11, &"to a raw page".into(), now);
        boxes.keep_resumable(&raw, now + Duration::from_secs(30));
        let resumed = boxes.resume(&raw, Since::After(10), now, now + Duration::from_secs(30));
        assert_eq!((resumed.gap, texts(&resumed)), (true, vec!["waits"]));
    }

    #[test]
    fn stores_kept_for_resumes_count_against_the_memory_bound() {
        let store = PER_STORE_OVERHEAD;
        let mut boxes = Mailboxes::new(limits(10, 3 * store));
        let now = Instant::now();
        let until = now + Duration::from_secs(30);
        for name in ["a", "b", "c", "d"] {
            boxes.keep_resumable(&uid(name), until);
        }
        assert_eq!(
            boxes.stores.len(),
            3,
            "a fourth empty store is over the bound"
        );
        assert_eq!(boxes.cost, 3 * store);
        // The one left out is not resumable: its resume says so.
        boxes.retain(&uid("d"), 1, &"x".into(), now);
        assert!(boxes.resume(&uid("d"), Since::After(1), now, until).gap);
    }
}
