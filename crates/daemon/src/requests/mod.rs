//! One file per admin request. Each holds this node's answer, the cluster step
//! and how the nodes' answers merge, so a request's whole story is in its file;
//! adding a request is adding a file and a line to [`answer`].
//!
//! Without `--cluster` the cluster step is skipped and the local answer is the
//! answer. With it, most requests are carried out by every node on its own
//! connections ([`gather`]); `send` and `online` use presence in Redis instead.

mod bans;
mod broadcast;
mod kick;
mod kick_idle;
mod list;
mod mailbox;
mod online;
mod ping;
pub(crate) mod reload;
mod send;
mod stats;

use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use pushd_proto::admin::{ReplyLine, Request, Response};
use pushd_proto::uid::Uid;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::cluster::{self, NodeReply};
use crate::node::Node;

/// Close reason used when `pushctl kick` gives none.
const DEFAULT_KICK_REASON: &str = "kicked";

/// Whether `request` is one pushd can carry out: its arguments within their
/// limits. [`answer`] refuses it otherwise; the HTTP API asks first, to
/// answer 400 rather than 503.
pub(crate) fn check(request: &Request) -> Result<(), String> {
    match request {
        Request::Kick { reason, .. } | Request::KickIdle { reason, .. } => {
            kick::check_reason(reason.as_deref())
        }
        _ => Ok(()),
    }
}

/// Answers one admin request, for the whole cluster in cluster mode.
pub(crate) async fn answer(node: &Node, request: Request) -> ReplyLine {
    if let Err(why) = check(&request) {
        return ReplyLine::error(why);
    }
    match request {
        Request::Ping => ping::answer(),
        Request::List => list::answer(node).await,
        Request::Kick {
            uids,
            reason,
            ban_ms,
        } => kick::answer(node, uids, reason, ban_ms).await,
        Request::KickIdle {
            idle_over_ms,
            reason,
        } => kick_idle::answer(node, idle_over_ms, reason).await,
        Request::Unban { uids } => bans::unban(node, uids).await,
        Request::Bans => bans::list(node).await,
        Request::Send {
            uid,
            message,
            transient,
        } => send::answer(node, uid, message, transient).await,
        Request::Broadcast { message } => broadcast::answer(node, message).await,
        Request::Online { uid } => online::answer(node, uid).await,
        Request::Stats => stats::answer(node).await,
        Request::Mailboxes => mailbox::list(node).await,
        Request::ClearMailboxes { uids } => mailbox::clear(node, uids).await,
        Request::Reload => reload::answer(node),
        // A stream, not a reply: the admin adapter serves it.
        Request::Events { .. } => {
            ReplyLine::error("events is a stream; ask for it first on a connection")
        }
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

/// What this node does when another node asks: the requests that [`gather`]
/// fans out, and the pushes that presence routes here.
impl cluster::Local for Node {
    fn push(&self, uid: &Uid, message: &Utf8Bytes, to: cluster::Recipients) -> u64 {
        crate::push::from_bus(self, uid, message, &to)
    }

    fn serve(self: Arc<Self>, request: Request) -> BoxFuture<'static, Result<Response, String>> {
        let local = match request {
            Request::Kick {
                uids,
                reason,
                ban_ms,
            } => return kick::serve(self, uids, reason, ban_ms),
            Request::KickIdle {
                idle_over_ms,
                reason,
            } => return kick_idle::serve(self, idle_over_ms, reason),
            Request::List => Ok(list::local(&self)),
            Request::Unban { uids } => Ok(bans::local_unban(&self, &uids)),
            Request::Bans => Ok(bans::local_list(&self)),
            Request::Broadcast { message } => broadcast::local(&self, message),
            Request::Stats => Ok(stats::local(&self)),
            Request::Mailboxes => Ok(mailbox::local_list(&self)),
            Request::ClearMailboxes { uids } => Ok(mailbox::local_clear(&self, &uids)),
            Request::Ping
            | Request::Send { .. }
            | Request::Online { .. }
            | Request::Reload
            | Request::Events { .. } => Err("not a request that nodes ask each other".to_owned()),
        };
        std::future::ready(local).boxed()
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
