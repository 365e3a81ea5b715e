//! `online`: how many connections a uid has. In cluster mode the other nodes'
//! counts come from presence in Redis (one script call), not from asking them.

use std::sync::Arc;

use pushd_proto::admin::{ReplyLine, Response};
use pushd_proto::uid::Uid;

use super::{Answer, Asker};
use crate::node::Node;

pub(super) fn handle(node: Arc<Node>, asker: Asker, uid: Uid) -> Answer {
    super::operator_only(asker, async move { answer(&node, uid).await })
}

async fn answer(node: &Node, uid: Uid) -> ReplyLine {
    let here = node.registry.online(&uid);
    let (elsewhere, incomplete) = match &node.cluster {
        Some(cluster) => {
            let remote = cluster.online(&uid).await;
            (remote.value, remote.incomplete)
        }
        None => (0, Vec::new()),
    };
    let response = Response::Online {
        uid: uid.to_string(),
        connections: here + elsewhere,
    };
    ReplyLine::partial(response, incomplete)
}
