//! Event counters, bumped lock-free from every adapter and read by `stats`.

use std::sync::atomic::{AtomicU64, Ordering};

use pushd_proto::admin;

/// One relaxed atomic per event; see [`admin::Counters`] for their meaning.
#[derive(Debug, Default)]
#[allow(missing_docs)] // each field mirrors the documented admin::Counters field
pub struct Counters {
    pub connections_opened: AtomicU64,
    pub connections_closed: AtomicU64,
    pub handshakes_failed: AtomicU64,
    pub connections_refused: AtomicU64,
    pub capacity_refused: AtomicU64,
    pub per_ip_refused: AtomicU64,
    pub origin_refused: AtomicU64,
    pub per_uid_refused: AtomicU64,
    pub per_uid_replaced: AtomicU64,
    pub bind_timeouts: AtomicU64,
    pub banned_refused: AtomicU64,
    pub invalid_tokens: AtomicU64,
    pub binds: AtomicU64,
    pub invalid_uids: AtomicU64,
    pub heartbeat_timeouts: AtomicU64,
    pub kicked: AtomicU64,
    pub slow_consumers: AtomicU64,
    pub oversized_messages: AtomicU64,
    pub messages_delivered: AtomicU64,
    pub text_ok: AtomicU64,
    pub text_fail: AtomicU64,
}

/// Adds `n` to a counter.
pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Adds one to a counter.
pub fn bump(counter: &AtomicU64) {
    add(counter, 1);
}

impl Counters {
    /// A consistent-enough copy for reporting (each field read once).
    pub fn snapshot(&self) -> admin::Counters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        admin::Counters {
            connections_opened: get(&self.connections_opened),
            connections_closed: get(&self.connections_closed),
            handshakes_failed: get(&self.handshakes_failed),
            connections_refused: get(&self.connections_refused),
            capacity_refused: get(&self.capacity_refused),
            per_ip_refused: get(&self.per_ip_refused),
            origin_refused: get(&self.origin_refused),
            per_uid_refused: get(&self.per_uid_refused),
            per_uid_replaced: get(&self.per_uid_replaced),
            bind_timeouts: get(&self.bind_timeouts),
            banned_refused: get(&self.banned_refused),
            invalid_tokens: get(&self.invalid_tokens),
            binds: get(&self.binds),
            invalid_uids: get(&self.invalid_uids),
            heartbeat_timeouts: get(&self.heartbeat_timeouts),
            kicked: get(&self.kicked),
            slow_consumers: get(&self.slow_consumers),
            oversized_messages: get(&self.oversized_messages),
            messages_delivered: get(&self.messages_delivered),
            text_ok: get(&self.text_ok),
            text_fail: get(&self.text_fail),
        }
    }
}
