//! Routing pushes to the other nodes.
//!
//! A push that needs no id (its uid is not resumable: no `pushd.v2` connection
//! anywhere keeps its place) is one `PUBLISH` on the uid's own channel, which
//! every node holding a raw connection of the uid subscribes (`channels`): Redis
//! answers how many nodes took it. That is the cheap path, for the text port's
//! [`Confirm::Received`]: no Lua, no lookup per push (docs/cluster.md, "Routes").
//!
//! Everything else goes through one route script for a whole batch (presence
//! lookup, message ids, the bus message to each holder's inbox, the mailbox
//! when nobody holds the uid) and, with [`Confirm::Delivered`], waits for the
//! holders' counts: a resumable uid's pushes, a push that no node took on its
//! channel and this node did not take either (the script queues it, or finds a
//! holder that is not subscribed yet), and every push while a live node does not
//! subscribe its uids' channels (an older version, in a rolling deploy).

use std::collections::HashMap;
use std::sync::Arc;

use pushd_proto::admin::Response;
use pushd_proto::uid::Uid;

use super::bus::{self, Header};
use super::pending::Gathered;
use super::{Cluster, Confirm, Partial};

/// What became of one push on the other nodes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Routed {
    /// Connections that took it (on the uids' channels: nodes).
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
        let failed = |note: String| self.all_failed(pushes.len(), note);
        if pushes.is_empty() {
            return Vec::new();
        }
        if !self.is_up() {
            return failed(self.unreachable_note(None));
        }
        if confirm == Confirm::Delivered || !self.mailbox_on() {
            // Counts per connection, or pushd.v2 ids without a mark in Redis
            // of which uids have such connections: the script.
            return self.route_by_script(pushes, confirm).await;
        }
        let on_channels = match self.route_on_channels(pushes).await {
            Ok(routed) => routed,
            Err(err) => return failed(self.unreachable_note(Some(&err))),
        };
        let rest: Vec<Route> = (pushes.iter().zip(&on_channels))
            .filter(|(_, routed)| routed.is_none())
            .map(|(push, _)| *push)
            .collect();
        let mut by_script = self.route_by_script(&rest, confirm).await.into_iter();
        (on_channels.into_iter())
            .map(|routed| match routed {
                Some(value) => Partial {
                    value,
                    incomplete: Vec::new(),
                },
                None => by_script
                    .next()
                    .expect("a result per push routed by script"),
            })
            .collect()
    }

    /// Publishes on their uids' channels the pushes that need no id. `None` for
    /// a push left to the route script: its uid is resumable, or this node has
    /// `pushd.v2` connections of it, or no node took it on its channel and this
    /// node did not either; every push while the checks of [`Cluster::on_channels`]
    /// say no.
    async fn route_on_channels(
        &self,
        pushes: &[Route<'_>],
    ) -> redis::RedisResult<Vec<Option<Routed>>> {
        let fast = self.on_channels(pushes).await?;
        if fast.is_empty() {
            return Ok(vec![None; pushes.len()]);
        }
        let nodes = self.publish_on_channels(pushes, &fast).await?;
        let mut results = vec![None; pushes.len()];
        for (i, nodes) in fast.into_iter().zip(nodes) {
            let push = &pushes[i];
            // This node hears its own push when it holds the uid too.
            let others = nodes.saturating_sub(u64::from(push.delivered_here));
            results[i] = (nodes > 0 || push.delivered_here).then_some(Routed {
                connections: others,
                queued: false,
                sent: true,
            });
        }
        Ok(results)
    }

    /// Which of `pushes` (their indexes) may go on their uids' channels: none
    /// unless every node in `P:nodes` subscribes its uids' channels, no lease
    /// has run out (a node whose lease ran out may be paused with its
    /// subscription open, or gone with it left behind until its reap cuts it:
    /// its uids' pushes go to the script, which answers `fail` for them while
    /// presence is unsure) and presence is not settling; then those of uids
    /// that are not resumable and have no `pushd.v2` connection here. One round
    /// trip (and one more only when some of the uids are resumable and some not).
    async fn on_channels(&self, pushes: &[Route<'_>]) -> redis::RedisResult<Vec<usize>> {
        // One uid's pushes go one way, so that they keep their order.
        let mut uids: HashMap<&str, bool> = HashMap::new();
        for push in pushes {
            *uids.entry(push.uid.as_str()).or_insert(true) &= !push.v2_here;
        }
        let candidates: Vec<&str> = (uids.iter())
            .filter(|(_, ok)| **ok)
            .map(|(uid, _)| *uid)
            .collect();
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        pipe.zcard(self.keys.nodes());
        (pipe.cmd("ZINTERCARD").arg(2))
            .arg(self.keys.nodes())
            .arg(self.keys.channel_nodes());
        pipe.cmd("TIME");
        (pipe.cmd("ZRANGE").arg(self.keys.nodes()))
            .arg(0)
            .arg(0)
            .arg("WITHSCORES");
        pipe.get(self.keys.settle());
        let v2_keys: Vec<String> = candidates.iter().map(|uid| self.keys.v2(uid)).collect();
        pipe.exists(&v2_keys);
        type Answers = (u64, u64, (u64, u64), Vec<(String, f64)>, Option<f64>, usize);
        let (nodes, subscribing, (secs, micros), first_lease, settle, resumable): Answers =
            pipe.query_async(&mut self.conn()).await?;
        let now_ms = (secs * 1000 + micros / 1000) as f64;
        let lapsed = (first_lease.first()).is_some_and(|(_, until)| *until <= now_ms);
        let unsure = lapsed || settle.is_some_and(|until| now_ms < until);
        if nodes != subscribing || unsure || resumable == candidates.len() {
            return Ok(Vec::new());
        }
        if resumable > 0 {
            let mut each = redis::pipe();
            for key in &v2_keys {
                each.exists(key);
            }
            let each: Vec<bool> = each.query_async(&mut self.conn()).await?;
            for (uid, resumable) in candidates.iter().zip(each) {
                if resumable {
                    uids.insert(uid, false);
                }
            }
        }
        Ok((0..pushes.len())
            .filter(|&i| uids[pushes[i].uid.as_str()])
            .collect())
    }

    /// `PUBLISH`es `pushes[i]` for each of `fast` on its uid's channel; how many
    /// nodes received each. A uid pushed more than once has those pushes in one
    /// `MULTI`, so that a node subscribing meanwhile sees all of them or none (one
    /// taken and an earlier one left to the script would pass it); the others
    /// need none (a transaction costs Redis a reply more per command).
    async fn publish_on_channels(
        &self,
        pushes: &[Route<'_>],
        fast: &[usize],
    ) -> redis::RedisResult<Vec<u64>> {
        let mut times: HashMap<&str, usize> = HashMap::new();
        for &i in fast {
            *times.entry(pushes[i].uid.as_str()).or_default() += 1;
        }
        let (together, alone): (Vec<usize>, Vec<usize>) =
            (0..fast.len()).partition(|&k| times[pushes[fast[k]].uid.as_str()] > 1);
        let mut pipe = redis::pipe();
        let publish = |pipe: &mut redis::Pipeline, push: &Route| {
            let header = Header::Send {
                from: self.id.clone(),
                uid: push.uid.clone(),
                reply: None,
                here: push.delivered_here,
                id: None,
            };
            let channel = self.keys.uid_channel(push.uid.as_str());
            pipe.publish(channel, bus::encode(&header, push.message));
        };
        if !together.is_empty() {
            pipe.cmd("MULTI").ignore();
            for &k in &together {
                publish(&mut pipe, &pushes[fast[k]]);
                pipe.ignore();
            }
            pipe.cmd("EXEC");
        }
        for &k in &alone {
            publish(&mut pipe, &pushes[fast[k]]);
        }
        let answers: Vec<redis::Value> = pipe.query_async(&mut self.conn()).await?;
        let mut answers = answers.into_iter();
        let mut nodes = vec![0; fast.len()];
        if !together.is_empty() {
            let exec: Vec<u64> =
                redis::from_redis_value(answers.next().unwrap_or(redis::Value::Nil))?;
            for (&k, count) in together.iter().zip(exec) {
                nodes[k] = count;
            }
        }
        for (&k, answer) in alone.iter().zip(answers) {
            nodes[k] = redis::from_redis_value(answer)?;
        }
        Ok(nodes)
    }

    /// `n` pushes that did not go out, for the reason `note`.
    fn all_failed(&self, n: usize, note: String) -> Vec<Partial<Routed>> {
        (0..n)
            .map(|_| self.partial(Routed::default(), note.clone()))
            .collect()
    }

    /// [`Cluster::route`] through the route script.
    async fn route_by_script(
        &self,
        pushes: &[Route<'_>],
        confirm: Confirm,
    ) -> Vec<Partial<Routed>> {
        let failed = |note: String| self.all_failed(pushes.len(), note);
        if pushes.is_empty() {
            return Vec::new();
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
                here: false,
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
