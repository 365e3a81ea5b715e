//! Message ids, in one place: how an id is made, how a `pushd.v2` frame
//! carries it (`ID PAYLOAD`, or `!gap`), and how a client's `?since=` is read
//! back.
//!
//! A single node's ids are `BOOT-N`: BOOT is when this process started (ms
//! since the Unix epoch), N counts pushes from 1, so ids never repeat across
//! restarts and a `since` from another boot is recognised as unknown (with a
//! state file, a restart goes on from the saved BOOT and N instead). In
//! cluster mode the number comes from Redis and ids are the cluster's, `MS-N`,
//! where N alone orders them; the node then only frames and reads them.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::payload::Payload;
use super::saved::SavedIds;

/// A message's number: increasing in push order (on this node, or in cluster
/// mode the cluster's for its uid).
pub(crate) type MessageId = u64;

/// The frame a resuming `pushd.v2` client gets first when messages after its
/// `since` are no longer kept.
pub(crate) const GAP_FRAME: &str = "!gap";

/// The `!gap` frame, under number 0 (it orders nothing).
pub(crate) fn gap_frame() -> (MessageId, Payload) {
    (0, Payload::from_static(GAP_FRAME))
}

/// Milliseconds since the Unix epoch now (0 on a clock set before 1970).
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// When this process started, in ms since the Unix epoch: the first part of
/// every id it makes (messages, events, its cluster node id).
pub(crate) fn boot_ms() -> u64 {
    static BOOT: LazyLock<u64> = LazyLock::new(unix_ms);
    *BOOT
}

/// Where a resuming client says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum Since {
    /// After this message of this node's.
    After(MessageId),
    /// Cluster mode: after the cluster's message `MS-N`. Both parts are kept:
    /// N orders messages, and the whole id tells a message from one with the
    /// same N from before a restart of Redis (which starts N over).
    Cluster {
        /// When Redis numbered it (0 for a broadcast, which repeats the N of
        /// the connection's last message).
        ms: u64,
        /// Its number.
        n: MessageId,
    },
    /// A `since` this node cannot place (malformed, or from another boot).
    Unknown,
}

/// N of an id `PREFIX-N`, whatever the prefix is.
pub(crate) fn number_of(id: &str) -> Option<MessageId> {
    let (prefix, n) = id.split_once('-')?;
    prefix.parse::<u64>().ok()?;
    n.parse().ok()
}

/// Makes this node's message numbers and reads its clients' ids.
#[derive(Debug)]
pub(crate) struct Ids {
    boot: u64,
    next: AtomicU64,
    /// Cluster mode: ids are the cluster's, made in Redis.
    cluster: bool,
}

impl Ids {
    /// Numbers from 1 under this process's boot; `cluster` when ids are the cluster's.
    pub(crate) fn new(cluster: bool) -> Self {
        Ids {
            boot: boot_ms(),
            next: AtomicU64::new(1),
            cluster,
        }
    }

    /// Where ids are, for the next process (see [`saved`](super::saved)).
    pub(crate) fn position(&self) -> SavedIds {
        SavedIds {
            boot: self.boot,
            next: self.next.load(Ordering::Relaxed),
        }
    }

    /// Goes on from a saved position: the same boot, the next number, so that
    /// ids keep increasing and a client's `since` from before still places it.
    pub(crate) fn go_on_from(&mut self, saved: SavedIds) {
        if saved.boot > 0 {
            self.boot = saved.boot;
            self.next = AtomicU64::new(saved.next.max(1));
        }
    }

    /// Whether ids are the cluster's (made in Redis, carried over the bus).
    pub(crate) fn cluster_wide(&self) -> bool {
        self.cluster
    }

    /// The next message number; take it under the lock that orders a uid's
    /// pushes, so that its ids increase in push order.
    pub(crate) fn next(&self) -> MessageId {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// The `pushd.v2` frame of this node's message `n`: `BOOT-N PAYLOAD`.
    pub(crate) fn frame(&self, n: MessageId, payload: &Payload) -> Payload {
        Payload::prefixed(format_args!("{}-{n} ", self.boot), payload)
    }

    /// Where a `pushd.v2` client's `since` is. On a single node only an id of
    /// this boot places it; in cluster mode Redis decides, from the whole id.
    pub(crate) fn since(&self, text: &str) -> Since {
        if self.cluster {
            let parsed = text
                .split_once('-')
                .and_then(|(ms, n)| Some((ms.parse().ok()?, n.parse().ok()?)));
            return parsed.map_or(Since::Unknown, |(ms, n)| Since::Cluster { ms, n });
        }
        match text.split_once('-') {
            Some((boot, n)) if boot.parse() == Ok(self.boot) => {
                n.parse().map_or(Since::Unknown, Since::After)
            }
            _ => Since::Unknown,
        }
    }
}

/// The `pushd.v2` frame of a cluster message with id `id`: `ID PAYLOAD`.
pub(crate) fn cluster_frame(id: &str, payload: &Payload) -> Payload {
    Payload::prefixed(format_args!("{id} "), payload)
}

/// The `pushd.v2` frame of a broadcast in cluster mode, which has no number of
/// the cluster's: under the number `n` of the last message the connection was
/// given (`0-N`), so that a resume from it neither skips nor repeats anything.
pub(crate) fn broadcast_frame(n: MessageId, payload: &Payload) -> Payload {
    Payload::prefixed(format_args!("0-{n} "), payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_places_only_its_own_boots_ids() {
        let ids = Ids::new(false);
        let first = ids.next();
        let frame = ids.frame(first, &"hi".into());
        let (id, payload) = frame.as_str().split_once(' ').unwrap();
        assert_eq!(payload, "hi");
        assert_eq!(ids.since(id), Since::After(first));
        assert_eq!(ids.since("1-1"), Since::Unknown, "another boot");
        assert_eq!(ids.since("junk"), Since::Unknown);
        assert_eq!(ids.since(&format!("{}-x", boot_ms())), Since::Unknown);
    }

    #[test]
    fn in_a_cluster_the_number_alone_places_an_id() {
        let ids = Ids::new(true);
        let cluster = |ms, n| Since::Cluster { ms, n };
        assert_eq!(
            ids.since("1733000000000-42"),
            cluster(1_733_000_000_000, 42)
        );
        assert_eq!(ids.since("0-7"), cluster(0, 7));
        assert_eq!(ids.since("x-7"), Since::Unknown);
        assert_eq!(number_of("5-9"), Some(9));
        assert_eq!(cluster_frame("5-9", &"m".into()), "5-9 m");
        assert_eq!(broadcast_frame(9, &"m".into()), "0-9 m");
    }
}
