//! Combining this node's answer with the other nodes' answers into one.

use std::collections::BTreeMap;

use pushd_proto::admin::{BanInfo, ConnInfo, Response, UidCount};

use super::pending::NodeReply;

/// Merges `local` with every remote reply of the same kind. A remote error, or a
/// reply of another kind, becomes a note in `incomplete`.
pub fn merge(
    local: Response,
    remote: impl IntoIterator<Item = NodeReply>,
    incomplete: &mut Vec<String>,
) -> Response {
    let mut merged = local;
    for reply in remote {
        match reply.result {
            Ok(response) => {
                if let Err(kind) = absorb(&mut merged, response) {
                    incomplete.push(format!("node {} answered {kind}", reply.node));
                }
            }
            Err(message) => incomplete.push(format!("node {}: {message}", reply.node)),
        }
    }
    merged
}

/// Adds one remote answer into `total`; Err names the unexpected kind.
fn absorb(total: &mut Response, more: Response) -> Result<(), &'static str> {
    match (total, more) {
        (Response::List { uids }, Response::List { uids: more }) => {
            let mut by_uid: BTreeMap<String, Vec<ConnInfo>> = std::mem::take(uids)
                .into_iter()
                .map(|info| (info.uid, info.connections))
                .collect();
            for info in more {
                by_uid.entry(info.uid).or_default().extend(info.connections);
            }
            *uids = by_uid
                .into_iter()
                .map(|(uid, connections)| pushd_proto::admin::UidInfo { uid, connections })
                .collect();
        }
        (
            Response::Kicked { connections, uids },
            Response::Kicked {
                connections: more_connections,
                uids: more,
            },
        ) => {
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
        }
        (Response::Delivered { connections }, Response::Delivered { connections: more }) => {
            *connections += more;
        }
        (Response::Unbanned { uids }, Response::Unbanned { uids: more }) => {
            uids.extend(more);
            uids.sort();
            uids.dedup();
        }
        (Response::Bans { bans }, Response::Bans { bans: more }) => {
            let mut by_uid: BTreeMap<String, u64> = std::mem::take(bans)
                .into_iter()
                .map(|ban| (ban.uid, ban.remaining_ms))
                .collect();
            for ban in more {
                let remaining = by_uid.entry(ban.uid).or_default();
                *remaining = (*remaining).max(ban.remaining_ms);
            }
            *bans = by_uid
                .into_iter()
                .map(|(uid, remaining_ms)| BanInfo { uid, remaining_ms })
                .collect();
        }
        (Response::Stats(stats), Response::Stats(more)) => {
            stats.connections += more.connections;
            stats.uids += more.uids;
            stats.text_connections += more.text_connections;
            stats.bans += more.bans;
            stats.counters.accumulate(&more.counters);
            if let (Some(cluster), Some(more)) = (&mut stats.cluster, more.cluster) {
                cluster.nodes.extend(more.nodes);
                cluster
                    .nodes
                    .sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
            }
        }
        (_, other) => return Err(kind_of(&other)),
    }
    Ok(())
}

fn kind_of(response: &Response) -> &'static str {
    match response {
        Response::Pong { .. } => "pong",
        Response::List { .. } => "list",
        Response::Kicked { .. } => "kicked",
        Response::Delivered { .. } => "delivered",
        Response::Online { .. } => "online",
        Response::Stats(_) => "stats",
        Response::Unbanned { .. } => "unbanned",
        Response::Bans { .. } => "bans",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pushd_proto::admin::UidInfo;

    fn conn(node: &str) -> ConnInfo {
        ConnInfo {
            id: 1,
            peer: "127.0.0.1:1".into(),
            idle_ms: 0,
            connected_ms: 0,
            node: Some(node.into()),
        }
    }

    fn list(node: &str, uids: &[&str]) -> Response {
        Response::List {
            uids: uids
                .iter()
                .map(|uid| UidInfo {
                    uid: (*uid).into(),
                    connections: vec![conn(node)],
                })
                .collect(),
        }
    }

    #[test]
    fn lists_merge_by_uid_in_order_and_errors_become_notes() {
        let mut notes = Vec::new();
        let remote = [
            NodeReply {
                node: "b".into(),
                result: Ok(list("b", &["42", "7"])),
            },
            NodeReply {
                node: "c".into(),
                result: Err("busy".into()),
            },
        ];
        let Response::List { uids } = merge(list("a", &["42", "9"]), remote, &mut notes) else {
            panic!("a list")
        };
        let shape: Vec<(String, usize)> = uids
            .iter()
            .map(|u| (u.uid.clone(), u.connections.len()))
            .collect();
        assert_eq!(shape, [("42".into(), 2), ("7".into(), 1), ("9".into(), 1)]);
        assert_eq!(notes, ["node c: busy"]);
    }

    #[test]
    fn kicks_add_up_per_uid() {
        let kicked = |n: u64| Response::Kicked {
            connections: n,
            uids: vec![UidCount {
                uid: "42".into(),
                connections: n,
            }],
        };
        let mut notes = Vec::new();
        let remote = [NodeReply {
            node: "b".into(),
            result: Ok(kicked(2)),
        }];
        assert_eq!(merge(kicked(1), remote, &mut notes), kicked(3));
        assert!(notes.is_empty());
    }
}
