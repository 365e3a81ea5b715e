//! What the bus may have lost while the subscriber was away (Redis cut the
//! connection, or restarted): before serving the new subscription, every bound
//! `pushd.v2` connection here is held; then each gets, from its uid's stream in
//! Redis, every message after the newest it was given (`!gap` first when that
//! is no longer all there), in front of what arrived meanwhile. Raw
//! connections have no place to catch up from.
//!
//! And what was queued for this node's uids while the cluster took it for dead
//! (its lease ran out and it was reaped, but it was only paused or cut off, its
//! pages open): when it joins again, each raw connection here is held, and its
//! uid's mailbox is taken as a bind takes it and handed to every raw
//! connection of the uid here, in front of what arrived meanwhile ([`raw`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use pushd_proto::uid::Uid;

use tracing::debug;

use super::{Bind, Cluster, Resume};
use crate::core::conn::ConnHandle;
use crate::core::counters::Counter;
use crate::core::ids::{self, gap_frame};
use crate::core::payload::Payload;
use crate::core::registry::Registry;

/// Connections caught up with one script call.
const BATCH: usize = 256;

/// Catches up `held` (held by [`Registry::hold_connections`]) and releases
/// each, whatever Redis answers.
pub(super) async fn run(
    cluster: Arc<Cluster>,
    registry: Arc<Registry>,
    held: Vec<Arc<ConnHandle>>,
) {
    for chunk in held.chunks(BATCH) {
        // A connection whose bind took nothing from Redis has no place to
        // catch up from: released as it is.
        let (placed, unplaced): (Vec<_>, Vec<_>) = chunk
            .iter()
            .partition(|h| h.catch_up_place().is_some() && h.uid().is_some());
        for handle in unplaced {
            handle.release(Vec::new(), None);
        }
        let binds: Vec<(&Arc<ConnHandle>, Bind)> = (placed.into_iter())
            .filter_map(|handle| {
                let bind = Bind {
                    uid: handle.uid()?.clone(),
                    connection: handle.id,
                    resume: Resume::CatchUp {
                        n: handle.catch_up_place()?,
                    },
                    at: Instant::now(),
                };
                Some((handle, bind))
            })
            .collect();
        let asked: Vec<&Bind> = binds.iter().map(|(_, bind)| bind).collect();
        let taken = match cluster.take_mailboxes(&asked).await {
            Ok(taken) => taken,
            Err(err) => {
                debug!(%err, "cluster: could not catch up the pushd.v2 connections");
                Vec::new()
            }
        };
        let mut answers = taken.into_iter();
        for (handle, _) in &binds {
            let Some(taken) = answers.next() else {
                // Not known: what it lacks may be lost.
                registry.counters().bump(Counter::ResumeGaps);
                handle.release(vec![gap_frame()], None);
                continue;
            };
            let mut frames = Vec::with_capacity(taken.messages.len() + 1);
            if taken.gap {
                registry.counters().bump(Counter::ResumeGaps);
                frames.push(gap_frame());
            }
            for (id, payload) in taken.messages {
                let Ok(payload) = String::from_utf8(payload) else {
                    continue;
                };
                let n = ids::number_of(&id).unwrap_or(0);
                handle.note_number(n);
                frames.push((n, ids::cluster_frame(&id, &Payload::from(payload))));
            }
            let resent = (frames.len() - usize::from(taken.gap)) as u64;
            registry.counters().add(Counter::MailboxResent, resent);
            registry.counters().add(Counter::MessagesDelivered, resent);
            handle.note_place(taken.place);
            let through = frames.last().map(|(n, _)| *n).filter(|n| *n > 0);
            handle.release(frames, through);
        }
    }
}

/// Hands the mailboxes of the uids of `held` (raw connections held by
/// [`Registry::hold_connections`]) to them, each to every raw connection of its
/// uid here, and releases each, whatever Redis answers.
pub(super) async fn raw(
    cluster: Arc<Cluster>,
    registry: Arc<Registry>,
    held: Vec<Arc<ConnHandle>>,
) {
    let mut by_uid: HashMap<Uid, Vec<Arc<ConnHandle>>> = HashMap::new();
    for handle in held {
        match handle.uid().cloned() {
            Some(uid) => by_uid.entry(uid).or_default().push(handle),
            None => handle.release(Vec::new(), None),
        }
    }
    let by_uid: Vec<(Uid, Vec<Arc<ConnHandle>>)> = by_uid.into_iter().collect();
    for chunk in by_uid.chunks(BATCH) {
        let binds: Vec<Bind> = (chunk.iter())
            .map(|(uid, handles)| Bind {
                uid: uid.clone(),
                connection: handles[0].id,
                resume: Resume::Raw,
                at: Instant::now(),
            })
            .collect();
        let asked: Vec<&Bind> = binds.iter().collect();
        let taken = match cluster.take_mailboxes(&asked).await {
            Ok(taken) => taken,
            Err(err) => {
                // What waits stays in Redis, for the uid's next bind.
                debug!(%err, "cluster: could not take what was queued while this node was away");
                Vec::new()
            }
        };
        let mut answers = taken.into_iter();
        for ((_, handles), bind) in chunk.iter().zip(&binds) {
            let Some(taken) = answers.next() else {
                for handle in handles {
                    handle.release(Vec::new(), None);
                }
                continue;
            };
            let messages: Vec<(u64, Payload)> = (taken.messages.into_iter())
                .filter_map(|(id, payload)| {
                    let payload = String::from_utf8(payload).ok()?;
                    Some((ids::number_of(&id).unwrap_or(0), Payload::from(payload)))
                })
                .collect();
            let handed = messages.len() as u64;
            let counters = registry.counters();
            counters.add(Counter::MailboxDelivered, handed);
            counters.add(Counter::MessagesDelivered, handed * handles.len() as u64);
            counters.add(Counter::MailboxExpired, taken.expired);
            for handle in handles {
                handle.release(messages.clone(), None);
            }
            if (handed > 0 || taken.expired > 0)
                && let Err(err) = cluster.ack_mailbox(bind, taken.last).await
            {
                debug!(uid = %bind.uid, %err, "cluster: could not confirm a mailbox handed over");
            }
        }
    }
}
