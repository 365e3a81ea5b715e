//! The bus health check. A subscription can stay open and hear nothing: a proxy, a NAT or
//! a failover that dropped it without closing the socket. Pushes routed to this node would
//! then be answered `ok` (Redis still counts the subscriber) and never delivered, while
//! every health check stays green (centrifugo#1189, socket.io-redis-adapter#491). So at
//! each lease renewal the node publishes a probe to its own inbox and expects to hear it: a
//! probe Redis delivered to nobody, or one still unheard a `--cluster-timeout` later (and
//! at the next renewal), makes the subscriber subscribe again, logged and counted
//! (`bus_resubscribes`); the new subscription catches the `pushd.v2` pages up as after any
//! other.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::sync::Notify;
use tracing::warn;

use super::Cluster;
use super::bus::{self, Header};
use crate::core::counters::{Counter, Counters};

/// The probes of one node.
#[derive(Debug, Default)]
pub(crate) struct BusHealth {
    /// The newest probe sent and when, until it is heard.
    unheard: Mutex<Option<(u64, Instant)>>,
    /// The newest probe heard.
    heard: AtomicU64,
    /// Probes sent.
    sent: AtomicU64,
    /// Wakes the subscriber to drop its subscription and make it again.
    pub(super) resubscribe: Notify,
}

impl BusHealth {
    /// The subscriber heard probe `nonce`.
    pub(super) fn heard(&self, nonce: u64) {
        self.heard.fetch_max(nonce, Ordering::Relaxed);
    }

    fn unheard(&self) -> std::sync::MutexGuard<'_, Option<(u64, Instant)>> {
        self.unheard.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One check, at a lease renewal: judges the last probe, or sends the next.
    pub(super) async fn check(&self, cluster: &Cluster, counters: &Counters) {
        if !cluster.subscribed.load(Ordering::Relaxed) {
            // The subscriber is subscribing again already.
            *self.unheard() = None;
            return;
        }
        let last = *self.unheard();
        if let Some((nonce, sent_at)) = last
            && self.heard.load(Ordering::Relaxed) < nonce
        {
            if sent_at.elapsed() < cluster.timeout {
                return;
            }
            let waited = humantime::format_duration(cluster.timeout);
            let why = format!("did not hear its own probe within {waited}");
            self.resubscribe(counters, &why);
            return;
        }
        let nonce = self.sent.fetch_add(1, Ordering::Relaxed) + 1;
        let probe = Header::Probe {
            from: cluster.id.clone(),
            nonce,
        };
        let inbox = cluster.keys.inbox(&cluster.id);
        match cluster.publish(&inbox, bus::encode(&probe, b"")).await {
            Ok(0) => self.resubscribe(counters, "Redis delivered its probe to nobody"),
            Ok(_) => *self.unheard() = Some((nonce, Instant::now())),
            // Redis is unreachable: the lease says so, and the subscriber notices.
            Err(_) => {}
        }
    }

    fn resubscribe(&self, counters: &Counters, why: &str) {
        *self.unheard() = None;
        warn!("cluster: this node {why}; subscribing to Redis again");
        counters.bump(Counter::BusResubscribes);
        self.resubscribe.notify_waiters();
    }
}
