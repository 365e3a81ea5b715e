//! The hand-over's wire: messages between the old and the new process over
//! a Unix socket pair, each `[length u32][descriptors u8][postcard body]`, the
//! descriptors travelling beside the message's first bytes (`SCM_RIGHTS`).
//! Blocking calls, made from a blocking thread: the hand-over is one
//! conversation, not a server.

use std::io::{self, IoSlice, IoSliceMut, Read};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use serde::{Deserialize, Serialize};

use crate::core::ids::{MessageId, Since};
use crate::core::payload::Payload;
use crate::core::saved::Saved;

/// The hand-over's format. A new process that speaks another is refused and
/// the old one keeps serving.
pub(crate) const FORMAT: u32 = 2;

/// Descriptors per message at most (the kernel takes 253).
pub(crate) const MAX_FDS: usize = 200;

/// Longest message accepted (the registry's state may be large).
const MAX_MESSAGE: usize = 1 << 31;

/// What one process says to the other, in the order they say it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Message {
    /// New to old, first: who it is and which format it speaks.
    Hello {
        format: u32,
        version: String,
        pid: u32,
    },
    /// Old to new: the format is not one the old process speaks.
    Refused { reason: String },
    /// Old to new: the listening sockets, descriptors in this order.
    Listeners(Vec<ListenerKind>),
    /// Old to new: mailboxes, copies, bans, id position.
    State(Saved),
    /// Old to new, in cluster mode: the node's id in Redis, which the new
    /// process keeps (and with it the node's presence and lease).
    NodeId(String),
    /// Old to new: plain WebSocket connections, descriptors in this order.
    Connections(Vec<HandedConn>),
    /// Old to new: nothing more.
    Done,
    /// New to old: it serves; the old process may go.
    Ready { pid: u32 },
    /// New to old: it could not take over; the old process keeps serving.
    Failed { reason: String },
}

/// Which listener a descriptor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ListenerKind {
    Ws,
    Text,
    Admin,
    Http,
    Metrics,
}

/// One plain WebSocket connection, as its task left it (its socket travels
/// beside it). Times are relative, since the clocks of two processes differ.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct HandedConn {
    pub(crate) peer: SocketAddr,
    pub(crate) v2: bool,
    /// Bound to this uid, if it is.
    pub(crate) uid: Option<String>,
    /// An unbound `pushd.v2` client's `since`.
    pub(crate) since: Option<Since>,
    /// Since the handshake, in milliseconds.
    pub(crate) connected_ms_ago: u64,
    /// Since the last inbound frame, in milliseconds.
    pub(crate) idle_ms: u64,
    /// The next ping, in milliseconds from now.
    pub(crate) next_ping_in_ms: Option<u64>,
    pub(crate) ping_due: bool,
    /// Bytes read but not decoded yet.
    pub(crate) unread: Vec<u8>,
    /// A fragmented message on its way: opcode and payload so far.
    pub(crate) fragments: Option<(u8, Vec<u8>)>,
    /// The task's control frames not yet moved to the socket.
    pub(crate) control: Vec<u8>,
    /// Encoded bytes the socket has not taken yet.
    pub(crate) unwritten: Vec<u8>,
    /// Messages queued, with their ids.
    pub(crate) queued: Vec<(MessageId, Payload)>,
    /// Cluster mode: the newest message number given (see `ConnHandle`).
    pub(crate) last_number: u64,
}

/// Sends `message` with `fds` beside it.
pub(crate) fn send(socket: &UnixStream, message: &Message, fds: &[RawFd]) -> io::Result<()> {
    assert!(
        fds.len() <= MAX_FDS,
        "at most {MAX_FDS} descriptors a message"
    );
    let body = postcard::to_stdvec(message).map_err(io::Error::other)?;
    let mut header = [0u8; 5];
    header[..4].copy_from_slice(&(body.len() as u32).to_le_bytes());
    header[4] = fds.len() as u8;
    let mut frame = Vec::with_capacity(header.len() + body.len());
    frame.extend_from_slice(&header);
    frame.extend_from_slice(&body);
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
    let iov = [IoSlice::new(&frame)];
    let sent = sendmsg::<()>(socket.as_raw_fd(), &iov, cmsgs, MsgFlags::empty(), None)?;
    // The descriptors went with the first bytes; the rest is plain data.
    io::Write::write_all(&mut &*socket, &frame[sent..])
}

/// Receives the next message and the descriptors beside it.
pub(crate) fn receive(socket: &UnixStream) -> io::Result<(Message, Vec<OwnedFd>)> {
    let mut header = [0u8; 5];
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let (read, raw_fds) = {
        let mut iov = [IoSliceMut::new(&mut header)];
        let received = recvmsg::<()>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )?;
        let mut raw_fds = Vec::new();
        for cmsg in received.cmsgs()? {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                raw_fds.extend(fds);
            }
        }
        (received.bytes, raw_fds)
    };
    let fds: Vec<OwnedFd> = raw_fds.into_iter().map(owned).collect();
    if read == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    (&*socket).read_exact(&mut header[read..])?;
    let length = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    if length > MAX_MESSAGE || fds.len() != header[4] as usize {
        return Err(io::Error::other("a hand-over message out of shape"));
    }
    let mut body = vec![0u8; length];
    (&*socket).read_exact(&mut body)?;
    let message = postcard::from_bytes(&body).map_err(io::Error::other)?;
    Ok((message, fds))
}

/// Takes ownership of a descriptor received with `SCM_RIGHTS`.
#[allow(unsafe_code)]
fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: the kernel has just installed this descriptor in this process
    // for the message received (SCM_RIGHTS); nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn messages_and_descriptors_cross_in_order() {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut x, y) = UnixStream::pair().unwrap();
        let big = Message::Failed {
            reason: "x".repeat(300_000),
        };
        let writer = std::thread::spawn(move || {
            send(
                &a,
                &Message::Listeners(vec![ListenerKind::Ws]),
                &[y.as_raw_fd()],
            )
            .unwrap();
            send(&a, &big, &[]).unwrap();
            send(&a, &Message::Done, &[]).unwrap();
        });
        let (first, mut fds) = receive(&b).unwrap();
        assert!(matches!(first, Message::Listeners(ref kinds) if kinds == &[ListenerKind::Ws]));
        assert_eq!(fds.len(), 1);
        let (second, none) = receive(&b).unwrap();
        assert!(matches!(second, Message::Failed { ref reason } if reason.len() == 300_000));
        assert!(none.is_empty());
        assert!(matches!(receive(&b).unwrap().0, Message::Done));
        writer.join().unwrap();
        // The descriptor received is the same socket as the one sent.
        let mut received = UnixStream::from(fds.remove(0));
        received.write_all(b"!").unwrap();
        let mut byte = [0u8; 1];
        x.read_exact(&mut byte).unwrap();
        assert_eq!(&byte, b"!");
    }
}
