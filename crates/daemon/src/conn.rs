//! The part of a WebSocket connection that the registry holds.
//!
//! A [`ConnHandle`] is shared between the connection's own task and the
//! registry. The registry uses it to queue pushes, read idle times and ask
//! the task to close; the task owns the socket and everything else.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// Daemon-unique connection number, assigned at accept.
pub type ConnId = u64;

/// Why pushd is asking a connection to close, from outside its task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseRequest {
    /// An operator ran `pushctl kick` (close code 4000).
    Kicked {
        /// Reason text for the close frame.
        reason: String,
    },
    /// Its outbound queue overflowed (close code 4002).
    SlowConsumer,
}

/// Registry-side view of one WebSocket connection.
#[derive(Debug)]
pub struct ConnHandle {
    /// Connection number.
    pub id: ConnId,
    /// The client's address.
    pub peer: SocketAddr,
    /// When the handshake completed.
    pub connected_at: Instant,
    /// Last inbound frame, in milliseconds since the registry's epoch.
    last_activity_ms: AtomicU64,
    /// Pushes on their way to the socket; bounded.
    outbound: mpsc::Sender<Utf8Bytes>,
    /// Set once when something outside the task asks it to close.
    close_request: OnceLock<CloseRequest>,
    /// Wakes the task after `close_request` is set.
    close_signal: Notify,
}

impl ConnHandle {
    /// Creates the handle and the receiving end of its outbound queue.
    pub(crate) fn new(
        id: ConnId,
        peer: SocketAddr,
        connected_at: Instant,
        now_ms: u64,
        queue: usize,
    ) -> (Self, mpsc::Receiver<Utf8Bytes>) {
        let (outbound, rx) = mpsc::channel(queue);
        let handle = ConnHandle {
            id,
            peer,
            connected_at,
            last_activity_ms: AtomicU64::new(now_ms),
            outbound,
            close_request: OnceLock::new(),
            close_signal: Notify::new(),
        };
        (handle, rx)
    }

    /// Records inbound activity at `now_ms` (registry epoch).
    pub fn touch(&self, now_ms: u64) {
        self.last_activity_ms.store(now_ms, Ordering::Relaxed);
    }

    /// Last inbound activity, in milliseconds since the registry's epoch.
    pub fn last_activity_ms(&self) -> u64 {
        self.last_activity_ms.load(Ordering::Relaxed)
    }

    /// Queues a push without waiting. `Err` means the queue is full (or the
    /// task is gone) and the caller should treat the connection as lost.
    pub(crate) fn try_push(&self, message: &Utf8Bytes) -> Result<(), ()> {
        self.outbound.try_send(message.clone()).map_err(drop)
    }

    /// Asks the task to close; the first request wins.
    pub(crate) fn request_close(&self, request: CloseRequest) {
        if self.close_request.set(request).is_ok() {
            // notify_one stores a permit if the task is not waiting right now.
            self.close_signal.notify_one();
        }
    }

    /// Resolves once a close was requested, with that request.
    pub async fn close_requested(&self) -> &CloseRequest {
        loop {
            if let Some(request) = self.close_request.get() {
                return request;
            }
            self.close_signal.notified().await;
        }
    }
}

impl ConnHandle {
    /// The close request, if one was made.
    pub fn close_request_now(&self) -> Option<CloseRequest> {
        self.close_request.get().cloned()
    }

    /// Whether a close was requested.
    pub(crate) fn close_requested_now(&self) -> bool {
        self.close_request.get().is_some()
    }
}
