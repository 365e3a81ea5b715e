//! `upgrade`: a live upgrade of this pushd (`crate::upgrade`), carried out by
//! the daemon's main loop; answered once the new process serves, or once it
//! is clear that it will not. This node only.

use std::sync::Arc;

use pushd_proto::admin::{ReplyLine, Response, UpgradeInfo};

use super::{Answer, Asker};
use crate::node::Node;
use crate::upgrade::Request;

pub(super) fn handle(node: Arc<Node>, asker: Asker, binary: Option<String>) -> Answer {
    super::operator_only(asker, async move {
        let (request, outcome) = Request::new(binary.map(Into::into));
        if node.upgrades.send(request).await.is_err() {
            return ReplyLine::error("pushd is stopping");
        }
        match outcome.await {
            Ok(Ok(upgraded)) => ReplyLine::ok(Response::Upgraded(Box::new(UpgradeInfo {
                old_pid: upgraded.old_pid,
                old_version: upgraded.old_version,
                new_pid: upgraded.new_pid,
                new_version: upgraded.new_version,
                connections: upgraded.connections,
                took_ms: upgraded.took.as_millis() as u64,
            }))),
            Ok(Err(reason)) => ReplyLine::ok(Response::UpgradeFailed { reason }),
            Err(_) => ReplyLine::error("pushd is stopping"),
        }
    })
}
