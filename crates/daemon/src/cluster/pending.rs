//! Requests waiting for other nodes' replies: who is expected, who answered.
//!
//! A request is opened before it is published (a reply may arrive before Redis
//! has even told us whom the request reached), then told its expected responders.
//! It is complete when every expected node has replied or dropped out (left, or
//! its lease ran out); at the timeout the caller takes what arrived and names the rest.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use pushd_proto::admin::Response;
use tokio::sync::Notify;

/// One node's reply: its display name and its answer.
#[derive(Debug, Clone)]
pub struct NodeReply {
    /// The node's `--node-name`.
    pub node: String,
    /// Its answer or error message.
    pub result: Result<Response, String>,
}

#[derive(Debug, Default)]
struct Entry {
    /// Node ids still to answer; `None` until known.
    expected: Option<HashSet<String>>,
    /// Replies so far, by node id.
    replies: HashMap<String, NodeReply>,
    wake: Arc<Notify>,
}

impl Entry {
    fn is_complete(&self) -> bool {
        self.expected
            .as_ref()
            .is_some_and(|expected| expected.iter().all(|id| self.replies.contains_key(id)))
    }
}

/// Every open request of this node.
#[derive(Debug, Default)]
pub struct Pending {
    next_id: AtomicU64,
    entries: Mutex<HashMap<u64, Entry>>,
}

/// What a finished (or timed-out) request gathered.
#[derive(Debug)]
pub struct Gathered {
    /// Replies by node id.
    pub replies: HashMap<String, NodeReply>,
    /// Expected node ids that did not reply.
    pub missing: Vec<String>,
}

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a request; returns its id and what wakes its waiter.
    pub fn open(&self) -> (u64, Arc<Notify>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let entry = Entry::default();
        let wake = entry.wake.clone();
        self.lock().insert(id, entry);
        (id, wake)
    }

    /// Sets the nodes expected to answer request `id`.
    pub fn expect(&self, id: u64, nodes: impl IntoIterator<Item = String>) {
        if let Some(entry) = self.lock().get_mut(&id) {
            entry.expected = Some(nodes.into_iter().collect());
            entry.wake.notify_one();
        }
    }

    /// Records a reply; replies to unknown (finished) requests are dropped.
    pub fn reply(&self, id: u64, from: String, reply: NodeReply) {
        if let Some(entry) = self.lock().get_mut(&id) {
            entry.replies.insert(from, reply);
            entry.wake.notify_one();
        }
    }

    /// Stops expecting `nodes` anywhere (they left or their lease ran out).
    pub fn drop_nodes(&self, gone: &dyn Fn(&str) -> bool) {
        for entry in self.lock().values_mut() {
            if let Some(expected) = &mut entry.expected {
                let before = expected.len();
                expected.retain(|id| !gone(id) || entry.replies.contains_key(id));
                if expected.len() != before {
                    entry.wake.notify_one();
                }
            }
        }
    }

    /// Whether request `id` has every expected reply.
    pub fn is_complete(&self, id: u64) -> bool {
        self.lock().get(&id).is_none_or(Entry::is_complete)
    }

    /// Closes request `id` and returns what it gathered.
    pub fn close(&self, id: u64) -> Gathered {
        let entry = self.lock().remove(&id).unwrap_or_default();
        let mut missing: Vec<String> = entry
            .expected
            .unwrap_or_default()
            .into_iter()
            .filter(|node| !entry.replies.contains_key(node))
            .collect();
        missing.sort();
        Gathered {
            replies: entry.replies,
            missing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(node: &str) -> NodeReply {
        NodeReply {
            node: node.into(),
            result: Ok(Response::Delivered {
                connections: 1,
                queued: false,
            }),
        }
    }

    #[test]
    fn complete_once_every_expected_node_replied_even_before_expectation() {
        let pending = Pending::default();
        let (id, _) = pending.open();
        pending.reply(id, "a".into(), reply("A"));
        assert!(!pending.is_complete(id), "expectation not known yet");
        pending.expect(id, ["a".to_string(), "b".to_string()]);
        assert!(!pending.is_complete(id), "b has not replied");
        pending.reply(id, "b".into(), reply("B"));
        assert!(pending.is_complete(id));
        let gathered = pending.close(id);
        assert_eq!(gathered.replies.len(), 2);
        assert!(gathered.missing.is_empty());
    }

    #[test]
    fn a_node_that_leaves_is_no_longer_awaited_and_the_rest_are_named() {
        let pending = Pending::default();
        let (id, _) = pending.open();
        pending.expect(id, ["a".to_string(), "b".to_string(), "c".to_string()]);
        pending.drop_nodes(&|node| node == "a");
        pending.reply(id, "b".into(), reply("B"));
        assert!(!pending.is_complete(id));
        let gathered = pending.close(id);
        assert_eq!(gathered.missing, ["c"]);
    }
}
