//! `drain`: this node stops taking WebSocket clients and closes its
//! connections with 1012, spread over a window (`crate::drain`); answered
//! once the last one is closed. This node only: a deploy drains the node it
//! is about to restart, and the others take its clients.

use std::sync::Arc;
use std::time::Duration;

use pushd_proto::admin::{ReplyLine, Response};

use super::{Answer, Asker};
use crate::node::Node;

pub(super) fn handle(node: Arc<Node>, asker: Asker, over_ms: Option<u64>) -> Answer {
    super::operator_only(asker, async move {
        let over = over_ms.map(Duration::from_millis);
        let drained = crate::drain::run(&node, over).await;
        ReplyLine::ok(Response::Drained {
            closed: drained.closed,
            over_ms: drained.over.as_millis() as u64,
        })
    })
}
