//! Socket I/O of one connection, as one hand-written poll.
//!
//! [`poll_io`] moves queued pushes into the socket (`write`) and reads the
//! next message (`read`) in the same poll, and never waits on a write: a peer
//! that stops reading leaves its bytes in the handle's bounded `unwritten`
//! while the task keeps watching its deadline and close requests (awaiting a
//! write inside the loop would park it there, where no heartbeat or kick
//! could reach it).
//!
//! A plain-TCP socket lives in the connection's handle, and `write::write_now`
//! is how a pusher writes to it from its own thread (see `core::conn`); the
//! task writes with the same code, under the same lock, and only waits for
//! the socket to become writable when a write would block.
//!
//! An idle connection holds no buffer: reads go into a per-worker scratch
//! buffer, and only the bytes of a frame that has not fully arrived (or of
//! frames after the one returned) are kept, until they are decoded.

mod read;
mod write;

use std::io;
use std::task::{Context, Poll};

use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

pub(super) use read::{Inbound, ReadError};

use super::stream::ClientStream;
use crate::core::conn::{CloseRequest, ConnHandle};
use read::Fragments;

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

impl Ws {
    /// The connection after its handshake; a plain socket goes into `handle`.
    pub(super) fn new(stream: ClientStream, handle: &ConnHandle) -> Self {
        let tls = match stream {
            ClientStream::Plain(tcp) => {
                handle.share_socket(tcp, write::write_now);
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

    /// Whether this is a TLS connection (its state cannot be handed over).
    pub(super) fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// What a plain connection holds between polls, copied for a live upgrade.
    pub(super) fn parts(&self) -> Parts {
        let spill = self.spill.as_deref();
        Parts {
            unread: spill.map(|s| s.unread.clone()).unwrap_or_default(),
            fragments: spill
                .and_then(|s| s.fragments.as_ref())
                .map(Fragments::parts),
            control: spill.map(|s| s.control.clone()).unwrap_or_default(),
            ping_due: self.ping_due,
        }
    }

    /// A plain connection handed over by the previous process, as [`Ws::parts`] left it.
    pub(super) fn from_parts(tcp: TcpStream, handle: &ConnHandle, parts: Parts) -> Self {
        let mut ws = Ws::new(ClientStream::Plain(tcp), handle);
        let spill = Spill {
            unread: parts.unread,
            fragments: parts.fragments.map(Fragments::from_parts),
            control: parts.control,
        };
        ws.spill = Some(Box::new(spill));
        ws.tidy();
        ws.ping_due = parts.ping_due;
        ws
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
}

/// A plain connection's state between polls, apart from its handle's: what a
/// live upgrade hands over.
#[derive(Debug, Default)]
pub(crate) struct Parts {
    /// Bytes read but not decoded yet.
    pub(crate) unread: Vec<u8>,
    /// A fragmented message so far: opcode and payload.
    pub(crate) fragments: Option<(u8, Vec<u8>)>,
    /// Control frames not moved to the handle's unwritten bytes yet.
    pub(crate) control: Vec<u8>,
    /// A ping should go out before the next push.
    pub(crate) ping_due: bool,
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
