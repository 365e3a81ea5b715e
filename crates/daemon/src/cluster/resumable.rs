//! Keeps the uids of this node's `pushd.v2` connections resumable in Redis: their
//! `P:v2:<uid>` hash lapses a TTL (plus [`KEEPALIVE_MS`]) after its last refresh, so
//! while such a connection is bound this task refreshes it, however long the uid
//! goes without a push.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::Cluster;
use super::scripts::KEEPALIVE_MS;
use crate::core::registry::Registry;

/// Runs until cancelled.
pub async fn run(cluster: Arc<Cluster>, registry: Arc<Registry>, token: CancellationToken) {
    let period = Duration::from_millis(KEEPALIVE_MS / 2);
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            () = tokio::time::sleep(period) => {}
        }
        let uids = registry.v2_uids();
        if uids.is_empty() || !cluster.is_up() {
            continue;
        }
        if let Err(err) = cluster.keep_resumable(&uids).await {
            debug!(%err, "cluster: could not keep the pushd.v2 uids resumable");
        }
    }
}
