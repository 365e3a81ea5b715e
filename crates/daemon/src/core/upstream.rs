//! Messages from pages (`--upstream`): what one connection may send, as a
//! token bucket, and the number each message gets.

use std::time::Instant;

/// `--upstream-rate` and `--upstream-burst`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct UpstreamLimit {
    /// Tokens added per second.
    pub(crate) per_second: f64,
    /// The bucket's size.
    pub(crate) burst: u32,
}

/// One connection's messages so far: boxed in its session from its first
/// message on, so a page that never talks back costs nothing.
#[derive(Debug)]
pub(crate) struct Upstream {
    /// Messages let through, the last one's number (`seq`).
    seq: u64,
    tokens: f64,
    refilled: Instant,
}

impl Upstream {
    /// A full bucket.
    pub(crate) fn new(limit: UpstreamLimit, now: Instant) -> Self {
        Upstream {
            seq: 0,
            tokens: f64::from(limit.burst),
            refilled: now,
        }
    }

    /// The next message's number, or `None` when the bucket is empty (the
    /// message is dropped).
    pub(crate) fn admit(&mut self, limit: UpstreamLimit, now: Instant) -> Option<u64> {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * limit.per_second).min(f64::from(limit.burst));
        self.refilled = now;
        if self.tokens < 1.0 {
            return None;
        }
        self.tokens -= 1.0;
        self.seq += 1;
        Some(self.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_the_rate() {
        let limit = UpstreamLimit {
            per_second: 10.0,
            burst: 3,
        };
        let start = Instant::now();
        let mut upstream = Upstream::new(limit, start);
        let burst: Vec<_> = (0..5).map(|_| upstream.admit(limit, start)).collect();
        assert_eq!(burst, [Some(1), Some(2), Some(3), None, None]);
        // A tenth of a second later, one more; numbers go on without holes.
        let later = start + Duration::from_millis(100);
        assert_eq!(upstream.admit(limit, later), Some(4));
        assert_eq!(upstream.admit(limit, later), None);
        // A long quiet fills the bucket, no more.
        let quiet = later + Duration::from_secs(60);
        let refilled: Vec<_> = (0..4).map(|_| upstream.admit(limit, quiet)).collect();
        assert_eq!(refilled, [Some(5), Some(6), Some(7), None]);
    }
}
