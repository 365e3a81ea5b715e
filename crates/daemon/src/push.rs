//! Every push enters here: the text port, `pushctl send` (and the HTTP API) call
//! [`deliver`] for each message and [`finish`] once per batch; a push from another
//! node is [`deliver_here`].
//!
//! A push reaches this node's connections at once, in [`deliver`]; in cluster mode
//! [`finish`] then routes the whole batch to the other nodes in one Redis round
//! trip, so a pipelining backend does not pay one round trip per line. Pushes to
//! one uid keep their order on every node.

use pushd_proto::uid::Uid;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use std::sync::Arc;

use tracing::debug;

use crate::cluster::{Recipients, Resume, Route, Taken};
use crate::config::Confirm;
use crate::core::conn::ConnHandle;
use crate::core::counters::Counter;
use crate::core::mailbox::Since;
use crate::core::registry::{GAP_FRAME, Pushed};
use crate::node::Node;

/// A message already queued for the uid's connections here, and in cluster mode
/// still to be routed to the other nodes.
#[derive(Debug)]
pub(crate) struct Push {
    uid: Uid,
    message: Utf8Bytes,
    /// What became of it here.
    here: Pushed,
    /// Of the connections counted in `here`, the `pushd.v2` ones that get it from
    /// the bus (cluster mode): they have it only if Redis routes it.
    by_bus: u64,
}

/// What became of one push once its batch was finished.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Delivered {
    /// Connections that took it, on every node that answered.
    pub(crate) connections: u64,
    /// No connection took it; it waits in the uid's mailbox.
    pub(crate) queued: bool,
    /// In cluster mode, what could not be confirmed (a node, Redis).
    pub(crate) incomplete: Vec<String>,
}

/// Queues `message` (one allocation, shared by every recipient) for every
/// connection of `uid` on this node, or with none keeps it in the uid's mailbox
/// unless `transient`.
pub(crate) fn deliver(node: &Node, uid: Uid, message: Utf8Bytes, transient: bool) -> Push {
    let (here, by_bus) = node.registry.push(&uid, &message, transient);
    Push {
        uid,
        message,
        here,
        by_bus,
    }
}

/// A push routed here over the bus (from another node, or one of this node's
/// own for its `pushd.v2` connections): this node's connections only (in
/// cluster mode the uid's mailbox is not this node's to keep).
pub(crate) fn deliver_here(node: &Node, uid: &Uid, message: &Utf8Bytes, to: &Recipients) -> u64 {
    (node.registry).push_from_bus(uid, message, to.id.as_deref(), to.raw)
}

/// After a connection of `uid` bound in cluster mode: takes the uid's mailbox from
/// Redis (for a `pushd.v2` connection with `since`, everything after it) and hands
/// it to the connection (held until then) before anything pushed to it meanwhile.
/// In its own task, so the connection's loop never waits on Redis.
pub(crate) fn after_bind(
    node: &Arc<Node>,
    uid: &Uid,
    handle: &Arc<ConnHandle>,
    since: Option<Since>,
) {
    let Some(cluster) = node.cluster.clone().filter(|c| c.mailbox_on()) else {
        return;
    };
    let resume = match (handle.v2, since) {
        (false, _) => Resume::Raw,
        (true, None) => Resume::Fresh,
        (true, Some(Since::After(n))) => Resume::After(n),
        (true, Some(Since::Unknown)) => Resume::Unknown,
    };
    let (node, uid, handle) = (node.clone(), uid.clone(), handle.clone());
    tokio::spawn(async move {
        let taken = match cluster.take_mailbox(&uid, resume).await {
            Ok(taken) => taken,
            Err(err) => {
                // What waits stays in Redis for the uid's next bind, or its TTL.
                debug!(uid = %uid, %err, "cluster: could not take the mailbox");
                Taken {
                    gap: resume != Resume::Raw && resume != Resume::Fresh,
                    ..Taken::default()
                }
            }
        };
        let messages: Vec<(String, Utf8Bytes)> = (taken.messages.into_iter())
            .filter_map(|(id, payload)| Some((id, String::from_utf8(payload).ok()?.into())))
            .collect();
        if !handle.v2 && !messages.is_empty() && !node.registry.is_listed(handle.id) {
            // The connection went while its mailbox was being taken: push it again,
            // in order, so it waits for the uid's next connection (or reaches one).
            // (A pushd.v2 uid's stream keeps it: its client finds it by `since`.)
            let again: Vec<Push> = (messages.into_iter())
                .map(|(_, message)| deliver(&node, uid.clone(), message, false))
                .collect();
            finish(&node, &again, Confirm::Received).await;
            return;
        }
        let mut frames = Vec::with_capacity(messages.len() + 1);
        if taken.gap {
            frames.push((0, Utf8Bytes::from_static(GAP_FRAME)));
        }
        frames.extend(
            (messages.iter())
                .map(|(id, message)| node.registry.frame_for(&handle, id, message.clone())),
        );
        let through = frames.last().map(|(n, _)| *n).filter(|_| handle.v2);
        let counters = &node.counters;
        let handed = messages.len() as u64;
        counters.add(Counter::MailboxDelivered, taken.waiting);
        counters.add(Counter::MailboxResent, handed - taken.waiting.min(handed));
        counters.add(Counter::ResumeGaps, u64::from(taken.gap));
        counters.add(Counter::MessagesDelivered, handed);
        counters.add(Counter::MailboxExpired, taken.expired);
        handle.release(frames, through);
    });
}

impl Push {
    fn here(&self) -> Delivered {
        match self.here {
            Pushed::Delivered(connections) => Delivered {
                connections,
                ..Delivered::default()
            },
            Pushed::Queued => Delivered {
                queued: true,
                ..Delivered::default()
            },
            Pushed::NotKept | Pushed::Offline => Delivered::default(),
        }
    }
}

/// Finishes a batch of pushes: in cluster mode routes them to the other nodes
/// that hold their uids and, with [`Confirm::Delivered`], waits (within one
/// timeout for the whole batch) until those nodes say how many connections took
/// each. One result per push, in order.
pub(crate) async fn finish<'a>(
    node: &Node,
    batch: impl IntoIterator<Item = &'a Push>,
    confirm: Confirm,
) -> Vec<Delivered> {
    let Some(cluster) = &node.cluster else {
        return batch.into_iter().map(Push::here).collect();
    };
    let batch: Vec<&Push> = batch.into_iter().collect();
    let routes: Vec<Route> = batch
        .iter()
        .map(|push| Route {
            uid: &push.uid,
            message: push.message.as_bytes(),
            keep: push.here == Pushed::Offline,
            delivered_here: matches!(push.here, Pushed::Delivered(_)),
            v2_here: push.by_bus > 0,
        })
        .collect();
    let routed = cluster.route(&routes, confirm).await;
    batch
        .iter()
        .zip(routed)
        .map(|(push, remote)| {
            let mut here = push.here();
            if !remote.value.sent {
                // Nothing went out, so this node's pushd.v2 connections lack it too.
                here.connections -= push.by_bus;
            }
            if remote.value.queued {
                node.counters.bump(Counter::MailboxStored);
            }
            Delivered {
                connections: here.connections + remote.value.connections,
                queued: here.queued || remote.value.queued,
                incomplete: remote.incomplete,
            }
        })
        .collect()
}

/// A message from `pushctl` (or the HTTP API) as a frame, if it is within
/// `--max-message-size`; else a sentence for the operator.
pub(crate) fn frame(node: &Node, message: String) -> Result<Utf8Bytes, String> {
    let limit = node.max_message_size;
    if message.len() > limit {
        return Err(format!(
            "message is {} bytes, over the {limit}-byte limit (--max-message-size)",
            message.len()
        ));
    }
    Ok(Utf8Bytes::from(message))
}
