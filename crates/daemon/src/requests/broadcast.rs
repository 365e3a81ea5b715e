//! `broadcast`: push one message to every bound connection. In cluster mode every
//! node pushes to its own and the counts add up.

use pushd_proto::admin::{ReplyLine, Request, Response};

use crate::node::Node;
use crate::push;

pub(super) async fn answer(node: &Node, message: String) -> ReplyLine {
    // Checked here first, so an oversized message is refused before anybody is asked.
    let local = match local(node, message.clone()) {
        Ok(local) => local,
        Err(refusal) => return ReplyLine::error(refusal),
    };
    super::gather(node, Request::Broadcast { message }, local, absorb).await
}

/// Pushes to this node's connections.
pub(super) fn local(node: &Node, message: String) -> Result<Response, String> {
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
