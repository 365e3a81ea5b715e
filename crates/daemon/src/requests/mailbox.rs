//! `mailbox` and `mailbox --clear`: the uids with messages waiting for their next
//! connection. A single node keeps them itself; in cluster mode they are in Redis,
//! shared by every node, and asked for there (the merge by uid stays for nodes that
//! still keep their own).

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::FutureExt;
use pushd_proto::admin::{MailboxInfo, ReplyLine, Request, Response};
use pushd_proto::uid::Uid;

use super::{Answer, Asker};
use crate::cluster::{Cluster, Partial};
use crate::core::counters::Counter;
use crate::core::mailbox::MailboxSummary;
use crate::node::Node;

pub(super) fn handle_list(node: Arc<Node>, asker: Asker) -> Answer {
    match asker {
        Asker::Operator => async move { list(&node).await }.boxed(),
        Asker::Node => super::ready(ReplyLine::ok(local_list(&node))),
    }
}

pub(super) fn handle_clear(node: Arc<Node>, asker: Asker, uids: Vec<Uid>) -> Answer {
    match asker {
        Asker::Operator => async move { clear(&node, uids).await }.boxed(),
        Asker::Node => super::ready(ReplyLine::ok(local_clear(&node, &uids))),
    }
}

async fn list(node: &Node) -> ReplyLine {
    match &node.cluster {
        Some(cluster) if cluster.mailbox_on() => {
            let listed = in_redis(cluster).await;
            ReplyLine::partial(
                Response::Mailboxes { uids: listed.value },
                listed.incomplete,
            )
        }
        _ => super::gather(node, Request::Mailboxes, local_list(node), absorb).await,
    }
}

async fn clear(node: &Node, uids: Vec<Uid>) -> ReplyLine {
    match &node.cluster {
        Some(cluster) if cluster.mailbox_on() => {
            let listed = in_redis(cluster).await;
            let held: Vec<MailboxInfo> = (listed.value.into_iter())
                .filter(|info| uids.iter().any(|uid| uid.as_str() == info.uid))
                .collect();
            let held_uids: Vec<Uid> = uids
                .into_iter()
                .filter(|uid| held.iter().any(|info| info.uid == uid.as_str()))
                .collect();
            let cleared = cluster.clear_mailboxes(&held_uids).await;
            node.counters.add(Counter::MailboxCleared, cleared);
            ReplyLine::partial(Response::Cleared { uids: held }, listed.incomplete)
        }
        _ => {
            let local = local_clear(node, &uids);
            super::gather(node, Request::ClearMailboxes { uids }, local, absorb).await
        }
    }
}

/// Every mailbox kept in Redis, as rows.
pub(super) async fn in_redis(cluster: &Cluster) -> Partial<Vec<MailboxInfo>> {
    let listed = cluster.mailboxes().await;
    Partial {
        value: (listed.value.into_iter())
            .map(|(uid, messages, bytes, oldest_ms)| MailboxInfo {
                uid,
                messages,
                bytes,
                oldest_ms,
            })
            .collect(),
        incomplete: listed.incomplete,
    }
}

/// This node's mailboxes, sorted by uid.
fn local_list(node: &Node) -> Response {
    Response::Mailboxes {
        uids: node.registry.mailboxes().iter().map(info).collect(),
    }
}

/// Empties this node's mailboxes of `uids`; answers what each held.
fn local_clear(node: &Node, uids: &[Uid]) -> Response {
    Response::Cleared {
        uids: node
            .registry
            .clear_mailboxes(uids)
            .iter()
            .map(info)
            .collect(),
    }
}

fn info(summary: &MailboxSummary) -> MailboxInfo {
    MailboxInfo {
        uid: summary.uid.to_string(),
        messages: summary.messages,
        bytes: summary.bytes,
        oldest_ms: summary.oldest.as_millis() as u64,
    }
}

/// A uid's mailboxes on several nodes are one row: their sums, and the oldest age.
fn absorb(total: &mut Response, more: Response) -> bool {
    let (total, more) = match (total, more) {
        (Response::Mailboxes { uids }, Response::Mailboxes { uids: more })
        | (Response::Cleared { uids }, Response::Cleared { uids: more }) => (uids, more),
        _ => return false,
    };
    let mut by_uid: BTreeMap<String, MailboxInfo> = std::mem::take(total)
        .into_iter()
        .map(|info| (info.uid.clone(), info))
        .collect();
    for info in more {
        match by_uid.get_mut(&info.uid) {
            Some(row) => {
                row.messages += info.messages;
                row.bytes += info.bytes;
                row.oldest_ms = row.oldest_ms.max(info.oldest_ms);
            }
            None => {
                by_uid.insert(info.uid.clone(), info);
            }
        }
    }
    *total = by_uid.into_values().collect();
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(uid: &str, messages: u64, oldest_ms: u64) -> MailboxInfo {
        MailboxInfo {
            uid: uid.into(),
            messages,
            bytes: messages,
            oldest_ms,
        }
    }

    #[test]
    fn rows_of_one_uid_add_up_and_keep_the_oldest_age() {
        let mut total = Response::Mailboxes {
            uids: vec![row("a", 1, 10), row("c", 1, 1)],
        };
        let more = Response::Mailboxes {
            uids: vec![row("a", 2, 30), row("b", 1, 5)],
        };
        assert!(absorb(&mut total, more));
        let expected = vec![row("a", 3, 30), row("b", 1, 5), row("c", 1, 1)];
        assert_eq!(total, Response::Mailboxes { uids: expected });
        assert!(!absorb(&mut total, Response::Cleared { uids: vec![] }));
    }

    #[test]
    fn a_local_clear_answers_only_the_uids_that_had_messages() {
        let node = crate::node::test_node();
        let uid = |text: &str| Uid::parse(text).unwrap();
        crate::push::to_uid(&node, uid("away"), "m".into(), false);
        let Response::Cleared { uids } = local_clear(&node, &[uid("away"), uid("none")]) else {
            unreachable!()
        };
        assert_eq!(
            uids.iter().map(|u| u.uid.as_str()).collect::<Vec<_>>(),
            ["away"]
        );
        assert_eq!(node.registry.mailbox_totals().messages, 0);
    }
}
