//! Copies this node's uid counts to its Redis hash `P:node:<id>`.
//!
//! The only writer of that hash, so writes never race each other: changes marked
//! by the registry are coalesced and written in one pipeline, a full rewrite
//! (`DEL` + `HSET`) follows every (re)connection, and leaving the cluster goes
//! through here too, so no late write can resurrect a node that left.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tracing::debug;

use pushd_proto::uid::Uid;

use super::{Cluster, Resume, Taken};
use crate::core::registry::{ChangedUids, Registry};

/// Uids per `HSET` in a full rewrite.
const CHUNK: usize = 1000;

/// What the presence writer can be asked to do.
pub enum PresenceCommand {
    /// Write pending changes now and say whether Redis took them.
    Flush(oneshot::Sender<Result<(), String>>),
    /// Rewrite the whole hash from the registry.
    Resync(oneshot::Sender<Result<(), String>>),
    /// Remove this node from Redis, announce it, and stop.
    Leave(oneshot::Sender<()>),
    /// A connection of the uid bound here: write pending changes, then take the uid's
    /// mailbox from Redis. Takes waiting together share one write and one script.
    Take(Uid, Resume, oneshot::Sender<Result<Taken, String>>),
}

/// Takes handled together at most.
const TAKE_BATCH: usize = 256;

/// Runs until [`PresenceCommand::Leave`].
pub async fn run(
    cluster: Arc<Cluster>,
    registry: Arc<Registry>,
    changed: Arc<ChangedUids>,
    mut commands: mpsc::Receiver<PresenceCommand>,
) {
    let changed = &*changed;
    let mut resync = true;
    // A command read while gathering takes, served next.
    let mut deferred = None;
    loop {
        let command = match deferred.take() {
            Some(command) => Some(command),
            None => tokio::select! {
                () = changed.notify.notified() => None,
                command = commands.recv() => match command {
                    Some(command) => Some(command),
                    None => return,
                },
            },
        };
        match command {
            Some(PresenceCommand::Take(uid, resume, done)) => {
                let mut takes = vec![(uid, resume, done)];
                while takes.len() < TAKE_BATCH {
                    match commands.try_recv() {
                        Ok(PresenceCommand::Take(uid, resume, done)) => {
                            takes.push((uid, resume, done));
                        }
                        Ok(other) => {
                            deferred = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let written = if cluster.lease_ok.load(std::sync::atomic::Ordering::Relaxed) {
                    write(&cluster, &registry, changed, &mut resync).await
                } else {
                    resync = true;
                    Err(cluster.unreachable_note(None))
                };
                let uids: Vec<(&Uid, Resume)> = takes.iter().map(|(uid, r, _)| (uid, *r)).collect();
                let taken = match written {
                    Ok(()) => cluster.take_mailboxes(&uids).await,
                    Err(err) => Err(err),
                };
                match taken {
                    Ok(taken) => {
                        for ((_, _, done), taken) in takes.into_iter().zip(taken) {
                            let _ = done.send(Ok(taken));
                        }
                    }
                    Err(err) => {
                        for (_, _, done) in takes {
                            let _ = done.send(Err(err.clone()));
                        }
                    }
                }
            }
            None => {
                // Without a lease there is nobody to tell; the lease task asks for a
                // full rewrite once Redis answers again.
                if cluster.lease_ok.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = write(&cluster, &registry, changed, &mut resync).await;
                } else {
                    resync = true;
                }
            }
            Some(PresenceCommand::Flush(done)) => {
                let result = if cluster.lease_ok.load(std::sync::atomic::Ordering::Relaxed) {
                    write(&cluster, &registry, changed, &mut resync).await
                } else {
                    resync = true;
                    Err(cluster.unreachable_note(None))
                };
                let _ = done.send(result);
            }
            Some(PresenceCommand::Resync(done)) => {
                resync = true;
                let _ = done.send(write(&cluster, &registry, changed, &mut resync).await);
            }
            Some(PresenceCommand::Leave(done)) => {
                let left: redis::RedisResult<()> = cluster
                    .leave_pipeline()
                    .query_async(&mut cluster.conn())
                    .await;
                if let Err(err) = left {
                    debug!(%err, "cluster: could not remove this node from Redis");
                }
                let _ = done.send(());
                return;
            }
        }
    }
}

/// Writes the changed uids (or everything, when `resync`); on failure the next
/// write is a full rewrite, since Redis may hold anything by then.
async fn write(
    cluster: &Cluster,
    registry: &Registry,
    changed: &ChangedUids,
    resync: &mut bool,
) -> Result<(), String> {
    let key = cluster.keys.node(&cluster.id);
    let mut pipe = redis::pipe();
    if *resync {
        // Taken first: anything that changes after the snapshot is marked again.
        changed.take();
        let all = registry.all_counts();
        pipe.atomic().del(&key).ignore();
        for chunk in all.chunks(CHUNK) {
            let pairs: Vec<(&str, u64)> = chunk.iter().map(|(uid, n)| (uid.as_str(), *n)).collect();
            pipe.hset_multiple(&key, &pairs).ignore();
        }
    } else {
        let uids = changed.take();
        if uids.is_empty() {
            return Ok(());
        }
        let counts = registry.counts(&uids);
        let mut set = Vec::new();
        let mut gone = Vec::new();
        for (uid, n) in uids.iter().zip(counts) {
            if n > 0 {
                set.push((uid.as_str(), n));
            } else {
                gone.push(uid.as_str());
            }
        }
        if !set.is_empty() {
            pipe.hset_multiple(&key, &set).ignore();
        }
        if !gone.is_empty() {
            pipe.hdel(&key, gone).ignore();
        }
    }
    match pipe.query_async::<()>(&mut cluster.conn()).await {
        Ok(()) => {
            *resync = false;
            Ok(())
        }
        Err(err) => {
            *resync = true;
            Err(format!("Redis: {err}"))
        }
    }
}
