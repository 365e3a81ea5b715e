//! The accept loop shared by the TCP listeners, and its error handling.
//!
//! Out of file descriptors, `accept` fails and the pending connection stays
//! in the kernel's backlog, where its client waits for nothing. pushd keeps
//! one spare descriptor per listener (an open `/dev/null`) for that moment:
//! it closes the spare, accepts the pending connection, closes it at once
//! (the client sees the connection end instead of hanging), and reopens the
//! spare. Existing connections are not affected, and accepting resumes by
//! itself as soon as descriptors are free again.

use std::fs::File;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

/// Accepts connections until shutdown and runs `handle` for each in its own
/// tracked task. `name` names the listener in log messages; `refused`
/// counts connections closed unserved for lack of file descriptors.
pub async fn serve_tcp<F, Fut>(
    listener: TcpListener,
    name: &'static str,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
    refused: &AtomicU64,
    mut handle: F,
) where
    F: FnMut(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut errors = Throttled::new(name);
    let mut spare = File::open("/dev/null").ok();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                tracker.spawn(handle(stream, peer));
            }
            Err(err) if is_out_of_descriptors(&err) => {
                errors.warn(&format_args!("accept failed: {err}"));
                if let Some(file) = spare.take() {
                    drop(file);
                    if let Ok(Ok((stream, _))) =
                        tokio::time::timeout(SPARE_ACCEPT, listener.accept()).await
                    {
                        drop(stream);
                        crate::stats::bump(refused);
                    }
                    spare = File::open("/dev/null").ok();
                }
                if spare.is_none() {
                    tokio::time::sleep(BACKOFF).await;
                }
            }
            Err(err) => {
                errors.warn(&format_args!("accept failed: {err}"));
                tokio::time::sleep(BACKOFF).await;
            }
        }
    }
}

/// How long to wait for the pending connection once the spare is closed.
const SPARE_ACCEPT: Duration = Duration::from_millis(10);

/// EMFILE (this process) or ENFILE (the whole system).
fn is_out_of_descriptors(err: &std::io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// How long to pause accepting after a failure that the spare descriptor
/// cannot absorb, so the loop does not spin while nothing can be accepted.
const BACKOFF: Duration = Duration::from_millis(100);

/// At most one warning per this interval per listener.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// A warning that is logged at most once per interval, with a count of the
/// occurrences that were not logged in between.
#[derive(Debug)]
pub struct Throttled {
    listener: &'static str,
    last_logged: Option<Instant>,
    suppressed: u64,
}

impl Throttled {
    /// A throttled warning about the listener called `listener`.
    pub fn new(listener: &'static str) -> Self {
        Throttled {
            listener,
            last_logged: None,
            suppressed: 0,
        }
    }

    /// Logs `what`, at most once per interval.
    pub fn warn(&mut self, what: &dyn std::fmt::Display) {
        let now = Instant::now();
        if self
            .last_logged
            .is_none_or(|at| now.duration_since(at) >= LOG_INTERVAL)
        {
            warn!(
                listener = self.listener,
                suppressed = self.suppressed,
                "{what}; new connections are refused until it recovers"
            );
            self.last_logged = Some(now);
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
        }
    }
}
