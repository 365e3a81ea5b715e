//! Log setup: `tracing` to stderr, level from `RUST_LOG` (default `info`); and
//! warnings throttled for limits that can be hit very often.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use tracing::warn;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. Human format has colour only when stderr
/// is a terminal; JSON format writes one object per line.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// At most one warning per this interval per [`Throttled`].
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// A warning that is logged at most once per interval, with a count of the
/// occurrences that were not logged in between: for limits that can be hit
/// thousands of times a second (a listener out of descriptors, a full mailbox).
#[derive(Debug)]
pub(crate) struct Throttled {
    /// What is limited (`listener` or `limit` in the log line).
    what: &'static str,
    /// The consequence, appended to every line.
    consequence: &'static str,
    last_logged: Option<Instant>,
    suppressed: u64,
}

impl Throttled {
    /// A throttled warning about `what`, each line ending with `consequence`.
    pub(crate) fn new(what: &'static str, consequence: &'static str) -> Self {
        Throttled {
            what,
            consequence,
            last_logged: None,
            suppressed: 0,
        }
    }

    /// Logs `event`, at most once per interval.
    pub(crate) fn warn(&mut self, event: &dyn std::fmt::Display) {
        let now = Instant::now();
        if self
            .last_logged
            .is_none_or(|at| now.duration_since(at) >= LOG_INTERVAL)
        {
            warn!(
                about = self.what,
                suppressed = self.suppressed,
                "{event}; {}",
                self.consequence
            );
            self.last_logged = Some(now);
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
        }
    }
}
