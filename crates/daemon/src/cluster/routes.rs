//! Routing pushes to the other nodes: one route script for a whole batch
//! (presence lookup, message ids, the bus message, the mailbox when nobody
//! holds the uid) and, with [`Confirm::Delivered`], waiting for the holders'
//! counts.

use std::sync::Arc;

use pushd_proto::admin::Response;
use pushd_proto::uid::Uid;

use super::bus::{self, Header};
use super::pending::Gathered;
use super::{Cluster, Confirm, Partial};

/// What became of one push on the other nodes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Routed {
    /// Connections that took it.
    pub(crate) connections: u64,
    /// Nobody holds the uid: it waits in the uid's mailbox in Redis.
    pub(crate) queued: bool,
    /// Redis ran the route: the push has its id, and this node's `pushd.v2`
    /// connections of the uid get it from the bus.
    pub(crate) sent: bool,
}

/// One push for [`Cluster::route`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Route<'a> {
    pub(crate) uid: &'a Uid,
    pub(crate) message: &'a [u8],
    /// No connection here took it and it is not transient: it waits in the uid's
    /// mailbox if no other node holds the uid either.
    pub(crate) keep: bool,
    /// Connections here took it (or get it from the bus, below).
    pub(crate) delivered_here: bool,
    /// This node has `pushd.v2` connections of the uid: they get it from the bus,
    /// with its id, in the cluster's order.
    pub(crate) v2_here: bool,
}

impl Route<'_> {
    /// The flags the route script reads.
    pub(super) fn flags(&self) -> &'static str {
        match (self.keep, self.delivered_here, self.v2_here) {
            (true, _, _) => "k",
            (false, true, true) => "dv",
            (false, true, false) => "d",
            (false, false, true) => "v",
            (false, false, false) => "",
        }
    }
}

impl Cluster {
    /// Pushes each message to the uid's connections on the other nodes (and this
    /// node's `pushd.v2` ones), in order, with one script call for all of them. With [`Confirm::Received`] a count is
    /// what the nodes that received the push had registered; with [`Confirm::Delivered`]
    /// it is what they report having queued (awaited together within one timeout), and
    /// each result names the nodes that could not confirm.
    ///
    /// A push whose `keep` is set (no connection took it on this node, and it is not
    /// transient) is kept in the uid's mailbox in Redis when no other node holds the uid,
    /// in the same script: nobody can bind in between.
    pub(crate) async fn route(
        &self,
        pushes: &[Route<'_>],
        confirm: Confirm,
    ) -> Vec<Partial<Routed>> {
        let failed = |note: String| {
            (pushes.iter())
                .map(|_| self.partial(Routed::default(), note.clone()))
                .collect()
        };
        if pushes.is_empty() {
            return Vec::new();
        }
        if !self.is_up() {
            return failed(self.unreachable_note(None));
        }
        let confirming = confirm == Confirm::Delivered;
        let tickets: Vec<Option<(u64, Arc<tokio::sync::Notify>)>> = pushes
            .iter()
            .map(|_| confirming.then(|| self.pending.open()))
            .collect();
        let mut invocation = self.scripts.route.prepare_invoke();
        invocation
            .key(self.keys.nodes())
            .arg(self.keys.prefix())
            .arg(&self.id)
            .arg(u8::from(confirming));
        self.mailbox_args(&mut invocation);
        for (push, ticket) in pushes.iter().zip(&tickets) {
            let header = Header::Send {
                from: self.id.clone(),
                uid: push.uid.clone(),
                reply: ticket.as_ref().map(|(id, _)| *id),
                id: None,
            };
            invocation
                .arg(push.uid.as_str())
                .arg(bus::encode(&header, push.message))
                .arg(push.flags());
        }
        if !confirming {
            let counts: redis::RedisResult<Vec<i64>> =
                invocation.invoke_async(&mut self.conn()).await;
            return match counts {
                Ok(counts) => (pushes.iter().zip(counts))
                    .map(|(push, count)| route_result(push.uid, count))
                    .collect(),
                Err(err) => failed(self.unreachable_note(Some(&err))),
            };
        }
        let routed: redis::RedisResult<Vec<NamedRoute>> =
            invocation.invoke_async(&mut self.conn()).await;
        let routed = match routed {
            Ok(routed) if routed.len() == pushes.len() => routed,
            other => {
                for (id, _) in tickets.into_iter().flatten() {
                    self.pending.close(id);
                }
                return failed(match other {
                    Err(err) => self.unreachable_note(Some(&err)),
                    Ok(_) => "Redis answered the route script with the wrong shape".into(),
                });
            }
        };
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut results = Vec::with_capacity(pushes.len());
        for ((push, (count, reached, missed)), ticket) in pushes.iter().zip(routed).zip(tickets) {
            let uid = push.uid;
            let (id, wake) = ticket.expect("a ticket per push when confirming");
            self.pending.expect(id, reached);
            if count < 0 {
                self.pending.close(id);
                results.push(route_result(uid, count));
                continue;
            }
            let gathered = self.wait_until(id, &wake, deadline).await;
            let mut incomplete: Vec<String> = missed
                .iter()
                .map(|node| format!("node {node} holds {uid} but is not listening on Redis"))
                .collect();
            incomplete.extend(self.missing_notes(&gathered));
            results.push(Partial {
                value: Routed {
                    connections: delivered(&gathered),
                    queued: false,
                    sent: true,
                },
                incomplete,
            });
        }
        results
    }
}

/// One push as the route script answers it with names: the connections registered by
/// the nodes that received it, those nodes, and the holders without a subscriber.
type NamedRoute = (i64, Vec<String>, Vec<String>);

/// A route script's count: connections, or -1 kept in the mailbox, -2 over its
/// memory, -3 not kept since the uid may be online on a node whose presence
/// Redis has lost (answered `fail`: a `queued` could leave it beside an open
/// connection).
fn route_result(uid: &Uid, count: i64) -> Partial<Routed> {
    let incomplete = match count {
        -3 => vec![format!(
            "Redis lost the cluster's presence (restarted, or paused past the leases); \
             until every node has written it again {uid} may be online, so it is not queued"
        )],
        _ => Vec::new(),
    };
    Partial {
        value: Routed {
            connections: count.max(0) as u64,
            queued: count == -1,
            sent: true,
        },
        incomplete,
    }
}

/// Connections the replying nodes say took a confirmed push.
fn delivered(gathered: &Gathered) -> u64 {
    gathered
        .replies
        .values()
        .map(|reply| match &reply.result {
            Ok(Response::Delivered { connections, .. }) => *connections,
            _ => 0,
        })
        .sum()
}
