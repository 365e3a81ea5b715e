//! `list`: every online uid with its connections. In cluster mode every node
//! lists its own and the lists merge by uid.

use std::collections::BTreeMap;

use std::sync::Arc;

use pushd_proto::admin::{ConnInfo, Request, Response, UidInfo};

use super::{Answer, Asker};
use crate::node::Node;

pub(super) fn handle(node: Arc<Node>, asker: Asker) -> Answer {
    let local = local(&node);
    super::each_node(node, asker, Request::List, Ok(local), absorb)
}

/// This node's connections, sorted by uid, each named with the node in cluster mode.
pub(super) fn local(node: &Node) -> Response {
    let uids = node
        .registry
        .list()
        .into_iter()
        .map(|(uid, connections)| UidInfo {
            uid: uid.to_string(),
            connections: connections
                .into_iter()
                .map(|conn| ConnInfo {
                    id: conn.id,
                    peer: conn.peer.to_string(),
                    idle_ms: conn.idle_ms,
                    connected_ms: conn.connected_ms,
                    node: node.name().map(str::to_owned),
                    kind: conn.sse.then(|| "sse".to_owned()),
                    connection: node.connection_id(conn.id),
                })
                .collect(),
        })
        .collect();
    Response::List { uids }
}

/// A uid online on several nodes is one row with all its connections.
fn absorb(total: &mut Response, more: Response) -> bool {
    let (Response::List { uids }, Response::List { uids: more }) = (total, more) else {
        return false;
    };
    let mut by_uid: BTreeMap<String, Vec<ConnInfo>> = std::mem::take(uids)
        .into_iter()
        .map(|info| (info.uid, info.connections))
        .collect();
    for info in more {
        by_uid.entry(info.uid).or_default().extend(info.connections);
    }
    *uids = by_uid
        .into_iter()
        .map(|(uid, connections)| UidInfo { uid, connections })
        .collect();
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(node: &str, uids: &[&str]) -> Response {
        let conn = ConnInfo {
            id: 1,
            peer: "127.0.0.1:1".into(),
            idle_ms: 0,
            connected_ms: 0,
            node: Some(node.into()),
            kind: None,
            connection: "n.1".into(),
        };
        Response::List {
            uids: uids
                .iter()
                .map(|uid| UidInfo {
                    uid: (*uid).into(),
                    connections: vec![conn.clone()],
                })
                .collect(),
        }
    }

    #[test]
    fn lists_merge_by_uid_in_order() {
        let mut total = list("a", &["42", "9"]);
        assert!(absorb(&mut total, list("b", &["42", "7"])));
        let Response::List { uids } = total else {
            unreachable!()
        };
        let shape: Vec<(&str, usize)> = uids
            .iter()
            .map(|u| (u.uid.as_str(), u.connections.len()))
            .collect();
        assert_eq!(shape, [("42", 2), ("7", 1), ("9", 1)]);
        assert!(!absorb(
            &mut list("a", &[]),
            Response::Bans { bans: vec![] }
        ));
    }
}
