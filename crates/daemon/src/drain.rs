//! Draining a node before a deploy (`pushctl drain`, SIGTERM with `--drain`):
//! it stops taking WebSocket clients (503 with `Retry-After`) and says so on
//! `/v1/ready`, then closes every WebSocket connection with 1012 at a
//! uniformly random moment within the window, so that the clients come back,
//! to another node or to this one restarted, spread over the window rather
//! than all at once. Each connection writes what it was sent before its close
//! frame (`adapters::ws::close`); pushes to uids now away are queued as
//! always. The text port, the HTTP API and the admin socket keep serving.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::core::conn::{CloseRequest, ConnHandle};
use crate::core::counters::Counter;
use crate::node::Node;

/// The window when neither the request nor `--drain` gives one.
pub(crate) const DEFAULT_WINDOW: Duration = Duration::from_secs(30);

/// The longest window a drain takes.
pub(crate) const LONGEST_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// How long after the window a drain waits for the last connections to finish
/// their closing handshake (each is bounded by its own close timeout).
const SETTLE: Duration = Duration::from_secs(10);

/// A node's drain: whether one started, and its default window.
#[derive(Debug)]
pub(crate) struct Drain {
    started: AtomicBool,
    /// `--drain`, or [`DEFAULT_WINDOW`] when that is 0.
    window: Duration,
}

/// What a drain did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Drained {
    /// Connections it closed.
    pub(crate) closed: u64,
    /// The window it closed them over.
    pub(crate) over: Duration,
}

impl Drain {
    /// No drain yet; `--drain` (0: [`DEFAULT_WINDOW`]; at most
    /// [`LONGEST_WINDOW`]) is the default window.
    pub(crate) fn new(drain_option: Duration) -> Self {
        Drain {
            started: AtomicBool::new(false),
            window: if drain_option.is_zero() {
                DEFAULT_WINDOW
            } else {
                drain_option.min(LONGEST_WINDOW)
            },
        }
    }

    /// Whether the node drains: new WebSocket clients are refused.
    pub(crate) fn is_draining(&self) -> bool {
        self.started.load(Ordering::Relaxed)
    }
}

/// Drains `node` over `over` (default: its window); returns when every
/// WebSocket connection it had, or that slipped in as it began, is closed.
pub(crate) async fn run(node: &Arc<Node>, over: Option<Duration>) -> Drained {
    let over = over.unwrap_or(node.drain.window);
    node.drain.started.store(true, Ordering::Relaxed);
    let start = Instant::now();
    let mut moments: Vec<(Duration, Arc<ConnHandle>)> = (node.registry.open_connections())
        .into_iter()
        .map(|handle| (over.mul_f64(fastrand::f64()), handle))
        .collect();
    moments.sort_unstable_by_key(|(at, _)| *at);
    let mut closed = 0;
    for (at, handle) in moments {
        tokio::time::sleep_until(start + at).await;
        closed += u64::from(handle.request_close(CloseRequest::Restart));
    }
    // A connection accepted just before the drain began may have registered
    // after the walk above: closed now.
    for handle in node.registry.open_connections() {
        closed += u64::from(handle.request_close(CloseRequest::Restart));
    }
    node.counters.add(Counter::Drained, closed);
    let deadline = Instant::now() + SETTLE;
    while node.registry.sizes().connections > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Drained { closed, over }
}
