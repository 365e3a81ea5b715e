//! The pushd daemon as a library.
//!
//! [`Listeners::bind`] binds every socket first (so errors surface before
//! anything is served and port 0 can be resolved), then [`run`] serves them
//! until the given shutdown future completes. Tests run the daemon in-process
//! this way; `main.rs` only adds argument parsing, logging and signals.
//!
//! Inside, three thin adapters ([`ws`], [`text`], [`admin`]) turn their bytes
//! into operations on one [`registry::Registry`], the only place that knows
//! who is online.

pub mod accept;
pub mod admin;
pub mod admission;
pub mod cluster;
pub mod config;
pub mod conn;
pub mod directory;
pub mod lines;
pub mod logging;
pub mod metrics;
pub mod ops;
pub mod registry;
pub mod stats;
pub mod sys;
pub mod text;
pub mod ws;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use sd_notify::NotifyState;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

pub use config::{Config, DaemonArgs};

use crate::config::SHUTDOWN_GRACE;
use crate::registry::Registry;

/// State shared by every task of a running daemon.
#[derive(Debug)]
pub struct Daemon {
    /// Resolved settings.
    pub config: Config,
    /// Who is online.
    pub registry: Registry,
    /// The bound WebSocket address (port 0 resolved).
    pub ws_addr: SocketAddr,
    /// The bound text-port address.
    pub text_addr: SocketAddr,
    /// When serving started.
    pub started: Instant,
    /// Open text-port connections.
    pub text_connections: AtomicU64,
    /// Connection slots, per-IP counts and allowed origins.
    pub admission: admission::Admission,
    /// Durations of text-port pushes (parse and queue), for `/metrics`.
    pub text_push_seconds: prometheus_client::metrics::histogram::Histogram,
    /// With `--auth token`, checks the tokens clients present.
    pub auth: Option<pushd_proto::token::Verifier>,
    /// "At the connection limit" warning, throttled.
    pub at_capacity: Mutex<accept::Throttled>,
    /// With `--cluster`, the link to the other nodes.
    pub cluster: Option<Arc<cluster::Cluster>>,
}

/// Every socket the daemon serves, already bound.
#[derive(Debug)]
pub struct Listeners {
    /// WebSocket clients.
    pub ws: TcpListener,
    /// Backends.
    pub text: TcpListener,
    /// pushctl.
    pub admin: interprocess::local_socket::tokio::Listener,
    /// Prometheus scrapes, with `--metrics-listen`.
    pub metrics: Option<TcpListener>,
}

impl Listeners {
    /// Binds the WebSocket listener, the text port and the admin socket.
    pub async fn bind(config: &Config) -> anyhow::Result<Self> {
        let ws = TcpListener::bind(config.ws_listen).await.with_context(|| {
            format!(
                "cannot listen for WebSocket clients on {}",
                config.ws_listen
            )
        })?;
        let text = TcpListener::bind(config.text_listen)
            .await
            .with_context(|| format!("cannot listen on the text port {}", config.text_listen))?;
        let metrics = match config.metrics_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen for metrics on {addr}"))?,
            ),
            None => None,
        };
        let admin = admin::bind(&config.socket, config.socket_group.as_deref()).await?;
        Ok(Listeners {
            ws,
            text,
            admin,
            metrics,
        })
    }
}

/// Serves `listeners` until `shutdown` completes, then closes every client
/// with 1001, waits (bounded) for them, and removes the admin socket.
pub async fn run(
    listeners: Listeners,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let auth = match &config.auth_secret_file {
        Some(path) => Some(pushd_proto::token::Verifier::new(
            &pushd_proto::token::read_secret_file(path)?,
        )),
        None => {
            warn!(
                "--auth none: uids are not authenticated, any client can claim any uid (see --auth token)"
            );
            None
        }
    };
    let (cluster, presence_inbox) = match &config.cluster {
        Some(cluster) => {
            let (cluster, inbox) = cluster::Cluster::new(cluster)?;
            (Some(Arc::new(cluster)), Some(inbox))
        }
        None => (None, None),
    };
    let registry = if cluster.is_some() {
        Registry::tracking_changes(config.queue_limits(), config.max_connections_per_uid)
    } else {
        Registry::new(config.queue_limits(), config.max_connections_per_uid)
    };
    let fd_limit = sys::raise_nofile_limit();
    let fd_cap = fd_limit.saturating_sub(sys::fd_headroom(fd_limit)) as usize;
    let max_connections = config.max_connections.map_or(fd_cap, |max| max.min(fd_cap));
    let daemon = Arc::new(Daemon {
        ws_addr: listeners.ws.local_addr()?,
        text_addr: listeners.text.local_addr()?,
        registry,
        cluster,
        started: Instant::now(),
        text_connections: AtomicU64::new(0),
        admission: admission::Admission::new(
            max_connections,
            config.max_connections_per_ip,
            config.allow_origin.clone(),
        ),
        at_capacity: Mutex::new(accept::Throttled::new("WebSocket")),
        auth,
        text_push_seconds: metrics::push_duration_histogram(),
        config,
    });
    let metrics_addr = match &listeners.metrics {
        Some(listener) => listener.local_addr()?.to_string(),
        None => "off".to_owned(),
    };
    let cluster_desc = match &daemon.cluster {
        Some(cluster) => format!("{} node={}", cluster.redis_display(), cluster.name()),
        None => "off".to_owned(),
    };
    info!(
        ws = %daemon.ws_addr,
        text = %daemon.text_addr,
        socket = %daemon.config.socket.display(),
        heartbeat = %config::describe(daemon.config.heartbeat),
        ping_interval = %config::describe(daemon.config.ping_interval),
        max_connections,
        metrics = %metrics_addr,
        cluster = %cluster_desc,
        "pushd {} listening",
        env!("CARGO_PKG_VERSION")
    );

    // Under systemd (Type=notify) this says every listener is bound; without
    // NOTIFY_SOCKET it does nothing.
    let status = format!("serving ws={} text={}", daemon.ws_addr, daemon.text_addr);
    if let Err(err) = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(&status)]) {
        warn!(%err, "cannot notify systemd");
    }

    let token = CancellationToken::new();
    let tracker = TaskTracker::new();
    let cluster_tasks =
        presence_inbox.map(|inbox| cluster::Cluster::spawn(&daemon, inbox, &tracker));
    tracker.spawn(ws::serve(
        listeners.ws,
        daemon.clone(),
        token.clone(),
        tracker.clone(),
    ));
    tracker.spawn(text::serve(
        listeners.text,
        daemon.clone(),
        token.clone(),
        tracker.clone(),
    ));
    if let Some(listener) = listeners.metrics {
        tracker.spawn(metrics::serve(
            listener,
            daemon.clone(),
            token.clone(),
            tracker.clone(),
        ));
    }
    tracker.spawn(admin::serve(
        listeners.admin,
        daemon.clone(),
        token.clone(),
        tracker.clone(),
    ));

    shutdown.await;
    let (connections, _) = daemon.registry.sizes();
    info!(connections, "shutting down");
    let _ = sd_notify::notify(&[NotifyState::Stopping]);
    // Out of the cluster first, so that nobody routes to connections about to close.
    if let (Some(cluster), Some(tasks)) = (&daemon.cluster, cluster_tasks) {
        cluster.leave(tasks).await;
    }
    // Cancel first: a connection that registers after the walk below sees
    // the token cancelled (see `ws::connection`).
    token.cancel();
    daemon.registry.close_all_for_shutdown();
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        warn!("some connections did not close within {SHUTDOWN_GRACE:?}; dropping them");
    }
    // The admin accept loop has returned (it only waits on accept or the
    // token), so its listener is dropped and the socket file removed.
    Ok(())
}
