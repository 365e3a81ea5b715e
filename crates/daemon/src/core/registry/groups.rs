//! Groups in the registry: memberships (`core::groups`, under the registry's
//! lock) and the group push, which resolves members to connections under one
//! lock and is, for each member, a push to that uid: its own id, the mailbox
//! when it has no connection, `transient`, bans.

use std::time::{Duration, Instant};

use pushd_proto::uid::Uid;

use super::Registry;
use super::fanout::{Offered, Pushed};
use crate::core::counters::Counter;
use crate::core::groups::Added;
use crate::core::payload::Payload;

/// What a group push did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GroupPushed {
    /// Connections that took it.
    pub(crate) delivered: u64,
    /// Members with no connection whose mailbox kept it.
    pub(crate) queued: u64,
    /// Members of the group.
    pub(crate) members: u64,
    /// Members with no connection that did not keep it since the mailboxes
    /// are at their memory bound (cluster mode: Redis's; a node's own are
    /// counted where they refuse).
    pub(crate) over_memory: u64,
}

/// What an add of several uids did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct GroupAdded {
    pub(crate) added: u64,
    pub(crate) already: u64,
    /// The uids refused, and why, for a person.
    pub(crate) refused: Vec<(Uid, &'static str)>,
}

/// One member as `group members` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) uid: Uid,
    /// Its connections on this node.
    pub(crate) connections: u64,
    /// Until its membership ends, if it has a TTL.
    pub(crate) expires_in: Option<Duration>,
}

impl Registry {
    /// Makes `uids` members of `group` (for `ttl`, or for good).
    pub(crate) fn group_add(&self, group: &Uid, uids: &[Uid], ttl: Option<Duration>) -> GroupAdded {
        let until = ttl.map(|ttl| Instant::now() + ttl.min(crate::core::clock::LONGEST));
        let mut added = GroupAdded::default();
        let mut state = self.lock();
        for uid in uids {
            let online = state.uids.contains(uid.as_str());
            match state.groups.add(group, uid, until, online) {
                Added::New => added.added += 1,
                Added::Already => added.already += 1,
                Added::TooManyForUid => added
                    .refused
                    .push((uid.clone(), "in --max-groups-per-uid groups already")),
                Added::TooMany => added
                    .refused
                    .push((uid.clone(), "--max-memberships reached")),
            }
        }
        drop(state);
        added
    }

    /// Ends `uids`' memberships of `group`; how many were members.
    pub(crate) fn group_remove(&self, group: &Uid, uids: &[Uid]) -> u64 {
        let mut guard = self.lock();
        let state = &mut *guard;
        let (groups, online) = (&mut state.groups, &state.uids);
        (uids.iter())
            .filter(|uid| groups.remove(group, uid, online.contains(uid.as_str())))
            .count() as u64
    }

    /// Removes `group`; how many members it had.
    pub(crate) fn group_drop(&self, group: &Uid) -> u64 {
        let mut guard = self.lock();
        let state = &mut *guard;
        let online = &state.uids;
        state.groups.drop_group(group, |uid| online.contains(uid)) as u64
    }

    /// `group`'s members with their connections here, sorted by uid.
    pub(crate) fn group_members(&self, group: &str) -> Vec<Member> {
        let now = Instant::now();
        let state = self.lock();
        let mut members: Vec<Member> = (state.groups.members(group).into_iter())
            .map(|(uid, until)| Member {
                connections: state
                    .uids
                    .get(uid.as_str())
                    .map_or(0, |list| list.len() as u64),
                expires_in: until.map(|until| until.saturating_duration_since(now)),
                uid,
            })
            .collect();
        drop(state);
        members.sort_unstable_by(|a, b| a.uid.cmp(&b.uid));
        members
    }

    /// Every group: its name, members, and members with a connection here;
    /// sorted by name. One step per group (online counts are kept as uids
    /// come and go), sorted after the lock.
    pub(crate) fn group_list(&self) -> Vec<(Uid, u64, u64)> {
        let mut list = self.lock().groups.list();
        list.sort_unstable();
        list
    }

    /// The groups `uid` belongs to, sorted.
    pub(crate) fn uid_groups(&self, uid: &str) -> Vec<Uid> {
        let mut groups = self.lock().groups.of(uid);
        groups.sort_unstable();
        groups
    }

    /// Group memberships, in all groups together.
    pub(crate) fn group_memberships(&self) -> u64 {
        self.lock().groups.memberships() as u64
    }

    /// Ends memberships whose TTL passed, a bounded number under the lock;
    /// whether more are due.
    pub(crate) fn expire_groups(&self) -> bool {
        const BUDGET: usize = 1000;
        let mut guard = self.lock();
        let state = &mut *guard;
        let online = &state.uids;
        let (ended, more) =
            (state.groups).expire(Instant::now(), BUDGET, |uid| online.contains(uid));
        drop(guard);
        self.counters
            .add(Counter::GroupMembershipsExpired, ended as u64);
        more
    }

    /// Pushes `message` to every member of `group`: every connection of each
    /// (each once), one shared frame for the raw ones and one per member for
    /// `pushd.v2` ones (each member has its own ids); a member with none keeps
    /// it in its mailbox unless `transient` or banned. Written by the
    /// connections' tasks, as a broadcast is: many connections, every worker
    /// writing its share.
    pub(crate) fn push_group(
        &self,
        group: &str,
        message: &Payload,
        transient: bool,
    ) -> GroupPushed {
        let mut pushed = GroupPushed::default();
        let mut offered = Offered::default();
        let mut guard = self.lock();
        let state = &mut *guard;
        if state.frozen {
            return pushed;
        }
        let members: Vec<Uid> = state.groups.member_uids(group).cloned().collect();
        pushed.members = members.len() as u64;
        let now = Instant::now();
        for uid in &members {
            // Taken under the lock: ids of one uid increase in push order.
            let id = self.ids.next();
            let before = offered.delivered;
            let handles = state.uids.get(uid.as_str()).into_iter().flatten();
            let any_v2;
            (offered, any_v2) = self.offer(handles, id, message, offered);
            if offered.delivered > before {
                if let Some(mailboxes) = &mut state.mailboxes {
                    if any_v2 {
                        mailboxes.keep_resumable(uid, now + mailboxes.ttl());
                    }
                    mailboxes.retain(uid, id, message, now);
                }
            } else if !transient
                && !state.is_banned(uid, now)
                && self.keep(state, uid, id, message) == Pushed::Queued
            {
                pushed.queued += 1;
            }
        }
        drop(guard);
        pushed.delivered = self.finish_push(offered);
        pushed
    }
}
