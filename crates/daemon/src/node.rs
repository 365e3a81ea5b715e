//! [`Node`]: the narrow state every request and every push needs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::cluster::Cluster;
use crate::core::clock::Clock;
use crate::core::counters::Counters;
use crate::core::events::Events;
use crate::core::registry::Registry;
use crate::drain::Drain;
use crate::secrets::Secrets;

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
    /// TLS and token keys, reloadable.
    pub(crate) secrets: Secrets,
    /// Presence events, for SSE, `pushctl events` and the webhook.
    pub(crate) events: Arc<Events>,
    /// Whether it drains before a deploy (`crate::drain`).
    pub(crate) drain: Drain,
    /// Live upgrades asked for (`crate::upgrade`), carried out by `crate::run`.
    pub(crate) upgrades: tokio::sync::mpsc::Sender<crate::upgrade::Request>,
}

impl Node {
    /// Whether this node should be sent clients (`GET /v1/ready`); if not, why.
    /// Every listener serves before any request is read, so what is left is
    /// the cluster: a node that has not joined yet cannot route its pushes.
    pub(crate) fn ready(&self) -> Result<(), &'static str> {
        if self.drain.is_draining() {
            return Err("draining");
        }
        match &self.cluster {
            Some(cluster) if !cluster.has_joined() => Err("joining the cluster"),
            _ => Ok(()),
        }
    }

    /// The id of connection number `n` of this process: unique in the cluster
    /// (its node's id in front), for `kick --connection`.
    pub(crate) fn connection_id(&self, n: u64) -> String {
        self.events.connection_id(n)
    }

    /// The number of connection `id`, when it is one of this process's.
    pub(crate) fn connection_number(&self, id: &str) -> Option<u64> {
        let (prefix, n) = id.rsplit_once('.')?;
        (prefix == self.events.connection_prefix())
            .then(|| n.parse().ok())
            .flatten()
    }

    /// `--node-name` in cluster mode.
    pub(crate) fn name(&self) -> Option<&str> {
        self.cluster.as_deref().map(Cluster::name)
    }
}

/// A single node with no listeners behind it, for the request files' unit tests.
#[cfg(test)]
pub(crate) fn test_node() -> Node {
    use crate::core::conn::QueueLimits;
    use crate::core::registry::RegistryLimits;
    let clock = Clock::new();
    let counters = Arc::new(Counters::default());
    let limits = RegistryLimits {
        queue: QueueLimits {
            messages: 8,
            bytes: 1 << 20,
        },
        per_uid: None,
        mailbox: Some(crate::core::mailbox::MailboxLimits {
            ttl: std::time::Duration::from_secs(30),
            size: 100,
            memory: 1 << 20,
        }),
        hold_at_bind: false,
        groups: crate::core::groups::GroupLimits {
            per_uid: 10,
            memberships: 1000,
        },
    };
    Node {
        registry: Arc::new(Registry::new(limits, clock, counters.clone(), None)),
        counters: counters.clone(),
        clock,
        cluster: None,
        max_message_size: 64,
        ws_addr: "127.0.0.1:1".parse().unwrap(),
        text_addr: "127.0.0.1:2".parse().unwrap(),
        socket: PathBuf::from("/tmp/test.sock"),
        secrets: Secrets::default(),
        events: Events::new(crate::core::events::EventsSetup {
            node: "test".into(),
            grace: std::time::Duration::from_secs(5),
            cluster: false,
            connections: "test".into(),
            retain: 100,
            counters: counters.clone(),
        }),
        drain: Drain::new(std::time::Duration::ZERO),
        // No one carries out upgrades in these tests.
        upgrades: tokio::sync::mpsc::channel(1).0,
    }
}
