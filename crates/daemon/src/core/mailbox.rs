//! Messages waiting for a uid that has no connection: the mailbox.
//!
//! A web page reconnects at every navigation; a push in that moment waits here
//! and goes, in push order, to the uid's next connection that binds within
//! `--mailbox-ttl`. This is plain data with no lock of its own: the registry
//! holds it under its own lock, so "no connection, so store" and "bind, so take"
//! can never interleave, and a bind hands every waiting message to the new
//! connection before any newer push can reach it.
//!
//! Bounds: `--mailbox-size` messages per uid (the oldest goes first), and
//! `--mailbox-memory` bytes for all mailboxes together, each message counted as
//! its payload plus [`PER_MESSAGE_OVERHEAD`] so that a flood of tiny messages is
//! bounded too (past it a push is refused, not stored). Expiry costs nothing per
//! idle uid: a message older than the TTL is dropped when its uid is next
//! touched, and [`Mailboxes::expire`] walks only the mailboxes whose oldest
//! message is due, in deadline order.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use pushd_proto::uid::Uid;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// Bytes counted for each waiting message besides its payload: its queue slot
/// (the shared payload handle and its deadline), the payload allocation's own
/// overhead, and the mailbox's share of the map. pushd's RSS grew by 134 bytes
/// per waiting message besides the payload with 418k small messages waiting and
/// as many refused (docs/PERFORMANCE.md, "The mailbox"); rounded up so that
/// `--mailbox-memory` bounds the real memory, not only the accounted bytes.
pub(crate) const PER_MESSAGE_OVERHEAD: usize = 160;

/// The mailbox settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MailboxLimits {
    /// How long a message waits (`--mailbox-ttl`, not zero: zero turns the mailbox off).
    pub(crate) ttl: Duration,
    /// Most messages per uid (`--mailbox-size`).
    pub(crate) size: usize,
    /// Most bytes for all mailboxes together (`--mailbox-memory`).
    pub(crate) memory: usize,
}

/// What became of a message offered to a mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stored {
    /// It waits; `dropped` older messages of the uid made room for it.
    Queued {
        /// Oldest messages pushed out by `--mailbox-size`.
        dropped: usize,
    },
    /// Every mailbox together is at `--mailbox-memory`.
    OverMemory,
}

/// One waiting message.
#[derive(Debug)]
struct Waiting {
    message: Utf8Bytes,
    /// When it is dropped if nobody took it.
    expires: Instant,
}

#[derive(Debug, Default)]
struct Mailbox {
    messages: VecDeque<Waiting>,
    /// Accounted bytes: payloads plus overhead.
    cost: usize,
}

/// What one uid's mailbox holds, for `pushctl mailbox`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MailboxSummary {
    pub(crate) uid: Uid,
    pub(crate) messages: u64,
    /// Payload bytes.
    pub(crate) bytes: u64,
    /// How long ago the oldest message was pushed.
    pub(crate) oldest: Duration,
}

/// Every uid's mailbox.
#[derive(Debug)]
pub(crate) struct Mailboxes {
    limits: MailboxLimits,
    boxes: HashMap<Uid, Mailbox>,
    /// One entry per non-empty mailbox, keyed by when its oldest message expires
    /// (a sequence number tells equal instants apart).
    due: BTreeMap<(Instant, u64), Uid>,
    sequence: u64,
    /// Accounted bytes of every mailbox together.
    cost: usize,
    /// Payload bytes of every mailbox together.
    payload: usize,
    messages: usize,
}

fn cost_of(message: &Utf8Bytes) -> usize {
    message.len() + PER_MESSAGE_OVERHEAD
}

impl Mailboxes {
    /// No mailbox yet.
    pub(crate) fn new(limits: MailboxLimits) -> Self {
        Mailboxes {
            limits,
            boxes: HashMap::new(),
            due: BTreeMap::new(),
            sequence: 0,
            cost: 0,
            payload: 0,
            messages: 0,
        }
    }

    /// Keeps `message` for `uid` until its next connection binds or the TTL passes.
    pub(crate) fn store(&mut self, uid: &Uid, message: &Utf8Bytes, now: Instant) -> Stored {
        let cost = cost_of(message);
        let expires = now + self.limits.ttl;
        let mut dropped = self.expire_uid(uid, now).1;
        let full = self.boxes.get(uid).map_or(0, |b| b.messages.len()) >= self.limits.size;
        // What a full mailbox gives back for this message counts as room.
        let freed = if full {
            self.boxes[uid]
                .messages
                .front()
                .map_or(0, |w| cost_of(&w.message))
        } else {
            0
        };
        if self.cost + cost > self.limits.memory + freed {
            return Stored::OverMemory;
        }
        if full {
            self.pop_front(uid);
            dropped += 1;
        }
        let was_empty = !self.boxes.contains_key(uid);
        let mailbox = self.boxes.entry(uid.clone()).or_default();
        mailbox.messages.push_back(Waiting {
            message: message.clone(),
            expires,
        });
        mailbox.cost += cost;
        self.cost += cost;
        self.payload += message.len();
        self.messages += 1;
        if was_empty {
            self.index(uid, expires);
        }
        Stored::Queued { dropped }
    }

    /// Takes every message still waiting for `uid`, oldest first, and how many
    /// had expired (they are dropped, not returned).
    pub(crate) fn take(&mut self, uid: &str, now: Instant) -> (Vec<Utf8Bytes>, usize) {
        let Some(mailbox) = self.boxes.remove(uid) else {
            return (Vec::new(), 0);
        };
        let Mailbox { messages, cost } = mailbox;
        if let Some(first) = messages.front() {
            self.unindex(uid, first.expires);
        }
        self.cost -= cost;
        self.messages -= messages.len();
        let mut expired = 0;
        let mut taken = Vec::with_capacity(messages.len());
        for waiting in messages {
            self.payload -= waiting.message.len();
            if waiting.expires <= now {
                expired += 1;
            } else {
                taken.push(waiting.message);
            }
        }
        (taken, expired)
    }

    /// Puts `messages` (oldest first) back at the front of `uid`'s mailbox: what
    /// its last connection had taken but not written when it closed. Returns how
    /// many could not be kept (size or memory), oldest first.
    pub(crate) fn put_back(&mut self, uid: &Uid, messages: Vec<Utf8Bytes>, now: Instant) -> usize {
        let mut lost = 0;
        // Newest first, each in front of the last: the result is in push order,
        // and when room runs out it is the oldest that are left out.
        for message in messages.into_iter().rev() {
            let len = self.boxes.get(uid).map_or(0, |b| b.messages.len());
            let cost = cost_of(&message);
            if len >= self.limits.size || self.cost + cost > self.limits.memory {
                lost += 1;
                continue;
            }
            let expires = now + self.limits.ttl;
            if let Some(first) = self.boxes.get(uid).and_then(|b| b.messages.front()) {
                let old = first.expires;
                self.unindex(uid, old);
            }
            let mailbox = self.boxes.entry(uid.clone()).or_default();
            mailbox.messages.push_front(Waiting { message, expires });
            mailbox.cost += cost;
            self.cost += cost;
            self.payload += mailbox.messages[0].message.len();
            self.messages += 1;
            self.index(uid, expires);
        }
        lost
    }

    /// Empties `uid`'s mailbox; returns what it held (messages, payload bytes).
    pub(crate) fn clear(&mut self, uid: &str, now: Instant) -> (usize, usize) {
        let (messages, _) = self.take(uid, now);
        (messages.len(), messages.iter().map(|m| m.len()).sum())
    }

    /// Drops every message whose TTL has passed, looking only at the mailboxes
    /// whose oldest message is due, at most `budget` of them. Returns the
    /// messages dropped and whether more mailboxes are due.
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
            expired += self.expire_uid(&uid, now).1;
        }
        let more = self
            .due
            .first_key_value()
            .is_some_and(|(&(at, _), _)| at <= now);
        (expired, more)
    }

    /// Drops `uid`'s expired messages; returns (still waiting, dropped).
    fn expire_uid(&mut self, uid: &Uid, now: Instant) -> (usize, usize) {
        let mut dropped = 0;
        while let Some(first) = self.boxes.get(uid).and_then(|b| b.messages.front()) {
            if first.expires > now {
                break;
            }
            self.pop_front(uid);
            dropped += 1;
        }
        (self.boxes.get(uid).map_or(0, |b| b.messages.len()), dropped)
    }

    /// Removes `uid`'s oldest message, keeping the totals and the index right.
    fn pop_front(&mut self, uid: &Uid) {
        let Some(mailbox) = self.boxes.get_mut(uid) else {
            return;
        };
        let Some(first) = mailbox.messages.pop_front() else {
            return;
        };
        let cost = cost_of(&first.message);
        mailbox.cost -= cost;
        let next = mailbox.messages.front().map(|w| w.expires);
        self.cost -= cost;
        self.payload -= first.message.len();
        self.messages -= 1;
        self.unindex(uid, first.expires);
        match next {
            Some(expires) => self.index(uid, expires),
            None => {
                self.boxes.remove(uid);
            }
        }
    }

    fn index(&mut self, uid: &Uid, expires: Instant) {
        self.sequence += 1;
        self.due.insert((expires, self.sequence), uid.clone());
    }

    /// Removes `uid`'s index entry, whose instant is `expires`.
    fn unindex(&mut self, uid: &str, expires: Instant) {
        let key = self
            .due
            .range((expires, 0)..=(expires, u64::MAX))
            .find(|(_, owner)| owner.as_str() == uid)
            .map(|(key, _)| *key);
        if let Some(key) = key {
            self.due.remove(&key);
        }
    }

    /// Every mailbox that holds messages, sorted by uid.
    pub(crate) fn list(&self, now: Instant) -> Vec<MailboxSummary> {
        let ttl = self.limits.ttl;
        let mut list: Vec<MailboxSummary> = (self.boxes.iter())
            .map(|(uid, mailbox)| MailboxSummary {
                uid: uid.clone(),
                messages: mailbox.messages.len() as u64,
                bytes: mailbox
                    .messages
                    .iter()
                    .map(|w| w.message.len() as u64)
                    .sum(),
                oldest: mailbox.messages.front().map_or(Duration::ZERO, |w| {
                    (now + ttl).saturating_duration_since(w.expires)
                }),
            })
            .collect();
        list.sort_unstable_by(|a, b| a.uid.cmp(&b.uid));
        list
    }

    /// Uids with waiting messages, messages, payload bytes.
    pub(crate) fn totals(&self) -> (u64, u64, u64) {
        (
            self.boxes.len() as u64,
            self.messages as u64,
            self.payload as u64,
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

    fn texts(messages: &[Utf8Bytes]) -> Vec<&str> {
        messages.iter().map(Utf8Bytes::as_str).collect()
    }

    #[test]
    fn messages_wait_in_order_and_are_taken_once() {
        let mut boxes = Mailboxes::new(limits(10, 1 << 20));
        let now = Instant::now();
        for m in ["a", "b", "c"] {
            assert_eq!(
                boxes.store(&uid("42"), &m.into(), now),
                Stored::Queued { dropped: 0 }
            );
        }
        assert_eq!(boxes.totals(), (1, 3, 3));
        let (taken, expired) = boxes.take("42", now);
        assert_eq!((texts(&taken), expired), (vec!["a", "b", "c"], 0));
        assert_eq!(boxes.take("42", now).0.len(), 0);
        assert_eq!(boxes.totals(), (0, 0, 0));
        assert!(boxes.due.is_empty());
    }

    #[test]
    fn a_full_mailbox_drops_its_oldest() {
        let mut boxes = Mailboxes::new(limits(2, 1 << 20));
        let now = Instant::now();
        boxes.store(&uid("42"), &"1".into(), now);
        boxes.store(&uid("42"), &"2".into(), now);
        assert_eq!(
            boxes.store(&uid("42"), &"3".into(), now),
            Stored::Queued { dropped: 1 }
        );
        assert_eq!(texts(&boxes.take("42", now).0), ["2", "3"]);
    }

    #[test]
    fn memory_is_shared_by_every_mailbox_and_counts_the_overhead() {
        let one = 4 + PER_MESSAGE_OVERHEAD;
        let mut boxes = Mailboxes::new(limits(10, 2 * one));
        let now = Instant::now();
        assert!(matches!(
            boxes.store(&uid("a"), &"1234".into(), now),
            Stored::Queued { .. }
        ));
        assert!(matches!(
            boxes.store(&uid("b"), &"1234".into(), now),
            Stored::Queued { .. }
        ));
        assert_eq!(boxes.store(&uid("c"), &"1".into(), now), Stored::OverMemory);
        boxes.take("a", now);
        assert!(matches!(
            boxes.store(&uid("c"), &"1".into(), now),
            Stored::Queued { .. }
        ));
    }

    #[test]
    fn a_full_mailbox_at_the_memory_limit_still_takes_a_message_of_the_same_size() {
        let one = 1 + PER_MESSAGE_OVERHEAD;
        let mut boxes = Mailboxes::new(limits(1, one));
        let now = Instant::now();
        boxes.store(&uid("a"), &"1".into(), now);
        assert_eq!(
            boxes.store(&uid("a"), &"2".into(), now),
            Stored::Queued { dropped: 1 }
        );
        assert_eq!(texts(&boxes.take("a", now).0), ["2"]);
    }

    #[test]
    fn expiry_walks_only_what_is_due_and_take_drops_the_expired() {
        let mut boxes = Mailboxes::new(limits(10, 1 << 20));
        let start = Instant::now();
        boxes.store(&uid("old"), &"x".into(), start);
        boxes.store(&uid("old"), &"y".into(), start + Duration::from_secs(20));
        boxes.store(&uid("new"), &"z".into(), start + Duration::from_secs(10));
        let later = start + Duration::from_secs(31);
        assert_eq!(boxes.expire(later, 100), (1, false));
        assert_eq!(boxes.totals(), (2, 2, 2));
        let (taken, expired) = boxes.take("new", start + Duration::from_secs(45));
        assert_eq!((taken.len(), expired), (0, 1));
        assert_eq!(boxes.expire(start + Duration::from_secs(60), 1), (1, false));
        assert_eq!(boxes.totals(), (0, 0, 0));
        assert!(boxes.due.is_empty());
    }

    #[test]
    fn expiry_is_bounded_by_its_budget() {
        let mut boxes = Mailboxes::new(limits(10, 1 << 20));
        let now = Instant::now();
        for i in 0..5 {
            boxes.store(&uid(&i.to_string()), &"x".into(), now);
        }
        let later = now + Duration::from_secs(31);
        assert_eq!(boxes.expire(later, 2), (2, true));
        assert_eq!(boxes.expire(later, 10), (3, false));
    }

    #[test]
    fn put_back_goes_in_front_in_push_order_and_keeps_the_newest_when_short_of_room() {
        let mut boxes = Mailboxes::new(limits(3, 1 << 20));
        let now = Instant::now();
        boxes.store(&uid("42"), &"later".into(), now);
        let back = vec!["a".into(), "b".into(), "c".into()];
        assert_eq!(boxes.put_back(&uid("42"), back, now), 1);
        assert_eq!(texts(&boxes.take("42", now).0), ["b", "c", "later"]);
        assert!(boxes.due.is_empty());
    }

    #[test]
    fn list_and_clear() {
        let mut boxes = Mailboxes::new(limits(10, 1 << 20));
        let now = Instant::now();
        boxes.store(&uid("b"), &"12".into(), now);
        boxes.store(&uid("a"), &"1".into(), now);
        let later = now + Duration::from_secs(2);
        let list = boxes.list(later);
        assert_eq!(list.len(), 2);
        assert_eq!((list[0].uid.as_str(), list[0].bytes), ("a", 1));
        assert_eq!(list[1].oldest, Duration::from_secs(2));
        assert_eq!(boxes.clear("b", later), (1, 2));
        assert_eq!(boxes.clear("b", later), (0, 0));
        assert_eq!(boxes.totals(), (1, 1, 1));
    }
}
