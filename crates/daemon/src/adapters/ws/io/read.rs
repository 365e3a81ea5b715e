//! The read half of a connection: bytes from the socket (or TLS) into
//! frames, fragments into messages, pings answered, close frames checked.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, ReadBuf};

use super::Ws;
use crate::adapters::ws::frame::{self, FrameError, opcode};
use crate::core::conn::ConnHandle;

/// Bytes of each worker's read buffer. Clients send a uid and small
/// heartbeats; a larger message simply arrives over several reads.
const READ_CHUNK: usize = 4096;

thread_local! {
    /// The worker's read buffer, shared by every connection it polls.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_CHUNK].into_boxed_slice());
}

/// A message that came in fragments (§5.4), so far.
#[derive(Debug, Clone)]
pub(super) struct Fragments {
    opcode: u8,
    payload: Vec<u8>,
}

impl Fragments {
    /// Its opcode and payload so far (a live upgrade hands them over).
    pub(super) fn parts(&self) -> (u8, Vec<u8>) {
        (self.opcode, self.payload.clone())
    }

    /// As handed over by [`Fragments::parts`].
    pub(super) fn from_parts((opcode, payload): (u8, Vec<u8>)) -> Self {
        Fragments { opcode, payload }
    }
}

/// A message from the client.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Inbound {
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
pub(crate) enum ReadError {
    Frame(FrameError),
    Io(io::Error),
}

impl From<FrameError> for ReadError {
    fn from(err: FrameError) -> Self {
        ReadError::Frame(err)
    }
}

impl Ws {
    fn take_unread(&mut self) -> Vec<u8> {
        self.spill
            .as_mut()
            .map(|spill| std::mem::take(&mut spill.unread))
            .unwrap_or_default()
    }

    /// The next message, of at most `max` bytes; `Ok(None)` when the client
    /// closed the stream.
    pub(in crate::adapters::ws) fn poll_inbound(
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
