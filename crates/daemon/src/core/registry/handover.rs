//! The registry's part of a live upgrade: the old process freezes it (pushes
//! and binds refused from then on, so what it saves is final) and thaws it if
//! the new process does not take over; the new process adopts each handed-over
//! connection as it was, bound or not, without a bind's side effects (no
//! mailbox hand-over, no events: to everyone else nothing happened).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use pushd_proto::uid::Uid;

use super::Registry;
use crate::core::conn::ConnHandle;
use crate::core::counters::Counter;
use crate::core::index::Entry;
use crate::core::saved::Saved;

impl Registry {
    /// Refuses pushes and binds from now on (a push answers `fail`), and
    /// returns what the registry holds beyond its connections, final.
    pub(crate) fn freeze(&self) -> Saved {
        self.lock().frozen = true;
        self.save()
    }

    /// Serves again, as before [`Registry::freeze`].
    pub(crate) fn thaw(&self) {
        self.lock().frozen = false;
    }

    /// Registers a connection handed over by the previous process, connected
    /// `connected_ms_ago` and idle for `idle_ms`, bound to `uid` if it was.
    pub(crate) fn adopt(
        &self,
        peer: SocketAddr,
        v2: bool,
        uid: Option<&Uid>,
        connected_ms_ago: u64,
        idle_ms: u64,
    ) -> Arc<ConnHandle> {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let now = self.clock.now_ms();
        // A connection older than this process: its times are clamped to the
        // clock's start (what `list` shows as idle grows from there).
        let connected = now.saturating_sub(connected_ms_ago);
        let handle = Arc::new(ConnHandle::new(id, v2, peer, connected));
        handle.touch(now.saturating_sub(idle_ms));
        let mut guard = self.lock();
        let state = &mut *guard;
        state.conns.insert(Entry(handle.clone()));
        if let Some(uid) = uid {
            let key = state.uids.shared(uid).unwrap_or_else(|| uid.clone());
            handle.set_uid(key);
            handle.set_listed(true);
            if let Some(mailboxes) = &mut state.mailboxes
                && v2
            {
                let until = std::time::Instant::now() + mailboxes.ttl();
                mailboxes.keep_resumable(uid, until);
            }
            if state.uids.insert(handle.clone()) {
                state.groups.uid_online(uid, true);
            }
        }
        drop(guard);
        self.counters.bump(Counter::ConnectionsOpened);
        self.mark_changed(uid.cloned());
        handle
    }
}
