//! Copies this node's uid counts to its Redis hash `P:node:<id>`, and says
//! which uids that made online in the whole cluster (`P:gone` keeps the ones
//! that went offline until their grace passes; `lease` announces those).
//!
//! The only writer of that hash, so writes never race each other: changes marked
//! by the registry are coalesced and written in one pipeline, a full rewrite
//! (`DEL` + `HSET`) follows every (re)connection, and leaving the cluster goes
//! through here too, so no late write can resurrect a node that left.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tracing::debug;

use pushd_proto::uid::Uid;

use super::channels;
use super::{Bind, Cluster, Taken};
use crate::core::events::Events;
use crate::core::registry::{ChangedUids, Held, Registry};

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
    Take(Bind, oneshot::Sender<Result<Taken, String>>),
    /// A new subscriber connection ([`Cluster::subscription`]): subscribe this
    /// node's channels and its uids' (`channels`) on it, and keep the uids' in
    /// line from now on.
    Subscribe(oneshot::Sender<Result<(), String>>),
}

/// Takes handled together at most.
const TAKE_BATCH: usize = 256;

/// Runs until [`PresenceCommand::Leave`].
pub async fn run(
    cluster: Arc<Cluster>,
    registry: Arc<Registry>,
    changed: Arc<ChangedUids>,
    events: Arc<Events>,
    mut commands: mpsc::Receiver<PresenceCommand>,
) {
    let changed = &*changed;
    let mut writer = Writer {
        cluster: &cluster,
        registry: &registry,
        changed,
        events: &events,
        resync: true,
    };
    // A command read while gathering takes, served next.
    let mut deferred = None;
    loop {
        let command = match deferred.take() {
            Some(command) => Some(command),
            None => tokio::select! {
                () = changed.notify.notified() => None,
                () = events.outgoing_ready() => None,
                command = commands.recv() => match command {
                    Some(command) => Some(command),
                    None => return,
                },
            },
        };
        match command {
            Some(PresenceCommand::Take(bind, done)) => {
                let mut takes = vec![(bind, done)];
                while takes.len() < TAKE_BATCH {
                    match commands.try_recv() {
                        Ok(PresenceCommand::Take(bind, done)) => {
                            takes.push((bind, done));
                        }
                        Ok(other) => {
                            deferred = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let written = writer.write_if_leased().await;
                let binds: Vec<&Bind> = takes.iter().map(|(bind, _)| bind).collect();
                let taken = match written {
                    Ok(()) => cluster.take_mailboxes(&binds).await,
                    Err(err) => Err(err),
                };
                match taken {
                    Ok(taken) => {
                        for ((_, done), taken) in takes.into_iter().zip(taken) {
                            let _ = done.send(Ok(taken));
                        }
                    }
                    Err(err) => {
                        for (_, done) in takes {
                            let _ = done.send(Err(err.clone()));
                        }
                    }
                }
            }
            None => {
                let _ = writer.write_if_leased().await;
            }
            Some(PresenceCommand::Flush(done)) => {
                let _ = done.send(writer.write_if_leased().await);
            }
            Some(PresenceCommand::Subscribe(done)) => {
                let held = (registry.all_counts().into_iter())
                    .filter(|(_, held)| held.raw)
                    .map(|(uid, _)| uid)
                    .collect();
                let _ = done.send(channels::attach(&cluster, held).await);
            }
            Some(PresenceCommand::Resync(done)) => {
                writer.resync = true;
                let _ = done.send(writer.write().await);
            }
            Some(PresenceCommand::Leave(done)) => {
                // The last `disconnect`s go before the `offline`s that leaving causes.
                let _ = super::events::write(&cluster, &events).await;
                let grace = events.grace().as_millis() as u64;
                let left: redis::RedisResult<()> = cluster
                    .leave_pipeline(grace)
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

/// The presence writer's state, and what it writes from.
struct Writer<'a> {
    cluster: &'a Cluster,
    registry: &'a Registry,
    changed: &'a ChangedUids,
    events: &'a Events,
    /// The next write rewrites everything.
    resync: bool,
}

impl Writer<'_> {
    async fn write(&mut self) -> Result<(), String> {
        let (cluster, registry, events) = (self.cluster, self.registry, self.events);
        write(cluster, registry, self.changed, events, &mut self.resync).await
    }

    /// Without a lease there is nobody to tell: the lease task asks for a full
    /// rewrite once Redis answers again.
    async fn write_if_leased(&mut self) -> Result<(), String> {
        if self
            .cluster
            .lease_ok
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            self.write().await
        } else {
            self.resync = true;
            Err(self.cluster.unreachable_note(None))
        }
    }
}

/// Writes the changed uids (or everything, when `resync`); on failure the next
/// write is a full rewrite, since Redis may hold anything by then. This node's
/// events go first; the uids that came online in the whole cluster with it are
/// told by the script.
async fn write(
    cluster: &Cluster,
    registry: &Registry,
    changed: &ChangedUids,
    events: &Events,
    resync: &mut bool,
) -> Result<(), String> {
    let key = cluster.keys.node(&cluster.id);
    let counts: Vec<(Uid, Held)> = if *resync {
        // Taken first: anything that changes after the snapshot is marked again.
        changed.take();
        let mut all = registry.all_counts();
        // What Redis holds for this node and the registry no longer has goes, so that
        // its uids can go offline (a rewrite compares; it never deletes blindly).
        let held: Vec<String> = match redis::cmd("HKEYS")
            .arg(&key)
            .query_async(&mut cluster.conn())
            .await
        {
            Ok(held) => held,
            Err(err) => return Err(format!("Redis: {err}")),
        };
        let here: std::collections::HashSet<&str> =
            all.iter().map(|(uid, _)| uid.as_str()).collect();
        let gone: Vec<Uid> = held
            .iter()
            .filter(|uid| !here.contains(uid.as_str()))
            .filter_map(|uid| Uid::parse(uid).ok())
            .collect();
        all.extend(gone.into_iter().map(|uid| (uid, Held::default())));
        all
    } else {
        let uids = changed.take();
        let counts = registry.counts(&uids);
        uids.into_iter().zip(counts).collect()
    };
    // Taken after the counts: a bind tells its `connect` before it marks its
    // uid changed, so every connection counted here has its event in these.
    // And right after them: a `disconnect` taken later could be written before
    // the `online` of a count that still has its connection.
    let outgoing = events.outgoing();
    // The uids' channels alongside their presence, both before a bind's take
    // (which follows this), without a round trip more for the binds waiting.
    let raw = counts.iter().map(|(uid, held)| (uid, held.raw));
    let ((), stored) = tokio::join!(
        channels::update(cluster, raw),
        store(cluster, events, &counts, outgoing, resync)
    );
    stored
}

/// Writes this node's `outgoing` events and the `counts` of its uids.
async fn store(
    cluster: &Cluster,
    events: &Events,
    counts: &[(Uid, Held)],
    mut outgoing: Vec<crate::core::events::Outgoing>,
    resync: &mut bool,
) -> Result<(), String> {
    if counts.is_empty() && outgoing.is_empty() {
        return Ok(());
    }
    // This node's events go first, the last of them in the same round trip:
    // a `connect` before the `online` it causes. Many (pages talking fast)
    // go a thousand a round trip, each well within the timeout.
    while outgoing.len() > super::events::CHUNK {
        let rest = outgoing.split_off(super::events::CHUNK);
        if let Err(err) = super::events::write_these(cluster, events, outgoing).await {
            events.put_back(rest);
            *resync = true;
            return Err(err);
        }
        outgoing = rest;
    }
    let mut pipe = redis::pipe();
    super::events::add(&mut pipe, cluster, &outgoing);
    if counts.is_empty() {
        if let Err(err) = pipe.query_async::<()>(&mut cluster.conn()).await {
            events.put_back(outgoing);
            *resync = true;
            return Err(format!("Redis: {err}"));
        }
        *resync = false;
        return Ok(());
    }
    let grace = events.grace().as_millis() as u64;
    for chunk in counts.chunks(CHUNK) {
        let mut script = cluster.scripts.presence.key(cluster.keys.nodes());
        script
            .arg(cluster.keys.prefix())
            .arg(&cluster.id)
            .arg(grace)
            .arg(&cluster.name)
            .arg(cluster.events_retain);
        for (uid, held) in chunk {
            script.arg(uid.as_str()).arg(held.connections);
        }
        pipe.invoke_script(&script).ignore();
        let written = pipe.query_async::<()>(&mut cluster.conn()).await;
        pipe = redis::pipe();
        if let Err(err) = written {
            // Whether the events were added is unknown: they go again (a
            // consumer may see one twice, with two ids) rather than never.
            events.put_back(std::mem::take(&mut outgoing));
            *resync = true;
            return Err(format!("Redis: {err}"));
        }
        outgoing.clear();
    }
    *resync = false;
    Ok(())
}
