//! `bans` and `unban`. Bans are kept per node (a kick with `--ban` sets one on
//! every node), so both ask every node and merge by uid.

use std::collections::BTreeMap;

use std::sync::Arc;

use pushd_proto::admin::{BanInfo, Request, Response};
use pushd_proto::uid::Uid;

use super::{Answer, Asker};
use crate::node::Node;

pub(super) fn handle_list(node: Arc<Node>, asker: Asker) -> Answer {
    let local = local_list(&node);
    super::each_node(node, asker, Request::Bans, Ok(local), absorb_bans)
}

pub(super) fn handle_unban(node: Arc<Node>, asker: Asker, uids: Vec<Uid>) -> Answer {
    let local = local_unban(&node, &uids);
    let request = Request::Unban { uids };
    super::each_node(node, asker, request, Ok(local), absorb_unbanned)
}

/// This node's active bans, sorted by uid.
pub(super) fn local_list(node: &Node) -> Response {
    let bans = node.registry.bans().into_iter();
    Response::Bans {
        bans: bans
            .map(|(uid, remaining_ms)| BanInfo {
                uid: uid.to_string(),
                remaining_ms,
            })
            .collect(),
    }
}

/// Lifts this node's bans on `uids`; answers the ones that were banned.
pub(super) fn local_unban(node: &Node, uids: &[Uid]) -> Response {
    let unbanned = uids.iter().filter(|uid| node.registry.unban(uid));
    Response::Unbanned {
        uids: unbanned.map(Uid::to_string).collect(),
    }
}

/// A uid banned on several nodes shows once, with the longest time left.
fn absorb_bans(total: &mut Response, more: Response) -> bool {
    let (Response::Bans { bans }, Response::Bans { bans: more }) = (total, more) else {
        return false;
    };
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
    true
}

fn absorb_unbanned(total: &mut Response, more: Response) -> bool {
    let (Response::Unbanned { uids }, Response::Unbanned { uids: more }) = (total, more) else {
        return false;
    };
    uids.extend(more);
    uids.sort();
    uids.dedup();
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bans(list: &[(&str, u64)]) -> Response {
        Response::Bans {
            bans: list
                .iter()
                .map(|(uid, remaining_ms)| BanInfo {
                    uid: (*uid).into(),
                    remaining_ms: *remaining_ms,
                })
                .collect(),
        }
    }

    #[test]
    fn a_ban_on_several_nodes_shows_once_with_the_longest_time_left() {
        let mut total = bans(&[("42", 10), ("7", 5)]);
        assert!(absorb_bans(&mut total, bans(&[("42", 30)])));
        assert_eq!(total, bans(&[("42", 30), ("7", 5)]));
    }

    #[test]
    fn unbanned_uids_are_listed_once() {
        let unbanned = |uids: &[&str]| Response::Unbanned {
            uids: uids.iter().map(|u| (*u).into()).collect(),
        };
        let mut total = unbanned(&["b", "a"]);
        assert!(absorb_unbanned(&mut total, unbanned(&["a", "c"])));
        assert_eq!(total, unbanned(&["a", "b", "c"]));
    }
}
