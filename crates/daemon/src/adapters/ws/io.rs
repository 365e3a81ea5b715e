//! Socket I/O of one connection, as one hand-written poll.
//!
//! [`poll_io`] moves queued pushes into the socket and reads the next message
//! in the same poll, and never waits on a write: a peer that stops reading
//! leaves its bytes in the handle's bounded `unwritten` while the task keeps
//! watching its deadline and close requests (awaiting a write inside the loop
//! would park it there, where no heartbeat or kick could reach it).
//!
//! A plain-TCP socket lives in the connection's handle, and [`write_now`] is
//! how a pusher writes to it from its own thread (see `core::conn`); the task
//! writes with the same [`write_out`], under the same lock, and only waits
//! for the socket to become writable when a write would block.
//!
//! An idle connection holds no buffer: reads go into a per-worker scratch
//! buffer, and only the bytes of a frame that has not fully arrived (or of
//! frames after the one returned) are kept, until they are decoded.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use smallvec::SmallVec;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::frame::{self, FrameError, MAX_HEADER, opcode};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::stream::ClientStream;
use crate::core::conn::{CloseRequest, ConnHandle, Outbound};

/// Most pushes written in one go before reads get a turn.
const WRITE_BATCH: usize = 64;

/// A batch stops growing past this many bytes, so that what a short write
/// leaves behind (copied into `unwritten`) stays small. A batch of at most
/// this many bytes is copied into the worker's write buffer and written with
/// one `send`: for the small frames pushes mostly are, the kernel's vectored
/// write (a header and a payload per frame) cost more than the copy.
const WRITE_BUFFER: usize = 16 * 1024;

/// Bytes of each worker's read buffer. Clients send a uid and small
/// heartbeats; a larger message simply arrives over several reads.
const READ_CHUNK: usize = 4096;

thread_local! {
    /// The worker's read buffer, shared by every connection it polls.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_CHUNK].into_boxed_slice());
    /// The worker's write buffer, where a batch is made one run of bytes.
    static OUTGOING: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(WRITE_BUFFER));
}

/// A client's WebSocket, after its handshake.
#[derive(Debug)]
pub(crate) struct Ws {
    /// A TLS connection's stream; a plain one's socket is in its handle.
    tls: Option<Box<TlsStream<TcpStream>>>,
    /// Bytes that wait for the socket or for more bytes; `None`, and so no
    /// allocation at all, while there are none (an idle connection).
    spill: Option<Box<Spill>>,
    /// Bytes were handed to the stream since its last flush (TLS buffers them).
    dirty: bool,
    /// A ping should go out before the next push.
    pub(super) ping_due: bool,
}

/// What a connection holds between polls, only while it holds any.
#[derive(Debug, Default)]
struct Spill {
    /// Bytes read but not decoded yet.
    unread: Vec<u8>,
    /// A fragmented message, while its fragments arrive.
    fragments: Option<Fragments>,
    /// Control frames of the task's (pongs, a close), moved to the handle's
    /// `unwritten` at its next write.
    control: Vec<u8>,
}

impl Spill {
    fn is_empty(&self) -> bool {
        self.unread.is_empty() && self.fragments.is_none() && self.control.is_empty()
    }
}

/// A message that came in fragments (§5.4), so far.
#[derive(Debug)]
struct Fragments {
    opcode: u8,
    payload: Vec<u8>,
}

/// A message from the client.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Inbound {
    Text(String),
    Binary,
    /// Its pong is already on its way.
    Ping,
    Pong,
    /// The client's close frame, with its code if it gave one.
    Close(Option<u16>),
}

/// Why reading stopped.
#[derive(Debug)]
pub(super) enum ReadError {
    Frame(FrameError),
    Io(io::Error),
}

impl From<FrameError> for ReadError {
    fn from(err: FrameError) -> Self {
        ReadError::Frame(err)
    }
}

impl Ws {
    /// The connection after its handshake; a plain socket goes into `handle`.
    pub(super) fn new(stream: ClientStream, handle: &ConnHandle) -> Self {
        let tls = match stream {
            ClientStream::Plain(tcp) => {
                handle.share_socket(tcp, write_now);
                None
            }
            ClientStream::Tls(tls) => Some(tls),
        };
        Ws {
            tls,
            spill: None,
            dirty: false,
            ping_due: false,
        }
    }

    fn spill(&mut self) -> &mut Spill {
        self.spill.get_or_insert_default()
    }

    /// Frees the spill once nothing is in it.
    fn tidy(&mut self) {
        if self.spill.as_ref().is_some_and(|spill| spill.is_empty()) {
            self.spill = None;
        }
    }

    fn take_unread(&mut self) -> Vec<u8> {
        self.spill
            .as_mut()
            .map(|spill| std::mem::take(&mut spill.unread))
            .unwrap_or_default()
    }

    /// The next message, of at most `max` bytes; `Ok(None)` when the client
    /// closed the stream.
    pub(super) fn poll_inbound(
        &mut self,
        cx: &mut Context<'_>,
        handle: &ConnHandle,
        max: usize,
    ) -> Poll<Result<Option<Inbound>, ReadError>> {
        let mut unread = self.take_unread();
        if !unread.is_empty() {
            let (used, inbound) = self.decode(&mut unread, max)?;
            self.keep_unread(unread, used);
            if let Some(inbound) = inbound {
                return Poll::Ready(Ok(Some(inbound)));
            }
        }
        loop {
            let read = SCRATCH.with_borrow_mut(|scratch| {
                let n = ready!(self.poll_read(cx, handle, scratch)).map_err(ReadError::Io)?;
                if n == 0 {
                    return Poll::Ready(Ok(None));
                }
                let mut unread = self.take_unread();
                if unread.is_empty() {
                    let (used, inbound) = self.decode(&mut scratch[..n], max)?;
                    self.keep_unread(scratch[used..n].to_vec(), 0);
                    Poll::Ready(Ok(Some(inbound)))
                } else {
                    // A frame was waiting for these bytes.
                    unread.extend_from_slice(&scratch[..n]);
                    let (used, inbound) = self.decode(&mut unread, max)?;
                    self.keep_unread(unread, used);
                    Poll::Ready(Ok(Some(inbound)))
                }
            });
            match ready!(read) {
                Ok(Some(Some(inbound))) => return Poll::Ready(Ok(Some(inbound))),
                Ok(Some(None)) => continue,
                Ok(None)
                    if self
                        .spill
                        .as_ref()
                        .is_none_or(|s| s.unread.is_empty() && s.fragments.is_none()) =>
                {
                    return Poll::Ready(Ok(None));
                }
                Ok(None) => {
                    let cut =
                        io::Error::new(io::ErrorKind::UnexpectedEof, "stream ended mid-frame");
                    return Poll::Ready(Err(ReadError::Io(cut)));
                }
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
    }

    /// Keeps the bytes of `unread` after the first `used`, or frees it if
    /// there are none.
    fn keep_unread(&mut self, mut unread: Vec<u8>, used: usize) {
        unread.drain(..used);
        if unread.is_empty() {
            self.tidy();
        } else {
            self.spill().unread = unread;
        }
    }

    /// Decodes frames from `buf` until one completes a message. Returns the
    /// bytes used and the message, if one completed.
    fn decode(
        &mut self,
        buf: &mut [u8],
        max: usize,
    ) -> Result<(usize, Option<Inbound>), FrameError> {
        let mut used = 0;
        while let Some((frame, len)) = frame::decode(&mut buf[used..], max)? {
            used += len;
            if let Some(inbound) = self.message(frame, max)? {
                return Ok((used, Some(inbound)));
            }
        }
        Ok((used, None))
    }

    /// Takes one frame; returns the message it completes, if any.
    fn message(
        &mut self,
        frame: frame::Frame<'_>,
        max: usize,
    ) -> Result<Option<Inbound>, FrameError> {
        let fragments = self
            .spill
            .as_mut()
            .and_then(|spill| spill.fragments.as_mut());
        let complete = match (frame.opcode, fragments) {
            (opcode::PING, _) => {
                frame::encode(opcode::PONG, frame.payload, &mut self.spill().control);
                return Ok(Some(Inbound::Ping));
            }
            (opcode::PONG, _) => return Ok(Some(Inbound::Pong)),
            (opcode::CLOSE, _) => {
                return close_code(frame.payload).map(|c| Some(Inbound::Close(c)));
            }
            (opcode::CONTINUATION, None) => {
                return Err(FrameError::Protocol(
                    "a continuation frame without a message",
                ));
            }
            (opcode::CONTINUATION, Some(fragments)) => {
                if fragments.payload.len() + frame.payload.len() > max {
                    return Err(FrameError::TooBig);
                }
                fragments.payload.extend_from_slice(frame.payload);
                if !frame.fin {
                    return Ok(None);
                }
                let fragments = self.spill().fragments.take().expect("matched");
                self.tidy();
                (fragments.opcode, fragments.payload)
            }
            (_, Some(_)) => {
                return Err(FrameError::Protocol(
                    "a new message before the last one ended",
                ));
            }
            (opcode, None) if !frame.fin => {
                let payload = frame.payload.to_vec();
                self.spill().fragments = Some(Fragments { opcode, payload });
                return Ok(None);
            }
            (opcode, None) => (opcode, frame.payload.to_vec()),
        };
        Ok(Some(match complete {
            (opcode::TEXT, payload) => {
                Inbound::Text(String::from_utf8(payload).map_err(|_| FrameError::InvalidUtf8)?)
            }
            _ => Inbound::Binary,
        }))
    }

    /// Reads what the socket has into `buf`; `Ok(0)` at its end.
    fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        handle: &ConnHandle,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(tls) = &mut self.tls {
            let mut buf = ReadBuf::new(buf);
            ready!(Pin::new(&mut **tls).poll_read(cx, &mut buf))?;
            return Poll::Ready(Ok(buf.filled().len()));
        }
        let tcp = handle
            .socket()
            .expect("a plain connection shares its socket");
        loop {
            ready!(tcp.poll_read_ready(cx))?;
            match tcp.try_read(buf) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                read => return Poll::Ready(read),
            }
        }
    }

    /// Queues a close frame, after everything queued before it.
    pub(super) fn queue_close(&mut self, code: Option<u16>, reason: &str) {
        let payload = code.map_or_else(Vec::new, |code| frame::close_payload(code, reason));
        frame::encode(opcode::CLOSE, &payload, &mut self.spill().control);
    }

    /// Writes the frames already encoded (a closing connection's last ones:
    /// not its queued messages, which the registry has taken back) and
    /// flushes, waiting as needed.
    pub(super) async fn flush(&mut self, handle: &ConnHandle) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_write(cx, handle, false).map_ok(|_| ())).await
    }

    /// One batch of [`write_out`] (of queued messages too, with `messages`),
    /// the task's control frames and a due ping first. `true` when nothing is
    /// left to write; `Pending`, with the waker registered, when the socket
    /// is full.
    fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        handle: &ConnHandle,
        messages: bool,
    ) -> Poll<io::Result<bool>> {
        let mut out = handle.outbound();
        if let Some(spill) = &mut self.spill
            && !spill.control.is_empty()
        {
            out.unwritten_mut().append(&mut spill.control);
            spill.control = Vec::new();
            self.tidy();
        }
        if std::mem::take(&mut self.ping_due) {
            frame::encode(opcode::PING, &[], out.unwritten_mut());
        }
        let held = !messages || handle.is_held();
        let Some(tls) = &mut self.tls else {
            let tcp = handle
                .socket()
                .expect("a plain connection shares its socket");
            loop {
                match write_out(&mut out, held, |slices| try_write(tcp, slices)) {
                    Poll::Pending => {}
                    done => return done,
                }
                // Full: wait until it is not, unless it already is not again.
                ready!(tcp.poll_write_ready(cx))?;
            }
        };
        let mut dirty = false;
        let written = write_out(&mut out, held, |slices| {
            dirty = true;
            Pin::new(&mut **tls).poll_write_vectored(cx, slices)
        });
        // rustls holds what it encrypted until it is flushed.
        self.dirty |= dirty;
        if self.dirty {
            ready!(Pin::new(&mut **tls).poll_flush(cx))?;
            self.dirty = false;
        }
        written
    }

    /// The write half of [`poll_io`]: one batch, then reads get their turn.
    fn pump_writes(&mut self, cx: &mut Context<'_>, handle: &ConnHandle) -> io::Result<()> {
        match self.poll_write(cx, handle, true) {
            Poll::Ready(Ok(false)) => {
                // More is queued: come straight back for it after the reads.
                cx.waker().wake_by_ref();
                Ok(())
            }
            Poll::Ready(result) => result.map(|_| ()),
            Poll::Pending => Ok(()),
        }
    }
}

/// A pusher's write (see `ConnHandle::write_or_wake`): as far as the socket
/// takes it without waiting, one batch; `true` when nothing is left.
fn write_now(tcp: &TcpStream, out: &mut Outbound) -> bool {
    let written = write_out(out, false, |slices| try_write(tcp, slices));
    matches!(written, Poll::Ready(Ok(true)))
}

/// A non-blocking write (`send` for one slice, else vectored); `Pending` when
/// the socket is full (whoever must wait registers for writability itself).
fn try_write(tcp: &TcpStream, slices: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
    let written = match slices {
        [one] => tcp.try_write(one),
        _ => tcp.try_write_vectored(slices),
    };
    match written {
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
        written => Poll::Ready(written),
    }
}

/// Writes `out`'s unwritten bytes, then one batch of its queued messages
/// (none while `held`), with `write`. `true` when nothing is left, `false`
/// when more messages are queued, `Pending` when the socket is full: what it
/// did not take is in `unwritten`, in order.
fn write_out(
    out: &mut Outbound,
    held: bool,
    mut write: impl FnMut(&[io::IoSlice<'_>]) -> Poll<io::Result<usize>>,
) -> Poll<io::Result<bool>> {
    while !out.unwritten().is_empty() {
        let n = ready!(write(&[io::IoSlice::new(out.unwritten())]))?;
        if n == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        out.consume_unwritten(n);
    }
    if held {
        return Poll::Ready(Ok(true));
    }
    let mut batch = Batch::new();
    while batch.len() < WRITE_BATCH && batch.bytes < WRITE_BUFFER {
        match out.pop() {
            Some(text) => batch.add(text),
            None => break,
        }
    }
    if batch.len() == 0 {
        return Poll::Ready(Ok(true));
    }
    let written = if batch.bytes <= WRITE_BUFFER {
        OUTGOING.with_borrow_mut(|outgoing| {
            outgoing.clear();
            batch
                .parts()
                .for_each(|part| outgoing.extend_from_slice(part));
            write(&[io::IoSlice::new(outgoing)])
        })
    } else {
        let slices: SmallVec<[io::IoSlice<'_>; 2 * WRITE_BATCH]> =
            batch.parts().map(io::IoSlice::new).collect();
        write(&slices)
    };
    let written = match written {
        Poll::Ready(written) => written?,
        Poll::Pending => 0,
    };
    if written < batch.bytes {
        batch.copy_from(written, out.unwritten_mut());
        return Poll::Pending;
    }
    Poll::Ready(Ok(out.is_drained()))
}

/// Pushes gathered for one write: their headers and payloads. On
/// the stack, and only the slots in use are ever written or dropped: most
/// writes carry one push, and a batch initialised in full (64 headers and
/// payloads) cost more than the push itself.
struct Batch {
    frames: SmallVec<[Frame; WRITE_BATCH]>,
    bytes: usize,
}

/// One push as a frame: its header, encoded here, and its shared payload.
struct Frame {
    head: [u8; MAX_HEADER],
    head_len: usize,
    payload: Utf8Bytes,
}

impl Batch {
    fn new() -> Self {
        Batch {
            frames: SmallVec::new(),
            bytes: 0,
        }
    }

    fn len(&self) -> usize {
        self.frames.len()
    }

    fn add(&mut self, payload: Utf8Bytes) {
        let mut head = [0; MAX_HEADER];
        let head_len = frame::header(opcode::TEXT, payload.len(), &mut head);
        self.bytes += head_len + payload.len();
        self.frames.push(Frame {
            head,
            head_len,
            payload,
        });
    }

    fn parts(&self) -> impl Iterator<Item = &[u8]> {
        (self.frames.iter()).flat_map(|f| [&f.head[..f.head_len], f.payload.as_bytes()])
    }

    /// Appends every byte after the first `skip` to `out`.
    fn copy_from(&self, mut skip: usize, out: &mut Vec<u8>) {
        for part in self.parts() {
            if skip >= part.len() {
                skip -= part.len();
            } else {
                out.extend_from_slice(&part[skip..]);
                skip = 0;
            }
        }
    }
}

/// The code of a close frame's payload (§5.5.1), checked.
fn close_code(payload: &[u8]) -> Result<Option<u16>, FrameError> {
    match payload {
        [] => Ok(None),
        [_] => Err(FrameError::Protocol("a close frame with a 1-byte payload")),
        [high, low, reason @ ..] => {
            let code = u16::from_be_bytes([*high, *low]);
            if !frame::close_code_allowed(code) {
                return Err(FrameError::Protocol("a close code a client may not send"));
            }
            std::str::from_utf8(reason).map_err(|_| FrameError::InvalidUtf8)?;
            Ok(Some(code))
        }
    }
}

/// Outcome of one [`poll_io`].
pub(super) enum Io {
    /// Something outside the task asked the connection to close.
    CloseRequested(CloseRequest),
    /// A message arrived.
    Inbound(Inbound),
    /// The peer closed the TCP stream.
    Closed,
    /// Reading failed.
    ReadFailed(ReadError),
    /// Writing failed.
    WriteFailed(io::Error),
}

/// Moves queued frames into the socket as far as it accepts them, then
/// polls for the next inbound message. Returns `Pending` with wakers
/// registered for whatever it is waiting on; never waits for one side
/// before the other.
pub(super) fn poll_io(
    cx: &mut Context<'_>,
    ws: &mut Ws,
    handle: &ConnHandle,
    max_message: usize,
) -> Poll<Io> {
    // One registration covers both checks below and the queue in pump_writes.
    handle.register(cx);
    if let Some(request) = handle.close_request() {
        return Poll::Ready(Io::CloseRequested(request.clone()));
    }
    if let Err(err) = ws.pump_writes(cx, handle) {
        return Poll::Ready(Io::WriteFailed(err));
    }
    match ws.poll_inbound(cx, handle, max_message) {
        Poll::Ready(Ok(Some(inbound))) => Poll::Ready(Io::Inbound(inbound)),
        Poll::Ready(Ok(None)) => Poll::Ready(Io::Closed),
        Poll::Ready(Err(err)) => Poll::Ready(Io::ReadFailed(err)),
        Poll::Pending => Poll::Pending,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::conn::QueueLimits;

    /// The payloads of the unmasked server frames in `stream`, in order.
    fn payloads(mut stream: &[u8]) -> Vec<String> {
        let mut payloads = Vec::new();
        while !stream.is_empty() {
            assert_eq!(stream[0], 0x80 | opcode::TEXT, "a final text frame");
            let (len, head) = match stream[1] {
                126 => (u16::from_be_bytes([stream[2], stream[3]]) as usize, 4),
                127 => (
                    u64::from_be_bytes(stream[2..10].try_into().unwrap()) as usize,
                    10,
                ),
                n => (n as usize, 2),
            };
            payloads.push(String::from_utf8(stream[head..head + len].to_vec()).unwrap());
            stream = &stream[head + len..];
        }
        payloads
    }

    /// Everything queued comes out whole and in order however little the
    /// socket takes at a time: small batches (copied into one run of bytes)
    /// and a batch too large for that (written vectored) alike, with what a
    /// short write leaves behind going first next time.
    #[test]
    fn short_writes_lose_and_reorder_nothing() {
        let handle = ConnHandle::new(1, false, "127.0.0.1:1".parse().unwrap(), 0);
        let limits = QueueLimits {
            messages: 1000,
            bytes: 1 << 20,
        };
        let mut sent = Vec::new();
        for i in 0..300 {
            // Mostly small, now and then past 125 and 65,535 bytes (2- and 8-byte lengths).
            let size = match i % 50 {
                7 => 300,
                31 => 70_000,
                _ => i % 40,
            };
            let payload = format!("{i}:{}", "x".repeat(size));
            handle
                .try_push(0, &Utf8Bytes::from(payload.clone()), limits, false)
                .unwrap();
            sent.push(payload);
        }
        for chunk in [1, 7, 1000, 40_000] {
            let mut stream = Vec::new();
            let mut out = Outbound::default();
            std::mem::swap(&mut out, &mut handle.outbound());
            let mut calls = 0;
            loop {
                // Each turn the socket takes at most `chunk` bytes, then is full.
                let mut taken = false;
                let written = write_out(&mut out, false, |slices| {
                    calls += 1;
                    if std::mem::replace(&mut taken, true) {
                        return Poll::Pending;
                    }
                    let mut budget = chunk;
                    for slice in slices {
                        let n = slice.len().min(budget);
                        stream.extend_from_slice(&slice[..n]);
                        budget -= n;
                    }
                    Poll::Ready(Ok(chunk - budget))
                });
                if matches!(written, Poll::Ready(Ok(true))) {
                    break;
                }
                assert!(calls < 10_000_000, "no progress");
            }
            assert!(out.unwritten().is_empty() && out.is_drained());
            assert_eq!(
                payloads(&stream),
                sent,
                "socket taking {chunk} bytes a turn"
            );
            // The same messages again for the next chunk size.
            for payload in &sent {
                let message = Utf8Bytes::from(payload.clone());
                handle.try_push(0, &message, limits, false).unwrap();
            }
        }
    }
}
