//! Shared handling of `accept` failures for the TCP listeners.

use std::time::{Duration, Instant};

use tracing::warn;

/// How long to pause accepting after a failure (e.g. out of file descriptors),
/// so the loop does not spin while nothing can be accepted.
const BACKOFF: Duration = Duration::from_millis(100);

/// At most one warning per this interval per listener.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Rate-limited log of accept errors for one listener.
#[derive(Debug)]
pub struct ErrorLog {
    listener: &'static str,
    last_logged: Option<Instant>,
    suppressed: u64,
}

impl ErrorLog {
    /// A log for the listener called `listener` in messages.
    pub fn new(listener: &'static str) -> Self {
        ErrorLog {
            listener,
            last_logged: None,
            suppressed: 0,
        }
    }

    /// Logs (at most once per interval) and backs off.
    pub async fn record(&mut self, err: std::io::Error) {
        let now = Instant::now();
        if self
            .last_logged
            .is_none_or(|at| now.duration_since(at) >= LOG_INTERVAL)
        {
            warn!(
                listener = self.listener,
                %err,
                suppressed = self.suppressed,
                "accept failed; refusing new connections for now"
            );
            self.last_logged = Some(now);
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
        }
        tokio::time::sleep(BACKOFF).await;
    }
}
