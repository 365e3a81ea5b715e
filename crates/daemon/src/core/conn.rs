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
//! and close requests.
//!
//! A plain-TCP connection's handle also holds its [`Socket`]: a pusher
//! writes what it queued to the socket itself, right after the registry's
//! lock is released, and wakes the task only when the socket would block.
//! Everything written to the socket, by the pusher or by the task, is written
//! under the queue's mutex, so frames keep their order; the writes never wait.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::task::Context;
use std::time::Instant;

use futures_util::task::AtomicWaker;
use tokio::net::TcpStream;
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

/// The queue, the payload bytes in it, and the bytes on their way to the socket.
#[derive(Debug, Default)]
pub(crate) struct Outbound {
    /// Frames with the id of the message each carries (0 for none).
    messages: VecDeque<(MessageId, Utf8Bytes)>,
    bytes: usize,
    /// Encoded bytes the socket has not taken yet, in order: the rest of a
    /// short write, pings, pongs, a close frame. Written before any queued
    /// message; unallocated when empty.
    pub(crate) unwritten: Vec<u8>,
}

/// A queue that grew past this capacity is released once drained, so a
/// burst does not pin memory on a connection that goes back to idle; below
/// it the buffer stays, so that a push to an idle connection (queued, then
/// written at once) does not allocate and free it every time.
const RETAINED_QUEUE_CAPACITY: usize = 16;

impl Outbound {
    /// Whether no message is queued.
    pub(crate) fn is_drained(&self) -> bool {
        self.messages.is_empty()
    }

    /// Takes the next queued message. A queue that grew past
    /// [`RETAINED_QUEUE_CAPACITY`] gives its buffer back once drained.
    pub(crate) fn pop(&mut self) -> Option<Utf8Bytes> {
        let (_, message) = self.messages.pop_front()?;
        self.bytes -= message.len();
        if self.messages.is_empty() && self.messages.capacity() > RETAINED_QUEUE_CAPACITY {
            self.messages = VecDeque::new();
        }
        Some(message)
    }
}

/// A plain-TCP connection's socket, in its handle so that pushers can write
/// to it (a TLS connection's state belongs to its task, which writes for it).
#[derive(Debug)]
pub(crate) struct Socket {
    tcp: TcpStream,
    /// The adapter's writer: `out` (unwritten bytes, then queued messages) as
    /// far as the socket takes it now; `true` when nothing is left.
    write_now: fn(&TcpStream, &mut Outbound) -> bool,
}

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
    /// One of the task's deadlines fell due (set by the WebSocket adapter's
    /// deadlines, which then wake the task).
    timer_due: AtomicBool,
    /// Cluster mode, `pushd.v2`: the number of the newest message queued (ids are
    /// `ms-N`), which a broadcast, having no number of its own, repeats.
    last_number: AtomicU64,
    /// Set once when something outside the task asks it to close; boxed,
    /// since most connections never get one.
    close_request: OnceLock<Box<CloseRequest>>,
    /// Wakes the task after a push or a close request.
    waker: AtomicWaker,
    /// Set once, by the task, when pushers may write to the socket themselves.
    socket: OnceLock<Socket>,
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
            timer_due: AtomicBool::new(false),
            last_number: AtomicU64::new(0),
            close_request: OnceLock::new(),
            waker: AtomicWaker::new(),
            socket: OnceLock::new(),
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

    /// Shares the connection's socket (plain TCP) so that pushers write to
    /// it themselves with `write_now`.
    pub(crate) fn share_socket(
        &self,
        tcp: TcpStream,
        write_now: fn(&TcpStream, &mut Outbound) -> bool,
    ) {
        let _ = self.socket.set(Socket { tcp, write_now });
    }

    /// The shared socket, if [`ConnHandle::share_socket`] was called.
    pub(crate) fn socket(&self) -> Option<&TcpStream> {
        self.socket.get().map(|socket| &socket.tcp)
    }

    /// Whether pushers write to the socket themselves.
    pub(crate) fn writes_directly(&self) -> bool {
        self.socket.get().is_some()
    }

    /// Writes what is queued to the socket now, as a pusher does right after
    /// queueing; wakes the task for whatever the socket did not take.
    pub(crate) fn write_or_wake(&self) {
        let Some(socket) = self.socket.get() else {
            self.waker.wake();
            return;
        };
        if self.is_held() {
            // `release` wakes the task once the mailbox is in front.
            return;
        }
        let done = (socket.write_now)(&socket.tcp, &mut self.outbound());
        if !done {
            self.waker.wake();
        }
    }

    /// Tells the task that one of its deadlines fell due, and wakes it.
    pub(crate) fn fire_timer(&self) {
        self.timer_due.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Whether a deadline fell due since [`ConnHandle::take_timer_due`].
    pub(crate) fn timer_due(&self) -> bool {
        self.timer_due.load(Ordering::Acquire)
    }

    /// Whether a deadline fell due, clearing it.
    pub(crate) fn take_timer_due(&self) -> bool {
        self.timer_due() && self.timer_due.swap(false, Ordering::AcqRel)
    }

    /// Whether writes wait for the uid's mailbox ([`ConnHandle::hold`]).
    pub(crate) fn is_held(&self) -> bool {
        self.held.load(Ordering::Acquire)
    }

    /// The outbound queue, locked: whoever holds it may write to the socket.
    pub(crate) fn outbound(&self) -> std::sync::MutexGuard<'_, Outbound> {
        // The queue holds plain data; a panic elsewhere cannot corrupt it.
        self.outbound
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a push without waiting, and wakes the task if `wake` (a
    /// pusher that writes directly calls [`ConnHandle::write_or_wake`]
    /// instead, once it has let go of the registry). `Err` means the queue is
    /// full: the caller treats the connection as a slow consumer.
    pub(crate) fn try_push(
        &self,
        id: MessageId,
        message: &Utf8Bytes,
        limits: QueueLimits,
        wake: bool,
    ) -> Result<(), ()> {
        {
            let mut queue = self.outbound();
            let bytes = queue.bytes + message.len();
            if queue.messages.len() >= limits.messages || bytes > limits.bytes {
                return Err(());
            }
            queue.messages.push_back((id, message.clone()));
            queue.bytes = bytes;
        }
        if wake {
            self.waker.wake();
        }
        Ok(())
    }

    /// Queues what waited in the uid's mailbox, at bind, before any push can
    /// reach the connection. Not held to the queue's bounds: the mailbox has
    /// its own (`--mailbox-size`, `--mailbox-memory`).
    pub(crate) fn push_waiting(&self, messages: Vec<(MessageId, Utf8Bytes)>) {
        {
            let mut queue = self.outbound();
            queue.bytes += messages.iter().map(|(_, m)| m.len()).sum::<usize>();
            queue.messages.extend(messages);
        }
        self.waker.wake();
    }

    /// Takes every message still queued: the connection is closing and they
    /// were never written.
    pub(crate) fn take_queue(&self) -> Vec<(MessageId, Utf8Bytes)> {
        let mut queue = self.outbound();
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
            let mut queue = self.outbound();
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

    /// Takes the next queued push (the tests' way of reading a connection).
    #[cfg(test)]
    pub(crate) fn pop(&self) -> Option<Utf8Bytes> {
        if self.is_held() {
            return None;
        }
        self.outbound().pop()
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
