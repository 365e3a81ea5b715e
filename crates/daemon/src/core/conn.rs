//! The part of a WebSocket connection that the registry holds.
//!
//! A [`ConnHandle`] is shared between the connection's own task and the
//! registry. The registry uses it to queue pushes, read idle times and ask
//! the task to close; the task owns the socket and everything else.
//!
//! The outbound queue is a `VecDeque` behind the handle's own mutex rather
//! than a tokio channel: an empty `VecDeque` allocates nothing, where a
//! bounded `mpsc` channel costs about 1.6 KiB per connection up front (its
//! shared state plus a first block of 32 slots), and most connections are
//! idle most of the time. One `AtomicWaker` wakes the task for both pushes
//! and close requests. Critical sections are a push or a pop.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::task::Context;
use std::time::Instant;

use futures_util::task::AtomicWaker;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::mailbox::MessageId;

/// Daemon-unique connection number, assigned at accept.
pub(crate) type ConnId = u64;

/// Why pushd is asking a connection to close, from outside its task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CloseRequest {
    /// An operator ran `pushctl kick` (close code 4000).
    Kicked {
        /// Reason text for the close frame.
        reason: String,
    },
    /// Its outbound queue overflowed (close code 4002).
    SlowConsumer,
    /// The daemon is shutting down (close code 1001).
    Shutdown,
    /// A newer connection of the same uid took its place (close code 4004).
    Replaced,
}

/// Bounds of one connection's outbound queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueueLimits {
    /// Most messages waiting.
    pub(crate) messages: usize,
    /// Most bytes of payload waiting (a shared message counts in full for
    /// every connection that holds it: that is the memory it pins).
    pub(crate) bytes: usize,
}

/// The queue and the payload bytes in it.
#[derive(Debug, Default)]
struct Outbound {
    /// Frames with the id of the message each carries (0 for none).
    messages: VecDeque<(MessageId, Utf8Bytes)>,
    bytes: usize,
}

/// A queue that grew past this capacity is released once drained, so a
/// burst does not pin memory on a connection that goes back to idle.
const RETAINED_QUEUE_CAPACITY: usize = 16;

/// Registry-side view of one WebSocket connection.
#[derive(Debug)]
pub(crate) struct ConnHandle {
    /// Connection number.
    pub(crate) id: ConnId,
    /// Speaks `pushd.v2`: its frames are `ID PAYLOAD`, and it can resume.
    pub(crate) v2: bool,
    /// The client's address.
    pub(crate) peer: SocketAddr,
    /// When the handshake completed.
    pub(crate) connected_at: Instant,
    /// Last inbound frame, on the daemon's [`Clock`](super::clock::Clock).
    last_activity_ms: AtomicU64,
    /// Pushes on their way to the socket, bounded by the registry's [`QueueLimits`].
    outbound: Mutex<Outbound>,
    /// While set, nothing is written: its uid's mailbox is on its way (cluster mode).
    held: AtomicBool,
    /// Cluster mode, `pushd.v2`: the number of the newest message queued (ids are
    /// `ms-N`), which a broadcast, having no number of its own, repeats.
    last_number: AtomicU64,
    /// Set once when something outside the task asks it to close; boxed,
    /// since most connections never get one.
    close_request: OnceLock<Box<CloseRequest>>,
    /// Wakes the task after a push or a close request.
    waker: AtomicWaker,
}

impl ConnHandle {
    /// This connection, as its events describe it.
    pub(crate) fn event_ref(&self) -> crate::core::events::ConnRef {
        crate::core::events::ConnRef {
            id: self.id,
            peer: self.peer,
        }
    }
}

impl ConnHandle {
    /// A handle with an empty queue.
    pub(crate) fn new(
        id: ConnId,
        v2: bool,
        peer: SocketAddr,
        connected_at: Instant,
        now_ms: u64,
    ) -> Self {
        ConnHandle {
            id,
            v2,
            peer,
            connected_at,
            last_activity_ms: AtomicU64::new(now_ms),
            outbound: Mutex::default(),
            held: AtomicBool::new(false),
            last_number: AtomicU64::new(0),
            close_request: OnceLock::new(),
            waker: AtomicWaker::new(),
        }
    }

    /// Records inbound activity at `now_ms`.
    pub(crate) fn touch(&self, now_ms: u64) {
        self.last_activity_ms.store(now_ms, Ordering::Relaxed);
    }

    /// Last inbound activity, in clock milliseconds.
    pub(crate) fn last_activity_ms(&self) -> u64 {
        self.last_activity_ms.load(Ordering::Relaxed)
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Outbound> {
        // The queue holds plain data; a panic elsewhere cannot corrupt it.
        self.outbound
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a push without waiting. `Err` means the queue is full: the
    /// caller treats the connection as a slow consumer.
    pub(crate) fn try_push(
        &self,
        id: MessageId,
        message: &Utf8Bytes,
        limits: QueueLimits,
    ) -> Result<(), ()> {
        {
            let mut queue = self.queue();
            let bytes = queue.bytes + message.len();
            if queue.messages.len() >= limits.messages || bytes > limits.bytes {
                return Err(());
            }
            queue.messages.push_back((id, message.clone()));
            queue.bytes = bytes;
        }
        self.waker.wake();
        Ok(())
    }

    /// Queues what waited in the uid's mailbox, at bind, before any push can
    /// reach the connection. Not held to the queue's bounds: the mailbox has
    /// its own (`--mailbox-size`, `--mailbox-memory`).
    pub(crate) fn push_waiting(&self, messages: Vec<(MessageId, Utf8Bytes)>) {
        {
            let mut queue = self.queue();
            queue.bytes += messages.iter().map(|(_, m)| m.len()).sum::<usize>();
            queue.messages.extend(messages);
        }
        self.waker.wake();
    }

    /// Takes every message still queued: the connection is closing and they
    /// were never written.
    pub(crate) fn take_queue(&self) -> Vec<(MessageId, Utf8Bytes)> {
        let mut queue = self.queue();
        queue.bytes = 0;
        std::mem::take(&mut queue.messages).into()
    }

    /// Registers the task's waker: a later push or close request wakes it.
    /// Call before checking [`ConnHandle::close_request`] and [`ConnHandle::pop`],
    /// so that nothing arriving in between is missed.
    pub(crate) fn register(&self, cx: &Context<'_>) {
        self.waker.register(cx.waker());
    }

    /// Writes nothing until [`ConnHandle::release`].
    pub(crate) fn hold(&self) {
        self.held.store(true, Ordering::Release);
    }

    /// Puts `front` (oldest first) before everything queued meanwhile, and lets
    /// the task write again. With `through`, a message queued meanwhile whose id
    /// is at most that is dropped: `front` has it already.
    pub(crate) fn release(&self, front: Vec<(MessageId, Utf8Bytes)>, through: Option<MessageId>) {
        {
            let mut queue = self.queue();
            if let Some(through) = through {
                let before = queue.messages.len();
                queue.messages.retain(|(id, _)| *id > through);
                if queue.messages.len() < before {
                    queue.bytes = queue.messages.iter().map(|(_, m)| m.len()).sum();
                }
            }
            queue.bytes += front.iter().map(|(_, m)| m.len()).sum::<usize>();
            for entry in front.into_iter().rev() {
                queue.messages.push_front(entry);
            }
            self.held.store(false, Ordering::Release);
        }
        self.waker.wake();
    }

    /// Notes that message number `n` was queued (cluster mode, `pushd.v2`).
    pub(crate) fn note_number(&self, n: MessageId) {
        self.last_number.fetch_max(n, Ordering::Relaxed);
    }

    /// The newest message number queued (cluster mode, `pushd.v2`).
    pub(crate) fn last_number(&self) -> MessageId {
        self.last_number.load(Ordering::Relaxed)
    }

    /// Takes the next queued push.
    pub(crate) fn pop(&self) -> Option<Utf8Bytes> {
        if self.held.load(Ordering::Acquire) {
            return None;
        }
        let mut queue = self.queue();
        let (_, message) = queue.messages.pop_front()?;
        queue.bytes -= message.len();
        if queue.messages.is_empty() && queue.messages.capacity() > RETAINED_QUEUE_CAPACITY {
            queue.messages = VecDeque::new();
        }
        Some(message)
    }

    /// Asks the task to close; the first request wins.
    pub(crate) fn request_close(&self, request: CloseRequest) {
        if self.close_request.set(Box::new(request)).is_ok() {
            self.waker.wake();
        }
    }

    /// The close request, if one was made.
    pub(crate) fn close_request(&self) -> Option<&CloseRequest> {
        self.close_request.get().map(|request| &**request)
    }
}
