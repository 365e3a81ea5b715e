//! Socket I/O of one connection, as one hand-written poll.
//!
//! [`poll_io`] moves queued pushes into the socket and reads the next frame in
//! the same poll, and never waits on a write: a peer that stops reading leaves
//! its bytes in tungstenite's bounded buffer while the task keeps watching its
//! deadline and close requests (awaiting a `flush()` inside the loop would
//! park it there, where no heartbeat or kick could reach it).

use super::Ws;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::core::conn::{CloseRequest, ConnHandle};

/// Pushes written to the socket in one go before reads get a turn.
const WRITE_BATCH: usize = 64;

/// Bytes of tungstenite's read buffer per connection, allocated up front.
/// Clients send a uid and small heartbeats, so a small buffer is enough;
/// tungstenite's default (128 KiB) would cost 2.4 GiB at 19,000 connections.
/// 1 KiB → 256 bytes (with the uid shared with the registry) took RSS per
/// idle connection from 3,216 to 2,420 bytes, and 256 → 128 took it from
/// about 2,580 back to about 2,460 after the hardening state was added
/// (docs/PERFORMANCE.md, "Tuning log"). Larger frames still arrive whole: the
/// buffer grows for a frame whose header announces more (a JWT of ~200 bytes,
/// say), up to `--max-message-size`.
const READ_BUFFER: usize = 128;

/// Bytes of pushes collected before tungstenite writes to the socket; a flush
/// follows every batch anyway, so this only merges small frames.
const WRITE_BUFFER: usize = 16 * 1024;

/// tungstenite settings, each chosen for many mostly idle connections.
pub(super) fn ws_config(max_message_size: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        // Every frame waits for `poll_ready`, so the buffer never holds more
        // than WRITE_BUFFER plus one frame; this is only a safety net.
        .max_write_buffer_size(WRITE_BUFFER + max_message_size + 1024)
        .max_message_size(Some(max_message_size))
        .max_frame_size(Some(max_message_size))
}

/// Outcome of one [`poll_io`].
pub(super) enum Io {
    /// Something outside the task asked the connection to close.
    CloseRequested(CloseRequest),
    /// A frame arrived.
    Frame(Message),
    /// The peer closed the TCP stream.
    Closed,
    /// Reading or writing failed.
    Failed(WsError),
}

/// Write-side state that must survive between polls (the future built from
/// [`poll_io`] is dropped whenever another `select!` branch wins).
#[derive(Debug, Default)]
pub(super) struct WriteState {
    /// A ping should go out before the next push.
    pub(super) ping_due: bool,
    /// Frames were handed to tungstenite but not flushed yet.
    pub(super) dirty: bool,
}

/// Moves queued frames into the socket as far as it accepts them, then
/// polls for the next inbound frame. Returns `Pending` with wakers registered
/// for whatever it is waiting on; never waits for one side before the other.
pub(super) fn poll_io(
    cx: &mut Context<'_>,
    ws: &mut Ws,
    handle: &ConnHandle,
    write: &mut WriteState,
) -> Poll<Io> {
    // One registration covers both checks below and the queue in pump_writes.
    handle.register(cx);
    if let Some(request) = handle.close_request() {
        return Poll::Ready(Io::CloseRequested(request.clone()));
    }
    if let Err(err) = pump_writes(cx, ws, handle, write) {
        return Poll::Ready(Io::Failed(err));
    }
    match ws.poll_next_unpin(cx) {
        Poll::Ready(Some(Ok(frame))) => Poll::Ready(Io::Frame(frame)),
        Poll::Ready(Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)))
        | Poll::Ready(None) => Poll::Ready(Io::Closed),
        Poll::Ready(Some(Err(err))) => Poll::Ready(Io::Failed(err)),
        Poll::Pending => Poll::Pending,
    }
}

/// The write half of [`poll_io`]: queue → tungstenite → socket, without blocking.
fn pump_writes(
    cx: &mut Context<'_>,
    ws: &mut Ws,
    handle: &ConnHandle,
    write: &mut WriteState,
) -> Result<(), WsError> {
    for sent in 0.. {
        if sent == WRITE_BATCH {
            // Let reads and other tasks in; come straight back for the rest.
            cx.waker().wake_by_ref();
            break;
        }
        // Pending: the socket is full and tungstenite is waiting to flush.
        // The write waker is registered; queued pushes stay in the handle's queue.
        match ws.poll_ready_unpin(cx) {
            Poll::Pending => return Ok(()),
            Poll::Ready(result) => result?,
        }
        let frame = if std::mem::take(&mut write.ping_due) {
            Message::Ping(Bytes::new())
        } else {
            match handle.pop() {
                Some(text) => Message::Text(text),
                None => break,
            }
        };
        ws.start_send_unpin(frame)?;
        write.dirty = true;
    }
    if write.dirty {
        match ws.poll_flush_unpin(cx) {
            Poll::Ready(Ok(())) => write.dirty = false,
            Poll::Ready(Err(err)) => return Err(err),
            Poll::Pending => {}
        }
    }
    Ok(())
}
