//! The registry's two tables of connections: every open one by id, the bound
//! ones by uid.
//!
//! Both hold nothing but handles: a connection's id, uid and whether it is
//! listed are its handle's, so neither table stores a key beside its value.
//! That is 8 bytes an entry by id and 24 by uid (a one-handle list), where
//! maps keyed by id and by uid took 40 each (19,000 entries fill 58 % of
//! 32,768 buckets, so an entry's bytes count 1.7 times per connection).

use std::collections::HashSet;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::Arc;

use hashbrown::HashTable;
use pushd_proto::uid::Uid;
use smallvec::SmallVec;

use super::conn::{ConnHandle, ConnId};

/// Every open connection, bound or not.
pub(super) type ById = HashSet<Entry>;

/// A connection in [`ById`], found by its id.
#[derive(Debug)]
pub(super) struct Entry(pub(super) Arc<ConnHandle>);

impl std::borrow::Borrow<ConnId> for Entry {
    fn borrow(&self) -> &ConnId {
        &self.0.id
    }
}

impl Hash for Entry {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.id.hash(state);
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for Entry {}

/// A uid's connections, in no order: inline while there is one (the usual
/// case, one page per user), so that most uids cost no allocation for it.
/// Each handle knows its place (`ConnHandle::slot`), so one leaves the list
/// in constant time (a swap with the last), whatever the number of its uid's
/// connections; who is oldest is told by ids, when asked.
pub(super) type Connections = SmallVec<[Arc<ConnHandle>; 1]>;

/// Bound connections by uid. A list is found through the uid of its first
/// connection, so a list here is never empty and every connection in it is
/// bound (its handle has its uid). Uids come from clients, so the hasher is
/// std's keyed SipHash, as in a `HashMap`.
#[derive(Debug, Default)]
pub(super) struct ByUid {
    lists: HashTable<Connections>,
    hasher: RandomState,
}

/// The uid of a list.
fn uid_of(list: &Connections) -> &Uid {
    list[0].uid().expect("a listed connection is bound")
}

/// Whether a list is `uid`'s.
fn of(uid: &str) -> impl Fn(&Connections) -> bool + '_ {
    move |list| uid_of(list).as_str() == uid
}

impl ByUid {
    fn hash(&self, uid: &str) -> u64 {
        self.hasher.hash_one(uid)
    }

    /// `uid`'s connections, if it has any.
    pub(super) fn get(&self, uid: &str) -> Option<&Connections> {
        self.lists.find(self.hash(uid), of(uid))
    }

    /// Whether `uid` has a connection.
    pub(super) fn contains(&self, uid: &str) -> bool {
        self.get(uid).is_some()
    }

    /// The registry's copy of `uid`, if it has a connection: binds share it.
    pub(super) fn shared(&self, uid: &str) -> Option<Uid> {
        self.get(uid).map(|list| uid_of(list).clone())
    }

    /// Adds a connection bound to its uid, after the uid's others; `true` if
    /// it is the uid's first.
    pub(super) fn insert(&mut self, handle: Arc<ConnHandle>) -> bool {
        let uid = handle.uid().expect("a listed connection is bound").as_str();
        let hash = self.hash(uid);
        let hasher = |list: &Connections| self.hasher.hash_one(uid_of(list).as_str());
        match self.lists.entry(hash, of(uid), hasher) {
            hashbrown::hash_table::Entry::Occupied(mut list) => {
                handle.set_slot(list.get().len());
                list.get_mut().push(handle);
                false
            }
            hashbrown::hash_table::Entry::Vacant(vacant) => {
                handle.set_slot(0);
                vacant.insert(SmallVec::from_elem(handle, 1));
                true
            }
        }
    }

    /// Takes `handle` out of its uid's list, in constant time; `true` if it
    /// was the uid's last.
    pub(super) fn remove_one(&mut self, handle: &ConnHandle) -> bool {
        let uid = handle.uid().expect("a listed connection is bound").as_str();
        let Ok(mut list) = self.lists.find_entry(self.hash(uid), of(uid)) else {
            return false;
        };
        let slot = handle.slot();
        let connections = list.get_mut();
        if connections
            .get(slot)
            .is_none_or(|there| there.id != handle.id)
        {
            debug_assert!(false, "connection {} not at its slot", handle.id);
            return false;
        }
        if connections.len() == 1 {
            list.remove();
            return true;
        }
        connections.swap_remove(slot);
        if let Some(moved) = connections.get(slot) {
            moved.set_slot(slot);
        }
        false
    }

    /// Takes all of `uid`'s connections out, with the registry's copy of the uid.
    pub(super) fn remove(&mut self, uid: &str) -> Option<(Uid, Connections)> {
        let list = self.lists.find_entry(self.hash(uid), of(uid)).ok()?;
        let list = list.remove().0;
        Some((uid_of(&list).clone(), list))
    }

    /// Every uid with its connections, in no order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&Uid, &Connections)> {
        self.lists.iter().map(|list| (uid_of(list), list))
    }

    /// Every bound connection.
    pub(super) fn connections(&self) -> impl Iterator<Item = &Arc<ConnHandle>> {
        self.lists.iter().flatten()
    }

    /// The number of uids with a connection.
    pub(super) fn len(&self) -> usize {
        self.lists.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound(id: ConnId, uid: &str) -> Arc<ConnHandle> {
        let handle = ConnHandle::new(id, false, "127.0.0.1:1".parse().unwrap(), 0);
        handle.set_uid(Uid::parse(uid).unwrap());
        Arc::new(handle)
    }

    #[test]
    fn lists_are_found_by_the_uid_of_their_connections() {
        let mut by_uid = ByUid::default();
        assert!(by_uid.insert(bound(1, "42")));
        assert!(!by_uid.insert(bound(2, "42")));
        assert!(by_uid.insert(bound(3, "7")));
        // Enough uids to make the table grow (and rehash through the handles).
        for id in 10..1000 {
            assert!(by_uid.insert(bound(id, &format!("u{id}"))));
        }
        let ids = |uid| {
            by_uid
                .get(uid)
                .map(|l| l.iter().map(|h| h.id).collect::<Vec<_>>())
        };
        assert_eq!(ids("42"), Some(vec![1, 2]));
        assert_eq!(ids("u999"), Some(vec![999]));
        assert_eq!(by_uid.len(), 992);

        let handle = |uid: &str, id| {
            by_uid
                .get(uid)
                .unwrap()
                .iter()
                .find(|h| h.id == id)
                .unwrap()
                .clone()
        };
        let (one, two) = (handle("42", 1), handle("42", 2));
        assert!(!by_uid.remove_one(&one));
        assert_eq!(by_uid.shared("42").as_deref(), Some("42"));
        assert!(by_uid.remove_one(&two));
        assert!(!by_uid.contains("42"));
        let (uid, list) = by_uid.remove("7").unwrap();
        assert_eq!((uid.as_str(), list.len()), ("7", 1));
        assert_eq!(by_uid.connections().count(), 990);
    }

    /// Leaving a list takes a swap with its last entry, and every handle
    /// still knows its place, in any order of leaving.
    #[test]
    fn connections_leave_a_long_list_in_any_order() {
        let mut by_uid = ByUid::default();
        let handles: Vec<_> = (0..1000).map(|id| bound(id, "many")).collect();
        for handle in &handles {
            by_uid.insert(handle.clone());
        }
        // Every third first, then the rest from the end.
        let order = (0..1000)
            .step_by(3)
            .chain((0..1000).rev().filter(|i| i % 3 != 0));
        for (left, i) in order.enumerate() {
            let last = by_uid.remove_one(&handles[i]);
            assert_eq!(last, left == 999);
            for (slot, remaining) in by_uid.get("many").into_iter().flatten().enumerate() {
                assert_eq!(remaining.slot(), slot);
            }
        }
        assert!(!by_uid.contains("many"));
    }
}
