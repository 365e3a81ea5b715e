//! Text port: the Workerman-compatible backend protocol.
//!
//! One JSON line in, `ok\n` or `fail\n` out, in request order. Every complete
//! line in the read buffer is answered before the replies are written, so a
//! pipelining backend gets one write per read instead of one per request.
//! A bad line fails alone; the connection and the daemon carry on.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use pushd_proto::text::parse_push_line;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::Daemon;
use crate::lines::{Line, LineSplitter, read_more};
use crate::stats;

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
    while read_more(&mut stream, &mut input, shutdown).await? {
        let mut handled = 0;
        while let Some(line) = splitter.next_line(&mut input) {
            handled += 1;
            if handled % LINES_PER_TURN == 0 {
                tokio::task::yield_now().await;
            }
            let delivered = match line {
                Line::Complete(line) => push_line(daemon, &line).await,
                Line::TooLong => false,
            };
            let counter = if delivered {
                &daemon.registry.counters.text_ok
            } else {
                &daemon.registry.counters.text_fail
            };
            stats::bump(counter);
            replies.extend_from_slice(if delivered { b"ok\n" } else { b"fail\n" });
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

/// Pushes one request line to its uid; true when at least one connection took it.
async fn push_line(daemon: &Daemon, line: &[u8]) -> bool {
    let started = std::time::Instant::now();
    let delivered = push_line_untimed(daemon, line).await;
    daemon
        .text_push_seconds
        .observe(started.elapsed().as_secs_f64());
    delivered
}

async fn push_line_untimed(daemon: &Daemon, line: &[u8]) -> bool {
    let uid = match parse_push_line(line) {
        Ok(uid) => uid,
        Err(err) => {
            debug!(%err, "bad text-port line");
            return false;
        }
    };
    // The line's own bytes become the frame: one allocation, shared by every
    // recipient's queue. A line that parsed as JSON is valid UTF-8.
    let Ok(message) = Utf8Bytes::try_from(Bytes::copy_from_slice(line)) else {
        return false;
    };
    crate::directory::push(daemon, &uid, &message).await
}
