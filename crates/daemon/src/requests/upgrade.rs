//! `upgrade`: a live upgrade of this pushd (`crate::upgrade`), carried out by
//! the daemon's main loop; answered once the new process serves, or once it
//! is clear that it will not. This node only.

use std::sync::Arc;
use std::time::Duration;

use pushd_proto::admin::{ReplyLine, Response, UpgradeInfo};

use super::{Answer, Asker};
use crate::node::Node;
use crate::upgrade::Request;

pub(super) fn handle(
    node: Arc<Node>,
    asker: Asker,
    binary: Option<String>,
    drain_if_refused_ms: Option<u64>,
) -> Answer {
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
            Ok(Err(failed)) => {
                // A new binary that cannot take over this one's state: the
                // operator asked to drain instead, before a restart.
                let over = drain_if_refused_ms.filter(|_| failed.refused);
                let drained = match over {
                    Some(ms) => Some(
                        crate::drain::run(&node, Some(Duration::from_millis(ms)))
                            .await
                            .closed,
                    ),
                    None => None,
                };
                ReplyLine::ok(Response::UpgradeFailed {
                    reason: failed.reason,
                    drained,
                })
            }
            Err(_) => ReplyLine::error("pushd is stopping"),
        }
    })
}
