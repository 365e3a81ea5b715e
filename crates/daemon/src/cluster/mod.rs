//! Cluster mode: several pushd nodes act as one through Redis.
//!
//! Each node keeps its own connections and registry; Redis holds who is where
//! (`P:node:<id>`: uid → connections on that node, written only on bind and unbind),
//! which nodes are alive (`P:nodes`: a lease per node on Redis's clock), and carries
//! messages between nodes over pub/sub (`P:all`, and one inbox `P:n:<id>` per node).
//! The protocol is written down in docs/cluster.md.
//!
//! The adapters never see any of this: pushes and requests (`crate::push`,
//! `crate::requests`) add the cluster step when there is a cluster. This module
//! sees only `core`: what it must do for other nodes it asks of a [`Local`],
//! handed to it at [`Cluster::spawn`].
//!
//! Files by job: `events` carries the cluster's events through a Redis stream
//! (and posts them to the webhook, once), `routes` sends pushes to the nodes that hold their uids
//! (on the uids' own channels, which `channels` subscribes, or through the route script),
//! `fanout` asks every node to carry out a request and gathers the replies,
//! `mailbox` takes and lists mailboxes in Redis, `bus` is the wire format of
//! bus messages, `scripts` the Lua that runs in Redis, `keys` its key names.
//! Tasks: `lease` renews this node's lease and reaps dead nodes, `subscriber`
//! receives and serves bus messages (`catch_up` gives the `pushd.v2`
//! connections what the bus lost while it was away, and a node taken for dead its raw
//! connections' queued messages), `presence` copies uid counts to Redis,
//! `resumable` keeps the uids of `pushd.v2` connections resumable. All stop with
//! the daemon; [`Cluster::leave`] removes this node at once on SIGTERM.

mod bus;
mod catch_up;
mod channels;
mod events;
mod fanout;
mod group_scripts;
mod groups;
mod health;
mod keys;
mod lease;
mod mailbox;
mod pending;
mod presence;
mod resumable;
mod routes;
mod scripts;
mod subscriber;
mod target;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::core::payload::Payload;
use anyhow::Context;
use futures_util::future::BoxFuture;
use pushd_proto::admin::{Request, Response};
use pushd_proto::uid::Uid;
use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ClusterConfig;
use crate::core::events::Events;
use crate::core::groups::GroupLimits;
use crate::core::mailbox::MailboxLimits;
use crate::core::registry::{ChangedUids, Registry};
use bus::Header;
use keys::Keys;
pub(crate) use mailbox::{Bind, Resume, Taken};
pub(crate) use pending::NodeReply;
use pending::Pending;
use presence::PresenceCommand;
pub(crate) use routes::Route;
use scripts::Scripts;
use target::Target;

/// When a push routed to another node counts as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Confirm {
    /// The node holding the uid received the message from Redis.
    Received,
    /// The node holding the uid queued it to at least one connection.
    Delivered,
}

impl From<crate::config::Confirm> for Confirm {
    fn from(option: crate::config::Confirm) -> Self {
        match option {
            crate::config::Confirm::Received => Confirm::Received,
            crate::config::Confirm::Delivered => Confirm::Delivered,
        }
    }
}

/// What this node does when another node asks, implemented by the daemon's push
/// and request code.
pub(crate) trait Local: Send + Sync + 'static {
    /// Delivers a push routed here to the uid's connections; returns how many took it.
    fn push(&self, uid: &Uid, message: &Payload, to: Recipients) -> u64;

    /// Delivers a group push routed here to every connection of `uids` (its
    /// members this node holds); `id` for `pushd.v2` ones. How many took it.
    fn push_members(&self, uids: &[Uid], message: &Payload, id: Option<&str>) -> u64;

    /// Carries out a request fanned out by another node. What must happen in bus
    /// order (a kick) happens before this returns; the future makes the reply.
    fn serve(self: Arc<Self>, request: Request) -> BoxFuture<'static, Result<Response, String>>;
}

/// Which of a uid's connections a push from the bus is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Recipients {
    /// The push's id, for `pushd.v2` connections (`ID PAYLOAD`).
    pub(crate) id: Option<String>,
    /// Raw connections too (not when this node pushed it: they had it then).
    pub(crate) raw: bool,
    /// `pushd.v2` connections too (not for a push on a uid's own channel: it
    /// has no id; such a push goes through the route script).
    pub(crate) v2: bool,
}

/// How often a request waiting for replies re-reads the live nodes, so that a
/// node whose lease ran out is no longer waited for.
const LIVENESS_RECHECK: Duration = Duration::from_millis(250);

/// This node's link to the cluster.
pub(crate) struct Cluster {
    /// `--node-name`.
    name: String,
    /// Unique id in Redis: name, pid and start time, so a restarted node is a new node.
    id: String,
    /// It goes on from another process's id (a live upgrade).
    taken_over: bool,
    /// The Redis URL without credentials, for `stats`.
    redis_display: String,
    keys: Keys,
    /// The Redis URL, or the sentinels that name the master.
    target: Target,
    /// The Redis in use now (with Sentinel, replaced when the master moves).
    redis: std::sync::Mutex<Redis>,
    /// How many times the master moved: connections of their own (the
    /// events reader's, the webhook's) connect again when it changes.
    master_changes: std::sync::atomic::AtomicU64,
    scripts: Scripts,
    pending: Pending,
    lease: Duration,
    timeout: Duration,
    text_confirm: Confirm,
    /// The last lease renewal worked.
    lease_ok: AtomicBool,
    /// The subscriber connection is subscribed.
    subscribed: AtomicBool,
    /// The subscriber connection, while its task runs: the presence writer
    /// subscribes the uids' channels on it (`channels`). Only the subscriber
    /// task puts it here and takes it away, so that it closes with the task
    /// (a live upgrade's old process must stop being counted on its channels).
    subscription: std::sync::Mutex<Option<(u64, redis::aio::MultiplexedConnection)>>,
    /// Subscriber connections made so far: which one is in use.
    subscriptions_made: std::sync::atomic::AtomicU64,
    /// The lease was renewed and presence written once: the node has joined.
    joined: AtomicBool,
    presence: mpsc::Sender<PresenceCommand>,
    /// The mailbox's bounds, kept in Redis for every node; `None`: off.
    mailbox: Option<MailboxLimits>,
    /// The groups' bounds, over the memberships in Redis.
    groups: GroupLimits,
    /// The bus health check's probes.
    health: health::BusHealth,
    /// The events stream's length in Redis.
    events_retain: usize,
    /// `--webhook`: posted from the events stream by one node at a time.
    webhook: std::sync::OnceLock<crate::webhook::Webhook>,
}

/// The Redis a node talks to now.
struct Redis {
    client: redis::Client,
    /// Shared by every command (pipelined); reconnects by itself.
    conn: ConnectionManager,
    /// With Sentinel, the master's address.
    master: Option<String>,
}

/// A connection manager for `client`, every call bounded by `timeout`.
fn manager(client: &redis::Client, timeout: Duration) -> anyhow::Result<ConnectionManager> {
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500));
    ConnectionManager::new_lazy_with_config(client.clone(), config)
        .context("--cluster: cannot set up the Redis connection")
}

/// The presence writer's end of its command channel, made by [`Cluster::new`] and
/// handed to [`Cluster::spawn`].
#[derive(Debug)]
pub(crate) struct PresenceInbox(mpsc::Receiver<PresenceCommand>);

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("name", &self.name)
            .field("id", &self.id)
            .field("redis", &self.redis_display)
            .finish_non_exhaustive()
    }
}

/// The lease and subscriber tasks, stopped by [`Cluster::leave`].
#[derive(Debug)]
pub(crate) struct ClusterTasks {
    token: CancellationToken,
    tracker: TaskTracker,
}

/// The result of a cluster-wide operation: the value, and what it could not confirm.
#[derive(Debug, Default)]
pub(crate) struct Partial<T> {
    /// What was gathered.
    pub(crate) value: T,
    /// One sentence per thing missing (a node, Redis).
    pub(crate) incomplete: Vec<String>,
}

impl Cluster {
    /// Prepares the link; connects lazily, so a node starts even while Redis is down.
    /// `id`: the node id of the process this one took over from (a live
    /// upgrade keeps it, and with it the node's presence and lease).
    pub(crate) fn new(
        config: &ClusterConfig,
        mailbox: Option<MailboxLimits>,
        groups: GroupLimits,
        id: Option<String>,
    ) -> anyhow::Result<(Self, PresenceInbox)> {
        let target = Target::parse(&config.url)
            .with_context(|| format!("--cluster {:?}", redacted(&config.url)))?;
        // With Sentinel the master is not known before the first lease tick
        // asks: until then commands fail at once, as with a Redis that is down.
        let client = match target.direct() {
            Some(client) => client.clone(),
            None => redis::Client::open("redis://127.0.0.1:0/").expect("a valid URL"),
        };
        let conn = manager(&client, config.timeout)?;
        let started = crate::core::ids::boot_ms();
        let (presence, presence_rx) = mpsc::channel(64);
        let cluster = Cluster {
            taken_over: id.is_some(),
            id: id.unwrap_or_else(|| {
                format!("{}-{}-{started:x}", config.node_name, std::process::id())
            }),
            name: config.node_name.clone(),
            redis_display: redacted(&config.url),
            keys: Keys::new(&config.prefix),
            target,
            redis: std::sync::Mutex::new(Redis {
                client,
                conn,
                master: None,
            }),
            master_changes: std::sync::atomic::AtomicU64::new(0),
            scripts: Scripts::new(),
            pending: Pending::default(),
            lease: config.lease,
            timeout: config.timeout,
            text_confirm: config.text_confirm.into(),
            lease_ok: AtomicBool::new(false),
            subscribed: AtomicBool::new(false),
            subscription: std::sync::Mutex::new(None),
            subscriptions_made: std::sync::atomic::AtomicU64::new(0),
            joined: AtomicBool::new(false),
            presence,
            mailbox,
            groups,
            health: health::BusHealth::default(),
            events_retain: config.events_retain,
            webhook: std::sync::OnceLock::new(),
        };
        Ok((cluster, PresenceInbox(presence_rx)))
    }

    /// Starts the lease, subscriber, events and presence tasks (and the
    /// webhook's, with `webhook`); the presence writer joins `tracker` (it
    /// ends with [`Cluster::leave`]), the others are returned. `changed` is
    /// where `registry` marks the uids whose presence must be written.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn spawn(
        self: &Arc<Self>,
        registry: Arc<Registry>,
        changed: Arc<ChangedUids>,
        local: Arc<dyn Local>,
        inbox: PresenceInbox,
        events: Arc<Events>,
        webhook: Option<crate::webhook::Webhook>,
        tracker: &TaskTracker,
    ) -> ClusterTasks {
        if let Some(webhook) = webhook {
            let _ = self.webhook.set(webhook);
        }
        let tasks = ClusterTasks {
            token: CancellationToken::new(),
            tracker: TaskTracker::new(),
        };
        tracker.spawn(presence::run(
            self.clone(),
            registry.clone(),
            changed,
            events.clone(),
            inbox.0,
        ));
        // Taken over: the connections were served by the old process's subscription.
        self.spawn_linked(tasks, registry, local, events, self.taken_over)
    }

    /// Starts the lease, the subscriber and the resumable keeper as `tasks`.
    /// `catch_up_at_start`: the node's `pushd.v2` connections are caught up at
    /// the first subscription too (they were served by another subscription).
    fn spawn_linked(
        self: &Arc<Self>,
        tasks: ClusterTasks,
        registry: Arc<Registry>,
        local: Arc<dyn Local>,
        events: Arc<Events>,
        catch_up_at_start: bool,
    ) -> ClusterTasks {
        let token = tasks.token.clone();
        (tasks.tracker).spawn(resumable::run(
            self.clone(),
            registry.clone(),
            token.clone(),
        ));
        let subscriber = subscriber::run(
            self.clone(),
            registry.clone(),
            local,
            token,
            catch_up_at_start,
        );
        (tasks.tracker).spawn(subscriber);
        (tasks.tracker).spawn(events::read(
            self.clone(),
            events.clone(),
            tasks.token.clone(),
        ));
        if let Some(webhook) = self.webhook.get() {
            let poster = crate::webhook::Poster::new(webhook.clone(), events.counters());
            (tasks.tracker).spawn(events::post(self.clone(), poster, tasks.token.clone()));
        }
        let lease = lease::run(self.clone(), registry, events, tasks.token.clone());
        (tasks.tracker).spawn(lease);
        tasks.tracker.close();
        tasks
    }

    /// A live upgrade: stops the lease, the subscriber and the resumable
    /// keeper without leaving (the new process goes on with this node's id,
    /// presence and lease; the presence writer stays, with nothing to write
    /// once the registry is frozen).
    pub(crate) async fn pause(&self, tasks: ClusterTasks) {
        tasks.token.cancel();
        let _ = tokio::time::timeout(self.timeout, tasks.tracker.wait()).await;
    }

    /// After [`Cluster::pause`], when the upgrade did not happen: starts them
    /// again, catching the `pushd.v2` connections up on what the bus brought
    /// meanwhile.
    pub(crate) fn resume(
        self: &Arc<Self>,
        registry: Arc<Registry>,
        local: Arc<dyn Local>,
        events: Arc<Events>,
    ) -> ClusterTasks {
        let tasks = ClusterTasks {
            token: CancellationToken::new(),
            tracker: TaskTracker::new(),
        };
        self.spawn_linked(tasks, registry, local, events, true)
    }

    /// `--node-name`.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// This node's id in Redis.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// The Redis address, without credentials (with Sentinel, and the
    /// master's address in use).
    pub(crate) fn redis_display(&self) -> String {
        match &self.lock_redis().master {
            Some(master) => format!("{} (master {master})", self.redis_display),
            None => self.redis_display.clone(),
        }
    }

    fn lock_redis(&self) -> std::sync::MutexGuard<'_, Redis> {
        self.redis.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The client of the Redis in use, for connections of their own.
    pub(super) fn client(&self) -> redis::Client {
        self.lock_redis().client.clone()
    }

    /// How many times the master moved so far.
    pub(super) fn master_changes(&self) -> u64 {
        self.master_changes.load(Ordering::Relaxed)
    }

    /// With Sentinel: asks the sentinels for the master and, when it moved,
    /// sends every connection there (the subscriber subscribes again; the
    /// caller joins the new master). Whether it moved.
    pub(super) async fn follow_master(&self) -> bool {
        let Some(found) = self.target.master().await else {
            return false;
        };
        let (client, address) = match found {
            Ok(found) => found,
            Err(err) => {
                tracing::debug!(%err, "cluster: the sentinels name no reachable master");
                return false;
            }
        };
        if self.lock_redis().master.as_deref() == Some(address.as_str()) {
            return false;
        }
        let Ok(conn) = manager(&client, self.timeout) else {
            return false;
        };
        let before = {
            let mut redis = self.lock_redis();
            let before = redis.master.replace(address.clone());
            redis.client = client;
            redis.conn = conn;
            before
        };
        self.master_changes.fetch_add(1, Ordering::Relaxed);
        match before {
            Some(before) => tracing::warn!(from = %before, to = %address,
                "cluster: the sentinels moved the master; following it"),
            None => tracing::info!(master = %address, "cluster: the sentinels name the master"),
        }
        self.health.resubscribe.notify_waiters();
        true
    }

    /// The text port's confirmation mode.
    pub(crate) fn text_confirm(&self) -> Confirm {
        self.text_confirm
    }

    /// `--cluster-lease`.
    pub(crate) fn lease(&self) -> Duration {
        self.lease
    }

    /// `--cluster-timeout`: the longest wait for Redis or another node.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether pushes to uids nobody holds wait in Redis.
    pub(crate) fn mailbox_on(&self) -> bool {
        self.mailbox.is_some()
    }

    /// The subscriber connection, if its task has one (a handle to it: the
    /// connection closes once the task drops it and no call is under way).
    fn subscription(&self) -> Option<(u64, redis::aio::MultiplexedConnection)> {
        (self.subscription.lock().unwrap_or_else(|p| p.into_inner())).clone()
    }

    /// A change of the uids' subscriptions failed on subscriber connection
    /// `made`: the subscriptions are not what they should be, so that
    /// connection is made anew, unless another has replaced it already (a
    /// change that failed on a connection Redis had closed says nothing of the
    /// next one).
    fn subscription_failed(&self, made: u64) {
        let current = (self.subscription.lock().unwrap_or_else(|p| p.into_inner()))
            .as_ref()
            .map(|(made, _)| *made);
        if current == Some(made) {
            tracing::warn!(
                "cluster: could not change the uids' subscriptions; subscribing to Redis again"
            );
            self.health.resubscribe.notify_waiters();
        }
    }

    /// Whether this node is in the cluster now: lease renewed and subscribed.
    pub(crate) fn is_up(&self) -> bool {
        self.lease_ok.load(Ordering::Relaxed) && self.subscribed.load(Ordering::Relaxed)
    }

    /// Whether this node has joined the cluster since it started (it stays
    /// joined through a Redis outage: its own connections keep working).
    pub(crate) fn has_joined(&self) -> bool {
        self.joined.load(Ordering::Relaxed)
    }

    /// The note for an answer that only this node could give.
    pub(crate) fn unreachable_note(&self, err: Option<&redis::RedisError>) -> String {
        let why = err.map(|err| format!(" ({err})")).unwrap_or_default();
        format!(
            "Redis at {} is unreachable{why}: only this node ({}) answered",
            self.redis_display, self.name
        )
    }

    pub(super) fn conn(&self) -> ConnectionManager {
        self.lock_redis().conn.clone()
    }

    /// The mailbox's TTL in ms, size and memory, as the scripts that keep
    /// messages read them (`0 0 0`: off).
    pub(super) fn mailbox_args(&self, invocation: &mut redis::ScriptInvocation<'_>) {
        match self.mailbox {
            Some(limits) => invocation
                .arg(limits.ttl.as_millis() as u64)
                .arg(limits.size)
                .arg(limits.memory),
            None => invocation.arg(0).arg(0).arg(0),
        };
    }

    pub(super) fn partial<T>(&self, value: T, note: String) -> Partial<T> {
        Partial {
            value,
            incomplete: vec![note],
        }
    }

    /// The ids of the nodes whose lease is running, this one included.
    pub(super) async fn live_nodes(&self) -> redis::RedisResult<Vec<String>> {
        self.scripts
            .live
            .key(self.keys.nodes())
            .invoke_async(&mut self.conn())
            .await
    }

    pub(super) async fn publish(&self, channel: &str, message: Vec<u8>) -> redis::RedisResult<u64> {
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(message)
            .query_async(&mut self.conn())
            .await
    }

    /// Copies every pending uid change to Redis now; Err when Redis did not take it.
    pub(crate) async fn flush_presence(&self) -> Result<(), String> {
        let (done, result) = oneshot::channel();
        self.presence
            .send(PresenceCommand::Flush(done))
            .await
            .map_err(|_| "the presence writer has stopped".to_owned())?;
        result
            .await
            .unwrap_or_else(|_| Err("the presence writer has stopped".into()))
    }

    /// Leaves the cluster: stops renewing the lease and listening, then deletes this
    /// node's presence and lease and tells the others, so its uids are offline at once.
    /// Bounded by the timeout.
    pub(crate) async fn leave(&self, tasks: ClusterTasks) {
        tasks.token.cancel();
        let _ = tokio::time::timeout(self.timeout, tasks.tracker.wait()).await;
        let (done, result) = oneshot::channel();
        if self
            .presence
            .send(PresenceCommand::Leave(done))
            .await
            .is_ok()
        {
            let _ = tokio::time::timeout(self.timeout, result).await;
        }
    }

    /// The pipeline that removes this node from Redis and announces it.
    fn leave_pipeline(&self, grace_ms: u64) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .invoke_script(
                self.scripts
                    .leave
                    .key(self.keys.nodes())
                    .arg(self.keys.prefix())
                    .arg(&self.id)
                    .arg(grace_ms),
            )
            .ignore()
            .publish(
                self.keys.all(),
                bus::encode(
                    &Header::Leave {
                        from: self.id.clone(),
                    },
                    b"",
                ),
            )
            .ignore();
        pipe
    }
}

/// A Redis URL with any credentials replaced, for logs and `stats`: the user
/// info of `redis://user:password@host`, and the `pass` and `password`
/// parameters of `redis+unix:///path?pass=...` (redis-rs reads both).
fn redacted(url: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let mut shown = match (base.find("://"), base.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &base[..scheme], &base[at + 1..])
        }
        _ => base.to_owned(),
    };
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if matches!(key, "pass" | "password") => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        shown.push('?');
        shown.push_str(&params.join("&"));
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn passwords_never_reach_logs() {
        assert_eq!(
            redacted("redis://user:secret@10.0.0.1:6379/0"),
            "redis://***@10.0.0.1:6379/0"
        );
        assert_eq!(
            redacted("redis+unix:///run/redis.sock"),
            "redis+unix:///run/redis.sock"
        );
        assert_eq!(
            redacted("redis+unix:///run/redis.sock?db=2&pass=secret&user=u"),
            "redis+unix:///run/redis.sock?db=2&pass=***&user=u"
        );
        assert_eq!(
            redacted("redis://:p@h:1/0?password=x"),
            "redis://***@h:1/0?password=***"
        );
    }
}
