//! Admin adapter: the local socket that `pushctl` talks to.
//!
//! Newline-delimited JSON (see `pushd_proto::admin` and
//! `docs/admin-protocol.md`). Each client may send many requests; a malformed
//! one gets an error reply and the connection stays open.

mod socket;

use std::sync::Arc;

use bytes::BytesMut;
use interprocess::local_socket::tokio::{Listener, Stream};
use pushd_proto::admin::{MAX_LINE, PROTOCOL_VERSION, ReplyLine, Request, RequestLine, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

pub use socket::NotPrivate;
pub(crate) use socket::bind;

use super::lines::{Line, LineSplitter, read_more};
use crate::core::events::{EventId, parse_kinds};
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
        listener, "admin", counters, None, &node, &shutdown, &tracker, connection,
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
    node: &Arc<Node>,
    shutdown: &CancellationToken,
) -> std::io::Result<()> {
    let mut splitter = LineSplitter::new(MAX_LINE);
    let mut input = BytesMut::with_capacity(4096);
    while read_more(&mut stream, &mut input, shutdown).await? {
        while let Some(line) = splitter.next_line(&mut input) {
            let reply = match line {
                Line::Complete(line) => match parse(&line) {
                    Ok(Request::Events { types, since }) => {
                        return stream_events(stream, node, &types, since.as_deref()).await;
                    }
                    Ok(request) => crate::requests::answer(node, request).await,
                    Err(refusal) => refusal,
                },
                Line::TooLong => ReplyLine::error(format!("request longer than {MAX_LINE} bytes")),
            };
            write_reply(&mut stream, &reply).await?;
        }
    }
    Ok(())
}

async fn write_reply(stream: &mut Stream, reply: &ReplyLine) -> std::io::Result<()> {
    let mut out = serde_json::to_vec(reply).expect("replies always serialize");
    out.push(b'\n');
    stream.write_all(&out).await
}

/// `events`: the connection becomes a stream of events, one JSON object per
/// line, until the client hangs up or pushd shuts down. A reader slower than
/// the events loses the oldest (counted), never pushd's memory. With `since`,
/// the events held after that id come first.
async fn stream_events(
    mut stream: Stream,
    node: &Node,
    types: &[String],
    since: Option<&str>,
) -> std::io::Result<()> {
    let kinds = match parse_kinds(&types.join(",")) {
        Ok(kinds) => kinds,
        Err(why) => return write_reply(&mut stream, &ReplyLine::error(why)).await,
    };
    let since = match since.map(|id| (id, EventId::parse(id))) {
        None => None,
        Some((_, Some(id))) => Some(id),
        Some((id, None)) => {
            let why = format!("{id:?} is not an event id (MS-N, as events carry them)");
            return write_reply(&mut stream, &ReplyLine::error(why)).await;
        }
    };
    let mut events = node.events.subscribe(kinds, since);
    write_reply(&mut stream, &ReplyLine::ok(Response::Events)).await?;
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut sink = [0u8; 64];
    loop {
        // At shutdown the events end after the shutdown's own, and so does this.
        let event = tokio::select! {
            // Anything the client sends is ignored; end of input is its goodbye.
            read = reader.read(&mut sink) => match read? {
                0 => return Ok(()),
                _ => continue,
            },
            event = events.next() => match event {
                Some(event) => event,
                None => return Ok(()),
            },
        };
        let mut line = Vec::with_capacity(event.body.len() + 48);
        event.write_json(&mut line);
        line.push(b'\n');
        writer.write_all(&line).await?;
    }
}

/// Parses one request line; a line that is not a request gets its error reply.
fn parse(line: &[u8]) -> Result<Request, ReplyLine> {
    let request: RequestLine = match serde_json::from_slice(line) {
        Ok(request) => request,
        Err(err) => {
            // Tell version skew apart from garbage: a newer client may send a
            // command this daemon does not know.
            let version = serde_json::from_slice::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v.get("version")?.as_u64());
            return Err(match version {
                Some(v) if v != u64::from(PROTOCOL_VERSION) => version_mismatch(v),
                _ => ReplyLine::error(format!("malformed request: {err}")),
            });
        }
    };
    if request.version != PROTOCOL_VERSION {
        return Err(version_mismatch(request.version.into()));
    }
    Ok(request.request)
}

fn version_mismatch(client: u64) -> ReplyLine {
    ReplyLine::error(format!(
        "admin protocol version mismatch: pushd {} speaks version {PROTOCOL_VERSION}, the client sent {client}",
        env!("CARGO_PKG_VERSION")
    ))
}
