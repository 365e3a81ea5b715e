//! `send`: push one message to a uid, through [`crate::push`] like every push:
//! delivered now, or kept in the uid's mailbox unless transient. pushctl always
//! waits for delivery, also on other nodes.

use std::sync::Arc;

use pushd_proto::admin::{ReplyLine, Response};
use pushd_proto::uid::Uid;

use super::{Answer, Asker};
use crate::cluster::Confirm;
use crate::node::Node;
use crate::push;

pub(super) fn handle(
    node: Arc<Node>,
    asker: Asker,
    uid: Uid,
    message: String,
    transient: bool,
) -> Answer {
    super::operator_only(asker, async move {
        answer(&node, uid, message, transient).await
    })
}

/// `send --connection`: every node pushes to the connection if it is its
/// own (its id names the node), so the asker needs no routing.
pub(super) fn handle_connection(
    node: Arc<Node>,
    asker: Asker,
    connection: String,
    message: String,
) -> Answer {
    let local = push::frame(&node, message.clone()).map(|frame| Response::Delivered {
        connections: u64::from(push::to_connection_here(&node, &connection, &frame)),
        queued: false,
    });
    let request = pushd_proto::admin::Request::SendConnection {
        connection,
        message,
    };
    super::each_node(node, asker, request, local, super::broadcast::absorb)
}

async fn answer(node: &Node, uid: Uid, message: String, transient: bool) -> ReplyLine {
    let message = match push::frame(node, message) {
        Ok(message) => message,
        Err(refusal) => return ReplyLine::error(refusal),
    };
    let pushed = push::to_uid(node, uid, message, transient);
    let delivered = push::finish(node, [&pushed], Confirm::Delivered)
        .await
        .pop()
        .unwrap_or_default();
    let response = Response::Delivered {
        connections: delivered.connections,
        queued: delivered.queued,
    };
    ReplyLine::partial(response, delivered.incomplete)
}
