//! The daemon's millisecond clock, so idle times fit in one atomic per connection.

use std::time::{Duration, Instant};

/// The longest time pushd counts ahead (a ban, a timeout): a century, far
/// from where computing an `Instant` overflows.
pub(crate) const LONGEST: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Milliseconds since the daemon started, and timer alignment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    epoch: Instant,
}

impl Clock {
    /// A clock whose millisecond 0 is now.
    pub(crate) fn new() -> Self {
        Clock {
            epoch: Instant::now(),
        }
    }

    /// Milliseconds since the epoch.
    pub(crate) fn now_ms(&self) -> u64 {
        self.ms_at(Instant::now())
    }

    /// `at` in milliseconds since the epoch.
    pub(crate) fn ms_at(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// Clock millisecond `ms` as an instant.
    pub(crate) fn instant_at(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms)
    }

    /// When the daemon started.
    pub(crate) fn started(&self) -> Instant {
        self.epoch
    }

    /// Rounds `at` up to the next multiple of `grain` since the epoch, so that
    /// timers of different connections fire together.
    pub(crate) fn round_up(&self, at: Instant, grain: Duration) -> Instant {
        let since = at.saturating_duration_since(self.epoch).as_nanos();
        let grain_ns = grain.as_nanos().max(1);
        let rounded = since.div_ceil(grain_ns) * grain_ns;
        self.epoch + Duration::from_nanos(rounded as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_up_aligns_to_the_grain_and_never_goes_early() {
        let clock = Clock::new();
        let grain = Duration::from_millis(250);
        let at = clock.epoch + Duration::from_millis(1001);
        assert_eq!(
            clock.round_up(at, grain),
            clock.epoch + Duration::from_millis(1250)
        );
        let exact = clock.epoch + Duration::from_millis(500);
        assert_eq!(clock.round_up(exact, grain), exact);
    }
}
