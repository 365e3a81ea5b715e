//! `send`: push one message to a uid, through [`crate::push`] like every push.
//! pushctl always waits for delivery, also on other nodes.

use pushd_proto::admin::{ReplyLine, Response};
use pushd_proto::uid::Uid;

use crate::config::Confirm;
use crate::node::Node;
use crate::push;

pub(super) async fn answer(node: &Node, uid: Uid, message: String) -> ReplyLine {
    let message = match push::frame(node, message) {
        Ok(message) => message,
        Err(refusal) => return ReplyLine::error(refusal),
    };
    let pushed = push::deliver(node, uid, message);
    let delivered = push::finish(node, [&pushed], Confirm::Delivered)
        .await
        .pop()
        .unwrap_or_default();
    let response = Response::Delivered {
        connections: delivered.connections,
    };
    ReplyLine::partial(response, delivered.incomplete)
}
