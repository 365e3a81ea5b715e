//! The pushd daemon as a library, for its binary.
//!
//! [`Listeners::bind`] binds every socket first (so errors surface before
//! anything is served and port 0 can be resolved), then [`run`] serves them
//! until the given shutdown future completes; `crates/pushd/main.rs` adds
//! argument parsing, logging and signals. The end-to-end tests start that
//! binary.
//!
//! Inside, dependencies point one way: `adapters` (WebSocket, text port, admin
//! socket, HTTP API and metrics) turn bytes into calls on `bind` (a connection
//! says who it is), `push` (every push) and `requests` (one file per admin
//! request), which act on `core` (registry, message ids, mailboxes, connection
//! handles, counters, clock) and, in cluster mode, on `cluster`, which itself
//! sees only `core`. The README's "How it is built" has the picture.

mod adapters;
mod bind;
mod cluster;
pub mod config;
mod core;
mod drain;
pub mod logging;
mod node;
mod push;
mod requests;
mod secrets;
mod state_file;
pub mod sys;
mod webhook;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use sd_notify::NotifyState;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

pub use adapters::admin::NotPrivate;
pub use config::{Config, DaemonArgs};

use crate::adapters::http::{self, HttpServer, Routes};
use crate::adapters::ws::{self, Admission, WsServer};
use crate::adapters::{admin, text};
use crate::cluster::Cluster;
use crate::config::SHUTDOWN_GRACE;
use crate::core::clock::Clock;
use crate::core::counters::Counters;
use crate::core::events::Events;
use crate::core::registry::{ChangedUids, Registry};
use crate::node::Node;

/// Every socket the daemon serves, already bound.
#[derive(Debug)]
pub struct Listeners {
    ws: TcpListener,
    text: TcpListener,
    admin: interprocess::local_socket::tokio::Listener,
    metrics: Option<TcpListener>,
    http: Option<TcpListener>,
}

impl Listeners {
    /// Binds the WebSocket listener, the text port, the admin socket and, with
    /// `--metrics-listen`, the metrics listener and with `--http-listen`, the HTTP API.
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
        let optional = |addr: Option<SocketAddr>, what: &'static str| async move {
            match addr {
                Some(addr) => TcpListener::bind(addr)
                    .await
                    .map(Some)
                    .with_context(|| format!("cannot listen for {what} on {addr}")),
                None => Ok(None),
            }
        };
        let metrics = optional(config.metrics_listen, "metrics").await?;
        let http = optional(config.http_listen, "the HTTP API").await?;
        let admin = admin::bind(&config.socket, config.socket_group.as_deref()).await?;
        Ok(Listeners {
            ws,
            text,
            admin,
            metrics,
            http,
        })
    }
}

/// Drops mailbox messages whose TTL has passed, about ten times per TTL (at most
/// once a second), until shutdown. A uid's expired messages are also dropped
/// whenever it is next pushed to or binds; this only gives their memory back.
async fn expire_mailboxes(
    registry: Arc<Registry>,
    ttl: std::time::Duration,
    shutdown: CancellationToken,
) {
    let every = (ttl / 10).clamp(
        std::time::Duration::from_millis(10),
        std::time::Duration::from_secs(1),
    );
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        while registry.expire_mailboxes() {
            tokio::task::yield_now().await;
        }
    }
}

/// Writes what the registry holds to the state file, and tells the log.
fn save_state(registry: &Registry, path: &std::path::Path) {
    let saved = registry.save();
    let entries = saved.stores.iter().flat_map(|store| &store.entries);
    let waiting = entries.filter(|entry| !entry.delivered).count();
    match state_file::write(path, &saved) {
        Ok(written) => info!(path = %path.display(), waiting, uids = saved.stores.len(),
                             bans = saved.bans.len(), bytes = written.bytes, took = ?written.took,
                             "state file written"),
        Err(err) => warn!(path = %path.display(), %err, waiting,
                          "cannot write the state file: what pushd held is lost"),
    }
}

/// Reloads the key files at every SIGHUP (`systemctl reload pushd`), until shutdown.
async fn reload_on_hangup(
    mut hangup: tokio::signal::unix::Signal,
    node: Arc<Node>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            received = hangup.recv() => if received.is_none() { return },
        }
        info!("SIGHUP: reloading the key files");
        requests::reload::reload(&node);
    }
}

/// Serves `listeners` until `shutdown` completes, then closes every client
/// with 1001, waits (bounded) for them, and removes the admin socket.
pub async fn run(
    listeners: Listeners,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    // Before READY: SIGHUP's default action would end the process.
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot handle SIGHUP")?;
    let secrets = secrets::Secrets::load(
        config.tls.as_ref(),
        config.auth_key.as_ref(),
        config.http_token_file.as_ref(),
    )?;
    if !secrets.has_auth() {
        warn!(
            "--auth none: uids are not authenticated, any client can claim any uid (see --auth token)"
        );
    }
    let cluster = match &config.cluster {
        Some(settings) => {
            let (cluster, inbox) = Cluster::new(settings, config.mailbox_limits())?;
            Some((Arc::new(cluster), inbox, Arc::new(ChangedUids::default())))
        }
        None => None,
    };
    let clock = Clock::new();
    let counters = Arc::new(Counters::default());
    let webhook = match &config.webhook {
        Some((url, secret)) => Some(webhook::Webhook::new(url, secret.as_deref())?),
        None => None,
    };
    let events = Events::new(
        config.node_name.clone(),
        config.offline_grace,
        config.cluster.is_some(),
    );
    let mut registry = Registry::new(
        config.registry_limits(),
        clock,
        counters.clone(),
        cluster.as_ref().map(|(_, _, changed)| changed.clone()),
    );
    if let Some(saved) = config.state_file.as_deref().and_then(state_file::take) {
        let started = std::time::Instant::now();
        let (restored_registry, restored) = registry.with_saved(saved);
        registry = restored_registry;
        info!(
            waiting = restored.waiting,
            copies = restored.copies,
            bans = restored.bans,
            expired = restored.expired,
            dropped = restored.dropped,
            took = ?started.elapsed(),
            "state restored"
        );
    }
    let registry = Arc::new(registry.with_events(events.clone()));
    let node = Arc::new(Node {
        registry: registry.clone(),
        counters,
        clock,
        cluster: cluster.as_ref().map(|(cluster, _, _)| cluster.clone()),
        max_message_size: config.max_message_size,
        ws_addr: listeners.ws.local_addr()?,
        text_addr: listeners.text.local_addr()?,
        socket: config.socket.clone(),
        secrets,
        events,
        drain: drain::Drain::new(config.drain),
    });
    let fd_limit = sys::raise_nofile_limit();
    let listeners_http = [&listeners.http, &listeners.metrics];
    let http_listeners = listeners_http.iter().filter(|l| l.is_some()).count();
    let others = config.max_text_connections + http_listeners * config.max_http_connections;
    let fd_cap = fd_limit.saturating_sub(sys::fd_headroom(fd_limit, others as u64)) as usize;
    let max_connections = config.max_connections.map_or(fd_cap, |max| max.min(fd_cap));
    let admission = Admission::new(
        max_connections,
        config.max_connections_per_ip,
        config.allow_origin.clone(),
    );
    let settings = ws::Settings {
        heartbeat: config.heartbeat,
        ping_interval: config.ping_interval,
        bind_timeout: config.bind_timeout,
        handshake_timeout: config.handshake_timeout,
        max_message_size: config.max_message_size,
        timer_grain: config.timer_grain(),
    };
    let edge = ws::Edge::new(config.trusted_proxies.clone(), config.proxy_protocol);
    let ws_server = Arc::new(WsServer::new(node.clone(), admission, edge, settings));

    let address = |listener: &Option<TcpListener>| -> std::io::Result<String> {
        Ok(match listener {
            Some(listener) => listener.local_addr()?.to_string(),
            None => "off".to_owned(),
        })
    };
    let (metrics_addr, http_addr) = (address(&listeners.metrics)?, address(&listeners.http)?);
    let cluster_desc = match &node.cluster {
        Some(cluster) => format!("{} node={}", cluster.redis_display(), cluster.name()),
        None => "off".to_owned(),
    };
    info!(
        ws = %node.ws_addr,
        text = %node.text_addr,
        socket = %config.socket.display(),
        heartbeat = %config::describe(config.heartbeat),
        ping_interval = %config::describe(config.ping_interval),
        mailbox_ttl = %config::describe(config.mailbox_ttl),
        max_connections,
        metrics = %metrics_addr,
        http = %http_addr,
        cluster = %cluster_desc,
        "pushd {} listening",
        env!("CARGO_PKG_VERSION")
    );

    // Under systemd (Type=notify) this says every listener is bound; without
    // NOTIFY_SOCKET it does nothing.
    let status = format!("serving ws={} text={}", node.ws_addr, node.text_addr);
    if let Err(err) = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(&status)]) {
        warn!(%err, "cannot notify systemd");
    }

    let token = CancellationToken::new();
    let tracker = TaskTracker::new();
    // Subscribed before any connection is served, so that it misses nothing.
    if let Some(webhook) = webhook {
        let events = node.events.subscribe(Vec::new(), node.counters.clone());
        tracker.spawn(webhook::run(webhook, events, node.clone()));
    }
    let cluster_tasks = cluster.map(|(cluster, inbox, changed)| {
        let local = node.clone();
        let events = node.events.clone();
        let tasks = cluster.spawn(registry.clone(), changed, local, inbox, events, &tracker);
        (cluster, tasks)
    });
    // The WebSocket connections have their own tracker: shutdown waits for
    // them to close before it ends the event streams that tell of it.
    let connections_tracker = TaskTracker::new();
    tracker.spawn(ws::serve(
        listeners.ws,
        ws_server,
        token.clone(),
        connections_tracker.clone(),
    ));
    let text_limits = text::TextLimits {
        max_connections: config.max_text_connections,
        idle_timeout: config.text_idle_timeout,
    };
    tracker.spawn(text::serve(
        listeners.text,
        node.clone(),
        text_limits,
        token.clone(),
        tracker.clone(),
    ));
    for (listener, routes) in [
        (listeners.metrics, Routes::MetricsOnly),
        (listeners.http, Routes::Api),
    ] {
        if let Some(listener) = listener {
            let limits = http::HttpLimits {
                max_connections: config.max_http_connections,
                idle_timeout: config.http_idle_timeout,
            };
            let server = Arc::new(HttpServer::new(
                node.clone(),
                routes,
                config.handshake_timeout,
                limits,
            ));
            tracker.spawn(http::serve(
                listener,
                server,
                token.clone(),
                tracker.clone(),
            ));
        }
    }
    tracker.spawn(admin::serve(
        listeners.admin,
        node.clone(),
        token.clone(),
        tracker.clone(),
    ));
    if let Some(ttl) = config.mailbox_ttl {
        tracker.spawn(expire_mailboxes(registry.clone(), ttl, token.clone()));
    }
    tracker.spawn(reload_on_hangup(hangup, node.clone(), token.clone()));
    tracker.spawn(node.events.clone().run_offline());

    shutdown.await;
    if !config.drain.is_zero() {
        info!(connections = registry.sizes().connections, over = %humantime::format_duration(config.drain),
              "draining before stopping");
        let drained = drain::run(&node, None).await;
        info!(closed = drained.closed, "drained");
    }
    let connections = registry.sizes().connections;
    info!(connections, "shutting down");
    let _ = sd_notify::notify(&[NotifyState::Stopping]);
    // Out of the cluster first, so that nobody routes to connections about to close.
    if let Some((cluster, tasks)) = cluster_tasks {
        cluster.leave(tasks).await;
    }
    // Cancel first: a connection that registers after the walk below sees
    // the token cancelled (see `adapters::ws::connection`).
    token.cancel();
    registry.close_all_for_shutdown();
    // Each connection writes what it was sent, then its close frame; their
    // `disconnect` events (and the `offline`s that follow) are told before the
    // event streams end, and the webhook gets `webhook::AT_SHUTDOWN` to take them.
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    connections_tracker.close();
    if tokio::time::timeout_at(deadline, connections_tracker.wait())
        .await
        .is_err()
    {
        warn!("some connections did not close within {SHUTDOWN_GRACE:?}; dropping them");
    }
    node.events.end();
    tracker.close();
    let streams_deadline = deadline.max(tokio::time::Instant::now() + webhook::AT_SHUTDOWN);
    if tokio::time::timeout_at(streams_deadline, tracker.wait())
        .await
        .is_err()
    {
        warn!("some clients (event streams, the webhook) were not done in time; dropping them");
    }
    // Last: every connection has put back what it had not written, and
    // nothing serves pushes any more.
    if let Some(path) = &config.state_file {
        save_state(&registry, path);
    }
    // The admin accept loop has returned (it only waits on accept or the
    // token), so its listener is dropped and the socket file removed.
    Ok(())
}
