//! [`Node`]: the narrow state every request and every push needs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::cluster::Cluster;
use crate::core::clock::Clock;
use crate::core::counters::Counters;
use crate::core::registry::Registry;

/// This node: its registry and counters, its link to the cluster (if any), and
/// what `stats` says about it.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) registry: Arc<Registry>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) clock: Clock,
    /// With `--cluster`.
    pub(crate) cluster: Option<Arc<Cluster>>,
    /// Largest message `send` and `broadcast` accept (`--max-message-size`).
    pub(crate) max_message_size: usize,
    /// The bound WebSocket address (port 0 resolved).
    pub(crate) ws_addr: SocketAddr,
    /// The bound text-port address.
    pub(crate) text_addr: SocketAddr,
    /// The admin socket's path.
    pub(crate) socket: PathBuf,
}

impl Node {
    /// `--node-name` in cluster mode.
    pub(crate) fn name(&self) -> Option<&str> {
        self.cluster.as_deref().map(Cluster::name)
    }
}
