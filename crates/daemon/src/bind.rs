//! Binding a connection to a uid, the whole story: who the client says it is
//! (a uid, or with `--auth token` a token that carries one), the registry's
//! checks and hand-over of what waits for the uid (`core::registry`), the
//! `connect` event, and in cluster mode the hand-over of the uid's mailbox
//! from Redis. What a bind hands over is counted here, in [`count`], whether
//! it came from this node or from Redis.
//!
//! The adapters call [`bind`] with the client's first message (or a token from
//! the URL) and turn a [`Refused`] into their own way of saying no.

use std::sync::Arc;

use crate::core::payload::Payload;
use pushd_proto::uid::Uid;
use tracing::debug;

use crate::cluster::{Bind, Confirm, Resume, Taken};
use crate::core::conn::ConnHandle;
use crate::core::counters::{Counter, Counters};
use crate::core::ids::{self, MessageId, Since, gap_frame};
use crate::core::registry::{BindError, HandedOver};
use crate::node::Node;
use crate::push;

/// Why a connection was not bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The connection is closing (kicked, shutting down) or already bound:
    /// nothing to answer, a close is already on its way.
    Closing,
    /// The first message is not a valid uid.
    InvalidUid(String),
    /// The token did not verify.
    InvalidToken(String),
    /// The uid is banned.
    Banned,
    /// A cluster-wide kick of the uid is in progress, with its reason.
    Kicking(Arc<str>),
    /// The uid has as many connections as `--max-connections-per-uid` allows.
    TooMany,
}

/// Binds `handle` to the uid that `credential` names or carries. A
/// `pushd.v2` connection with `since` resumes after it.
pub(crate) fn bind(
    node: &Arc<Node>,
    handle: &Arc<ConnHandle>,
    credential: &str,
    since: Option<Since>,
) -> Result<(), Refused> {
    let counters = &node.counters;
    let uid = match node.secrets.verifier() {
        Some(verifier) => verifier.verify(credential).map_err(|err| {
            counters.bump(Counter::InvalidTokens);
            Refused::InvalidToken(err.to_string())
        })?,
        None => Uid::parse(credential).map_err(|err| {
            counters.bump(Counter::InvalidUids);
            Refused::InvalidUid(err.to_string())
        })?,
    };
    let bound = node
        .registry
        .bind(handle.id, &uid, since)
        .map_err(|err| match err {
            BindError::Closing => Refused::Closing,
            BindError::Banned => Refused::Banned,
            BindError::Kicking(reason) => Refused::Kicking(reason),
            BindError::TooMany => Refused::TooMany,
        })?;
    counters.bump(Counter::Binds);
    count(counters, &bound.handed);
    debug!(peer = %handle.peer, uid = %bound.uid, "connection bound");
    take_from_cluster(node, &bound.uid, handle, since);
    Ok(())
}

/// Counts what a bind handed to its connection.
fn count(counters: &Counters, handed: &HandedOver) {
    counters.add(Counter::MailboxDelivered, handed.waiting);
    counters.add(Counter::MailboxResent, handed.resent);
    counters.add(Counter::ResumeGaps, u64::from(handed.gap));
    counters.add(Counter::MessagesDelivered, handed.waiting + handed.resent);
    counters.add(Counter::MailboxExpired, handed.expired);
}

/// Cluster mode with a mailbox: takes the uid's mailbox from Redis (for a
/// `pushd.v2` connection with `since`, everything after it) and hands it to
/// the connection (held since its bind) before anything pushed to it
/// meanwhile. In its own task, so the connection's loop never waits on Redis.
fn take_from_cluster(node: &Arc<Node>, uid: &Uid, handle: &Arc<ConnHandle>, since: Option<Since>) {
    let Some(cluster) = node.cluster.clone().filter(|c| c.mailbox_on()) else {
        return;
    };
    let resume = match (handle.v2, since) {
        (false, _) => Resume::Raw,
        (true, None) => Resume::Fresh,
        (true, Some(Since::Cluster { ms, n })) => Resume::After { ms, n },
        // A node's own ids are not the cluster's.
        (true, Some(Since::After(_) | Since::Unknown)) => Resume::Unknown,
    };
    let bind = Bind {
        uid: uid.clone(),
        connection: handle.id,
        resume,
        at: std::time::Instant::now(),
    };
    let (node, uid, handle) = (node.clone(), uid.clone(), handle.clone());
    tokio::spawn(async move {
        let Some(taken) = take_with_retries(&node, &cluster, &bind, &handle).await else {
            // What waits stays in Redis for the uid's next bind, or its TTL.
            let gap = resume != Resume::Raw && resume != Resume::Fresh;
            count(
                &node.counters,
                &HandedOver {
                    gap,
                    ..HandedOver::default()
                },
            );
            handle.release(if gap { vec![gap_frame()] } else { Vec::new() }, None);
            return;
        };
        let (expired, last) = (taken.expired, taken.last);
        let messages: Vec<(String, Payload)> = (taken.messages.into_iter())
            .filter_map(|(id, payload)| Some((id, String::from_utf8(payload).ok()?.into())))
            .collect();
        let handed_over = !messages.is_empty() || expired > 0;
        let acknowledge = async {
            if handed_over && let Err(err) = cluster.ack_mailbox(&bind, last).await {
                // Kept in Redis: the uid's next bind gets it again.
                debug!(uid = %uid, %err, "cluster: could not confirm a mailbox handed over");
            }
        };
        if !node.registry.is_listed(handle.id) {
            // The connection went while its mailbox was being taken. A raw one's
            // (its own: claimed in Redis) is pushed again, in order, so it waits
            // for the uid's next connection (or reaches one). A pushd.v2 one's
            // stays in the uid's stream, for its next bind or a resume.
            if !handle.v2 && !messages.is_empty() {
                let again: Vec<push::Push> = (messages.into_iter())
                    .map(|(_, message)| push::to_uid(&node, uid.clone(), message, false))
                    .collect();
                push::finish(&node, &again, Confirm::Received).await;
                acknowledge.await;
            }
            return;
        }
        let mut frames = Vec::with_capacity(messages.len() + 1);
        if taken.gap {
            frames.push(gap_frame());
        }
        frames.extend(
            (messages.iter()).map(|(id, message)| cluster_frame(&handle, id, message.clone())),
        );
        // Not `last`: a push routed here after the bind wrote its presence is in
        // the stream too, and owed, but a fresh bind's take does not hand it over.
        let through = frames.last().map(|(n, _)| *n).filter(|_| handle.v2);
        if let Resume::After { n, .. } = resume
            && !taken.gap
        {
            // Placed: the client has everything up to its since. That is its
            // place for a catch-up even when nothing newer was handed over.
            handle.note_number(n);
        }
        if handle.v2 {
            // Given nothing yet, it still has a place to catch up from: a push
            // the bus loses before its first is then not skipped for good.
            handle.note_place(taken.place);
        }
        let handed = messages.len() as u64;
        let waiting = taken.waiting.min(handed);
        count(
            &node.counters,
            &HandedOver {
                waiting,
                resent: handed - waiting,
                gap: taken.gap,
                expired: taken.expired,
            },
        );
        handle.release(frames, through);
        acknowledge.await;
    });
}

/// How long a bind keeps trying to take its mailbox, in `--cluster-timeout`s.
/// Meanwhile its connection is held: what is pushed to it waits behind the
/// mailbox (within its queue's bounds), so that nothing arrives out of order.
const TAKE_TIMEOUTS: u32 = 4;

/// Takes the uid's mailbox from Redis, trying again while Redis does not
/// answer (paused, say: a take asked again answers the same, the bind's claim
/// or the uid's stream, so one that ran late does no harm); `None` once it
/// gives up. A raw connection's take goes on after it closed,
/// so that what it was to get is pushed again; a `pushd.v2` one's stops.
async fn take_with_retries(
    node: &Node,
    cluster: &crate::cluster::Cluster,
    bind: &Bind,
    handle: &ConnHandle,
) -> Option<Taken> {
    let until = tokio::time::Instant::now() + cluster.timeout() * TAKE_TIMEOUTS;
    let mut pause = std::time::Duration::from_millis(50);
    loop {
        match cluster.take_mailbox(bind).await {
            Ok(taken) => return Some(taken),
            Err(err) => {
                debug!(uid = %bind.uid, %err, "cluster: could not take the mailbox");
                let now = tokio::time::Instant::now();
                if now + pause > until || (handle.v2 && !node.registry.is_listed(handle.id)) {
                    return None;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_millis(500));
            }
        }
    }
}

/// A connection's frame for cluster message `id` (`MS-N`) handed over from
/// Redis: the message itself, or `ID PAYLOAD` for a `pushd.v2` connection.
fn cluster_frame(handle: &ConnHandle, id: &str, message: Payload) -> (MessageId, Payload) {
    let n = ids::number_of(id).unwrap_or(0);
    if handle.v2 {
        handle.note_number(n);
        (n, ids::cluster_frame(id, &message))
    } else {
        (n, message)
    }
}
