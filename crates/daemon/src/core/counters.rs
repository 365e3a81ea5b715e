//! The daemon's counters: one relaxed atomic per [`Counter`], bumped lock-free
//! from every adapter and read by `stats`, `/metrics` and the cluster sum.
//!
//! Which counters exist is declared once, in `pushd_proto::counters`; this is
//! only their storage, indexed by the same names.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
pub(crate) use pushd_proto::counters::Counter;

/// Every counter, the gauges that are not derived from the registry, and the
/// push-duration histogram.
#[derive(Debug)]
pub(crate) struct Counters {
    values: [AtomicU64; Counter::COUNT],
    /// Open text-port connections (a gauge).
    pub(crate) text_connections: AtomicU64,
    /// Durations of text-port batches: parse, queue here, route to other nodes.
    pub(crate) push_seconds: Histogram,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            values: std::array::from_fn(|_| AtomicU64::new(0)),
            text_connections: AtomicU64::new(0),
            // 10 µs to ~80 ms.
            push_seconds: Histogram::new(exponential_buckets(0.000_01, 2.0, 14)),
        }
    }
}

impl Counters {
    /// Adds `n` to a counter.
    pub(crate) fn add(&self, counter: Counter, n: u64) {
        self.values[counter as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// Adds one to a counter.
    pub(crate) fn bump(&self, counter: Counter) {
        self.add(counter, 1);
    }

    /// A counter's value now.
    pub(crate) fn get(&self, counter: Counter) -> u64 {
        self.values[counter as usize].load(Ordering::Relaxed)
    }
}
