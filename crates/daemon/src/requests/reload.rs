//! `reload` (and SIGHUP): read the key files again. This node only: the files
//! are its own, and each node of a cluster is reloaded by its own service
//! manager or operator.

use std::sync::Arc;

use pushd_proto::admin::{ReplyLine, Response};

use super::{Answer, Asker};
use crate::core::counters::Counter;
use crate::node::Node;
use crate::secrets::Reloaded;

/// Reloads every key file, counting those that did not load.
pub(crate) fn reload(node: &Node) -> Reloaded {
    let reloaded = node.secrets.reload();
    for _ in &reloaded.errors {
        node.counters.bump(Counter::ReloadFailures);
    }
    reloaded
}

pub(super) fn handle(node: Arc<Node>, asker: Asker) -> Answer {
    super::operator_only(asker, async move { answer(&node) })
}

fn answer(node: &Node) -> ReplyLine {
    let Reloaded { loaded, errors } = reload(node);
    if errors.is_empty() {
        let loaded = loaded.into_iter().map(str::to_owned).collect();
        return ReplyLine::ok(Response::Reloaded { loaded });
    }
    let mut message = errors.join("; ");
    if !loaded.is_empty() {
        message.push_str(&format!(" (reloaded: {})", loaded.join(", ")));
    }
    ReplyLine::error(message)
}
