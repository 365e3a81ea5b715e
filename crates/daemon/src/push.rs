//! Every push enters here. The text port, `pushctl send` and the HTTP API call
//! [`to_uid`] for each message and [`finish`] once per batch; `pushctl
//! broadcast` calls [`to_everyone`]; a push from another node is [`from_bus`].
//! [`frame`] checks an operator's message against `--max-message-size`.
//!
//! A push reaches this node's connections at once (`core::registry` queues it
//! and writes it after its lock); in cluster mode [`finish`] then routes the
//! whole batch to the other nodes in one Redis round trip, so a pipelining
//! backend does not pay one round trip per line. Pushes to one uid keep their
//! order on every node.

use crate::core::payload::Payload;
use pushd_proto::uid::Uid;

use crate::cluster::{Confirm, Partial, Recipients, Route};
use crate::core::counters::Counter;
use crate::core::registry::{GroupPushed, Pushed, PushedHere};
use crate::node::Node;

/// A message already queued for the uid's connections here, and in cluster mode
/// still to be routed to the other nodes.
#[derive(Debug)]
pub(crate) struct Push {
    uid: Uid,
    message: Payload,
    here: PushedHere,
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
/// unless `transient`. [`finish`] completes it.
pub(crate) fn to_uid(node: &Node, uid: Uid, message: Payload, transient: bool) -> Push {
    let here = node.registry.push(&uid, &message, transient);
    Push { uid, message, here }
}

/// Pushes `message` to every member of `group`, as a push to each: every
/// connection of each member, the mailbox for a member with none unless
/// `transient` or banned. On a single node at once
/// ([`Registry::push_group`](crate::core::registry::Registry::push_group)); in
/// cluster mode through Redis, where the memberships are, to every node that
/// holds members (see `Cluster::push_group`), confirmed as `confirm` says.
/// Call it after finishing the pushes before it: it is delivered here only
/// once Redis has numbered it.
pub(crate) async fn to_group(
    node: &Node,
    group: &Uid,
    message: &Payload,
    transient: bool,
    confirm: Confirm,
) -> Partial<GroupPushed> {
    let Some(cluster) = &node.cluster else {
        return Partial {
            value: node.registry.push_group(group, message, transient),
            incomplete: Vec::new(),
        };
    };
    // Bans are each node's; the pusher's decide whose mailbox keeps it.
    let banned: Vec<Uid> = node
        .registry
        .bans()
        .into_iter()
        .map(|(uid, _)| uid)
        .collect();
    let pushed = (cluster)
        .push_group(group, message.as_bytes(), transient, &banned, confirm)
        .await;
    node.counters
        .add(Counter::MailboxStored, pushed.value.queued);
    (node.counters).add(Counter::MailboxRefused, pushed.value.over_memory);
    pushed
}

/// Pushes `message` to connection `connection` (an id from `list` or
/// events) wherever it is: here, or in cluster mode on the node that has it,
/// which its id names (that node alone is asked, through its inbox).
pub(crate) async fn to_connection(node: &Node, connection: &str, message: &Payload) -> Delivered {
    if to_connection_here(node, connection, message) {
        return Delivered {
            connections: 1,
            ..Delivered::default()
        };
    }
    let Some(cluster) = &node.cluster else {
        return Delivered::default();
    };
    let Some((owner, _)) = connection.rsplit_once('.') else {
        return Delivered::default();
    };
    if owner == cluster.id() || owner.is_empty() {
        return Delivered::default();
    }
    let request = pushd_proto::admin::Request::SendConnection {
        connection: connection.to_owned(),
        message: message.as_str().to_owned(),
    };
    let gathered = cluster.ask(owner, request).await;
    let connections = (gathered.value.replies.values())
        .map(|reply| match &reply.result {
            Ok(pushd_proto::admin::Response::Delivered { connections, .. }) => *connections,
            _ => 0,
        })
        .sum();
    Delivered {
        connections,
        queued: false,
        incomplete: gathered.incomplete,
    }
}

/// Queues `message` for connection `connection` (an id from `list` or
/// events) if this node has it; whether it took it. Other nodes' are theirs
/// (`requests::send` asks every node).
pub(crate) fn to_connection_here(node: &Node, connection: &str, message: &Payload) -> bool {
    (node.connection_number(connection))
        .is_some_and(|n| node.registry.push_to_connection(n, message))
}

/// Queues `message` for every connection of this node; returns how many took
/// it. In cluster mode every node is asked to do the same (`requests::broadcast`)
/// and the counts add up.
pub(crate) fn to_everyone(node: &Node, message: &Payload) -> u64 {
    node.registry.broadcast(message)
}

/// A push routed here over the bus (from another node, or one of this node's
/// own for its `pushd.v2` connections): this node's connections only (in
/// cluster mode the uid's mailbox is not this node's to keep).
pub(crate) fn from_bus(node: &Node, uid: &Uid, message: &Payload, to: &Recipients) -> u64 {
    let uids = std::slice::from_ref(uid);
    (node.registry).push_from_bus(uids, message, to.id.as_deref(), to.raw, to.v2)
}

impl Push {
    fn here(&self) -> Delivered {
        match self.here.pushed {
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
            keep: push.here.pushed == Pushed::Offline,
            delivered_here: matches!(push.here.pushed, Pushed::Delivered(_)),
            v2_here: push.here.by_bus > 0,
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
                here.connections -= push.here.by_bus;
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
pub(crate) fn frame(node: &Node, message: String) -> Result<Payload, String> {
    let limit = node.max_message_size;
    if message.len() > limit {
        return Err(format!(
            "message is {} bytes, over the {limit}-byte limit (--max-message-size)",
            message.len()
        ));
    }
    Ok(Payload::from(message))
}
