//! `kick`: close every connection of some uids, optionally banning them.
//!
//! When [`answer`] returns, the uids are offline; in cluster mode, on every node.
//! For that the cluster kick is acknowledged: every node first *holds* the uids
//! (refusing rebinds with 4000), so that a client reconnecting in a loop cannot
//! slip back in on a node that has not kicked yet; each node kicks, takes the
//! uids out of its presence in Redis and only then answers; nodes alive by
//! lease that did not answer get the uids removed from their presence by the
//! asker; `kick_done` then lifts the holds (which also end by themselves after
//! the lease plus the timeout, should the asker die).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use pushd_proto::admin::{MAX_CLOSE_REASON, ReplyLine, Request, Response, UidCount};
use pushd_proto::uid::Uid;

use super::{Answer, Asker, DEFAULT_KICK_REASON};
use crate::cluster::Cluster;
use crate::core::counters::Counter;
use crate::node::Node;

pub(super) fn handle(
    node: Arc<Node>,
    asker: Asker,
    uids: Vec<Uid>,
    reason: Option<String>,
    ban_ms: Option<u64>,
) -> Answer {
    match asker {
        Asker::Operator => async move { answer(&node, uids, reason, ban_ms).await }.boxed(),
        Asker::Node => serve(node, uids, reason, ban_ms),
    }
}

async fn answer(
    node: &Node,
    uids: Vec<Uid>,
    reason: Option<String>,
    ban_ms: Option<u64>,
) -> ReplyLine {
    let Some(cluster) = &node.cluster else {
        return ReplyLine::ok(local(node, &uids, reason.as_deref(), ban_ms));
    };
    hold(node, cluster, &uids, reason.as_deref());
    let local = local(node, &uids, reason.as_deref(), ban_ms);
    let flushed = cluster.flush_presence().await;
    let request = Request::Kick {
        uids: uids.clone(),
        reason,
        ban_ms,
    };
    let gathered = cluster.fan_out(request).await;
    let mut incomplete = gathered.incomplete;
    if let (Err(err), true) = (flushed, incomplete.is_empty()) {
        incomplete.push(format!("this node's presence was not updated: {err}"));
    }
    if !gathered.value.missing.is_empty() {
        cluster.forget(&gathered.value.missing, &uids).await;
    }
    // The uids' mailboxes are in Redis, shared: emptied once, here.
    let cleared = cluster.clear_mailboxes(&uids).await;
    node.counters.add(Counter::MailboxCleared, cleared);
    let replies = gathered.value.replies.into_values();
    let merged = super::merge(local, replies, absorb, &mut incomplete);
    cluster.kick_done(&uids).await;
    for uid in &uids {
        node.registry.kick_done(uid);
    }
    ReplyLine::partial(merged, incomplete)
}

/// Another node asks: hold and kick here at once (in bus order), then take the
/// uids out of this node's presence before answering.
fn serve(node: Arc<Node>, uids: Vec<Uid>, reason: Option<String>, ban_ms: Option<u64>) -> Answer {
    if let Some(cluster) = &node.cluster {
        hold(&node, cluster, &uids, reason.as_deref());
    }
    let local = local(&node, &uids, reason.as_deref(), ban_ms);
    async move {
        if let Some(cluster) = &node.cluster {
            let _ = cluster.flush_presence().await;
        }
        ReplyLine::ok(local)
    }
    .boxed()
}

/// A kick's close reason must fit in a close frame: at most
/// [`MAX_CLOSE_REASON`] bytes. Checked here, where kicks are decided, for every
/// way in (pushctl, the admin socket, the HTTP API).
pub(super) fn check_reason(reason: Option<&str>) -> Result<(), String> {
    match reason {
        Some(reason) if reason.len() > MAX_CLOSE_REASON => Err(format!(
            "the close reason is {} bytes, over the {MAX_CLOSE_REASON}-byte limit of a close frame",
            reason.len()
        )),
        _ => Ok(()),
    }
}

/// Refuses rebinds of `uids` here until `kick_done`, or until nobody can still
/// be waiting for this kick.
fn hold(node: &Node, cluster: &Cluster, uids: &[Uid], reason: Option<&str>) {
    let until = Instant::now() + cluster.lease() + cluster.timeout();
    let reason = reason.unwrap_or(DEFAULT_KICK_REASON);
    for uid in uids {
        node.registry.hold_kicked(uid, reason, until);
    }
}

/// Kicks (and bans) `uids` on this node; answers the uids that had connections.
fn local(node: &Node, uids: &[Uid], reason: Option<&str>, ban_ms: Option<u64>) -> Response {
    let reason = reason.unwrap_or(DEFAULT_KICK_REASON);
    let ban = ban_ms.map(Duration::from_millis);
    let kicked: Vec<UidCount> = uids
        .iter()
        .map(|uid| UidCount {
            uid: uid.to_string(),
            connections: node.registry.kick(uid, reason, ban),
        })
        .filter(|kicked| kicked.connections > 0)
        .collect();
    Response::Kicked {
        connections: kicked.iter().map(|k| k.connections).sum(),
        uids: kicked,
    }
}

/// `kick --connection`: every node closes the connection if it is its own
/// (its id names the node), so the asker needs no routing.
pub(super) fn handle_connection(
    node: Arc<Node>,
    asker: Asker,
    connection: String,
    reason: Option<String>,
) -> Answer {
    let reason = reason.unwrap_or_else(|| DEFAULT_KICK_REASON.to_owned());
    let kicked = (node.connection_number(&connection))
        .and_then(|n| node.registry.kick_connection(n, &reason));
    let local = Response::Kicked {
        connections: u64::from(kicked.is_some()),
        uids: (kicked.into_iter())
            .map(|uid| UidCount {
                uid: uid.to_string(),
                connections: 1,
            })
            .collect(),
    };
    let request = Request::KickConnection {
        connection,
        reason: Some(reason),
    };
    super::each_node(node, asker, request, Ok(local), absorb)
}

/// Counts add up per uid; shared with `kick --idle-over`.
pub(super) fn absorb(total: &mut Response, more: Response) -> bool {
    let (
        Response::Kicked { connections, uids },
        Response::Kicked {
            connections: more_connections,
            uids: more,
        },
    ) = (total, more)
    else {
        return false;
    };
    *connections += more_connections;
    let mut by_uid: BTreeMap<String, u64> = std::mem::take(uids)
        .into_iter()
        .map(|count| (count.uid, count.connections))
        .collect();
    for count in more {
        *by_uid.entry(count.uid).or_default() += count.connections;
    }
    *uids = by_uid
        .into_iter()
        .map(|(uid, connections)| UidCount { uid, connections })
        .collect();
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kicked(per_uid: &[(&str, u64)]) -> Response {
        Response::Kicked {
            connections: per_uid.iter().map(|(_, n)| n).sum(),
            uids: per_uid
                .iter()
                .map(|(uid, connections)| UidCount {
                    uid: (*uid).into(),
                    connections: *connections,
                })
                .collect(),
        }
    }

    #[test]
    fn a_local_kick_answers_only_the_uids_that_were_online_and_bans_them_all() {
        let node = crate::node::test_node();
        let peer = "127.0.0.1:9".parse().unwrap();
        let uid = |text| Uid::parse(text).unwrap();
        for _ in 0..2 {
            let conn = node.registry.open(peer, false);
            node.registry.bind(conn.id, &uid("42"), None).unwrap();
        }
        let answer = local(&node, &[uid("42"), uid("7")], None, Some(60_000));
        assert_eq!(answer, kicked(&[("42", 2)]));
        assert_eq!(node.registry.online("42"), 0);
        let banned: Vec<String> = node
            .registry
            .bans()
            .iter()
            .map(|(u, _)| u.to_string())
            .collect();
        assert_eq!(banned, ["42", "7"], "offline uids are banned too");
    }

    #[test]
    fn kicks_add_up_per_uid() {
        let mut total = kicked(&[("42", 1), ("7", 1)]);
        assert!(absorb(&mut total, kicked(&[("42", 2), ("8", 1)])));
        assert_eq!(total, kicked(&[("42", 3), ("7", 1), ("8", 1)]));
    }
}
