//! Pushes and broadcasts over this node's connections: one shared allocation
//! per message (and one `ID PAYLOAD` frame for all `pushd.v2` recipients),
//! queued under the registry's lock, written to the sockets after it.
//! What is not delivered goes to the mailbox here; `crate::push` adds the
//! cluster step and the answer.

use std::sync::Arc;
use std::time::Instant;

use crate::core::payload::Payload;
use pushd_proto::uid::Uid;
use smallvec::SmallVec;

use super::{Registry, State};
use crate::core::conn::{ConnHandle, ConnId, QueueLimits};
use crate::core::counters::Counter;
use crate::core::ids::{self, MessageId};
use crate::core::index::Entry;
use crate::core::mailbox::Stored;

/// What became of a push to one uid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// This many connections took it (at least one).
    Delivered(u64),
    /// No connection here; it waits in the uid's mailbox.
    Queued,
    /// No connection here, and not kept: mailbox off or full, uid banned, or
    /// the push was transient.
    NotKept,
    /// No connection here, not transient, not banned, and no mailbox on this
    /// node: in cluster mode the uid's mailbox in Redis may keep it.
    Offline,
}

/// A push to a uid as this node carried it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PushedHere {
    /// What became of it here.
    pub(crate) pushed: Pushed,
    /// Of the connections counted in `pushed`, the `pushd.v2` ones left to the
    /// bus (cluster mode): they get the push from there, with the cluster's
    /// id, and have it only if Redis routes it.
    pub(crate) by_bus: u64,
}

/// How one push went over a set of connections.
#[derive(Debug, Default)]
pub(super) struct Offered {
    /// Connections that took it.
    pub(super) delivered: u64,
    /// Those whose queue was full: slow consumers, to be disconnected.
    slow: Vec<ConnId>,
    /// Whether this pusher writes to the sockets itself (see `ConnHandle`).
    direct: bool,
    /// Connections it queued for and will write to, once the registry's lock
    /// is released: a syscall per recipient must not hold everyone back.
    to_write: SmallVec<[Arc<ConnHandle>; 2]>,
}

impl Offered {
    /// A pusher that writes to the sockets itself: one push to a uid. A
    /// broadcast leaves its writes to the connections' tasks, so that every
    /// worker writes its share.
    fn direct() -> Self {
        Offered {
            direct: true,
            ..Offered::default()
        }
    }

    /// Queues `frame` (message `id`) for `handle`, or notes it as slow.
    fn queue(
        &mut self,
        handle: &Arc<ConnHandle>,
        id: MessageId,
        frame: &Payload,
        limits: QueueLimits,
    ) {
        let direct = self.direct && handle.writes_directly();
        match handle.try_push(id, frame, limits, !direct) {
            Ok(()) => {
                self.delivered += 1;
                if direct {
                    self.to_write.push(handle.clone());
                }
            }
            Err(()) => self.slow.push(handle.id),
        }
    }

    /// Writes what was queued for the direct connections; call without the
    /// registry's lock.
    fn write(&mut self) {
        for handle in self.to_write.drain(..) {
            handle.write_or_wake();
        }
    }
}

impl Registry {
    /// Queues `message` for every connection of `uid`; with none (or none that
    /// could take it), keeps it in the uid's mailbox unless `transient`. In
    /// cluster mode the uid's `pushd.v2` connections are left to the bus.
    pub(crate) fn push(&self, uid: &Uid, message: &Payload, transient: bool) -> PushedHere {
        let mut guard = self.lock();
        let state = &mut *guard;
        if state.frozen {
            // Handed to the next process already: not taken here (`fail`).
            return PushedHere {
                pushed: Pushed::NotKept,
                by_bus: 0,
            };
        }
        // Taken under the lock: ids of one uid increase in push order.
        let id = self.ids.next();
        let handles = state.uids.get(uid.as_str()).into_iter().flatten();
        let by_bus = self.ids.cluster_wide();
        let v2_left = if by_bus {
            handles.clone().filter(|h| h.v2).count() as u64
        } else {
            0
        };
        let handles = handles.filter(|h| !(by_bus && h.v2));
        let (mut offered, any_v2) = self.offer(handles, id, message, Offered::direct());
        let (delivered, slow) = (offered.delivered, std::mem::take(&mut offered.slow));
        let delivered_or_due = delivered + v2_left;
        let unbound = state.disconnect_slow(&slow);
        let pushed = if delivered_or_due > 0 {
            if let Some(mailboxes) = &mut state.mailboxes {
                let now = Instant::now();
                if any_v2 {
                    mailboxes.keep_resumable(uid, now + mailboxes.ttl());
                }
                mailboxes.retain(uid, id, message, now);
            }
            Pushed::Delivered(delivered_or_due)
        } else if transient || state.is_banned(uid, Instant::now()) {
            Pushed::NotKept
        } else {
            self.keep(state, uid, id, message)
        };
        drop(guard);
        offered.write();
        self.counters.add(Counter::MessagesDelivered, delivered);
        self.counters.add(Counter::SlowConsumers, slow.len() as u64);
        self.mark_changed(unbound);
        PushedHere {
            pushed,
            by_bus: v2_left,
        }
    }

    /// Queues a push that came over the bus for the connections here of
    /// `uids` (one uid, or the members of a group this node holds): with `id`,
    /// `pushd.v2` ones get `ID PAYLOAD`, one frame for all (none of it with
    /// `!v2`); raw ones get the message unless `!raw`. Nothing is kept: in cluster mode the mailbox is
    /// in Redis. Returns how many took it (or had it already).
    ///
    /// A `pushd.v2` connection that was given message N or a later one already
    /// (handed over from Redis at its bind, while this push was on its way)
    /// has it: it is not written twice. Pushes reach a node in the cluster's
    /// order, so nothing newer is skipped.
    pub(crate) fn push_from_bus(
        &self,
        uids: &[Uid],
        message: &Payload,
        id: Option<&str>,
        raw: bool,
        v2: bool,
    ) -> u64 {
        let n = id.and_then(ids::number_of).unwrap_or(0);
        let mut v2_frame = None;
        // One uid's connections are written by the pusher; a group's many by
        // their own tasks, as a broadcast's are.
        let mut offered = match uids.len() {
            1 => Offered::direct(),
            _ => Offered::default(),
        };
        {
            let state = self.lock();
            let handles =
                (uids.iter()).flat_map(|uid| state.uids.get(uid.as_str()).into_iter().flatten());
            for handle in handles {
                let frame = match (handle.v2, id) {
                    (true, _) if !v2 => continue,
                    (true, Some(_)) if n > 0 && n <= handle.last_number() => {
                        offered.delivered += 1;
                        continue;
                    }
                    (true, Some(id)) => {
                        handle.note_number(n);
                        &*v2_frame.get_or_insert_with(|| ids::cluster_frame(id, message))
                    }
                    // A node that gave no id is older than the cluster's ids; a
                    // pushd.v2 client then places nothing, and resumes with a gap.
                    (true, None) => &*v2_frame.get_or_insert_with(|| self.ids.frame(n, message)),
                    (false, _) if raw => message,
                    (false, _) => continue,
                };
                offered.queue(handle, n, frame, self.queue);
            }
        }
        self.finish_push(offered)
    }

    /// Holds every listed `pushd.v2` connection (with `v2`, else every raw
    /// one) that is not held already, and returns them: what reaches them waits
    /// until each is released.
    pub(crate) fn hold_connections(&self, v2: bool) -> Vec<Arc<ConnHandle>> {
        let state = self.lock();
        (state.uids.connections())
            .filter(|h| h.v2 == v2 && !h.is_held())
            .inspect(|h| h.hold())
            .cloned()
            .collect()
    }

    /// The uids that have a `pushd.v2` connection here.
    pub(crate) fn v2_uids(&self) -> Vec<Uid> {
        let state = self.lock();
        (state.uids.iter())
            .filter(|(_, handles)| handles.iter().any(|h| h.v2))
            .map(|(uid, _)| uid.clone())
            .collect()
    }

    /// Offers `message` to `uid`'s mailbox, counting and (throttled) logging
    /// what its bounds did to it.
    pub(super) fn keep(
        &self,
        state: &mut State,
        uid: &Uid,
        id: MessageId,
        message: &Payload,
    ) -> Pushed {
        let Some(mailboxes) = &mut state.mailboxes else {
            return Pushed::Offline;
        };
        match mailboxes.store(uid, id, message, Instant::now()) {
            Stored::Queued { dropped } => {
                self.counters.bump(Counter::MailboxStored);
                if dropped > 0 {
                    self.counters.add(Counter::MailboxDropped, dropped as u64);
                    state.mailbox_warnings.0.warn(&format_args!(
                        "the mailbox of {uid} is full ({dropped} dropped)"
                    ));
                }
                Pushed::Queued
            }
            Stored::OverMemory => {
                self.counters.bump(Counter::MailboxRefused);
                state
                    .mailbox_warnings
                    .1
                    .warn(&"the mailboxes together are at their memory limit");
                Pushed::NotKept
            }
        }
    }

    /// Queues `message` for bound connection `id` alone (as a broadcast
    /// frames it: a `pushd.v2` one gets an id, kept nowhere); whether it took it.
    pub(crate) fn push_to_connection(&self, id: ConnId, message: &Payload) -> bool {
        let handle = {
            let state = self.lock();
            match state.conns.get(&id) {
                Some(Entry(handle)) if handle.is_listed() && !state.frozen => handle.clone(),
                _ => return false,
            }
        };
        let n = match self.ids.cluster_wide() {
            true => handle.last_number(),
            false => self.ids.next(),
        };
        let frame = match (handle.v2, self.ids.cluster_wide()) {
            (false, _) => message.clone(),
            (true, true) => ids::broadcast_frame(n, message),
            (true, false) => self.ids.frame(n, message),
        };
        let mut offered = Offered::direct();
        offered.queue(&handle, n, &frame, self.queue);
        self.finish_push(offered) > 0
    }

    /// Queues `message` for every bound connection; returns how many took it.
    ///
    /// In cluster mode a broadcast has no number of the cluster's: `pushd.v2`
    /// connections get it under the number of the last message they were given
    /// ([`ids::broadcast_frame`]).
    pub(crate) fn broadcast(&self, message: &Payload) -> u64 {
        let handles: Vec<Arc<ConnHandle>> = {
            let state = self.lock();
            if state.frozen {
                return 0;
            }
            state.uids.connections().cloned().collect()
        };
        if !self.ids.cluster_wide() {
            let id = self.ids.next();
            let offered = Offered::default();
            return self.finish_push(self.offer(&handles, id, message, offered).0);
        }
        let (raw, v2): (Vec<_>, Vec<_>) = handles.iter().partition(|h| !h.v2);
        let (mut offered, _) = self.offer(raw, 0, message, Offered::default());
        for handle in v2 {
            let n = handle.last_number();
            offered.queue(handle, n, &ids::broadcast_frame(n, message), self.queue);
        }
        self.finish_push(offered)
    }

    /// Queues message `id` for each of `handles`: the bare message, or for
    /// `pushd.v2` connections `ID PAYLOAD`, encoded once for all of them. Returns
    /// how many took it, those that could not (slow consumers), and whether a
    /// `pushd.v2` connection was among them.
    pub(super) fn offer<'a>(
        &self,
        handles: impl IntoIterator<Item = &'a Arc<ConnHandle>>,
        id: MessageId,
        message: &Payload,
        mut offered: Offered,
    ) -> (Offered, bool) {
        let mut v2_frame = None;
        for handle in handles {
            let frame = if handle.v2 {
                &*v2_frame.get_or_insert_with(|| self.ids.frame(id, message))
            } else {
                message
            };
            offered.queue(handle, id, frame, self.queue);
        }
        (offered, v2_frame.is_some())
    }

    /// Writes what a push queued for direct connections, counts it, and
    /// disconnects the connections that could not take it.
    pub(super) fn finish_push(&self, mut offered: Offered) -> u64 {
        offered.write();
        let Offered {
            delivered, slow, ..
        } = offered;
        self.counters.add(Counter::MessagesDelivered, delivered);
        if !slow.is_empty() {
            let unbound = self.lock().disconnect_slow(&slow);
            self.counters.add(Counter::SlowConsumers, slow.len() as u64);
            self.mark_changed(unbound);
        }
        delivered
    }
}
