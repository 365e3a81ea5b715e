//! `broadcast`: push one message to every bound connection. In cluster mode every
//! node pushes to its own and the counts add up.

use std::sync::Arc;

use pushd_proto::admin::{Request, Response};

use super::{Answer, Asker};
use crate::node::Node;
use crate::push;

pub(super) fn handle(node: Arc<Node>, asker: Asker, message: String) -> Answer {
    // Here first, so an oversized message is refused before anybody is asked.
    let local = local(&node, message.clone());
    super::each_node(node, asker, Request::Broadcast { message }, local, absorb)
}

/// Pushes to this node's connections.
fn local(node: &Node, message: String) -> Result<Response, String> {
    let message = push::frame(node, message)?;
    Ok(Response::Delivered {
        connections: push::to_everyone(node, &message),
        queued: false,
    })
}

/// Counts add up.
pub(super) fn absorb(total: &mut Response, more: Response) -> bool {
    let (
        Response::Delivered { connections, .. },
        Response::Delivered {
            connections: more, ..
        },
    ) = (total, more)
    else {
        return false;
    };
    *connections += more;
    true
}
