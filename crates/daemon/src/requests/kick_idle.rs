//! `kick --idle-over`: close every connection idle for longer than a threshold
//! (the cron job). In cluster mode every node kicks its own and the counts merge
//! like a kick's.

use std::sync::Arc;

use futures_util::FutureExt;
use pushd_proto::admin::{ReplyLine, Request, Response, UidCount};

use super::{Answer, Asker, DEFAULT_KICK_REASON};
use crate::core::registry::KickedIdle;
use crate::node::Node;

pub(super) fn handle(
    node: Arc<Node>,
    asker: Asker,
    idle_over_ms: u64,
    reason: Option<String>,
) -> Answer {
    match asker {
        Asker::Operator => async move { answer(&node, idle_over_ms, reason).await }.boxed(),
        Asker::Node => serve(node, idle_over_ms, reason),
    }
}

async fn answer(node: &Node, idle_over_ms: u64, reason: Option<String>) -> ReplyLine {
    let local = local(node, idle_over_ms, reason.as_deref());
    let request = Request::KickIdle {
        idle_over_ms,
        reason,
    };
    super::gather(node, request, local, super::kick::absorb).await
}

/// Another node asks: kick here, then let the uids leave this node's presence
/// before answering, so the asker's reply is true when it arrives.
fn serve(node: Arc<Node>, idle_over_ms: u64, reason: Option<String>) -> Answer {
    let local = local(&node, idle_over_ms, reason.as_deref());
    async move {
        if let Some(cluster) = &node.cluster {
            let _ = cluster.flush_presence().await;
        }
        ReplyLine::ok(local)
    }
    .boxed()
}

fn local(node: &Node, idle_over_ms: u64, reason: Option<&str>) -> Response {
    let reason = reason.unwrap_or(DEFAULT_KICK_REASON);
    let KickedIdle { connections, uids } = node.registry.kick_idle(idle_over_ms, reason);
    Response::Kicked {
        connections,
        uids: uids
            .into_iter()
            .map(|(uid, connections)| UidCount {
                uid: uid.to_string(),
                connections,
            })
            .collect(),
    }
}
