//! A page's event stream: Server-Sent Events on the WebSocket listener, for
//! pages behind proxies that refuse `Upgrade`. This file is such a
//! connection's story, from its admitted request to its end.
//!
//! It is a `pushd.v2` connection in everything but its framing: bound at once
//! to the uid of `?uid=` (or `?token=`), resumed from `Last-Event-ID` (which
//! the browser sends by itself when it reconnects) or `?since=`, listed,
//! kicked, counted and told in events like any other (kind `sse`). Each push
//! is one event, `id:` its id and a `data:` line per payload line; `!gap` is
//! `event: gap`; a close (a kick, a drain, shutdown) is `event: close` with
//! the code and reason a WebSocket would get, then the end of the response.
//! A comment every `--ping-interval` keeps proxies from cutting it; a page
//! that left is noticed when the socket ends, when a write fails, or by TCP
//! keepalive.
//!
//! Unlike a WebSocket, nobody writes to its socket but its task (pushers
//! queue and wake it): event streams are the fallback, not the hot path.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::handshake::server::Request;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::admission::Ticket;
use super::close::End;
use super::stream::ClientStream;
use super::{WsServer, query_param};
use crate::bind::Refused;
use crate::core::clock::Clock;
use crate::core::conn::{CloseRequest, ConnHandle};
use crate::core::payload::Payload;

/// Longest a write may wait for a page that does not read.
const WRITE_LIMIT: Duration = Duration::from_secs(10);

/// Most events written in one go.
const BATCH: usize = 64;

/// A page's admitted request, not answered yet.
pub(super) struct Page {
    pub(super) stream: ClientStream,
    /// Its address, as the trusted proxies in front of pushd report it.
    pub(super) client: SocketAddr,
    pub(super) request: Box<Request>,
    pub(super) server: Arc<WsServer>,
    /// Its admission slot, given back when it ends.
    pub(super) ticket: Ticket,
    pub(super) shutdown: CancellationToken,
}

/// Serves one page's event stream until it ends.
pub(super) async fn serve(page: Page) {
    let Page {
        mut stream,
        client,
        request,
        server,
        ticket,
        shutdown,
    } = page;
    keep_alive(&stream);
    let node = &server.node;
    let handle = node.registry.open_sse(client);
    let opened = match credential(&server, &request) {
        Ok(credential) => {
            let since = since(&request).map(|text| node.registry.since(&text));
            crate::bind::bind(node, &handle, &credential, since).map_err(refusal)
        }
        Err(refused) => Err(refused),
    };
    let head = response_head(&request);
    // The request is not needed past here: its headers go back to the allocator.
    drop(request);
    if let Err((status, why)) = opened {
        node.registry.close(handle.id, "policy");
        debug!(peer = %client, why, "event stream refused");
        let answer = http_error(status, why);
        let _ = timeout(WRITE_LIMIT, stream.write_all(answer.as_bytes())).await;
        return;
    }
    let end = match write(&mut stream, &handle, &node.clock, head.as_bytes()).await {
        Ok(()) if shutdown.is_cancelled() => End::requested(CloseRequest::Shutdown),
        Ok(()) => follow(&mut stream, &handle, &server).await,
        Err(()) => End::Lost,
    };
    node.registry.close(handle.id, end.reason());
    if let End::Close(code, reason) = &end {
        // What was queued first, then the close, as a WebSocket gets them.
        let mut rest = Vec::new();
        for (_, message) in handle.take_queue() {
            event(&mut rest, &message);
        }
        let data = serde_json::json!({ "code": code, "reason": reason });
        rest.extend_from_slice(format!("event: close\ndata: {data}\n\n").as_bytes());
        let _ = write(&mut stream, &handle, &node.clock, &rest).await;
    }
    let _ = timeout(WRITE_LIMIT, stream.shutdown()).await;
    drop(ticket);
}

/// Writes the queued pushes as they come, and a comment every ping
/// interval, until something ends the stream (shutdown is a close request,
/// as for every registered connection).
async fn follow(stream: &mut ClientStream, handle: &Arc<ConnHandle>, server: &WsServer) -> End {
    let interval = server.settings.ping_interval;
    let mut next_ping = interval.map(|every| Instant::now() + every);
    // What a page sends after its request is only ever noise, read away.
    let mut scratch = [0u8; 32];
    let mut out = Vec::new();
    loop {
        let ping = async {
            match next_ping {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            work = next_work(handle, server) => match work {
                Work::Messages(messages) => {
                    out.clear();
                    for message in &messages {
                        event(&mut out, message);
                    }
                    if write(stream, handle, &server.node.clock, &out).await.is_err() {
                        return End::Lost;
                    }
                }
                Work::End(end) => return end,
            },
            read = stream.read(&mut scratch) => match read {
                // A page sends nothing after its request: the end, or noise.
                Ok(0) | Err(_) => return End::ClosedByPeer,
                Ok(_) => {}
            },
            () = ping => {
                next_ping = interval.map(|every| Instant::now() + every);
                if write(stream, handle, &server.node.clock, b": ping\n\n").await.is_err() {
                    return End::Lost;
                }
            }
        }
    }
}

/// What the task is woken for.
enum Work {
    Messages(Vec<Payload>),
    End(End),
}

/// The next pushes to write, or why the stream ends (a close request; a
/// live upgrade, which cannot carry an event stream: it is closed as a
/// drain would, and the browser comes back to the new process).
async fn next_work(handle: &ConnHandle, server: &WsServer) -> Work {
    std::future::poll_fn(|cx| {
        handle.register(cx);
        if server.handover.requested() {
            return std::task::Poll::Ready(Work::End(End::requested(CloseRequest::Restart)));
        }
        if let Some(request) = handle.close_request() {
            return std::task::Poll::Ready(Work::End(End::requested(request.clone())));
        }
        let mut messages = Vec::new();
        while messages.len() < BATCH
            && let Some(message) = handle.pop()
        {
            messages.push(message);
        }
        match messages.is_empty() {
            true => std::task::Poll::Pending,
            false => std::task::Poll::Ready(Work::Messages(messages)),
        }
    })
    .await
}

/// One push as an event: a `pushd.v2` frame `ID PAYLOAD` becomes `id:` and
/// a `data:` line per payload line (CR, LF and CRLF all end a line in an
/// event stream, so none stays inside one); `!gap` becomes `event: gap`.
fn event(out: &mut Vec<u8>, frame: &Payload) {
    let text = frame.as_str();
    if text == "!gap" {
        out.extend_from_slice(b"event: gap\ndata: \n\n");
        return;
    }
    let (id, payload) = text.split_once(' ').unwrap_or(("", text));
    if !id.is_empty() {
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(id.as_bytes());
        out.push(b'\n');
    }
    for line in payload.split("\r\n").flat_map(|l| l.split(['\r', '\n'])) {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
}

/// Writes `bytes`, bounded by [`WRITE_LIMIT`]; a write that went through
/// counts as the page's activity (it sends nothing itself).
async fn write(
    stream: &mut ClientStream,
    handle: &ConnHandle,
    clock: &Clock,
    bytes: &[u8],
) -> Result<(), ()> {
    let written = async {
        stream.write_all(bytes).await?;
        stream.flush().await
    };
    match timeout(WRITE_LIMIT, written).await {
        Ok(Ok(())) => {
            handle.touch(clock.now_ms());
            Ok(())
        }
        _ => Err(()),
    }
}

/// The uid's credential: `?token=` with `--auth token` (a uid alone is
/// refused there), else `?uid=`.
fn credential(server: &WsServer, request: &Request) -> Result<String, (u16, &'static str)> {
    let query = request.uri().query();
    if server.node.secrets.has_auth() {
        return query_param(query, "token").ok_or((401, "a token is required (?token=)"));
    }
    query_param(query, "uid").ok_or((400, "a uid is required (?uid=)"))
}

/// Where a resume starts: the browser's `Last-Event-ID`, else `?since=`.
fn since(request: &Request) -> Option<String> {
    let header = request.headers().get("last-event-id");
    let header = header.and_then(|value| value.to_str().ok());
    let header = header.map(str::trim).filter(|id| !id.is_empty());
    (header.map(str::to_owned)).or_else(|| query_param(request.uri().query(), "since"))
}

/// A refused bind as an HTTP status and a sentence.
fn refusal(refused: Refused) -> (u16, &'static str) {
    match refused {
        Refused::InvalidUid(_) => (400, "invalid uid"),
        Refused::InvalidToken(_) => (401, "invalid token"),
        Refused::Banned => (403, "banned"),
        Refused::Kicking(_) => (403, "kicked"),
        Refused::TooMany => (429, "too many connections for this uid"),
        Refused::Closing => (503, "closing"),
    }
}

fn http_error(status: u16, why: &str) -> String {
    let name = match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        429 => "Too Many Requests",
        _ => "Service Unavailable",
    };
    format!(
        "HTTP/1.1 {status} {name}\r\nConnection: close\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\n\r\n{why}\n",
        why.len() + 1
    )
}

/// The 200 that opens the stream: no caching, no proxy buffering
/// (`X-Accel-Buffering`, which nginx obeys), CORS for the page's origin (the
/// admission checked it against `--allow-origin`; never with credentials: a
/// stream is bound by its URL, not by cookies), and a first comment so the
/// page knows at once that it is subscribed.
fn response_head(request: &Request) -> String {
    let origin = request.headers().get("origin");
    let origin = origin.and_then(|value| value.to_str().ok());
    let cors = match origin {
        Some(origin) => format!("Access-Control-Allow-Origin: {origin}\r\nVary: Origin\r\n"),
        None => "Access-Control-Allow-Origin: *\r\n".to_owned(),
    };
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n\
         X-Accel-Buffering: no\r\nConnection: keep-alive\r\n{cors}\r\n: pushd\n\n"
    )
}

/// TCP keepalive on the socket, so that a page whose machine vanished is
/// noticed even between pings that a full send buffer holds back.
fn keep_alive(stream: &ClientStream) {
    use nix::sys::socket::{setsockopt, sockopt};
    let tcp = stream.tcp();
    let _ = setsockopt(tcp, sockopt::KeepAlive, &true);
    let _ = setsockopt(tcp, sockopt::TcpKeepIdle, &60);
    let _ = setsockopt(tcp, sockopt::TcpKeepInterval, &10);
    let _ = setsockopt(tcp, sockopt::TcpKeepCount, &3);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(frame: &str) -> String {
        let mut out = Vec::new();
        event(&mut out, &Payload::from(frame.to_owned()));
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_push_is_one_event_with_a_data_line_per_payload_line() {
        assert_eq!(events("1733-4 hello"), "id: 1733-4\ndata: hello\n\n");
        assert_eq!(
            events("1733-5 one\ntwo\r\nthree\rfour"),
            "id: 1733-5\ndata: one\ndata: two\ndata: three\ndata: four\n\n"
        );
        assert_eq!(events("1733-6 "), "id: 1733-6\ndata: \n\n");
        assert_eq!(events("1733-7 a b"), "id: 1733-7\ndata: a b\n\n");
        assert_eq!(events("!gap"), "event: gap\ndata: \n\n");
    }
}
