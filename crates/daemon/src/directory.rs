//! Who is online, cluster-wide: what the text port and the admin socket ask.
//!
//! Without `--cluster` every answer is this node's registry ([`crate::ops`]). With it,
//! each operation adds the other nodes through [`crate::cluster`]; the adapters call
//! the same functions either way and never see Redis.

use pushd_proto::admin::{ReplyLine, Request, Response};
use pushd_proto::uid::normalize_uid;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::cluster::{Cluster, merge};
use crate::config::Confirm;
use crate::{Daemon, ops};

/// A text-port message already delivered to this node's connections, and in
/// cluster mode still to be routed to the other nodes.
#[derive(Debug)]
pub struct Push {
    /// Connections here that took it.
    local: u64,
    /// Cluster mode: the uid and message, still to route (a single node keeps nothing).
    to_route: Option<(String, Utf8Bytes)>,
}

impl Push {
    /// Delivers `message` to `uid`'s connections here, now.
    pub fn deliver_here(daemon: &Daemon, uid: &str, message: Utf8Bytes) -> Push {
        Push {
            local: daemon.registry.push_to_uid(uid, &message),
            to_route: daemon.cluster.is_some().then(|| (uid.to_owned(), message)),
        }
    }
}

/// Finishes a batch of text-port pushes (`None`: a bad line); for each, true when
/// a connection here took it or, in cluster mode, a node holding the uid received
/// it (or delivered it, with `--text-confirm delivered`). One Redis round trip for
/// the whole batch (plus, when confirming, one wait for every reply); pushes to one
/// uid keep their order.
pub async fn finish(daemon: &Daemon, batch: &[Option<Push>]) -> Vec<bool> {
    let Some(cluster) = &daemon.cluster else {
        return batch
            .iter()
            .map(|push| push.as_ref().is_some_and(|p| p.local > 0))
            .collect();
    };
    let pushes: Vec<(&str, &[u8])> = batch
        .iter()
        .flatten()
        .filter_map(|push| push.to_route.as_ref())
        .map(|(uid, message)| (uid.as_str(), message.as_bytes()))
        .collect();
    let mut remote = cluster
        .route(&pushes, cluster.text_confirm())
        .await
        .into_iter()
        .map(|routed| routed.value);
    batch
        .iter()
        .map(|push| match push {
            Some(push) => push.local + remote.next().unwrap_or(0) > 0,
            None => false,
        })
        .collect()
}

/// Answers one admin request, for the whole cluster in cluster mode.
pub async fn answer(daemon: &Daemon, request: Request) -> ReplyLine {
    let Some(cluster) = &daemon.cluster else {
        return reply(ops::local(daemon, request), Vec::new());
    };
    match request {
        Request::Ping => reply(ops::local(daemon, request), Vec::new()),
        Request::Send { uid, message } => {
            let local = ops::local(
                daemon,
                Request::Send {
                    uid: uid.clone(),
                    message: message.clone(),
                },
            );
            let (Ok(Response::Delivered { connections }), Ok(uid)) = (&local, normalize_uid(&uid))
            else {
                return reply(local, Vec::new());
            };
            let remote = (cluster
                .route(&[(uid, message.as_bytes())], Confirm::Delivered)
                .await)
                .pop()
                .unwrap_or_default();
            let connections = connections + remote.value;
            reply(Ok(Response::Delivered { connections }), remote.incomplete)
        }
        Request::Online { uid } => {
            let local = ops::local(daemon, Request::Online { uid });
            let Ok(Response::Online { uid, connections }) = local else {
                return reply(local, Vec::new());
            };
            let remote = cluster.online(&uid).await;
            let connections = connections + remote.value;
            reply(Ok(Response::Online { uid, connections }), remote.incomplete)
        }
        Request::Kick { .. } => kick(daemon, cluster, request).await,
        request => fan_out(daemon, cluster, request).await,
    }
}

/// This node's answer merged with every other node's.
async fn fan_out(daemon: &Daemon, cluster: &Cluster, request: Request) -> ReplyLine {
    let local = match ops::local(daemon, request.clone()) {
        Ok(local) => local,
        // Invalid input is refused here, before anybody else is asked.
        Err(message) => return ReplyLine::error(message),
    };
    let gathered = cluster.fan_out(request).await;
    let mut incomplete = gathered.incomplete;
    let merged = merge::merge(local, gathered.value.replies.into_values(), &mut incomplete);
    reply(Ok(merged), incomplete)
}

/// The acknowledged cluster-wide kick: when this returns, the uids are offline on
/// every node, and rebinds anywhere were refused until then.
async fn kick(daemon: &Daemon, cluster: &Cluster, request: Request) -> ReplyLine {
    let Request::Kick { uids, reason, .. } = &request else {
        unreachable!("called for kicks only")
    };
    let uids = match uids
        .iter()
        .map(|uid| ops::valid_uid(uid).map(str::to_owned))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(uids) => uids,
        Err(message) => return ReplyLine::error(message),
    };
    cluster.hold_kicked(daemon, &uids, reason.as_deref());
    let local = ops::local(daemon, request.clone());
    let local = match local {
        Ok(local) => local,
        Err(message) => return ReplyLine::error(message),
    };
    let flushed = cluster.flush_presence().await;
    let gathered = cluster.fan_out(request).await;
    let mut incomplete = gathered.incomplete;
    if let (Err(err), true) = (flushed, incomplete.is_empty()) {
        incomplete.push(format!("this node's presence was not updated: {err}"));
    }
    if !gathered.value.missing.is_empty() {
        // Nodes alive by lease that did not answer: take the uids out of their
        // presence ourselves, so nobody routes to them any more.
        cluster.forget(&gathered.value.missing, &uids).await;
    }
    let merged = merge::merge(local, gathered.value.replies.into_values(), &mut incomplete);
    cluster.kick_done(&uids).await;
    for uid in &uids {
        daemon.registry.kick_done(uid);
    }
    reply(Ok(merged), incomplete)
}

fn reply(result: Result<Response, String>, incomplete: Vec<String>) -> ReplyLine {
    match result {
        Ok(response) => ReplyLine::partial(response, incomplete),
        Err(message) => ReplyLine::error(message),
    }
}
