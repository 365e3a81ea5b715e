//! What the clients received: latencies, counts, and which messages arrived.
//!
//! Every pushed message carries its sequence number `s` and its send time
//! `t` (nanoseconds since the bench's epoch); broadcasts carry `b` and `t`.
//! Client tasks record into sharded histograms so that thousands of them do
//! not contend on one lock.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use hdrhistogram::Histogram;

const SHARDS: usize = 16;

/// Shared receipt book of one scenario run.
pub struct Receipts {
    epoch: Instant,
    shards: Vec<Mutex<Histogram<u64>>>,
    /// Messages received, duplicates included.
    pub received: AtomicU64,
    /// Messages whose sequence number was already seen.
    pub duplicates: AtomicU64,
    /// Latest receipt, in ns since the epoch.
    pub last_receipt_ns: AtomicU64,
    seen: Vec<AtomicU64>,
    /// Per broadcast: receipts so far and the slowest latency in ns.
    broadcasts: Vec<(AtomicU64, AtomicU64)>,
}

/// A new latency histogram: 1 µs to 60 s at three significant figures.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, 60_000_000_000, 3).expect("valid bounds")
}

impl Receipts {
    /// Room for `messages` sequence numbers and `broadcasts` broadcasts.
    pub fn new(epoch: Instant, messages: u64, broadcasts: usize) -> Self {
        Receipts {
            epoch,
            shards: (0..SHARDS).map(|_| Mutex::new(histogram())).collect(),
            received: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            last_receipt_ns: AtomicU64::new(0),
            seen: (0..messages.div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect(),
            broadcasts: (0..broadcasts)
                .map(|_| (AtomicU64::new(0), AtomicU64::new(0)))
                .collect(),
        }
    }

    /// Nanoseconds since the epoch.
    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Records one received text frame from client number `client`.
    pub fn record(&self, text: &str, client: usize) {
        let now = self.now_ns();
        let Some(sent) = field(text, "\"t\":") else {
            return;
        };
        let latency = now.saturating_sub(sent).max(1_000);
        self.received.fetch_add(1, Ordering::Relaxed);
        self.last_receipt_ns.fetch_max(now, Ordering::Relaxed);
        if let Some(seq) = field(text, "\"s\":") {
            let bit = 1u64 << (seq % 64);
            if let Some(word) = self.seen.get((seq / 64) as usize)
                && word.fetch_or(bit, Ordering::Relaxed) & bit != 0
            {
                self.duplicates.fetch_add(1, Ordering::Relaxed);
            }
            let mut shard = self.shards[client % SHARDS].lock().unwrap();
            let _ = shard.record(latency);
        } else if let Some(b) = field(text, "\"b\":")
            && let Some((count, slowest)) = self.broadcasts.get(b as usize)
        {
            slowest.fetch_max(latency, Ordering::Relaxed);
            count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether message `seq` arrived.
    pub fn seen(&self, seq: u64) -> bool {
        self.seen[(seq / 64) as usize].load(Ordering::Relaxed) & (1 << (seq % 64)) != 0
    }

    /// Receipts so far of broadcast `b`, and its slowest latency in ns.
    pub fn broadcast(&self, b: usize) -> (u64, u64) {
        let (count, slowest) = &self.broadcasts[b];
        (
            count.load(Ordering::Relaxed),
            slowest.load(Ordering::Relaxed),
        )
    }

    /// All push latencies merged.
    pub fn latencies(&self) -> Histogram<u64> {
        let mut all = histogram();
        for shard in &self.shards {
            all.add(&*shard.lock().unwrap()).expect("same bounds");
        }
        all
    }
}

/// The unsigned integer after `key` in `text`.
fn field(text: &str, key: &str) -> Option<u64> {
    let start = text.find(key)? + key.len();
    let digits = text[start..].bytes().take_while(u8::is_ascii_digit).count();
    text[start..start + digits].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_found() {
        assert_eq!(field(r#"{"uid":"b1","s":42,"t":1234}"#, "\"s\":"), Some(42));
        assert_eq!(
            field(r#"{"uid":"b1","s":42,"t":1234}"#, "\"t\":"),
            Some(1234)
        );
        assert_eq!(field(r#"{"b":3}"#, "\"t\":"), None);
    }

    #[test]
    fn duplicates_and_gaps_are_counted() {
        let receipts = Receipts::new(Instant::now(), 128, 0);
        receipts.record(r#"{"s":5,"t":0}"#, 0);
        receipts.record(r#"{"s":5,"t":0}"#, 1);
        receipts.record(r#"{"s":100,"t":0}"#, 2);
        assert!(receipts.seen(5) && receipts.seen(100) && !receipts.seen(6));
        assert_eq!(receipts.duplicates.load(Ordering::Relaxed), 1);
        assert_eq!(receipts.latencies().len(), 3);
    }
}
