//! The accept loop shared by the TCP listeners, and its error handling.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

/// Accepts connections until shutdown and runs `handle` for each in its own
/// tracked task. `listener` names the listener in log messages.
pub async fn serve_tcp<F, Fut>(
    listener: TcpListener,
    name: &'static str,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
    mut handle: F,
) where
    F: FnMut(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut errors = ErrorLog::new(name);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                tracker.spawn(handle(stream, peer));
            }
            Err(err) => errors.record(err).await,
        }
    }
}

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
