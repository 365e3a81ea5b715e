//! This node's lease in `P:nodes`, and the reaping of nodes whose lease ran out;
//! with Sentinel, following the master first at every renewal.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Cluster;
use super::presence::PresenceCommand;
use crate::core::counters::Counter;
use crate::core::events::Events;
use crate::core::registry::Registry;

/// Renews the lease every third of its length and reaps dead nodes, until cancelled.
/// After any failure (and at start) the presence hash is rewritten in full: this heals
/// an empty Redis, an old snapshot, and a node that was reaped while it was cut off.
pub async fn run(
    cluster: Arc<Cluster>,
    registry: Arc<Registry>,
    events: Arc<Events>,
    token: CancellationToken,
) {
    let mut ticker = tokio::time::interval(cluster.lease / 3);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut joined = false;
    let mut outage = false;
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            _ = ticker.tick() => {}
        }
        // With Sentinel: a master that moved is joined again, as Redis after an
        // outage (scripts loaded, presence rewritten; the subscriber follows).
        if cluster.follow_master().await {
            cluster.lease_ok.store(false, Ordering::Relaxed);
        }
        let renewed: redis::RedisResult<i64> = cluster
            .scripts
            .renew
            .key(cluster.keys.nodes())
            .key(cluster.keys.settle())
            .key(cluster.keys.channel_nodes())
            .arg(&cluster.id)
            .arg(cluster.lease.as_millis() as u64)
            .arg(u8::from(joined))
            .invoke_async(&mut cluster.conn())
            .await;
        match renewed {
            Ok(lapsed) => {
                // Set before the rewrite, so that a uid change arriving meanwhile is
                // written too instead of waiting for the next change.
                let was_ok = cluster.lease_ok.swap(true, Ordering::Relaxed);
                // The lease was missing or had run out: a new Redis, the same after
                // an outage, or a replica promoted by a failover.
                let rejoin = lapsed == 1 || !was_ok;
                if rejoin {
                    // It may have forgotten them.
                    let _ = cluster.scripts.load(&mut cluster.conn()).await;
                }
                if rejoin && resync(&cluster).await.is_err() {
                    cluster.lease_ok.store(false, Ordering::Relaxed);
                    continue;
                }
                if lapsed == 1 && joined && cluster.mailbox_on() {
                    // Taken for dead meanwhile: pushes to its uids were queued
                    // beside its open pages. Now that its presence is back they
                    // reach them, in front of what arrives from now on.
                    let held = registry.hold_connections(false);
                    let (cluster, registry) = (cluster.clone(), registry.clone());
                    tokio::spawn(super::catch_up::raw(cluster, registry, held));
                }
                if !joined {
                    joined = true;
                    cluster.joined.store(true, Ordering::Relaxed);
                    info!(node = %cluster.name, id = %cluster.id, redis = %cluster.redis_display,
                          "cluster: joined");
                } else if outage {
                    info!(redis = %cluster.redis_display, "cluster: Redis reachable again; presence rewritten");
                }
                outage = false;
            }
            Err(err) => {
                cluster.lease_ok.store(false, Ordering::Relaxed);
                if !outage {
                    outage = true;
                    warn!(redis = %cluster.redis_display, %err,
                          "cluster: Redis unreachable; local connections keep working, pushes to other nodes answer fail");
                }
                continue;
            }
        }
        let reaped: redis::RedisResult<(Vec<String>, Vec<String>)> = cluster
            .scripts
            .reap
            .key(cluster.keys.nodes())
            .arg(cluster.keys.prefix())
            .arg(events.grace().as_millis() as u64)
            .arg(&cluster.name)
            .arg(cluster.events_retain)
            .arg(cluster.lease.as_millis() as u64)
            .invoke_async(&mut cluster.conn())
            .await;
        if cluster.mailbox.is_some() {
            // Mailboxes whose key expired give their bytes back to the memory bound.
            let _: redis::RedisResult<u64> = cluster
                .scripts
                .reap_mailboxes
                .arg(cluster.keys.prefix())
                .invoke_async(&mut cluster.conn())
                .await;
        }
        cluster.health.check(&cluster, registry.counters()).await;
        // Group memberships whose TTL passed, a thousand a call.
        while let Ok(ended @ 1..) = cluster.expire_groups().await {
            (registry.counters()).add(Counter::GroupMembershipsExpired, ended);
            if ended < 1000 {
                break;
            }
        }
        // The uids that went offline with it are in the events stream.
        let (dead, gone) = reaped.unwrap_or_default();
        if !gone.is_empty() {
            cluster.cut_subscribers(&gone).await;
        }
        if !dead.is_empty() {
            info!(nodes = ?dead, "cluster: reaped nodes whose lease ran out");
            cluster
                .pending
                .drop_nodes(&|node| dead.iter().any(|d| d == node));
        }
    }
}

impl Cluster {
    /// Cuts the subscriber connections of nodes reaped a while ago that did not
    /// come back (found by their names in `CLIENT LIST`): one left open by a
    /// machine that is gone would be counted on its uids' channels, and the
    /// pushes Redis hands it answered `ok`, until Redis noticed (minutes).
    async fn cut_subscribers(&self, nodes: &[String]) {
        let listed: redis::RedisResult<String> = redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(&mut self.conn())
            .await;
        let listed = match listed {
            Ok(listed) => listed,
            Err(err) => {
                warn!(%err, "cluster: cannot list Redis's clients to cut a dead node's subscription");
                return;
            }
        };
        let names: Vec<String> = (nodes.iter())
            .map(|id| self.keys.subscriber_name(id))
            .collect();
        for line in listed.lines() {
            let field = |key: &str| {
                (line.split(' ')).find_map(|field| field.strip_prefix(key)?.strip_prefix('='))
            };
            let (Some(id), Some(name)) = (field("id"), field("name")) else {
                continue;
            };
            if !names.iter().any(|n| n == name) {
                continue;
            }
            let cut: redis::RedisResult<()> = (redis::cmd("CLIENT").arg("KILL").arg("ID").arg(id))
                .query_async(&mut self.conn())
                .await;
            match cut {
                Ok(()) => info!(
                    subscriber = name,
                    "cluster: cut the subscription of a node reaped a while ago"
                ),
                Err(err) => {
                    warn!(%err, subscriber = name, "cluster: cannot cut the subscription of a dead node")
                }
            }
        }
    }
}

/// Asks the presence writer for a full rewrite and waits for it.
async fn resync(cluster: &Cluster) -> Result<(), String> {
    let (done, result) = oneshot::channel();
    cluster
        .presence
        .send(PresenceCommand::Resync(done))
        .await
        .map_err(|_| "stopped".to_owned())?;
    result.await.unwrap_or_else(|_| Err("stopped".into()))
}
