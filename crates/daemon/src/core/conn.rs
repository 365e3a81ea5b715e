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
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::task::Context;

use super::payload::Payload;
use futures_util::task::AtomicWaker;
use pushd_proto::uid::Uid;
use tokio::net::TcpStream;

use super::ids::MessageId;

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
    /// The node drains before a deploy (close code 1012): reconnect, with jitter.
    Restart,
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

/// The queue, the payload bytes in it, and the bytes on their way to the
/// socket: out of line, allocated at a connection's first push or ping, so that
/// a connection that never had one holds nothing here but a null pointer.
#[derive(Debug, Default)]
pub(crate) struct Outbound(Option<Box<Pending>>);

#[derive(Debug, Default)]
struct Pending {
    /// Frames with the id of the message each carries (0 for none).
    messages: VecDeque<(MessageId, Payload)>,
    bytes: usize,
    /// Encoded bytes the socket has not taken yet, in order: the rest of a
    /// short write, pings, pongs, a close frame. Written before any queued
    /// message; unallocated when empty.
    unwritten: Vec<u8>,
}

/// A queue that grew past this capacity is released once drained, so a
/// burst does not pin memory on a connection that goes back to idle; below
/// it the buffer stays, so that a push to an idle connection (queued, then
/// written at once) does not allocate and free it every time.
const RETAINED_QUEUE_CAPACITY: usize = 16;

impl Outbound {
    fn pending(&mut self) -> &mut Pending {
        self.0.get_or_insert_default()
    }

    /// Whether no message is queued.
    pub(crate) fn is_drained(&self) -> bool {
        self.0.as_ref().is_none_or(|p| p.messages.is_empty())
    }

    /// Payload bytes queued.
    fn bytes(&self) -> usize {
        self.0.as_ref().map_or(0, |p| p.bytes)
    }

    /// Messages queued.
    fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |p| p.messages.len())
    }

    fn push_back(&mut self, id: MessageId, message: Payload) {
        let pending = self.pending();
        pending.bytes += message.len();
        pending.messages.push_back((id, message));
    }

    /// Takes the next queued message. A queue that grew past
    /// [`RETAINED_QUEUE_CAPACITY`] gives its buffer back once drained.
    pub(crate) fn pop(&mut self) -> Option<Payload> {
        let pending = self.0.as_mut()?;
        let (_, message) = pending.messages.pop_front()?;
        pending.bytes -= message.len();
        if pending.messages.is_empty() && pending.messages.capacity() > RETAINED_QUEUE_CAPACITY {
            pending.messages = VecDeque::new();
            self.tidy();
        }
        Some(message)
    }

    /// Takes every queued message.
    fn take_messages(&mut self) -> VecDeque<(MessageId, Payload)> {
        let Some(pending) = self.0.as_mut() else {
            return VecDeque::new();
        };
        pending.bytes = 0;
        let messages = std::mem::take(&mut pending.messages);
        self.tidy();
        messages
    }

    /// The bytes to write before any message; empty when there are none.
    pub(crate) fn unwritten(&self) -> &[u8] {
        self.0.as_ref().map_or(&[], |p| &p.unwritten)
    }

    /// Where to encode frames that go out before any message.
    pub(crate) fn unwritten_mut(&mut self) -> &mut Vec<u8> {
        &mut self.pending().unwritten
    }

    /// The socket took the first `n` unwritten bytes.
    pub(crate) fn consume_unwritten(&mut self, n: usize) {
        let Some(pending) = self.0.as_mut() else {
            return;
        };
        if n >= pending.unwritten.len() {
            pending.unwritten = Vec::new();
            self.tidy();
        } else {
            pending.unwritten.drain(..n);
        }
    }

    /// Frees the out-of-line part once it holds nothing and no queue buffer
    /// worth keeping (see [`RETAINED_QUEUE_CAPACITY`]).
    fn tidy(&mut self) {
        if self
            .0
            .as_ref()
            .is_some_and(|p| p.messages.capacity() == 0 && p.unwritten.is_empty())
        {
            self.0 = None;
        }
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

/// In [`ConnHandle::last_number`]: no message queued yet; the rest is the
/// connection's place (see [`ConnHandle::note_place`]). One word for both, since
/// a second would move the handle up an allocator size class (32 bytes more
/// per connection). Numbers are microseconds since 1970: the bit is never theirs.
const PLACE_ONLY: u64 = 1 << 63;

/// The number in a `last_number` word: 0 while it only holds a place.
fn number_in(word: u64) -> MessageId {
    if word & PLACE_ONLY != 0 { 0 } else { word }
}

/// The top bit of [`ConnHandle`]'s `slot`: a page's event stream.
const SSE: u32 = 1 << 31;

/// Registry-side view of one WebSocket connection.
#[derive(Debug)]
pub(crate) struct ConnHandle {
    /// Connection number.
    pub(crate) id: ConnId,
    /// Speaks `pushd.v2`: its frames are `ID PAYLOAD`, and it can resume.
    pub(crate) v2: bool,
    /// The client's address.
    pub(crate) peer: SocketAddr,
    /// When the handshake completed, on the daemon's [`Clock`](super::clock::Clock).
    pub(crate) connected_ms: u64,
    /// Last inbound frame, on the daemon's [`Clock`](super::clock::Clock).
    last_activity_ms: AtomicU64,
    /// Pushes on their way to the socket, bounded by the registry's [`QueueLimits`].
    outbound: Mutex<Outbound>,
    /// While set, nothing is written: its uid's mailbox is on its way (cluster mode).
    held: AtomicBool,
    /// In its uid's list: bound, and not kicked, replaced or slow. Changed
    /// under the registry's lock only.
    listed: AtomicBool,
    /// One of the task's deadlines fell due (set by the WebSocket adapter's
    /// deadlines, which then wake the task).
    timer_due: AtomicBool,
    /// Its place in its uid's list while listed, so that leaving the list
    /// costs the same however long it is. Changed under the registry's lock
    /// only. (In the handle's padding: it costs no byte.) Its top bit,
    /// [`SSE`], says the connection is a page's event stream: a field of its
    /// own would move the handle up a jemalloc size class (216 + 16 bytes of
    /// `Arc` counts pass 224: 32 bytes per connection).
    slot: AtomicU32,
    /// Cluster mode, `pushd.v2`: the number of the newest message queued (ids are
    /// `ms-N`), which a broadcast, having no number of its own, repeats; or,
    /// with [`PLACE_ONLY`], the place of a connection given nothing yet.
    last_number: AtomicU64,
    /// The uid it bound to, set once; kept after it is unlisted, for its close.
    uid: OnceLock<Uid>,
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
            sse: self.is_sse(),
        }
    }
}

impl ConnHandle {
    /// A handle with an empty queue.
    pub(crate) fn new(id: ConnId, v2: bool, peer: SocketAddr, now_ms: u64) -> Self {
        ConnHandle {
            id,
            v2,
            peer,
            connected_ms: now_ms,
            last_activity_ms: AtomicU64::new(now_ms),
            outbound: Mutex::default(),
            held: AtomicBool::new(false),
            listed: AtomicBool::new(false),
            timer_due: AtomicBool::new(false),
            slot: AtomicU32::new(0),
            last_number: AtomicU64::new(0),
            uid: OnceLock::new(),
            close_request: OnceLock::new(),
            waker: AtomicWaker::new(),
            socket: OnceLock::new(),
        }
    }

    /// The uid it bound to, once bound (and after it was unlisted).
    pub(crate) fn uid(&self) -> Option<&Uid> {
        self.uid.get()
    }

    /// Records the uid it bound to (the registry's, at bind); `false` if it
    /// was already bound.
    pub(crate) fn set_uid(&self, uid: Uid) -> bool {
        self.uid.set(uid).is_ok()
    }

    /// Its place in its uid's list (see the field).
    pub(crate) fn slot(&self) -> usize {
        (self.slot.load(Ordering::Relaxed) & !SSE) as usize
    }

    /// Sets its place in its uid's list.
    pub(crate) fn set_slot(&self, slot: usize) {
        let kind = self.slot.load(Ordering::Relaxed) & SSE;
        self.slot.store(slot as u32 | kind, Ordering::Relaxed);
    }

    /// A page's event stream (Server-Sent Events), not a WebSocket.
    pub(crate) fn is_sse(&self) -> bool {
        self.slot.load(Ordering::Relaxed) & SSE != 0
    }

    /// Makes it a page's event stream, before it is shared.
    pub(crate) fn mark_sse(&mut self) {
        *self.slot.get_mut() |= SSE;
    }

    /// Whether it is in its uid's list.
    pub(crate) fn is_listed(&self) -> bool {
        self.listed.load(Ordering::Relaxed)
    }

    /// Puts it in or takes it out of its uid's list (under the registry's
    /// lock); returns whether it was listed.
    pub(crate) fn set_listed(&self, listed: bool) -> bool {
        self.listed.swap(listed, Ordering::Relaxed)
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

    /// What waits to be written, copied: the encoded bytes the socket has not
    /// taken, and the queued messages (a live upgrade hands both over).
    pub(crate) fn outbound_copy(&self) -> (Vec<u8>, Vec<(MessageId, Payload)>) {
        let queue = self.outbound();
        let messages = queue
            .0
            .as_ref()
            .map(|p| p.messages.iter().cloned().collect());
        (queue.unwritten().to_vec(), messages.unwrap_or_default())
    }

    /// Puts back what a live upgrade handed over: `unwritten` before the
    /// queued `messages`, as they were.
    pub(crate) fn restore_outbound(&self, unwritten: Vec<u8>, messages: Vec<(MessageId, Payload)>) {
        let mut queue = self.outbound();
        if !unwritten.is_empty() {
            *queue.unwritten_mut() = unwritten;
        }
        for (id, message) in messages {
            queue.push_back(id, message);
        }
    }

    /// Wakes the task (a live upgrade's freeze, or its end).
    pub(crate) fn wake(&self) {
        self.waker.wake();
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
        message: &Payload,
        limits: QueueLimits,
        wake: bool,
    ) -> Result<(), ()> {
        {
            let mut queue = self.outbound();
            if queue.len() >= limits.messages || queue.bytes() + message.len() > limits.bytes {
                return Err(());
            }
            queue.push_back(id, message.clone());
        }
        if wake {
            self.waker.wake();
        }
        Ok(())
    }

    /// Queues what waited in the uid's mailbox, at bind, before any push can
    /// reach the connection. Not held to the queue's bounds: the mailbox has
    /// its own (`--mailbox-size`, `--mailbox-memory`).
    pub(crate) fn push_waiting(&self, messages: Vec<(MessageId, Payload)>) {
        {
            let mut queue = self.outbound();
            for (id, message) in messages {
                queue.push_back(id, message);
            }
        }
        self.waker.wake();
    }

    /// Takes every message still queued: the connection is closing and they
    /// were never written.
    pub(crate) fn take_queue(&self) -> Vec<(MessageId, Payload)> {
        self.outbound().take_messages().into()
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
    pub(crate) fn release(&self, front: Vec<(MessageId, Payload)>, through: Option<MessageId>) {
        {
            let mut queue = self.outbound();
            let mut queued = queue.take_messages();
            if let Some(through) = through {
                queued.retain(|(id, _)| *id > through);
            }
            for (id, message) in front.into_iter().chain(queued) {
                queue.push_back(id, message);
            }
            self.held.store(false, Ordering::Release);
        }
        self.waker.wake();
    }

    /// Notes that message number `n` was queued (cluster mode, `pushd.v2`).
    pub(crate) fn note_number(&self, n: MessageId) {
        let _ = (self.last_number).fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
            (n > number_in(old)).then_some(n)
        });
    }

    /// Notes that the connection has everything it is owed up to message
    /// number `n`, though it may have been given none of it (cluster mode,
    /// `pushd.v2`: its uid's newest when it bound). A catch-up starts there
    /// until a message is queued.
    pub(crate) fn note_place(&self, n: MessageId) {
        let _ = (self.last_number).fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
            (old == 0 || (old & PLACE_ONLY != 0 && n >= old & !PLACE_ONLY))
                .then_some(n | PLACE_ONLY)
        });
    }

    /// The newest message number queued (cluster mode, `pushd.v2`): one the
    /// bus brings again is not written twice.
    pub(crate) fn last_number(&self) -> MessageId {
        number_in(self.last_number.load(Ordering::Relaxed))
    }

    /// Where a catch-up starts: after the newest message queued, or else its
    /// place; `None` when it has neither (its bind took nothing from Redis).
    pub(crate) fn catch_up_place(&self) -> Option<MessageId> {
        let word = self.last_number.load(Ordering::Relaxed);
        (word != 0).then_some(word & !PLACE_ONLY)
    }

    /// Takes the next queued push, unless held (how a page's event stream,
    /// which no pusher writes to, and the tests read a connection).
    pub(crate) fn pop(&self) -> Option<Payload> {
        if self.is_held() {
            return None;
        }
        self.outbound().pop()
    }

    /// Asks the task to close; the first request wins (true when this was it).
    pub(crate) fn request_close(&self, request: CloseRequest) -> bool {
        let first = self.close_request.set(Box::new(request)).is_ok();
        if first {
            self.waker.wake();
        }
        first
    }

    /// The close request, if one was made.
    pub(crate) fn close_request(&self) -> Option<&CloseRequest> {
        self.close_request.get().map(|request| &**request)
    }
}

#[cfg(test)]
mod tests {
    use super::ConnHandle;

    fn handle() -> ConnHandle {
        ConnHandle::new(1, true, "127.0.0.1:1".parse().unwrap(), 0)
    }

    #[test]
    fn a_place_is_where_a_catch_up_starts_until_a_number_is_noted() {
        let handle = handle();
        assert_eq!(handle.catch_up_place(), None);
        handle.note_place(0);
        assert_eq!(
            (handle.catch_up_place(), handle.last_number()),
            (Some(0), 0)
        );
        handle.note_place(7);
        assert_eq!(
            (handle.catch_up_place(), handle.last_number()),
            (Some(7), 0)
        );
        handle.note_place(5);
        assert_eq!(handle.catch_up_place(), Some(7));
        // A number noted, even one below the place, replaces it: the
        // connection was given a message routed after its bind.
        handle.note_number(6);
        assert_eq!(
            (handle.catch_up_place(), handle.last_number()),
            (Some(6), 6)
        );
        handle.note_place(9);
        assert_eq!(
            (handle.catch_up_place(), handle.last_number()),
            (Some(6), 6)
        );
        handle.note_number(4);
        assert_eq!(handle.last_number(), 6);
    }
}

#[cfg(test)]
mod size {
    /// Every connection holds one in an `Arc` (16 bytes of counts before it):
    /// at 208 bytes or less that is jemalloc's 224-byte class; one byte more
    /// and it is 256 (docs/PERFORMANCE.md, "Where the bytes go").
    #[test]
    fn a_handle_fits_in_its_size_class() {
        let size = std::mem::size_of::<super::ConnHandle>();
        assert!(size <= 208, "ConnHandle grew to {size} bytes");
    }

    #[test]
    fn the_stream_bit_leaves_the_slot_alone() {
        let mut handle = super::ConnHandle::new(1, true, "127.0.0.1:1".parse().unwrap(), 0);
        handle.set_slot(5);
        handle.mark_sse();
        assert!(handle.is_sse());
        assert_eq!(handle.slot(), 5);
        handle.set_slot(7);
        assert_eq!((handle.slot(), handle.is_sse()), (7, true));
    }
}
