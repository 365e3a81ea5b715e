//! One file per admin request. Each holds this node's answer, the cluster step
//! and how the nodes' answers merge, so a request's whole story is in its file;
//! adding a request is adding a file and a line to `dispatch`, where each
//! file's `handle` says what an operator gets and what a node that asks gets.
//!
//! Without `--cluster` the cluster step is skipped and the local answer is the
//! answer. With it, most requests are carried out by every node on its own
//! connections ([`gather`]); `send` and `online` use presence in Redis instead.

mod bans;
mod broadcast;
mod drain;
mod groups;
mod kick;
mod kick_idle;
mod list;
mod mailbox;
mod online;
mod ping;
pub(crate) mod reload;
mod send;
mod stats;
mod upgrade;

use std::future::Future;
use std::sync::Arc;

use crate::core::payload::Payload;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use pushd_proto::admin::{ReplyLine, Request, Response};
use pushd_proto::uid::Uid;

use crate::cluster::{self, NodeReply};
use crate::node::Node;

/// Close reason used when `pushctl kick` gives none.
const DEFAULT_KICK_REASON: &str = "kicked";

/// Whether `request` is one pushd can carry out: its arguments within their
/// limits. [`answer`] refuses it otherwise; the HTTP API asks first, to
/// answer 400 rather than 503.
pub(crate) fn check(request: &Request) -> Result<(), String> {
    match request {
        Request::Kick { reason, .. }
        | Request::KickIdle { reason, .. }
        | Request::KickConnection { reason, .. } => kick::check_reason(reason.as_deref()),
        Request::Drain {
            over_ms: Some(over_ms),
        }
        | Request::Upgrade {
            drain_if_refused_ms: Some(over_ms),
            ..
        } if *over_ms > crate::drain::LONGEST_WINDOW.as_millis() as u64 => {
            Err("a drain's window is at most 1 day".into())
        }
        _ => Ok(()),
    }
}

/// Answers one admin request, for the whole cluster in cluster mode.
pub(crate) async fn answer(node: &Arc<Node>, request: Request) -> ReplyLine {
    if let Err(why) = check(&request) {
        return ReplyLine::error(why);
    }
    dispatch(node, request, Asker::Operator).await
}

/// Who asks for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asker {
    /// An operator (pushctl, the HTTP API): the answer covers the cluster.
    Operator,
    /// Another node carrying out an operator's request: this node's own part.
    Node,
}

/// A request's answer, once carried out.
type Answer = BoxFuture<'static, ReplyLine>;

/// Every request, in one place: each file's `handle` knows what an operator
/// gets and what a node that asks gets (or that nodes do not ask it).
fn dispatch(node: &Arc<Node>, request: Request, asker: Asker) -> Answer {
    let node = node.clone();
    match request {
        Request::Ping => ping::handle(asker),
        Request::List => list::handle(node, asker),
        Request::Kick {
            uids,
            reason,
            ban_ms,
        } => kick::handle(node, asker, uids, reason, ban_ms),
        Request::KickIdle {
            idle_over_ms,
            reason,
        } => kick_idle::handle(node, asker, idle_over_ms, reason),
        Request::SendConnection {
            connection,
            message,
        } => send::handle_connection(node, asker, connection, message),
        Request::KickConnection { connection, reason } => {
            kick::handle_connection(node, asker, connection, reason)
        }
        Request::Unban { uids } => bans::handle_unban(node, asker, uids),
        Request::Bans => bans::handle_list(node, asker),
        Request::Send {
            uid,
            message,
            transient,
        } => send::handle(node, asker, uid, message, transient),
        Request::Broadcast { message } => broadcast::handle(node, asker, message),
        Request::Online { uid } => online::handle(node, asker, uid),
        Request::Stats => stats::handle(node, asker),
        Request::Mailboxes => mailbox::handle_list(node, asker),
        Request::ClearMailboxes { uids } => mailbox::handle_clear(node, asker, uids),
        Request::Reload => reload::handle(node, asker),
        Request::Drain { over_ms } => drain::handle(node, asker, over_ms),
        Request::Upgrade {
            binary,
            drain_if_refused_ms,
        } => upgrade::handle(node, asker, binary, drain_if_refused_ms),
        request @ (Request::GroupAdd { .. }
        | Request::GroupRemove { .. }
        | Request::GroupDrop { .. }
        | Request::GroupMembers { .. }
        | Request::GroupList
        | Request::UidGroups { .. }
        | Request::SendGroup { .. }) => groups::handle(node, asker, request),
        // A stream, not a reply: the admin adapter serves it.
        Request::Events { .. } => ready(ReplyLine::error(
            "events is a stream; ask for it first on a connection",
        )),
    }
}

/// An answer at hand.
fn ready(reply: ReplyLine) -> Answer {
    std::future::ready(reply).boxed()
}

/// A request only operators make: nodes never ask each other for it.
fn operator_only(asker: Asker, answer: impl Future<Output = ReplyLine> + Send + 'static) -> Answer {
    match asker {
        Asker::Operator => answer.boxed(),
        Asker::Node => ready(ReplyLine::error("not a request that nodes ask each other")),
    }
}

/// A request every node carries out on its own connections: a node that asks
/// gets `local`, an operator `local` merged with every other node's ([`gather`]).
fn each_node(
    node: Arc<Node>,
    asker: Asker,
    request: Request,
    local: Result<Response, String>,
    absorb: fn(&mut Response, Response) -> bool,
) -> Answer {
    let local = match local {
        Ok(local) => local,
        Err(why) => return ready(ReplyLine::error(why)),
    };
    match asker {
        Asker::Node => ready(ReplyLine::ok(local)),
        Asker::Operator => async move { gather(&node, request, local, absorb).await }.boxed(),
    }
}

/// This node's answer merged with the answers of every other node, which carry
/// out `request` on their own connections. `absorb` adds one node's answer into
/// the total and returns false for an answer of the wrong kind.
async fn gather(
    node: &Node,
    request: Request,
    local: Response,
    absorb: fn(&mut Response, Response) -> bool,
) -> ReplyLine {
    let Some(cluster) = &node.cluster else {
        return ReplyLine::ok(local);
    };
    let gathered = cluster.fan_out(request).await;
    let mut incomplete = gathered.incomplete;
    let replies = gathered.value.replies.into_values();
    let merged = merge(local, replies, absorb, &mut incomplete);
    ReplyLine::partial(merged, incomplete)
}

/// Adds every remote reply into `local`; an error, or a reply of another kind,
/// becomes a note in `incomplete`.
fn merge(
    local: Response,
    remote: impl IntoIterator<Item = NodeReply>,
    absorb: fn(&mut Response, Response) -> bool,
    incomplete: &mut Vec<String>,
) -> Response {
    let mut total = local;
    for reply in remote {
        match reply.result {
            Ok(response) => {
                let kind = response.kind();
                if !absorb(&mut total, response) {
                    incomplete.push(format!("node {} answered {kind}", reply.node));
                }
            }
            Err(message) => incomplete.push(format!("node {}: {message}", reply.node)),
        }
    }
    total
}

/// What this node does when another node asks: its part of the requests that
/// [`gather`] fans out, and the pushes that presence routes here.
impl cluster::Local for Node {
    fn push(&self, uid: &Uid, message: &Payload, to: cluster::Recipients) -> u64 {
        crate::push::from_bus(self, uid, message, &to)
    }

    fn push_members(&self, uids: &[Uid], message: &Payload, id: Option<&str>) -> u64 {
        self.registry.push_from_bus(uids, message, id, true, true)
    }

    fn serve(self: Arc<Self>, request: Request) -> BoxFuture<'static, Result<Response, String>> {
        let answer = dispatch(&self, request, Asker::Node);
        async move {
            match answer.await {
                ReplyLine {
                    result: Some(result),
                    ..
                } => Ok(result),
                ReplyLine { error, .. } => Err(error.unwrap_or_else(|| "no answer".into())),
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivered(n: u64) -> Response {
        Response::Delivered {
            connections: n,
            queued: false,
        }
    }

    #[test]
    fn errors_and_answers_of_the_wrong_kind_become_notes() {
        let reply = |node: &str, result| NodeReply {
            node: node.into(),
            result,
        };
        let remote = [
            reply("b", Ok(delivered(2))),
            reply("c", Err("busy".into())),
            reply("d", Ok(Response::Bans { bans: vec![] })),
        ];
        let mut notes = Vec::new();
        let absorb = broadcast::absorb;
        assert_eq!(
            merge(delivered(1), remote, absorb, &mut notes),
            delivered(3)
        );
        assert_eq!(notes, ["node c: busy", "node d answered bans"]);
    }
}
