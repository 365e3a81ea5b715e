//! Admin adapter: the local socket that `pushctl` talks to.
//!
//! Newline-delimited JSON (see `pushd_proto::admin` and
//! `docs/admin-protocol.md`). Each client may send many requests; a malformed
//! one gets an error reply and the connection stays open.

mod socket;

use std::sync::Arc;

use bytes::BytesMut;
use interprocess::local_socket::tokio::{Listener, Stream};
use pushd_proto::admin::{MAX_LINE, PROTOCOL_VERSION, ReplyLine, RequestLine};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

pub(crate) use socket::bind;

use super::lines::{Line, LineSplitter, read_more};
use crate::node::Node;

/// Accepts admin clients until shutdown. Dropping the listener on return
/// removes the socket file.
pub(crate) async fn serve(
    listener: Listener,
    node: Arc<Node>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let counters = &node.counters;
    super::accept::serve(
        listener, "admin", counters, &node, &shutdown, &tracker, connection,
    )
    .await;
}

async fn connection(stream: Stream, _: (), node: Arc<Node>, shutdown: CancellationToken) {
    if let Err(err) = session(stream, &node, &shutdown).await {
        debug!(%err, "admin connection ended with an error");
    }
}

/// Answers one admin client's requests, in order, until it hangs up.
async fn session(
    mut stream: Stream,
    node: &Node,
    shutdown: &CancellationToken,
) -> std::io::Result<()> {
    let mut splitter = LineSplitter::new(MAX_LINE);
    let mut input = BytesMut::with_capacity(4096);
    while read_more(&mut stream, &mut input, shutdown).await? {
        while let Some(line) = splitter.next_line(&mut input) {
            let reply = match line {
                Line::Complete(line) => answer(node, &line).await,
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
async fn answer(node: &Node, line: &[u8]) -> ReplyLine {
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
    crate::requests::answer(node, request.request).await
}

fn version_mismatch(client: u64) -> ReplyLine {
    ReplyLine::error(format!(
        "admin protocol version mismatch: pushd {} speaks version {PROTOCOL_VERSION}, the client sent {client}",
        env!("CARGO_PKG_VERSION")
    ))
}
