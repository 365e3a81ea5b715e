//! Admin adapter: the local socket that `pushctl` talks to.
//!
//! Newline-delimited JSON (see `pushd_proto::admin` and
//! `docs/admin-protocol.md`). Each client may send many requests; a malformed
//! one gets an error reply and the connection stays open.

mod socket;

use std::sync::Arc;

use bytes::BytesMut;
use interprocess::local_socket::tokio::{Listener, Stream};
use interprocess::local_socket::traits::tokio::Listener as _;
use pushd_proto::admin::{MAX_LINE, PROTOCOL_VERSION, ReplyLine, RequestLine};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

pub use socket::bind;

use crate::Daemon;
use crate::lines::{Line, LineSplitter, read_more};

/// Accepts admin clients until shutdown. Dropping the listener on return
/// removes the socket file.
pub(crate) async fn serve(
    listener: Listener,
    daemon: Arc<Daemon>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok(stream) => {
                let daemon = daemon.clone();
                let shutdown = shutdown.clone();
                tracker.spawn(async move {
                    if let Err(err) = session(stream, &daemon, &shutdown).await {
                        debug!(%err, "admin connection ended with an error");
                    }
                });
            }
            Err(err) => {
                debug!(%err, "admin accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// Answers one admin client's requests, in order, until it hangs up.
async fn session(
    mut stream: Stream,
    daemon: &Daemon,
    shutdown: &CancellationToken,
) -> std::io::Result<()> {
    let mut splitter = LineSplitter::new(MAX_LINE);
    let mut input = BytesMut::with_capacity(4096);
    while read_more(&mut stream, &mut input, shutdown).await? {
        while let Some(line) = splitter.next_line(&mut input) {
            let reply = match line {
                Line::Complete(line) => answer(daemon, &line).await,
                Line::TooLong => ReplyLine::error(format!("request longer than {MAX_LINE} bytes")),
            };
            let mut out = serde_json::to_vec(&reply).expect("replies always serialize");
            out.push(b'\n');
            stream.write_all(&out).await?;
        }
    }
    Ok(())
}

/// Parses one request line and carries it out.
async fn answer(daemon: &Daemon, line: &[u8]) -> ReplyLine {
    let request: RequestLine = match serde_json::from_slice(line) {
        Ok(request) => request,
        Err(err) => {
            // Tell version skew apart from garbage: a newer client may send a
            // command this daemon does not know.
            let version = serde_json::from_slice::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v.get("version")?.as_u64());
            return match version {
                Some(v) if v != u64::from(PROTOCOL_VERSION) => version_mismatch(v),
                _ => ReplyLine::error(format!("malformed request: {err}")),
            };
        }
    };
    if request.version != PROTOCOL_VERSION {
        return version_mismatch(request.version.into());
    }
    crate::directory::answer(daemon, request.request).await
}

fn version_mismatch(client: u64) -> ReplyLine {
    ReplyLine::error(format!(
        "admin protocol version mismatch: pushd {} speaks version {PROTOCOL_VERSION}, the client sent {client}",
        env!("CARGO_PKG_VERSION")
    ))
}
