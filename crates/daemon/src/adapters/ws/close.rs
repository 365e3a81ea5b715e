//! How a connection ends: the close codes pushd sends, why, and the closing
//! handshake.

use std::future::poll_fn;

use pushd_proto::admin::MAX_CLOSE_REASON;
use tokio::time::timeout;

use super::io::{Inbound, Ws};

use crate::config::CLOSE_TIMEOUT;
use crate::core::conn::{CloseRequest, ConnHandle};

/// Close codes pushd sends; documented for client authors in the README.
pub(crate) mod code {
    /// Kicked by an operator; do not reconnect.
    pub(crate) const KICKED: u16 = 4000;
    /// No activity for longer than the heartbeat; reconnect.
    pub(crate) const HEARTBEAT_TIMEOUT: u16 = 4001;
    /// The connection did not read its pushes fast enough; reconnect.
    pub(crate) const SLOW_CONSUMER: u16 = 4002;
    /// The uid is banned (`pushctl kick --ban`); do not reconnect.
    pub(crate) const BANNED: u16 = 4003;
    /// A newer connection of the same uid took this one's place
    /// (`--max-connections-per-uid` with `close-oldest`); do not reconnect.
    pub(crate) const REPLACED: u16 = 4004;
    /// The server is shutting down; reconnect with backoff.
    pub(crate) const GOING_AWAY: u16 = 1001;
    /// The node drains before a deploy; reconnect with jitter (another node,
    /// or this one restarted, takes the client).
    pub(crate) const SERVICE_RESTART: u16 = 1012;
    /// Invalid uid; do not reconnect.
    pub(crate) const POLICY: u16 = 1008;
    /// Inbound message over the size limit; do not resend it.
    pub(crate) const TOO_BIG: u16 = 1009;
    /// The client broke the WebSocket protocol (e.g. an unmasked frame).
    pub(crate) const PROTOCOL_ERROR: u16 = 1002;
    /// A text frame that is not valid UTF-8.
    pub(crate) const INVALID_DATA: u16 = 1007;
}

/// How a connection's main loop ended.
#[derive(Debug)]
pub(super) enum End {
    /// pushd closes it with this code and reason.
    Close(u16, String),
    /// The peer sent a close frame; the answer is queued.
    ClosedByPeer,
    /// The socket is gone or broken; nothing more can be sent.
    Lost,
    /// A live upgrade takes the connection, as it is: nothing is sent.
    HandOver,
}

impl End {
    /// Why the connection ended, as events say it.
    pub(super) fn reason(&self) -> &'static str {
        match self {
            End::ClosedByPeer => "client",
            End::Lost => "lost",
            End::HandOver => "upgrade",
            End::Close(code, _) => match *code {
                code::KICKED => "kicked",
                code::HEARTBEAT_TIMEOUT => "heartbeat",
                code::SLOW_CONSUMER => "slow_consumer",
                code::BANNED => "banned",
                code::REPLACED => "replaced",
                code::GOING_AWAY => "shutdown",
                code::SERVICE_RESTART => "drain",
                code::TOO_BIG => "too_big",
                code::PROTOCOL_ERROR => "protocol_error",
                code::INVALID_DATA => "invalid_data",
                _ => "policy",
            },
        }
    }

    /// The close that answers a request from outside the connection's task.
    pub(super) fn requested(request: CloseRequest) -> End {
        match request {
            CloseRequest::Kicked { reason } => End::Close(code::KICKED, reason),
            CloseRequest::SlowConsumer => End::Close(
                code::SLOW_CONSUMER,
                "slow consumer: outbound queue full".into(),
            ),
            CloseRequest::Shutdown => End::Close(code::GOING_AWAY, "server shutting down".into()),
            CloseRequest::Restart => End::Close(code::SERVICE_RESTART, "service restart".into()),
            CloseRequest::Replaced => End::Close(
                code::REPLACED,
                "replaced by a newer connection of this uid".into(),
            ),
        }
    }

    /// Sends the close frame (if any) and waits, bounded, for the peer to
    /// finish the closing handshake; the caller then drops the socket.
    pub(super) async fn finish(self, ws: &mut Ws, handle: &ConnHandle, max_message: usize) {
        let closing = async {
            match self {
                End::Close(code, reason) => {
                    // What it was sent first (bounded, like the whole close).
                    if ws.flush_queued(handle).await.is_err() {
                        return;
                    }
                    ws.queue_close(Some(code), close_reason(&reason));
                    if ws.flush(handle).await.is_err() {
                        return;
                    }
                }
                // The handshake is complete once the answer is out.
                End::ClosedByPeer => {
                    let _ = ws.flush(handle).await;
                    return;
                }
                End::Lost | End::HandOver => return,
            }
            // Read until the peer's close frame or EOF.
            loop {
                match poll_fn(|cx| ws.poll_inbound(cx, handle, max_message)).await {
                    Ok(Some(Inbound::Close(_))) | Ok(None) | Err(_) => break,
                    Ok(Some(_)) => {}
                }
            }
        };
        let _ = timeout(CLOSE_TIMEOUT, closing).await;
    }
}

/// Cuts a close reason to the 123 bytes a close frame allows, on a character boundary.
fn close_reason(reason: &str) -> &str {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_cut_on_a_character_boundary() {
        let long = "é".repeat(100);
        let cut = close_reason(&long);
        assert!(cut.len() <= MAX_CLOSE_REASON && cut.len() >= MAX_CLOSE_REASON - 1);
        assert_eq!(close_reason("bye"), "bye");
    }
}
