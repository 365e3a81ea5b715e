//! Groups: named sets of uids, managed by the backend. Membership belongs to
//! the uid, not to a connection, so it outlives reconnects (and, through the
//! state file, restarts). Plain data under the registry's lock, like the
//! mailboxes: a group push resolves its members to connections under that one
//! lock.
//!
//! A group exists while it has members. A membership may end at a deadline
//! (`--ttl`); deadlines are kept in order, so expiry looks only at what is due.

use std::collections::{BTreeMap, HashMap};

use smallvec::SmallVec;
use std::time::Instant;

use pushd_proto::uid::Uid;

use super::saved::{SavedGroup, Wall};

/// The groups' bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GroupLimits {
    /// Most groups one uid belongs to (`--max-groups-per-uid`).
    pub(crate) per_uid: usize,
    /// Most memberships in all groups together (`--max-memberships`).
    pub(crate) memberships: usize,
}

/// What an add did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Added {
    /// A new member.
    New,
    /// A member already; its deadline, if one was given, is the new one.
    Already,
    /// Refused: the uid is in `--max-groups-per-uid` groups already.
    TooManyForUid,
    /// Refused: `--max-memberships` are taken.
    TooMany,
}

/// One member's deadline, and its key in the deadline index.
type Deadline = Option<(Instant, u64)>;

/// Every group.
#[derive(Debug)]
pub(crate) struct Groups {
    limits: GroupLimits,
    /// Group → its members and their deadlines.
    groups: HashMap<Uid, HashMap<Uid, Deadline>>,
    /// Uid → the groups it belongs to: a short list, inline while it holds
    /// one (most uids are in few groups; a set per uid cost about 100 bytes
    /// more per membership). At most `--max-groups-per-uid` long, so a removal's
    /// scan of it is bounded.
    of_uid: HashMap<Uid, SmallVec<[Uid; 1]>>,
    memberships: usize,
    /// Group → its members that have a connection, for groups with any: kept
    /// as uids come and go (`uid_online`), so that listing groups costs one
    /// step per group, not per membership.
    online: HashMap<Uid, usize>,
    /// Memberships with a deadline, in deadline order (a sequence number tells
    /// equal instants apart): (group, uid).
    due: BTreeMap<(Instant, u64), (Uid, Uid)>,
    sequence: u64,
}

impl Groups {
    /// No group yet.
    pub(crate) fn new(limits: GroupLimits) -> Self {
        Groups {
            limits,
            groups: HashMap::new(),
            of_uid: HashMap::new(),
            memberships: 0,
            online: HashMap::new(),
            due: BTreeMap::new(),
            sequence: 0,
        }
    }

    /// Makes `uid` a member of `group` (until `until`, or for good), within
    /// the bounds. A member already keeps its membership; a deadline given
    /// replaces the one it had. `online`: the uid has a connection.
    pub(crate) fn add(
        &mut self,
        group: &Uid,
        uid: &Uid,
        until: Option<Instant>,
        online: bool,
    ) -> Added {
        let current = self.groups.get(group).and_then(|m| m.get(uid)).copied();
        if let Some(deadline) = current {
            if let Some(until) = until {
                if let Some(key) = deadline {
                    self.due.remove(&key);
                }
                let key = self.deadline(group, uid, until);
                let members = self.groups.get_mut(group).expect("a member's group");
                members.insert(uid.clone(), Some(key));
            }
            return Added::Already;
        }
        if self.memberships >= self.limits.memberships {
            return Added::TooMany;
        }
        if self.of_uid.get(uid).map_or(0, |groups| groups.len()) >= self.limits.per_uid {
            return Added::TooManyForUid;
        }
        let deadline = until.map(|until| self.deadline(group, uid, until));
        let members = self.groups.entry(group.clone()).or_default();
        members.insert(uid.clone(), deadline);
        self.of_uid
            .entry(uid.clone())
            .or_default()
            .push(group.clone());
        self.memberships += 1;
        if online {
            *self.online.entry(group.clone()).or_default() += 1;
        }
        Added::New
    }

    /// Indexes a deadline for `uid` in `group`; its key.
    fn deadline(&mut self, group: &Uid, uid: &Uid, at: Instant) -> (Instant, u64) {
        self.sequence += 1;
        let key = (at, self.sequence);
        self.due.insert(key, (group.clone(), uid.clone()));
        key
    }

    /// Ends `uid`'s membership of `group`; whether it was one. `online`: the
    /// uid has a connection.
    pub(crate) fn remove(&mut self, group: &Uid, uid: &str, online: bool) -> bool {
        let Some(members) = self.groups.get_mut(group) else {
            return false;
        };
        let Some(deadline) = members.remove(uid) else {
            return false;
        };
        if members.is_empty() {
            self.groups.remove(group);
        }
        if let Some(key) = deadline {
            self.due.remove(&key);
        }
        if let Some(groups) = self.of_uid.get_mut(uid) {
            groups.retain(|g| g != group);
            if groups.is_empty() {
                self.of_uid.remove(uid);
            }
        }
        self.memberships -= 1;
        if online {
            self.count_online(group, false);
        }
        true
    }

    /// `uid` got its first connection (`online`) or lost its last: its groups'
    /// online counts follow. Bounded by `--max-groups-per-uid`.
    pub(crate) fn uid_online(&mut self, uid: &str, online: bool) {
        let Some(groups) = self.of_uid.get(uid) else {
            return;
        };
        for group in groups.clone() {
            self.count_online(&group, online);
        }
    }

    fn count_online(&mut self, group: &Uid, up: bool) {
        let count = self.online.entry(group.clone()).or_default();
        if up {
            *count += 1;
        } else {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.online.remove(group);
            }
        }
    }

    /// Removes `group` with all its members; how many it had.
    pub(crate) fn drop_group(&mut self, group: &Uid, is_online: impl Fn(&str) -> bool) -> usize {
        let members: Vec<Uid> = self
            .members(group)
            .into_iter()
            .map(|(uid, _)| uid)
            .collect();
        for uid in &members {
            self.remove(group, uid, is_online(uid));
        }
        members.len()
    }

    /// `group`'s members and their deadlines (empty: no such group).
    pub(crate) fn members(&self, group: &str) -> Vec<(Uid, Option<Instant>)> {
        let members = self.groups.get(group).into_iter().flatten();
        members
            .map(|(uid, deadline)| (uid.clone(), deadline.map(|(at, _)| at)))
            .collect()
    }

    /// `group`'s members, or none.
    pub(crate) fn member_uids(&self, group: &str) -> impl Iterator<Item = &Uid> {
        self.groups.get(group).into_iter().flat_map(HashMap::keys)
    }

    /// Every group: its name, members, and members with a connection.
    pub(crate) fn list(&self) -> Vec<(Uid, u64, u64)> {
        let groups = self.groups.iter();
        groups
            .map(|(group, members)| {
                let online = self.online.get(group).copied().unwrap_or(0);
                (group.clone(), members.len() as u64, online as u64)
            })
            .collect()
    }

    /// The groups `uid` belongs to.
    pub(crate) fn of(&self, uid: &str) -> Vec<Uid> {
        let groups = self.of_uid.get(uid).into_iter().flatten();
        groups.cloned().collect()
    }

    /// Memberships in all groups together.
    pub(crate) fn memberships(&self) -> usize {
        self.memberships
    }

    /// Ends the memberships whose deadline passed, at most `budget` of them;
    /// how many, and whether more are due.
    pub(crate) fn expire(
        &mut self,
        now: Instant,
        budget: usize,
        is_online: impl Fn(&str) -> bool,
    ) -> (usize, bool) {
        let mut ended = 0;
        while let Some((&(at, _), _)) = self.due.first_key_value() {
            if at > now {
                return (ended, false);
            }
            if ended == budget {
                return (ended, true);
            }
            let (_, (group, uid)) = self.due.pop_first().expect("just seen");
            ended += usize::from(self.remove(&group, &uid, is_online(&uid)));
        }
        (ended, false)
    }

    /// Every group as plain data (see [`Saved`](super::saved::Saved)).
    pub(crate) fn save(&self, wall: &Wall) -> Vec<SavedGroup> {
        let groups = self.groups.iter();
        groups
            .map(|(group, members)| SavedGroup {
                group: group.to_string(),
                members: (members.iter())
                    .map(|(uid, deadline)| {
                        (uid.to_string(), deadline.map(|(at, _)| wall.ms_of(at)))
                    })
                    .collect(),
            })
            .collect()
    }

    /// Puts saved groups back, within today's bounds; memberships whose
    /// deadline passed meanwhile are left out. Returns (restored, left out).
    pub(crate) fn restore(&mut self, saved: Vec<SavedGroup>, wall: &Wall) -> (u64, u64) {
        let (mut restored, mut left_out) = (0, 0);
        for saved in saved {
            let Ok(group) = Uid::parse(&saved.group) else {
                left_out += saved.members.len() as u64;
                continue;
            };
            for (uid, until_ms) in saved.members {
                let until = until_ms.map(|ms| wall.instant_of(ms));
                let added = match (Uid::parse(&uid), until) {
                    // At a start nobody has a connection yet (the ones a live
                    // upgrade hands over are adopted after, and counted then).
                    (Ok(uid), None) => self.add(&group, &uid, None, false),
                    (Ok(uid), Some(Some(until))) => self.add(&group, &uid, Some(until), false),
                    _ => Added::TooMany,
                };
                if added == Added::New {
                    restored += 1;
                } else {
                    left_out += 1;
                }
            }
        }
        (restored, left_out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn uid(text: &str) -> Uid {
        Uid::parse(text).unwrap()
    }

    fn groups(per_uid: usize, memberships: usize) -> Groups {
        Groups::new(GroupLimits {
            per_uid,
            memberships,
        })
    }

    #[test]
    fn memberships_come_and_go_and_a_group_exists_while_it_has_members() {
        let mut g = groups(10, 100);
        assert_eq!(g.add(&uid("g"), &uid("a"), None, false), Added::New);
        assert_eq!(g.add(&uid("g"), &uid("a"), None, false), Added::Already);
        assert_eq!(g.add(&uid("g"), &uid("b"), None, false), Added::New);
        assert_eq!(g.add(&uid("h"), &uid("a"), None, false), Added::New);
        assert_eq!(g.memberships(), 3);
        assert_eq!(g.of("a").len(), 2);
        assert!(g.remove(&uid("g"), "a", false));
        assert!(!g.remove(&uid("g"), "a", false));
        assert_eq!(g.drop_group(&uid("g"), |_| false), 1);
        assert!(g.members("g").is_empty());
        assert_eq!(g.of("a"), vec![uid("h")]);
        assert_eq!(g.memberships(), 1);
    }

    #[test]
    fn online_counts_follow_uids_and_memberships() {
        let mut g = groups(10, 100);
        g.add(&uid("g"), &uid("a"), None, true);
        g.add(&uid("g"), &uid("b"), None, false);
        g.add(&uid("h"), &uid("b"), None, false);
        let online = |g: &Groups, name: &str| {
            g.list()
                .into_iter()
                .find(|(group, ..)| group.as_str() == name)
                .map(|(_, _, o)| o)
        };
        assert_eq!(online(&g, "g"), Some(1));
        g.uid_online("b", true);
        assert_eq!((online(&g, "g"), online(&g, "h")), (Some(2), Some(1)));
        g.uid_online("a", false);
        assert!(g.remove(&uid("g"), "b", true));
        assert_eq!(online(&g, "g"), Some(0), "a is left, offline");
        assert_eq!(online(&g, "h"), Some(1));
        assert_eq!(g.drop_group(&uid("h"), |_| true), 1);
        assert_eq!(g.list(), vec![(uid("g"), 1, 0)]);
    }

    #[test]
    fn bounds_refuse_new_memberships_only() {
        let mut g = groups(1, 2);
        g.add(&uid("g"), &uid("a"), None, false);
        assert_eq!(
            g.add(&uid("h"), &uid("a"), None, false),
            Added::TooManyForUid
        );
        assert_eq!(g.add(&uid("g"), &uid("a"), None, false), Added::Already);
        g.add(&uid("g"), &uid("b"), None, false);
        assert_eq!(g.add(&uid("g"), &uid("c"), None, false), Added::TooMany);
    }

    #[test]
    fn a_deadline_ends_a_membership_and_a_refresh_moves_it() {
        let mut g = groups(10, 100);
        let now = Instant::now();
        g.add(
            &uid("g"),
            &uid("a"),
            Some(now + Duration::from_secs(1)),
            false,
        );
        g.add(
            &uid("g"),
            &uid("b"),
            Some(now + Duration::from_secs(1)),
            false,
        );
        g.add(
            &uid("g"),
            &uid("b"),
            Some(now + Duration::from_secs(5)),
            false,
        );
        g.add(&uid("g"), &uid("c"), None, false);
        assert_eq!(
            g.expire(now + Duration::from_secs(2), 100, |_| false),
            (1, false)
        );
        let mut left: Vec<String> = g
            .members("g")
            .into_iter()
            .map(|(u, _)| u.to_string())
            .collect();
        left.sort();
        assert_eq!(left, ["b", "c"]);
        assert_eq!(
            g.expire(now + Duration::from_secs(6), 100, |_| false),
            (1, false)
        );
        assert_eq!(g.memberships(), 1);
    }
}
