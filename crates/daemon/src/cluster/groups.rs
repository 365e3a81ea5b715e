//! Groups in cluster mode: the memberships live in Redis (`group_scripts`
//! says how), so any node changes and reads them, and a change is visible on
//! every node when it returns. A group push is numbered once and reaches each
//! node that holds members in one bus message that names them.

use std::collections::HashSet;
use std::time::Duration;

use pushd_proto::admin::Response;
use pushd_proto::uid::Uid;

use super::bus;
use super::pending::Gathered;
use super::{Cluster, Confirm, Partial};
use crate::core::registry::{GroupAdded, GroupPushed, Member};

/// A group push's answer from the script: members, connections on the other
/// nodes reached, members queued, nodes reached, nodes that missed it,
/// members not queued while presence is unsure, members not queued at the
/// memory bound.
type Pushed = (u64, u64, u64, Vec<String>, Vec<String>, u64, u64);

impl Cluster {
    /// The answer to a group request when Redis did not answer.
    fn groups_unreachable(&self, err: &redis::RedisError) -> String {
        format!(
            "Redis at {} is unreachable ({err}); group memberships are kept there",
            self.redis_display
        )
    }

    /// Makes `uids` members of `group` (for `ttl`, or for good), within this
    /// node's bounds counted over the whole cluster.
    pub(crate) async fn group_add(
        &self,
        group: &Uid,
        uids: &[Uid],
        ttl: Option<Duration>,
    ) -> Result<GroupAdded, String> {
        let limits = self.groups;
        let ttl = ttl.map_or(String::new(), |ttl| ttl.as_millis().max(1).to_string());
        let mut invocation = self.scripts.groups.add.prepare_invoke();
        invocation
            .arg(self.keys.prefix())
            .arg(group.as_str())
            .arg(ttl)
            .arg(limits.per_uid)
            .arg(limits.memberships);
        for uid in uids {
            invocation.arg(uid.as_str());
        }
        let (added, already, refused): (u64, u64, Vec<String>) = invocation
            .invoke_async(&mut self.conn())
            .await
            .map_err(|err| self.groups_unreachable(&err))?;
        let refused = refused
            .chunks(2)
            .filter_map(|pair| {
                let uid = Uid::parse(pair.first()?).ok()?;
                let why = match pair.get(1).map(String::as_str) {
                    Some("u") => "in --max-groups-per-uid groups already",
                    _ => "--max-memberships reached",
                };
                Some((uid, why))
            })
            .collect();
        Ok(GroupAdded {
            added,
            already,
            refused,
        })
    }

    /// Ends `uids`' memberships of `group`; how many were members.
    pub(crate) async fn group_remove(&self, group: &Uid, uids: &[Uid]) -> Result<u64, String> {
        let mut invocation = self.scripts.groups.remove.prepare_invoke();
        invocation.arg(self.keys.prefix()).arg(group.as_str());
        for uid in uids {
            invocation.arg(uid.as_str());
        }
        invocation
            .invoke_async(&mut self.conn())
            .await
            .map_err(|err| self.groups_unreachable(&err))
    }

    /// Removes `group`; how many members it had.
    pub(crate) async fn group_drop(&self, group: &Uid) -> Result<u64, String> {
        (self.scripts.groups.drop)
            .arg(self.keys.prefix())
            .arg(group.as_str())
            .invoke_async(&mut self.conn())
            .await
            .map_err(|err| self.groups_unreachable(&err))
    }

    /// `group`'s members with their connections on every node, sorted by uid.
    /// Read a thousand at a time, so a large group never holds Redis up.
    pub(crate) async fn group_members(&self, group: &str) -> Result<Vec<Member>, String> {
        let mut members: Vec<Member> = Vec::new();
        let mut cursor = "0".to_owned();
        loop {
            let (next, rows): (String, Vec<(String, u64, i64)>) =
                self.scan_group(group, &cursor, "m").await?;
            members.extend(rows.into_iter().filter_map(|(uid, connections, left)| {
                Some(Member {
                    uid: Uid::parse(&uid).ok()?,
                    connections,
                    expires_in: u64::try_from(left).ok().map(Duration::from_millis),
                })
            }));
            if next == "0" {
                break;
            }
            cursor = next;
        }
        // A scan may give a member twice (while Redis resizes the hash).
        members.sort_unstable_by(|a, b| a.uid.cmp(&b.uid));
        members.dedup_by(|a, b| a.uid == b.uid);
        Ok(members)
    }

    /// Every group: its name, members, and members with a connection on any
    /// node; sorted by name. Each group is read in steps of a thousand members.
    pub(crate) async fn group_list(&self) -> Result<Vec<(Uid, u64, u64)>, String> {
        let unreachable = |err: redis::RedisError| self.groups_unreachable(&err);
        let names: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.keys.groups())
            .query_async(&mut self.conn())
            .await
            .map_err(unreachable)?;
        let mut list = Vec::with_capacity(names.len());
        for name in names {
            let Ok(group) = Uid::parse(&name) else {
                continue;
            };
            let members: u64 = redis::cmd("HLEN")
                .arg(self.keys.group(&name))
                .query_async(&mut self.conn())
                .await
                .map_err(unreachable)?;
            let mut online = HashSet::new();
            let mut cursor = "0".to_owned();
            loop {
                let (next, uids): (String, Vec<String>) =
                    self.scan_group(&name, &cursor, "o").await?;
                online.extend(uids);
                if next == "0" {
                    break;
                }
                cursor = next;
            }
            if members > 0 {
                list.push((group, members, online.len() as u64));
            }
        }
        list.sort_unstable();
        Ok(list)
    }

    /// One step of the scan script over `group`'s members.
    async fn scan_group<T: redis::FromRedisValue>(
        &self,
        group: &str,
        cursor: &str,
        mode: &str,
    ) -> Result<(String, T), String> {
        (self.scripts.groups.scan)
            .key(self.keys.nodes())
            .arg(self.keys.prefix())
            .arg(group)
            .arg(cursor)
            .arg(mode)
            .invoke_async(&mut self.conn())
            .await
            .map_err(|err| self.groups_unreachable(&err))
    }

    /// The groups `uid` belongs to, sorted.
    pub(crate) async fn uid_groups(&self, uid: &str) -> Result<Vec<Uid>, String> {
        let groups: Vec<String> = (self.scripts.groups.of_uid)
            .arg(self.keys.prefix())
            .arg(uid)
            .invoke_async(&mut self.conn())
            .await
            .map_err(|err| self.groups_unreachable(&err))?;
        let mut groups: Vec<Uid> = groups.iter().filter_map(|g| Uid::parse(g).ok()).collect();
        groups.sort_unstable();
        Ok(groups)
    }

    /// Memberships in all groups together.
    pub(crate) async fn group_memberships(&self) -> Result<u64, String> {
        let count: Option<u64> = redis::cmd("GET")
            .arg(self.keys.memberships())
            .query_async(&mut self.conn())
            .await
            .map_err(|err| self.groups_unreachable(&err))?;
        Ok(count.unwrap_or(0))
    }

    /// Ends memberships whose TTL passed (up to a thousand); how many.
    pub(super) async fn expire_groups(&self) -> redis::RedisResult<u64> {
        (self.scripts.groups.expire)
            .arg(self.keys.prefix())
            .invoke_async(&mut self.conn())
            .await
    }

    /// Pushes `message` to every member of `group` on every node, as one push
    /// per member: each node that holds members gets one bus message naming
    /// them; a member held nowhere keeps it in its mailbox unless `transient`
    /// or in `banned`. Waits until this node has written its own share (so a
    /// push that follows on the same text connection comes after it here) and,
    /// with [`Confirm::Delivered`], until the other nodes say what they wrote.
    pub(crate) async fn push_group(
        &self,
        group: &Uid,
        message: &[u8],
        transient: bool,
        banned: &[Uid],
        confirm: Confirm,
    ) -> Partial<GroupPushed> {
        if !self.is_up() {
            return self.partial(GroupPushed::default(), self.unreachable_note(None));
        }
        let confirming = confirm == Confirm::Delivered;
        let (ticket, wake) = self.pending.open();
        let header = bus::group_header_start(&self.id, ticket, confirming);
        let mut invocation = self.scripts.groups.push.prepare_invoke();
        invocation
            .key(self.keys.nodes())
            .arg(self.keys.prefix())
            .arg(&self.id)
            .arg(group.as_str());
        self.mailbox_args(&mut invocation);
        invocation.arg(u8::from(transient)).arg(header).arg(message);
        for uid in banned {
            invocation.arg(uid.as_str());
        }
        let pushed: redis::RedisResult<Pushed> = invocation.invoke_async(&mut self.conn()).await;
        let (members, others, queued, reached, missed, unsure, over) = match pushed {
            Ok(pushed) => pushed,
            Err(err) => {
                self.pending.close(ticket);
                return self.partial(GroupPushed::default(), self.unreachable_note(Some(&err)));
            }
        };
        let expected = (reached.iter())
            .filter(|node| confirming || **node == self.id)
            .cloned();
        self.pending.expect(ticket, expected);
        let deadline = tokio::time::Instant::now() + self.timeout;
        let gathered = self.wait_until(ticket, &wake, deadline).await;
        let mut incomplete: Vec<String> = missed
            .iter()
            .map(|node| {
                format!("node {node} holds members of {group} but is not listening on Redis")
            })
            .collect();
        incomplete.extend(self.missing_notes(&gathered));
        if unsure > 0 {
            incomplete.push(format!(
                "Redis lost the cluster's presence (restarted, or paused past the leases); \
                 until every node has written it again {unsure} members of {group} may be \
                 online, so the push is not queued for them"
            ));
        }
        let written = |node: &str| written_by(&gathered, node);
        let delivered = written(&self.id)
            + if confirming {
                (reached.iter())
                    .filter(|node| **node != self.id)
                    .map(|node| written(node))
                    .sum()
            } else {
                others
            };
        Partial {
            value: GroupPushed {
                delivered,
                queued,
                members,
                over_memory: over,
            },
            incomplete,
        }
    }
}

/// The connections node `node` says took a group push.
fn written_by(gathered: &Gathered, node: &str) -> u64 {
    match gathered.replies.get(node).map(|reply| &reply.result) {
        Some(Ok(Response::Delivered { connections, .. })) => *connections,
        _ => 0,
    }
}
