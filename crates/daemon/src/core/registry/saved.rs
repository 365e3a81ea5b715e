//! The registry's part of what outlives the process (see `core::saved`): bans,
//! mailboxes and the id position, out at a stop and back in before serving.

use pushd_proto::uid::Uid;

use super::Registry;
use crate::core::counters::Counter;
use crate::core::saved::{Restored, Saved, Wall};

impl Registry {
    /// What this registry holds beyond its connections, as plain data. Under
    /// the lock for as long as it takes to copy the handles (payloads are
    /// shared, not copied): meant for a stop, when nothing else runs.
    pub(crate) fn save(&self) -> Saved {
        let wall = Wall::now();
        let state = self.lock();
        let bans = (state.bans.iter())
            .filter(|(_, until)| **until > wall.instant())
            .map(|(uid, until)| (uid.to_string(), wall.ms_of(*until)));
        Saved {
            saved_at_ms: wall.ms(),
            ids: self.ids.position(),
            bans: bans.collect(),
            stores: (state.mailboxes.as_ref()).map_or_else(Vec::new, |m| m.save(&wall)),
            groups: state.groups.save(&wall),
        }
    }

    /// This registry, empty but for what `saved` holds that still stands: ids
    /// go on from its position, bans still running and messages not expired
    /// come back (within today's bounds). Counts what expired or no longer fits.
    pub(crate) fn with_saved(mut self, saved: Saved) -> (Self, Restored) {
        let wall = Wall::now();
        let mut restored = Restored::default();
        self.ids.go_on_from(saved.ids);
        let state = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        for (uid, until_ms) in saved.bans {
            if let (Ok(uid), Some(until)) = (Uid::parse(&uid), wall.instant_of(until_ms)) {
                state.bans.insert(uid, until);
                restored.bans += 1;
            }
        }
        match &mut state.mailboxes {
            Some(mailboxes) => mailboxes.restore(saved.stores, &wall, &mut restored),
            None => {
                let entries = saved.stores.iter().flat_map(|store| &store.entries);
                restored.dropped += entries.filter(|e| !e.delivered).count() as u64;
            }
        }
        let (memberships, left_out) = state.groups.restore(saved.groups, &wall);
        (restored.memberships, restored.memberships_left_out) = (memberships, left_out);
        let counters = &self.counters;
        counters.add(Counter::MailboxExpired, restored.expired);
        counters.add(Counter::MailboxDropped, restored.dropped);
        (self, restored)
    }
}
