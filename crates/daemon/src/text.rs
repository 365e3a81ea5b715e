//! Text port: the Workerman-compatible backend protocol.
//!
//! One JSON line in, `ok\n` or `fail\n` out, in request order. Every complete
//! line in the read buffer is answered before the replies are written, so a
//! pipelining backend gets one write per read instead of one per request (and,
//! in cluster mode, one Redis round trip per 64 lines instead of one per line).
//! A bad line fails alone; the connection and the daemon carry on.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use pushd_proto::text::parse_push_line;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::lines::{Line, LineSplitter, read_more};
use crate::stats;
use crate::{Daemon, directory};

/// Lines handled before the task yields, so the connection tasks that just
/// got messages can drain their queues before a long pipelined burst fills
/// them (a full queue would count a healthy client as a slow consumer).
const LINES_PER_TURN: usize = 64;

/// Initial read buffer of one text connection; it grows for long lines.
const READ_BUFFER: usize = 8 * 1024;

/// Accepts backend connections until shutdown.
pub(crate) async fn serve(
    listener: TcpListener,
    daemon: Arc<Daemon>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let refused = &daemon.registry.counters.connections_refused;
    crate::accept::serve_tcp(
        listener,
        "text",
        &shutdown,
        &tracker,
        refused,
        |stream, peer| {
            let daemon = daemon.clone();
            let shutdown = shutdown.clone();
            async move {
                daemon.text_connections.fetch_add(1, Ordering::Relaxed);
                if let Err(err) = session(stream, &daemon, &shutdown).await {
                    debug!(%peer, %err, "text connection ended with an error");
                }
                daemon.text_connections.fetch_sub(1, Ordering::Relaxed);
            }
        },
    )
    .await;
}

/// Serves one backend connection until it closes or pushd shuts down.
async fn session(
    mut stream: TcpStream,
    daemon: &Daemon,
    shutdown: &CancellationToken,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut splitter = LineSplitter::new(daemon.config.max_message_size);
    let mut input = BytesMut::with_capacity(READ_BUFFER);
    let mut replies = Vec::new();
    let mut batch = Vec::with_capacity(LINES_PER_TURN);
    while read_more(&mut stream, &mut input, shutdown).await? {
        loop {
            // Up to LINES_PER_TURN lines are delivered here in order, then finished
            // together (in cluster mode: one Redis round trip for all of them).
            let started = Instant::now();
            while batch.len() < LINES_PER_TURN {
                let Some(line) = splitter.next_line(&mut input) else {
                    break;
                };
                batch.push(match line {
                    Line::Complete(line) => prepare(daemon, &line),
                    Line::TooLong => None,
                });
            }
            if batch.is_empty() {
                break;
            }
            let full = batch.len() == LINES_PER_TURN;
            let outcomes = directory::finish(daemon, &batch).await;
            let seconds = started.elapsed().as_secs_f64();
            for delivered in outcomes {
                daemon.text_push_seconds.observe(seconds);
                let counter = if delivered {
                    &daemon.registry.counters.text_ok
                } else {
                    &daemon.registry.counters.text_fail
                };
                stats::bump(counter);
                replies.extend_from_slice(if delivered { b"ok\n" } else { b"fail\n" });
            }
            batch.clear();
            if !full {
                break;
            }
            tokio::task::yield_now().await;
        }
        if !replies.is_empty() {
            stream.write_all(&replies).await?;
            replies.clear();
        }
        if input.capacity() == 0 {
            input.reserve(READ_BUFFER);
        }
    }
    Ok(())
}

/// Parses one request line and delivers it to the uid's connections here;
/// `None` for a bad line.
fn prepare(daemon: &Daemon, line: &[u8]) -> Option<directory::Push> {
    let uid = match parse_push_line(line) {
        Ok(uid) => uid,
        Err(err) => {
            debug!(%err, "bad text-port line");
            return None;
        }
    };
    // The line's own bytes become the frame: one allocation, shared by every
    // recipient's queue. A line that parsed as JSON is valid UTF-8.
    let message = Utf8Bytes::try_from(Bytes::copy_from_slice(line)).ok()?;
    Some(directory::Push::deliver_here(daemon, &uid, message))
}
