//! The write half of a connection: queued pushes batched into one write
//! (copied into the worker's buffer, or vectored when large), what the socket
//! did not take kept in order, the task's control frames first. The same
//! [`write_out`] serves the task and a pusher writing at once (`write_now`).

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use crate::core::payload::Payload;
use smallvec::SmallVec;
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;

use super::Ws;
use crate::adapters::ws::frame::{self, MAX_HEADER, opcode};
use crate::core::conn::{ConnHandle, Outbound};

/// Most pushes written in one go before reads get a turn.
const WRITE_BATCH: usize = 64;

/// A batch stops growing past this many bytes, so that what a short write
/// leaves behind (copied into `unwritten`) stays small. A batch of at most
/// this many bytes is copied into the worker's write buffer and written with
/// one `send`: for the small frames pushes mostly are, the kernel's vectored
/// write (a header and a payload per frame) cost more than the copy.
const WRITE_BUFFER: usize = 16 * 1024;

thread_local! {
    /// The worker's write buffer, where a batch is made one run of bytes.
    static OUTGOING: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(WRITE_BUFFER));
}

impl Ws {
    /// Queues a close frame, after everything queued before it.
    pub(in crate::adapters::ws) fn queue_close(&mut self, code: Option<u16>, reason: &str) {
        let payload = code.map_or_else(Vec::new, |code| frame::close_payload(code, reason));
        frame::encode(opcode::CLOSE, &payload, &mut self.spill().control);
    }

    /// Writes the frames already encoded (a closing connection's last ones)
    /// and flushes, waiting as needed.
    pub(in crate::adapters::ws) async fn flush(&mut self, handle: &ConnHandle) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_write(cx, handle, false).map_ok(|_| ())).await
    }

    /// Writes everything still queued for the connection (what its uid's
    /// mailbox did not take back at its close), then flushes, waiting as
    /// needed: a push answered `ok` reaches the client before any close frame.
    pub(in crate::adapters::ws) async fn flush_queued(
        &mut self,
        handle: &ConnHandle,
    ) -> io::Result<()> {
        std::future::poll_fn(|cx| {
            loop {
                match ready!(self.poll_write(cx, handle, true)) {
                    Ok(true) => return Poll::Ready(Ok(())),
                    // One batch at a time: more is queued.
                    Ok(false) => continue,
                    Err(err) => return Poll::Ready(Err(err)),
                }
            }
        })
        .await
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
    pub(super) fn pump_writes(
        &mut self,
        cx: &mut Context<'_>,
        handle: &ConnHandle,
    ) -> io::Result<()> {
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
pub(super) fn write_now(tcp: &TcpStream, out: &mut Outbound) -> bool {
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
    payload: Payload,
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

    fn add(&mut self, payload: Payload) {
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
                .try_push(0, &Payload::from(payload.clone()), limits, false)
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
                let message = Payload::from(payload.clone());
                handle.try_push(0, &message, limits, false).unwrap();
            }
        }
    }
}
