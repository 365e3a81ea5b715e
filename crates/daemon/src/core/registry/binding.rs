//! The registry's part of a bind, all under its lock: bans and kicks in
//! progress, the per-uid limit, listing the connection under its uid, and the
//! hand-over of what the uid's mailbox holds for it, queued before anything
//! newer can be pushed. The rest of the story (who the client is, events, the
//! cluster step, counters) is `crate::bind`.

use std::sync::Arc;
use std::time::Instant;

use pushd_proto::uid::Uid;

use super::{PerUidPolicy, Registry};
use crate::core::conn::{CloseRequest, ConnId};
use crate::core::counters::Counter;
use crate::core::ids::{Since, gap_frame};
use crate::core::index::Entry;
use crate::core::mailbox::Handover;

/// Why a bind did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BindError {
    /// The connection is closing (kicked, shutting down) or already bound.
    Closing,
    /// The uid has `--max-connections-per-uid` connections and the policy
    /// is to refuse new ones.
    TooMany,
    /// The uid is banned (`pushctl kick --ban`).
    Banned,
    /// A cluster-wide kick of the uid is in progress; the reason is the kick's.
    Kicking(Arc<str>),
}

/// What a connection was handed when it bound: from this node's mailbox, or
/// in cluster mode from Redis's.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HandedOver {
    /// Messages that had waited for a connection (never delivered before).
    pub(crate) waiting: u64,
    /// Messages delivered before, handed again to a resuming `pushd.v2` client.
    pub(crate) resent: u64,
    /// Whether the client was told `!gap`.
    pub(crate) gap: bool,
    /// Messages found past their TTL and dropped on the way.
    pub(crate) expired: u64,
}

/// A bind that happened.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Bound {
    /// The registry's shared copy of the uid.
    pub(crate) uid: Uid,
    /// What this node's mailbox handed to the connection.
    pub(crate) handed: HandedOver,
}

impl Registry {
    /// Binds an open, unbound connection to `uid`. Over the per-uid limit,
    /// either refuses or asks the uid's oldest connection to close (4004), as
    /// the policy says. The uid's waiting messages, if any, are queued for it
    /// before anything else; a `pushd.v2` connection that gives `since` gets
    /// instead everything kept after it, `!gap` first if some of that is gone.
    /// Counts the refusals it decides; what was handed over is the caller's
    /// to count.
    pub(crate) fn bind(
        &self,
        id: ConnId,
        uid: &Uid,
        since: Option<Since>,
    ) -> Result<Bound, BindError> {
        let mut guard = self.lock();
        let state = &mut *guard;
        let Entry(handle) = state.conns.get(&id).ok_or(BindError::Closing)?;
        if handle.uid().is_some() || handle.close_request().is_some() || state.frozen {
            return Err(BindError::Closing);
        }
        let handle = handle.clone();
        let now = Instant::now();
        if state.is_banned(uid, now) {
            drop(guard);
            self.counters.bump(Counter::BannedRefused);
            return Err(BindError::Banned);
        }
        if let Some(reason) = state.kicking_reason(uid, now) {
            return Err(BindError::Kicking(reason));
        }
        if let Some((limit, policy)) = self.per_uid {
            let bound = state.uids.get(uid).map_or(0, |list| list.len());
            if bound >= limit {
                match policy {
                    PerUidPolicy::RefuseNew => {
                        drop(guard);
                        self.counters.bump(Counter::PerUidRefused);
                        return Err(BindError::TooMany);
                    }
                    PerUidPolicy::CloseOldest => {
                        // The oldest by id: lists keep no order.
                        let mut oldest: Vec<ConnId> = (state.uids.get(uid).into_iter().flatten())
                            .map(|h| h.id)
                            .collect();
                        oldest.sort_unstable();
                        oldest.truncate(bound + 1 - limit);
                        for old in oldest {
                            state.unbind(old, "replaced");
                            if let Some(Entry(old)) = state.conns.get(&old) {
                                old.request_close(CloseRequest::Replaced);
                            }
                            self.counters.bump(Counter::PerUidReplaced);
                        }
                    }
                }
            }
        }
        let key = state.uids.shared(uid).unwrap_or_else(|| uid.clone());
        handle.set_uid(key.clone());
        handle.set_listed(true);
        let handover = match &mut state.mailboxes {
            Some(mailboxes) => {
                let resumable_until = now + mailboxes.ttl();
                match (handle.v2, since) {
                    // The resume judges `since` before this bind refreshes the store.
                    (true, Some(since)) => mailboxes.resume(&key, since, now, resumable_until),
                    (true, None) => {
                        mailboxes.keep_resumable(&key, resumable_until);
                        mailboxes.take_waiting(&key, now)
                    }
                    (false, _) => mailboxes.take_waiting(&key, now),
                }
            }
            // No mailbox here: in cluster mode with a mailbox, Redis hands over (and
            // says whether there is a gap); with none at all a resume always has one.
            None => Handover {
                gap: handle.v2 && since.is_some() && !self.hold_at_bind,
                ..Handover::default()
            },
        };
        let handed = HandedOver {
            waiting: handover.waiting as u64,
            resent: (handover.messages.len() - handover.waiting) as u64,
            gap: handover.gap,
            expired: handover.expired as u64,
        };
        let mut frames = Vec::with_capacity(handover.messages.len() + 1);
        if handover.gap {
            frames.push(gap_frame());
        }
        frames.extend(handover.messages.into_iter().map(|(id, message)| {
            let frame = if handle.v2 {
                self.ids.frame(id, &message)
            } else {
                message
            };
            (id, frame)
        }));
        if !frames.is_empty() {
            handle.push_waiting(frames);
        }
        if self.hold_at_bind {
            // Before it is listed: nothing pushed to it can be written ahead of its mailbox.
            handle.hold();
        }
        // Told under the lock, so that every stream has the connection before
        // the `online` it causes.
        if let Some(events) = &state.events {
            events.connected(&key, handle.event_ref());
        }
        if state.uids.insert(handle) {
            state.groups.uid_online(&key, true);
            if let Some(events) = &state.events {
                events.first_bound(&key);
            }
        }
        drop(guard);
        self.mark_changed([key.clone()]);
        Ok(Bound { uid: key, handed })
    }
}
