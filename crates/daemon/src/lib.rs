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
mod upgrade;
mod webhook;

use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use anyhow::Context;
use sd_notify::NotifyState;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

pub use adapters::admin::NotPrivate;
pub use config::{Config, DaemonArgs};
pub use upgrade::new::{Inherited, take_over};

use crate::adapters::http::{self, HttpServer, Routes};
use crate::adapters::ws::{self, Admission, WsServer};
use crate::adapters::{admin, text};
use crate::cluster::Cluster;
use crate::config::SHUTDOWN_GRACE;
use crate::core::clock::Clock;
use crate::core::counters::Counters;
use crate::core::events::{Events, EventsSetup};
use crate::core::registry::{ChangedUids, Registry};
use crate::node::Node;
use crate::upgrade::wire::ListenerKind;

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

impl Listeners {
    /// The listeners a live upgrade's old process handed over (or kept).
    fn from_fds(fds: Vec<(ListenerKind, OwnedFd)>) -> anyhow::Result<Self> {
        let (mut ws, mut text, mut admin, mut metrics, mut http) = (None, None, None, None, None);
        let tcp = |fd: OwnedFd| -> std::io::Result<TcpListener> {
            let listener = std::net::TcpListener::from(fd);
            listener.set_nonblocking(true)?;
            TcpListener::from_std(listener)
        };
        for (kind, fd) in fds {
            match kind {
                ListenerKind::Ws => ws = Some(tcp(fd)?),
                ListenerKind::Text => text = Some(tcp(fd)?),
                ListenerKind::Metrics => metrics = Some(tcp(fd)?),
                ListenerKind::Http => http = Some(tcp(fd)?),
                ListenerKind::Admin => {
                    let uds =
                        interprocess::os::unix::uds_local_socket::tokio::Listener::try_from(fd)?;
                    admin = Some(interprocess::local_socket::tokio::Listener::from(uds))
                }
            }
        }
        let missing = |what: &str| anyhow::anyhow!("the hand-over had no {what} listener");
        Ok(Listeners {
            ws: ws.ok_or_else(|| missing("WebSocket"))?,
            text: text.ok_or_else(|| missing("text-port"))?,
            admin: admin.ok_or_else(|| missing("admin"))?,
            metrics,
            http,
        })
    }

    /// Duplicates of every listening socket: what a live upgrade hands over,
    /// and what serves again if it fails.
    fn dup(&self) -> std::io::Result<Vec<(ListenerKind, OwnedFd)>> {
        let mut fds = vec![
            (ListenerKind::Ws, self.ws.as_fd().try_clone_to_owned()?),
            (ListenerKind::Text, self.text.as_fd().try_clone_to_owned()?),
            (ListenerKind::Admin, admin_fd(&self.admin)?),
        ];
        if let Some(metrics) = &self.metrics {
            fds.push((ListenerKind::Metrics, metrics.as_fd().try_clone_to_owned()?));
        }
        if let Some(http) = &self.http {
            fds.push((ListenerKind::Http, http.as_fd().try_clone_to_owned()?));
        }
        Ok(fds)
    }
}

/// A duplicate of the admin listener's socket.
fn admin_fd(admin: &interprocess::local_socket::tokio::Listener) -> std::io::Result<OwnedFd> {
    match admin {
        interprocess::local_socket::tokio::Listener::UdSocket(uds) => {
            uds.as_fd().try_clone_to_owned()
        }
    }
}

/// Everything that serves the listeners, so that a live upgrade can stop
/// accepting and, if the new process does not take over, start again.
struct Serving {
    node: Arc<Node>,
    ws_server: Arc<WsServer>,
    text_limits: text::TextLimits,
    http_limits: http::HttpLimits,
    handshake_timeout: std::time::Duration,
    /// Cancelled at shutdown: everything ends.
    shutdown: CancellationToken,
    /// A child of `shutdown`, cancelled to stop accepting (and end the text,
    /// HTTP and admin connections after their request in flight).
    accepting: std::sync::Mutex<CancellationToken>,
    /// Accept loops, admin connections, the webhook, cluster tasks.
    tracker: TaskTracker,
    /// Text-port and HTTP connections: where pushes come from.
    requests: TaskTracker,
    /// WebSocket connections.
    connections: TaskTracker,
    /// Duplicates of the listening sockets (see [`Listeners::dup`]).
    listening: Vec<(ListenerKind, OwnedFd)>,
    /// The accept loops running now.
    accept_loops: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Cluster mode: the lease, subscriber and resumable tasks, while they run.
    cluster_tasks: Option<std::sync::Mutex<Option<cluster::ClusterTasks>>>,
}

impl Serving {
    /// Accepts on every listener until shutdown or [`Serving::stop_accepting`].
    fn accept(&self, listeners: Listeners) {
        let accepting = self.shutdown.child_token();
        *self.accepting.lock().unwrap_or_else(|p| p.into_inner()) = accepting.clone();
        let mut loops = Vec::new();
        loops.push(self.tracker.spawn(ws::serve(
            listeners.ws,
            self.ws_server.clone(),
            accepting.clone(),
            self.connections.clone(),
        )));
        loops.push(self.tracker.spawn(text::serve(
            listeners.text,
            self.node.clone(),
            self.text_limits,
            accepting.clone(),
            self.requests.clone(),
        )));
        for (listener, routes) in [
            (listeners.metrics, Routes::MetricsOnly),
            (listeners.http, Routes::Api),
        ] {
            if let Some(listener) = listener {
                let server = Arc::new(HttpServer::new(
                    self.node.clone(),
                    routes,
                    self.handshake_timeout,
                    self.http_limits,
                ));
                loops.push(self.tracker.spawn(http::serve(
                    listener,
                    server,
                    accepting.clone(),
                    self.requests.clone(),
                )));
            }
        }
        // The socket file outlives this listener: a live upgrade's new process
        // serves on it. `run` removes it at the end.
        let mut admin = listeners.admin;
        interprocess::local_socket::traits::tokio::Listener::do_not_reclaim_name_on_drop(
            &mut admin,
        );
        loops.push(self.tracker.spawn(admin::serve(
            admin,
            self.node.clone(),
            accepting,
            self.tracker.clone(),
        )));
        *self.accept_loops.lock().unwrap_or_else(|p| p.into_inner()) = loops;
    }

    /// Stops accepting on every listener, and returns once no accept loop
    /// runs (nothing is accepted after); the text-port, HTTP and admin
    /// connections end after the request they are serving.
    async fn stop_accepting(&self) {
        self.accepting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .cancel();
        let loops =
            std::mem::take(&mut *self.accept_loops.lock().unwrap_or_else(|p| p.into_inner()));
        for accept_loop in loops {
            let _ = accept_loop.await;
        }
    }

    /// Cluster mode: the running lease, subscriber and resumable tasks, taken.
    fn take_cluster_tasks(&self) -> Option<cluster::ClusterTasks> {
        let tasks = self.cluster_tasks.as_ref()?;
        tasks.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Cluster mode: stops them without leaving (a live upgrade's new process
    /// goes on as this node).
    async fn pause_cluster(&self) {
        if let (Some(cluster), Some(tasks)) = (&self.node.cluster, self.take_cluster_tasks()) {
            cluster.pause(tasks).await;
        }
    }

    /// Cluster mode: starts them again after [`Serving::pause_cluster`].
    fn resume_cluster(&self) {
        let (Some(cluster), Some(slot)) = (&self.node.cluster, &self.cluster_tasks) else {
            return;
        };
        let registry = self.node.registry.clone();
        let tasks = cluster.resume(registry, self.node.clone(), self.node.events.clone());
        *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(tasks);
    }

    /// Accepts again after [`Serving::stop_accepting`], on the kept duplicates.
    fn accept_again(&self) -> anyhow::Result<()> {
        let fds = (self.listening.iter())
            .map(|(kind, fd)| Ok((*kind, fd.try_clone()?)))
            .collect::<std::io::Result<Vec<_>>>()?;
        self.accept(Listeners::from_fds(fds)?);
        Ok(())
    }
}

/// Drops mailbox messages whose TTL has passed, about ten times per TTL (at most
/// once a second; once a second with the mailbox off), and ends group
/// memberships at their TTL, until shutdown. A uid's expired messages are also
/// dropped whenever it is next pushed to or binds; this only gives their memory back.
async fn expire(
    registry: Arc<Registry>,
    ttl: Option<std::time::Duration>,
    shutdown: CancellationToken,
) {
    let every = ttl.map_or(std::time::Duration::from_secs(1), |ttl| {
        (ttl / 10).clamp(
            std::time::Duration::from_millis(10),
            std::time::Duration::from_secs(1),
        )
    });
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        while ttl.is_some() && registry.expire_mailboxes() {
            tokio::task::yield_now().await;
        }
        while registry.expire_groups() {
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

/// Reloads the key files at every SIGHUP (`pushctl reload` does the same), until shutdown.
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

/// How a pushd starts: with listeners of its own, or taking over from the
/// running pushd (a live upgrade; see [`take_over`]).
#[derive(Debug)]
pub enum Start {
    /// Bound by [`Listeners::bind`].
    Fresh(Listeners),
    /// Handed over by the old process.
    Inherited(Inherited),
}

/// Serves until `shutdown` completes, then closes every client with 1001,
/// waits (bounded) for them, and removes the admin socket. A live upgrade
/// (`pushctl upgrade`, SIGUSR2) ends it instead, once the new process serves.
pub async fn run(
    start: Start,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    // Before READY: SIGUSR2's default action would end the process.
    let mut upgrade_signal =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined2())
            .context("cannot handle SIGUSR2")?;
    let (listeners, mut inherited) = match start {
        Start::Fresh(listeners) => (listeners, None),
        Start::Inherited(mut inherited) => {
            let fds = std::mem::take(&mut inherited.listeners);
            match Listeners::from_fds(fds) {
                Ok(listeners) => (listeners, Some(inherited)),
                Err(err) => {
                    inherited.failed(&format!("{err:#}"));
                    return Err(err);
                }
            }
        }
    };
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
            let id = inherited.as_mut().and_then(|i| i.cluster_id.take());
            let (cluster, inbox) =
                Cluster::new(settings, config.mailbox_limits(), config.group_limits(), id)?;
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
    // Connection ids are unique in the cluster: the node's id, or this
    // process's start, in front of the connection's number.
    let connection_prefix = match &cluster {
        Some((cluster, ..)) => cluster.id().to_owned(),
        None => format!("{:x}", crate::core::ids::boot_ms()),
    };
    let events = Events::new(EventsSetup {
        node: config.node_name.clone(),
        grace: config.offline_grace,
        cluster: config.cluster.is_some(),
        connections: connection_prefix,
        retain: config
            .cluster
            .as_ref()
            .map_or(config.events_retain, |cluster| cluster.events_retain),
        counters: counters.clone(),
    });
    let mut registry = Registry::new(
        config.registry_limits(),
        clock,
        counters.clone(),
        cluster.as_ref().map(|(_, _, changed)| changed.clone()),
    );
    let saved = match &mut inherited {
        Some(inherited) => Some(std::mem::take(&mut inherited.saved)),
        None => config.state_file.as_deref().and_then(state_file::take),
    };
    if let Some(saved) = saved {
        let started = std::time::Instant::now();
        let (restored_registry, restored) = registry.with_saved(saved);
        registry = restored_registry;
        info!(
            waiting = restored.waiting,
            copies = restored.copies,
            bans = restored.bans,
            expired = restored.expired,
            dropped = restored.dropped,
            memberships = restored.memberships,
            took = ?started.elapsed(),
            "state restored"
        );
    }
    let registry = Arc::new(registry.with_events(events.clone()));
    let (upgrade_requests, mut upgrades) = tokio::sync::mpsc::channel(1);
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
        upgrades: upgrade_requests,
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
        upstream: config.upstream,
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
    // A single node's is subscribed before any connection is served, so that
    // it misses nothing; a cluster's reads the cluster's events stream.
    let webhook = match (webhook, &cluster) {
        (Some(webhook), None) => {
            let events = node.events.subscribe(Vec::new(), None);
            tracker.spawn(webhook::run(webhook, events, node.clone()));
            None
        }
        (webhook, _) => webhook,
    };
    let cluster_tasks = cluster.map(|(cluster, inbox, changed)| {
        let local = node.clone();
        let events = node.events.clone();
        let tasks = cluster.spawn(
            registry.clone(),
            changed,
            local,
            inbox,
            events,
            webhook,
            &tracker,
        );
        std::sync::Mutex::new(Some(tasks))
    });
    let serving = Serving {
        node: node.clone(),
        ws_server: ws_server.clone(),
        text_limits: text::TextLimits {
            max_connections: config.max_text_connections,
            idle_timeout: config.text_idle_timeout,
        },
        http_limits: http::HttpLimits {
            max_connections: config.max_http_connections,
            idle_timeout: config.http_idle_timeout,
        },
        handshake_timeout: config.handshake_timeout,
        shutdown: token.clone(),
        accepting: std::sync::Mutex::new(token.child_token()),
        tracker: tracker.clone(),
        requests: TaskTracker::new(),
        // The WebSocket connections have their own tracker: shutdown waits for
        // them to close before it ends the event streams that tell of it.
        connections: TaskTracker::new(),
        listening: listeners
            .dup()
            .context("cannot duplicate the listening sockets")?,
        accept_loops: std::sync::Mutex::default(),
        cluster_tasks,
    };
    // Handed-over connections first: a push accepted before them would find
    // their uids away.
    if let Some(inherited) = inherited.as_mut() {
        let connections = std::mem::take(&mut inherited.connections);
        let handed = connections.len();
        for (connection, fd) in connections {
            if let Err(err) = ws::adopt(&ws_server, connection, fd, &serving.connections) {
                warn!(%err, "a handed-over connection could not be taken");
            }
        }
        serving.accept(listeners);
        if let Err(err) = inherited.ready() {
            // The old process is gone or gave up: it serves no more either way.
            warn!(%err, "cannot tell the old process that this one serves");
        }
        let _ = sd_notify::notify(&[NotifyState::MainPid(std::process::id())]);
        info!(connections = handed, "took over from the previous pushd");
    } else {
        serving.accept(listeners);
    }
    tracker.spawn(expire(registry.clone(), config.mailbox_ttl, token.clone()));
    tracker.spawn(reload_on_hangup(hangup, node.clone(), token.clone()));
    tracker.spawn(node.events.clone().run_offline());

    tokio::pin!(shutdown);
    loop {
        let request = tokio::select! {
            () = &mut shutdown => break,
            Some(request) = upgrades.recv() => request,
            Some(()) = upgrade_signal.recv() => upgrade::Request::from_signal(),
        };
        match upgrade::old::run(&serving, &config, request.binary.clone()).await {
            Ok(upgraded) => {
                info!(new_pid = upgraded.new_pid, connections = upgraded.connections,
                      took = ?upgraded.took, "upgraded: the new pushd serves; this one goes");
                request.answer(Ok(upgraded));
                // Time for the admin reply to be written; then go without a
                // word: no close frame, no state file, the socket file kept.
                tokio::time::sleep(upgrade::old::LINGER).await;
                std::process::exit(0);
            }
            Err(failed) => {
                warn!(why = %failed.reason, "upgrade failed; this pushd keeps serving");
                request.answer(Err(failed));
            }
        }
    }
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
    if let (Some(cluster), Some(tasks)) = (&node.cluster, serving.take_cluster_tasks()) {
        cluster.leave(tasks).await;
    }
    // Cancel first: a connection that registers after the walk below sees
    // the token cancelled (see `adapters::ws::connection`).
    token.cancel();
    registry.close_all_for_shutdown();
    let connections_tracker = serving.connections.clone();
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
    serving.requests.close();
    tracker.close();
    let streams_deadline = deadline.max(tokio::time::Instant::now() + webhook::AT_SHUTDOWN);
    let everything = async { tokio::join!(tracker.wait(), serving.requests.wait()) };
    if tokio::time::timeout_at(streams_deadline, everything)
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
    // token); its listener does not remove the socket file (see
    // `Serving::accept`), so it is removed here.
    let _ = std::fs::remove_file(&config.socket);
    Ok(())
}
