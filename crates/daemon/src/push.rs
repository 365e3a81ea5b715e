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

use crate::config::Confirm;
use crate::node::Node;

/// A message already queued for the uid's connections here, and in cluster mode
/// still to be routed to the other nodes.
#[derive(Debug)]
pub(crate) struct Push {
    uid: Uid,
    message: Utf8Bytes,
    /// Connections here that took it.
    here: u64,
}

/// What became of one push once its batch was finished.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Delivered {
    /// Connections that took it, on every node that answered.
    pub(crate) connections: u64,
    /// In cluster mode, what could not be confirmed (a node, Redis).
    pub(crate) incomplete: Vec<String>,
}

/// Queues `message` (one allocation, shared by every recipient) for every
/// connection of `uid` on this node.
pub(crate) fn deliver(node: &Node, uid: Uid, message: Utf8Bytes) -> Push {
    let here = deliver_here(node, &uid, &message);
    Push { uid, message, here }
}

/// This node's part of a push, and all of a push that another node routed here.
pub(crate) fn deliver_here(node: &Node, uid: &Uid, message: &Utf8Bytes) -> u64 {
    node.registry.push_to_uid(uid, message)
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
        return (batch.into_iter())
            .map(|push| Delivered {
                connections: push.here,
                incomplete: Vec::new(),
            })
            .collect();
    };
    let batch: Vec<&Push> = batch.into_iter().collect();
    let routes: Vec<(&Uid, &[u8])> = batch
        .iter()
        .map(|push| (&push.uid, push.message.as_bytes()))
        .collect();
    let routed = cluster.route(&routes, confirm).await;
    batch
        .iter()
        .zip(routed)
        .map(|(push, remote)| Delivered {
            connections: push.here + remote.value,
            incomplete: remote.incomplete,
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
