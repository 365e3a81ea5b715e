//! Text port: the Workerman-compatible backend protocol.
//!
//! One JSON line in, `ok\n`, `queued\n` or `fail\n` out, in request order. Every complete
//! line in the read buffer is answered before the replies are written, so a
//! pipelining backend gets one write per read instead of one per request (and,
//! in cluster mode, one Redis round trip per 64 lines instead of one per line).
//! A bad line fails alone; the connection and the daemon carry on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::core::payload::Payload;
use bytes::BytesMut;
use pushd_proto::text::{Target, parse_push_line};
use pushd_proto::uid::Uid;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use super::accept::Cap;
use super::lines::{Line, LineSplitter, read_more};
use crate::cluster::Confirm;
use crate::core::counters::Counter;
use crate::node::Node;
use crate::push::{self, Push};

/// Lines handled before the task yields, so the connection tasks that just
/// got messages can drain their queues before a long pipelined burst fills
/// them (a full queue would count a healthy client as a slow consumer).
const LINES_PER_TURN: usize = 64;

/// Initial read buffer of one text connection; it grows for long lines.
const READ_BUFFER: usize = 8 * 1024;

/// The text port's limits: connections at once (`--max-text-connections`),
/// and how long one may send nothing (`--text-idle-timeout`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TextLimits {
    pub(crate) max_connections: usize,
    pub(crate) idle_timeout: Option<Duration>,
}

/// What every text-port connection shares.
struct TextServer {
    node: Arc<Node>,
    idle_timeout: Option<Duration>,
}

/// Accepts backend connections until shutdown.
pub(crate) async fn serve(
    listener: TcpListener,
    node: Arc<Node>,
    limits: TextLimits,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let counters = node.counters.clone();
    let cap = Cap::new(limits.max_connections, Counter::TextRefused);
    let server = Arc::new(TextServer {
        node,
        idle_timeout: limits.idle_timeout,
    });
    super::accept::serve(
        listener,
        "text",
        &counters,
        Some(&cap),
        &server,
        &shutdown,
        &tracker,
        connection,
    )
    .await;
}

/// One backend connection, counted while it is open.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    server: Arc<TextServer>,
    shutdown: CancellationToken,
) {
    let open = &server.node.counters.text_connections;
    open.fetch_add(1, Ordering::Relaxed);
    if let Err(err) = session(stream, &server, &shutdown).await {
        debug!(%peer, %err, "text connection ended with an error");
    }
    open.fetch_sub(1, Ordering::Relaxed);
}

/// Serves one backend connection until it closes, stays silent past the idle
/// timeout, or pushd shuts down.
async fn session(
    mut stream: TcpStream,
    server: &TextServer,
    shutdown: &CancellationToken,
) -> std::io::Result<()> {
    let node = &*server.node;
    let _ = stream.set_nodelay(true);
    let mut lines = Lines::new(node);
    let mut input = BytesMut::with_capacity(READ_BUFFER);
    let mut replies = Vec::new();
    // A backend that sends nothing, or takes no reply, for the idle timeout is
    // closed. One timer for the connection, re-armed only when it fires (a read
    // only bumps a count): a timer per read cost 900 instructions a push.
    let mut idle = Idle::new(server.idle_timeout);
    loop {
        let read = tokio::select! {
            biased;
            read = read_more(&mut stream, &mut input, shutdown) => read?,
            () = idle.passed() => break idle.closed(node),
        };
        if !read {
            break;
        }
        idle.active();
        lines.answer(node, &mut input, &mut replies).await;
        if !replies.is_empty() {
            tokio::select! {
                biased;
                written = stream.write_all(&replies) => written?,
                () = idle.passed() => break idle.closed(node),
            }
            idle.active();
            replies.clear();
        }
        if input.capacity() == 0 {
            input.reserve(READ_BUFFER);
        }
    }
    Ok(())
}

/// A text connection's idle deadline, lazily re-armed: activity bumps a
/// count, and the one timer, when it fires, looks whether the count moved
/// since it was armed (then it is armed again). So a connection is closed
/// after between one and two idle timeouts of silence, and a busy one costs
/// no clock read and no timer operation per line.
struct Idle {
    limit: Option<Duration>,
    activity: u64,
    seen: u64,
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl Idle {
    fn new(limit: Option<Duration>) -> Self {
        // Without a limit the timer is never polled.
        let first = limit.unwrap_or(Duration::from_secs(3600));
        Idle {
            limit,
            activity: 0,
            seen: 0,
            timer: Box::pin(tokio::time::sleep(first)),
        }
    }

    /// Something came in, or a reply went out.
    fn active(&mut self) {
        self.activity = self.activity.wrapping_add(1);
    }

    /// Returns once the connection has been idle for the limit (never without one).
    async fn passed(&mut self) {
        let Some(limit) = self.limit else {
            return std::future::pending().await;
        };
        loop {
            (&mut self.timer).await;
            if self.activity == self.seen {
                return;
            }
            self.seen = self.activity;
            self.timer
                .as_mut()
                .reset(tokio::time::Instant::now() + limit);
        }
    }

    /// Counts the idle close.
    fn closed(&self, node: &Node) {
        node.counters.bump(Counter::TextIdleClosed);
        debug!("text connection closed: idle past --text-idle-timeout");
    }
}

/// The text-port protocol over any byte source: complete lines in, one reply
/// line each out, in order. `POST /v1/push` answers its body with it too.
pub(crate) struct Lines {
    splitter: LineSplitter,
    batch: Vec<Prepared>,
    confirm: Confirm,
}

/// One line of a batch, as far as it went before the batch is finished.
enum Prepared {
    /// A push to a uid, finished with the batch (in cluster mode, routed).
    Push(Push),
    /// A push to a group or a connection on a single node: done, with its outcome.
    Done(push::Delivered),
    /// A push to one connection in cluster mode: the last line of its batch,
    /// as a group push is (every node is asked; the one that has it pushes).
    Connection { id: String, message: Payload },
    /// A push to a group in cluster mode: the last line of its batch, pushed
    /// once the pushes before it are finished (it reaches even this node's
    /// connections through Redis, so the lines after it wait).
    Group {
        group: Uid,
        message: Payload,
        transient: bool,
    },
    /// Not a request: `fail`.
    Bad,
}

impl Lines {
    pub(crate) fn new(node: &Node) -> Self {
        Lines {
            splitter: LineSplitter::new(node.max_message_size),
            batch: Vec::with_capacity(LINES_PER_TURN),
            confirm: node
                .cluster
                .as_ref()
                .map_or(Confirm::Received, |cluster| cluster.text_confirm()),
        }
    }

    /// Answers every complete line in `input` (consuming them), appending
    /// `ok\n`, `queued\n` or `fail\n` per line to `replies`.
    pub(crate) async fn answer(
        &mut self,
        node: &Node,
        input: &mut BytesMut,
        replies: &mut Vec<u8>,
    ) {
        let batch = &mut self.batch;
        loop {
            // Up to LINES_PER_TURN lines are delivered here in order, then finished
            // together (in cluster mode: one Redis round trip for all of them).
            let started = Instant::now();
            let mut ends_at_group = false;
            while batch.len() < LINES_PER_TURN && !ends_at_group {
                let Some(line) = self.splitter.next_line(input) else {
                    break;
                };
                let prepared = match line {
                    Line::Complete(line) => prepare(node, &line),
                    Line::TooLong => Prepared::Bad,
                };
                ends_at_group = matches!(
                    prepared,
                    Prepared::Group { .. } | Prepared::Connection { .. }
                );
                batch.push(prepared);
            }
            if batch.is_empty() {
                return;
            }
            let full = batch.len() == LINES_PER_TURN;
            let pushes = batch.iter().filter_map(|prepared| match prepared {
                Prepared::Push(push) => Some(push),
                _ => None,
            });
            let mut finished = push::finish(node, pushes, self.confirm).await.into_iter();
            let group = match batch.last() {
                Some(Prepared::Group {
                    group,
                    message,
                    transient,
                }) => {
                    let pushed =
                        push::to_group(node, group, message, *transient, self.confirm).await;
                    Some(push::Delivered {
                        connections: pushed.value.delivered,
                        queued: pushed.value.queued > 0,
                        incomplete: pushed.incomplete,
                    })
                }
                Some(Prepared::Connection { id, message }) => {
                    Some(push::to_connection(node, id, message).await)
                }
                _ => None,
            };
            let mut group = group.into_iter();
            node.counters
                .push_seconds
                .observe(started.elapsed().as_secs_f64());
            for prepared in batch.drain(..) {
                let delivered = match prepared {
                    Prepared::Push(_) => finished.next().unwrap_or_default(),
                    Prepared::Group { .. } | Prepared::Connection { .. } => {
                        group.next().unwrap_or_default()
                    }
                    Prepared::Done(delivered) => delivered,
                    Prepared::Bad => push::Delivered::default(),
                };
                let (counter, reply): (_, &[u8]) = if delivered.connections > 0 {
                    (Counter::TextOk, b"ok\n")
                } else if delivered.queued {
                    (Counter::TextQueued, b"queued\n")
                } else {
                    (Counter::TextFail, b"fail\n")
                };
                node.counters.bump(counter);
                replies.extend_from_slice(reply);
            }
            if ends_at_group {
                continue;
            }
            if !full {
                return;
            }
            tokio::task::yield_now().await;
        }
    }
}

/// Parses one request line and delivers it to the uid's connections here
/// (or, on a single node, to its group's members: at once, in line order).
fn prepare(node: &Node, line: &[u8]) -> Prepared {
    // The line's own bytes become the frame: one allocation, shared by every
    // recipient's queue, and the only UTF-8 check (the parser reads the same text).
    let text = match String::from_utf8(line.to_vec()) {
        Ok(text) => text,
        Err(_) => {
            debug!("bad text-port line: not UTF-8");
            return Prepared::Bad;
        }
    };
    let line = match parse_push_line(&text) {
        Ok(line) => line,
        Err(err) => {
            debug!(%err, "bad text-port line");
            return Prepared::Bad;
        }
    };
    let message = Payload::from(text);
    match line.to {
        Target::Uid(uid) => Prepared::Push(push::to_uid(node, uid, message, line.transient)),
        Target::Group(group) if node.cluster.is_none() => {
            let pushed = node.registry.push_group(&group, &message, line.transient);
            Prepared::Done(push::Delivered {
                connections: pushed.delivered,
                queued: pushed.queued > 0,
                incomplete: Vec::new(),
            })
        }
        Target::Connection(id) if node.cluster.is_none() => Prepared::Done(push::Delivered {
            connections: u64::from(push::to_connection_here(node, &id, &message)),
            ..push::Delivered::default()
        }),
        Target::Connection(id) => Prepared::Connection { id, message },
        Target::Group(group) => Prepared::Group {
            group,
            message,
            transient: line.transient,
        },
    }
}
