//! `stats`: this node's figures, and in cluster mode the sum over every node
//! with each node's own line.

use std::sync::Arc;

use futures_util::FutureExt;
use pushd_proto::admin::{
    ClusterInfo, Counters, MailboxTotals, NodeStats, ReplyLine, Request, Response, Stats,
};

use super::{Answer, Asker};
use crate::core::registry::{self, Sizes};
use crate::node::Node;

pub(super) fn handle(node: Arc<Node>, asker: Asker) -> Answer {
    match asker {
        Asker::Operator => async move { answer(&node).await }.boxed(),
        Asker::Node => super::ready(ReplyLine::ok(local(&node))),
    }
}

async fn answer(node: &Node) -> ReplyLine {
    let mut reply = super::gather(node, Request::Stats, local(node), absorb).await;
    // In cluster mode the memberships are in Redis, not on any node.
    if let (Some(cluster), Some(Response::Stats(stats))) = (&node.cluster, &mut reply.result) {
        match cluster.group_memberships().await {
            Ok(memberships) => stats.group_memberships = memberships,
            Err(why) => reply.incomplete.push(why),
        }
    }
    // In cluster mode the mailboxes are in Redis, not on any node: count them there.
    if let (Some(cluster), Some(Response::Stats(stats))) = (&node.cluster, &mut reply.result)
        && cluster.mailbox_on()
    {
        let listed = super::mailbox::in_redis(cluster).await;
        stats.mailbox = MailboxTotals {
            uids: listed.value.len() as u64,
            messages: listed.value.iter().map(|m| m.messages).sum(),
            bytes: listed.value.iter().map(|m| m.bytes).sum(),
        };
        reply.incomplete.extend(listed.incomplete);
    }
    reply
}

fn local(node: &Node) -> Response {
    let Sizes { connections, uids } = node.registry.sizes();
    let uptime_ms = node.clock.started().elapsed().as_millis() as u64;
    let counters = &node.counters;
    Response::Stats(Box::new(Stats {
        version: env!("CARGO_PKG_VERSION").into(),
        uptime_ms,
        ws_listen: node.ws_addr.to_string(),
        text_listen: node.text_addr.to_string(),
        socket: node.socket.display().to_string(),
        connections,
        uids,
        bans: node.registry.ban_count(),
        group_memberships: node.registry.group_memberships(),
        mailbox: {
            let registry::MailboxTotals {
                uids,
                messages,
                bytes,
            } = node.registry.mailbox_totals();
            MailboxTotals {
                uids,
                messages,
                bytes,
            }
        },
        event_subscribers: node.events.subscribers(),
        text_connections: counters
            .text_connections
            .load(std::sync::atomic::Ordering::Relaxed),
        counters: Counters::from_fn(|counter| counters.get(counter)),
        cluster: node.cluster.as_ref().map(|cluster| ClusterInfo {
            node: cluster.name().to_owned(),
            node_id: cluster.id().to_owned(),
            redis: cluster.redis_display(),
            redis_up: cluster.is_up(),
            nodes: vec![NodeStats {
                name: cluster.name().to_owned(),
                id: cluster.id().to_owned(),
                ws_listen: node.ws_addr.to_string(),
                uptime_ms,
                connections,
                uids,
            }],
        }),
    }))
}

/// Figures add up (a uid online on two nodes counts on each); the nodes' own
/// lines are listed side by side.
fn absorb(total: &mut Response, more: Response) -> bool {
    let (Response::Stats(stats), Response::Stats(more)) = (total, more) else {
        return false;
    };
    stats.connections += more.connections;
    stats.uids += more.uids;
    stats.text_connections += more.text_connections;
    stats.bans += more.bans;
    stats.event_subscribers += more.event_subscribers;
    stats.mailbox.uids += more.mailbox.uids;
    stats.mailbox.messages += more.mailbox.messages;
    stats.mailbox.bytes += more.mailbox.bytes;
    stats.counters.accumulate(&more.counters);
    if let (Some(cluster), Some(more)) = (&mut stats.cluster, more.cluster) {
        cluster.nodes.extend(more.nodes);
        cluster
            .nodes
            .sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::counters::Counter;

    #[test]
    fn the_cluster_sum_adds_every_figure_and_lists_both_nodes() {
        let node = crate::node::test_node();
        node.counters.add(Counter::Binds, 3);
        let Response::Stats(mut one) = local(&node) else {
            unreachable!()
        };
        assert_eq!(one.counters.binds, 3);
        let node_line = |name: &str| NodeStats {
            name: name.into(),
            id: format!("{name}-1"),
            ws_listen: "127.0.0.1:1".into(),
            uptime_ms: 0,
            connections: 1,
            uids: 1,
        };
        let cluster = |name: &str| ClusterInfo {
            node: name.into(),
            node_id: format!("{name}-1"),
            redis: "redis://r".into(),
            redis_up: true,
            nodes: vec![node_line(name)],
        };
        one.cluster = Some(cluster("b"));
        one.connections = 1;
        let mut other = one.clone();
        other.cluster = Some(cluster("a"));
        let mut total = Response::Stats(one);
        assert!(absorb(&mut total, Response::Stats(other)));
        let Response::Stats(total) = total else {
            unreachable!()
        };
        assert_eq!((total.connections, total.counters.binds), (2, 6));
        let names: Vec<&str> = (total.cluster.iter())
            .flat_map(|c| c.nodes.iter().map(|n| n.name.as_str()))
            .collect();
        assert_eq!(names, ["a", "b"]);
    }
}
