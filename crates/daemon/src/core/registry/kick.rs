//! Taking connections away: kicks (by uid, by idle time, for shutdown), bans,
//! and the hold that keeps a uid out while a cluster-wide kick runs. A kicked
//! uid is offline the moment the call returns; its tasks close afterwards.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pushd_proto::uid::Uid;

use super::{Registry, State};
use crate::core::conn::{CloseRequest, ConnHandle, ConnId};
use crate::core::counters::Counter;
use crate::core::index::Entry;

/// What a [`Registry::kick_idle`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct KickedIdle {
    /// Connections kicked, bound or not.
    pub(crate) connections: u64,
    /// The uids that lost connections, sorted, with how many each lost.
    pub(crate) uids: Vec<(Uid, u64)>,
}

impl State {
    /// The reason of a cluster-wide kick of `uid` still in progress, if any.
    pub(super) fn kicking_reason(&mut self, uid: &str, now: Instant) -> Option<Arc<str>> {
        match self.kicking.get(uid) {
            Some((until, reason)) if *until > now => Some(reason.clone()),
            Some(_) => {
                self.kicking.remove(uid);
                None
            }
            None => None,
        }
    }

    /// Whether `uid` is banned at `now`; forgets an expired ban.
    pub(super) fn is_banned(&mut self, uid: &str, now: Instant) -> bool {
        match self.bans.get(uid) {
            Some(&until) if until > now => true,
            Some(_) => {
                self.bans.remove(uid);
                false
            }
            None => false,
        }
    }
}

impl Registry {
    /// Unbinds every connection of `uid` at once and asks each to close with
    /// 4000 and `reason`; from the moment this returns, the uid is offline.
    /// Returns the number of connections kicked.
    ///
    /// With `ban`, the uid also cannot bind again for that long (close
    /// 4003), whether or not it was online.
    ///
    /// The uid's mailbox is emptied too.
    pub(crate) fn kick(&self, uid: &Uid, reason: &str, ban: Option<Duration>) -> u64 {
        let mut state = self.lock();
        if let Some(ban) = ban {
            // A ban of any length from pushctl or the API (a century at most),
            // never an overflow under the lock.
            let ban = ban.min(crate::core::clock::LONGEST);
            state.bans.insert(uid.clone(), Instant::now() + ban);
        }
        if let Some(mailboxes) = &mut state.mailboxes {
            let (cleared, _) = mailboxes.clear(uid);
            self.counters.add(Counter::MailboxCleared, cleared as u64);
        }
        let Some((key, handles)) = state.uids.remove(uid) else {
            return 0;
        };
        state.groups.uid_online(&key, false);
        if let Some(events) = &state.events {
            for handle in &handles {
                events.disconnected(&key, handle.event_ref(), "kicked");
            }
            events.last_unbound(&key);
        }
        for handle in &handles {
            handle.set_listed(false);
            handle.request_close(CloseRequest::Kicked {
                reason: reason.to_owned(),
            });
        }
        drop(state);
        self.counters.add(Counter::Kicked, handles.len() as u64);
        self.mark_changed([key]);
        handles.len() as u64
    }

    /// Cluster mode: refuses binds of `uid` (close 4000 with `reason`) until
    /// [`Registry::kick_done`] or `until`, so that a client reconnecting in a
    /// loop cannot slip back in on this node while other nodes are still kicking it.
    pub(crate) fn hold_kicked(&self, uid: &Uid, reason: &str, until: Instant) {
        let mut state = self.lock();
        // Holds whose kick_done never came (the coordinator died) go here, not later.
        let now = Instant::now();
        state.kicking.retain(|_, (ends, _)| *ends > now);
        state
            .kicking
            .insert(uid.clone(), (until, Arc::from(reason)));
    }

    /// Ends the hold of [`Registry::hold_kicked`].
    pub(crate) fn kick_done(&self, uid: &str) {
        self.lock().kicking.remove(uid);
    }

    /// Closes connection `id` with 4000 and `reason`, if it is bound; its uid.
    pub(crate) fn kick_connection(&self, id: ConnId, reason: &str) -> Option<Uid> {
        let mut state = self.lock();
        let uid = state.unbind(id, "kicked")?;
        if let Some(Entry(handle)) = state.conns.get(&id) {
            handle.request_close(CloseRequest::Kicked {
                reason: reason.to_owned(),
            });
        }
        drop(state);
        self.counters.bump(Counter::Kicked);
        self.mark_changed([uid.clone()]);
        Some(uid)
    }

    /// Kicks every connection, bound or not, idle for longer than `idle_over_ms`.
    pub(crate) fn kick_idle(&self, idle_over_ms: u64, reason: &str) -> KickedIdle {
        let now = self.clock.now_ms();
        let mut state = self.lock();
        let idle: Vec<ConnId> = state
            .conns
            .iter()
            .filter(|Entry(handle)| now.saturating_sub(handle.last_activity_ms()) > idle_over_ms)
            .map(|Entry(handle)| handle.id)
            .collect();
        let mut per_uid: HashMap<Uid, u64> = HashMap::new();
        for &id in &idle {
            if let Some(uid) = state.unbind(id, "kicked") {
                *per_uid.entry(uid).or_default() += 1;
            }
            let request = CloseRequest::Kicked {
                reason: reason.to_owned(),
            };
            if let Some(Entry(handle)) = state.conns.get(&id) {
                handle.request_close(request);
            }
        }
        drop(state);
        self.counters.add(Counter::Kicked, idle.len() as u64);
        self.mark_changed(per_uid.keys().cloned());
        let mut uids: Vec<(Uid, u64)> = per_uid.into_iter().collect();
        uids.sort_unstable();
        KickedIdle {
            connections: idle.len() as u64,
            uids,
        }
    }

    /// Asks every open connection to close for shutdown.
    pub(crate) fn close_all_for_shutdown(&self) {
        for handle in self.open_connections() {
            handle.request_close(CloseRequest::Shutdown);
        }
    }

    /// Every open connection, bound or not.
    pub(crate) fn open_connections(&self) -> Vec<Arc<ConnHandle>> {
        let state = self.lock();
        state
            .conns
            .iter()
            .map(|Entry(handle)| handle.clone())
            .collect()
    }

    /// Lifts the ban on `uid`; false if it was not banned.
    pub(crate) fn unban(&self, uid: &str) -> bool {
        let mut state = self.lock();
        let banned = state.is_banned(uid, Instant::now());
        state.bans.remove(uid);
        banned
    }

    /// Active bans with their remaining time in milliseconds, sorted by uid.
    pub(crate) fn bans(&self) -> Vec<(Uid, u64)> {
        let now = Instant::now();
        let mut state = self.lock();
        state.bans.retain(|_, until| *until > now);
        let mut bans: Vec<(Uid, u64)> = state
            .bans
            .iter()
            .map(|(uid, until)| (uid.clone(), until.duration_since(now).as_millis() as u64))
            .collect();
        drop(state);
        bans.sort_unstable();
        bans
    }

    /// How many bans are active.
    pub(crate) fn ban_count(&self) -> u64 {
        let now = Instant::now();
        let mut state = self.lock();
        state.bans.retain(|_, until| *until > now);
        state.bans.len() as u64
    }
}
