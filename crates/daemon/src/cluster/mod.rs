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
//! Tasks: `lease` renews this node's lease and reaps dead nodes, `subscriber`
//! receives and serves bus messages, `presence` copies uid counts to Redis,
//! `resumable` keeps the uids of `pushd.v2` connections resumable. All stop with
//! the daemon; [`Cluster::leave`] removes this node at once on SIGTERM.

mod bus;
mod keys;
mod lease;
mod pending;
mod presence;
mod resumable;
mod scripts;
mod subscriber;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use futures_util::future::BoxFuture;
use pushd_proto::admin::{Request, Response};
use pushd_proto::uid::Uid;
use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ClusterConfig;
use crate::core::events::Events;
use crate::core::mailbox::MailboxLimits;
use crate::core::registry::{ChangedUids, Registry};
use bus::Header;
use keys::Keys;
use pending::Pending;
pub(crate) use pending::{Gathered, NodeReply};
use presence::PresenceCommand;
use scripts::Scripts;

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
    fn push(&self, uid: &Uid, message: &Utf8Bytes, to: Recipients) -> u64;

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
    /// The Redis URL without credentials, for `stats`.
    redis_display: String,
    keys: Keys,
    client: redis::Client,
    conn: ConnectionManager,
    scripts: Scripts,
    pending: Pending,
    lease: Duration,
    timeout: Duration,
    text_confirm: Confirm,
    /// The last lease renewal worked.
    lease_ok: AtomicBool,
    /// The subscriber connection is subscribed.
    subscribed: AtomicBool,
    presence: mpsc::Sender<PresenceCommand>,
    /// The mailbox's bounds, kept in Redis for every node; `None`: off.
    mailbox: Option<MailboxLimits>,
}

/// What became of one push on the other nodes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Routed {
    /// Connections that took it.
    pub(crate) connections: u64,
    /// Nobody holds the uid: it waits in the uid's mailbox in Redis.
    pub(crate) queued: bool,
    /// Redis ran the route: the push has its id, and this node's `pushd.v2`
    /// connections of the uid get it from the bus.
    pub(crate) sent: bool,
}

/// One push for [`Cluster::route`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Route<'a> {
    pub(crate) uid: &'a Uid,
    pub(crate) message: &'a [u8],
    /// No connection here took it and it is not transient: it waits in the uid's
    /// mailbox if no other node holds the uid either.
    pub(crate) keep: bool,
    /// Connections here took it (or get it from the bus, below).
    pub(crate) delivered_here: bool,
    /// This node has `pushd.v2` connections of the uid: they get it from the bus,
    /// with its id, in the cluster's order.
    pub(crate) v2_here: bool,
}

impl Route<'_> {
    /// The flags the route script reads.
    fn flags(&self) -> &'static str {
        match (self.keep, self.delivered_here, self.v2_here) {
            (true, _, _) => "k",
            (false, true, true) => "dv",
            (false, true, false) => "d",
            (false, false, true) => "v",
            (false, false, false) => "",
        }
    }
}

/// What a bind took from its uid's mailbox in Redis.
#[derive(Debug, Default)]
pub(crate) struct Taken {
    /// Oldest first: the id (`ms-N`) and the payload.
    pub(crate) messages: Vec<(String, Vec<u8>)>,
    /// How many of them had not been delivered before.
    pub(crate) waiting: u64,
    /// Waiting messages found past the TTL and dropped.
    pub(crate) expired: u64,
    /// A resume whose `since` is older than what Redis still holds.
    pub(crate) gap: bool,
}

/// Where a binding connection is, for [`Cluster::take_mailbox`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resume {
    /// A raw connection: the waiting messages.
    Raw,
    /// A `pushd.v2` connection without `since`: the waiting messages, and from
    /// now on the uid's pushes are kept for resumes.
    Fresh,
    /// A `pushd.v2` connection after message number N.
    After(u64),
    /// A `pushd.v2` connection whose `since` is no id of the cluster's.
    Unknown,
}

impl Resume {
    /// The take script's argument.
    fn arg(self) -> String {
        match self {
            Resume::Raw => String::new(),
            Resume::Fresh => "new".into(),
            Resume::After(n) => n.to_string(),
            Resume::Unknown => "gap".into(),
        }
    }
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
    pub(crate) fn new(
        config: &ClusterConfig,
        mailbox: Option<MailboxLimits>,
    ) -> anyhow::Result<(Self, PresenceInbox)> {
        let client = redis::Client::open(config.url.as_str())
            .with_context(|| format!("--cluster: invalid Redis URL {:?}", redacted(&config.url)))?;
        let manager_config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager_config)
            .context("--cluster: cannot set up the Redis connection")?;
        let started = crate::core::ids::boot_ms();
        let (presence, presence_rx) = mpsc::channel(64);
        let cluster = Cluster {
            id: format!("{}-{}-{started:x}", config.node_name, std::process::id()),
            name: config.node_name.clone(),
            redis_display: redacted(&config.url),
            keys: Keys::new(&config.prefix),
            client,
            conn,
            scripts: Scripts::new(),
            pending: Pending::default(),
            lease: config.lease,
            timeout: config.timeout,
            text_confirm: config.text_confirm.into(),
            lease_ok: AtomicBool::new(false),
            subscribed: AtomicBool::new(false),
            presence,
            mailbox,
        };
        Ok((cluster, PresenceInbox(presence_rx)))
    }

    /// Starts the lease, subscriber and presence tasks; the presence writer joins
    /// `tracker` (it ends with [`Cluster::leave`]), the others are returned.
    /// `changed` is where `registry` marks the uids whose presence must be written.
    pub(crate) fn spawn(
        self: &Arc<Self>,
        registry: Arc<Registry>,
        changed: Arc<ChangedUids>,
        local: Arc<dyn Local>,
        inbox: PresenceInbox,
        events: Arc<Events>,
        tracker: &TaskTracker,
    ) -> ClusterTasks {
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
        let token = tasks.token.clone();
        (tasks.tracker).spawn(resumable::run(
            self.clone(),
            registry.clone(),
            token.clone(),
        ));
        (tasks.tracker).spawn(subscriber::run(self.clone(), registry, local, token));
        (tasks.tracker).spawn(lease::run(self.clone(), events, tasks.token.clone()));
        tasks.tracker.close();
        tasks
    }

    /// `--node-name`.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// This node's id in Redis.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// The Redis address, without credentials.
    pub(crate) fn redis_display(&self) -> &str {
        &self.redis_display
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

    /// Whether this node is in the cluster now: lease renewed and subscribed.
    pub(crate) fn is_up(&self) -> bool {
        self.lease_ok.load(Ordering::Relaxed) && self.subscribed.load(Ordering::Relaxed)
    }

    /// The note for an answer that only this node could give.
    pub(crate) fn unreachable_note(&self, err: Option<&redis::RedisError>) -> String {
        let why = err.map(|err| format!(" ({err})")).unwrap_or_default();
        format!(
            "Redis at {} is unreachable{why}: only this node ({}) answered",
            self.redis_display, self.name
        )
    }

    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Pushes each message to the uid's connections on the other nodes (and this
    /// node's `pushd.v2` ones), in order, with one script call for all of them. With [`Confirm::Received`] a count is
    /// what the nodes that received the push had registered; with [`Confirm::Delivered`]
    /// it is what they report having queued (awaited together within one timeout), and
    /// each result names the nodes that could not confirm.
    ///
    /// A push whose `keep` is set (no connection took it on this node, and it is not
    /// transient) is kept in the uid's mailbox in Redis when no other node holds the uid,
    /// in the same script: nobody can bind in between.
    pub(crate) async fn route(
        &self,
        pushes: &[Route<'_>],
        confirm: Confirm,
    ) -> Vec<Partial<Routed>> {
        let failed = |note: String| {
            (pushes.iter())
                .map(|_| self.partial(Routed::default(), note.clone()))
                .collect()
        };
        if pushes.is_empty() {
            return Vec::new();
        }
        if !self.is_up() {
            return failed(self.unreachable_note(None));
        }
        let confirming = confirm == Confirm::Delivered;
        let tickets: Vec<Option<(u64, Arc<tokio::sync::Notify>)>> = pushes
            .iter()
            .map(|_| confirming.then(|| self.pending.open()))
            .collect();
        let mut invocation = self.scripts.route.prepare_invoke();
        invocation
            .key(self.keys.nodes())
            .arg(self.keys.prefix())
            .arg(&self.id)
            .arg(u8::from(confirming));
        match self.mailbox {
            Some(limits) => invocation
                .arg(limits.ttl.as_millis() as u64)
                .arg(limits.size)
                .arg(limits.memory),
            None => invocation.arg(0).arg(0).arg(0),
        };
        for (push, ticket) in pushes.iter().zip(&tickets) {
            let header = Header::Send {
                from: self.id.clone(),
                uid: push.uid.clone(),
                reply: ticket.as_ref().map(|(id, _)| *id),
                id: None,
            };
            invocation
                .arg(push.uid.as_str())
                .arg(bus::encode(&header, push.message))
                .arg(push.flags());
        }
        if !confirming {
            let counts: redis::RedisResult<Vec<i64>> =
                invocation.invoke_async(&mut self.conn()).await;
            return match counts {
                Ok(counts) => counts
                    .into_iter()
                    .map(|count| Partial {
                        value: route_result(count),
                        incomplete: Vec::new(),
                    })
                    .collect(),
                Err(err) => failed(self.unreachable_note(Some(&err))),
            };
        }
        let routed: redis::RedisResult<Vec<NamedRoute>> =
            invocation.invoke_async(&mut self.conn()).await;
        let routed = match routed {
            Ok(routed) if routed.len() == pushes.len() => routed,
            other => {
                for (id, _) in tickets.into_iter().flatten() {
                    self.pending.close(id);
                }
                return failed(match other {
                    Err(err) => self.unreachable_note(Some(&err)),
                    Ok(_) => "Redis answered the route script with the wrong shape".into(),
                });
            }
        };
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut results = Vec::with_capacity(pushes.len());
        for ((push, (count, reached, missed)), ticket) in pushes.iter().zip(routed).zip(tickets) {
            let uid = push.uid;
            let (id, wake) = ticket.expect("a ticket per push when confirming");
            self.pending.expect(id, reached);
            if count < 0 {
                self.pending.close(id);
                results.push(Partial {
                    value: route_result(count),
                    incomplete: Vec::new(),
                });
                continue;
            }
            let gathered = self.wait_until(id, &wake, deadline).await;
            let mut incomplete: Vec<String> = missed
                .iter()
                .map(|node| format!("node {node} holds {uid} but is not listening on Redis"))
                .collect();
            incomplete.extend(self.missing_notes(&gathered));
            results.push(Partial {
                value: Routed {
                    connections: delivered(&gathered),
                    queued: false,
                    sent: true,
                },
                incomplete,
            });
        }
        results
    }

    /// Takes what waits for `uid` in Redis, once this node's presence of it is
    /// written: from then on every push reaches this node instead, so nothing
    /// lands in the mailbox after it was taken. A `pushd.v2` connection that
    /// resumes gets everything after its place too. Binds that take at the same
    /// time share one presence write and one script call (through the presence writer).
    pub(crate) async fn take_mailbox(&self, uid: &Uid, resume: Resume) -> Result<Taken, String> {
        if self.mailbox.is_none() {
            return Ok(Taken::default());
        }
        let stopped = || "the presence writer has stopped".to_owned();
        let (done, taken) = oneshot::channel();
        let command = PresenceCommand::Take(uid.clone(), resume, done);
        self.presence.send(command).await.map_err(|_| stopped())?;
        match tokio::time::timeout(self.timeout, taken).await {
            Ok(taken) => taken.unwrap_or_else(|_| Err(stopped())),
            Err(_) => Err(format!(
                "Redis did not answer within {}",
                humantime::format_duration(self.timeout)
            )),
        }
    }

    /// The mailboxes of `uids`, taken in one script (for the presence writer, right
    /// after it wrote the uids' presence).
    async fn take_mailboxes(&self, uids: &[(&Uid, Resume)]) -> Result<Vec<Taken>, String> {
        let Some(limits) = self.mailbox else {
            return Ok(uids.iter().map(|_| Taken::default()).collect());
        };
        let mut invocation = self.scripts.take.prepare_invoke();
        invocation
            .arg(self.keys.prefix())
            .arg(limits.ttl.as_millis() as u64);
        for (uid, resume) in uids {
            invocation.arg(uid.as_str()).arg(resume.arg());
        }
        type Answer = (u64, u8, u64, Vec<Vec<u8>>);
        let taken: redis::RedisResult<Vec<Answer>> =
            invocation.invoke_async(&mut self.conn()).await;
        match taken {
            Ok(taken) if taken.len() == uids.len() => Ok(taken
                .into_iter()
                .map(|(expired, gap, waiting, flat)| {
                    let mut flat = flat.into_iter();
                    let mut messages = Vec::new();
                    while let (Some(id), Some(payload)) = (flat.next(), flat.next()) {
                        messages.push((String::from_utf8_lossy(&id).into_owned(), payload));
                    }
                    Taken {
                        messages,
                        waiting,
                        expired,
                        gap: gap == 1,
                    }
                })
                .collect()),
            Ok(_) => Err("Redis answered the take script with the wrong shape".into()),
            Err(err) => Err(self.unreachable_note(Some(&err))),
        }
    }

    /// Keeps the uids that have `pushd.v2` connections here resumable (see
    /// [`scripts::KEEPALIVE_MS`]).
    async fn keep_resumable(&self, uids: &[Uid]) -> redis::RedisResult<()> {
        let Some(limits) = self.mailbox else {
            return Ok(());
        };
        let expiry = limits.ttl.as_millis() as u64 + scripts::KEEPALIVE_MS;
        for chunk in uids.chunks(1000) {
            let mut pipe = redis::pipe();
            for uid in chunk {
                pipe.pexpire(self.keys.v2(uid), expiry as i64).ignore();
            }
            pipe.query_async::<()>(&mut self.conn()).await?;
        }
        Ok(())
    }

    /// Every mailbox in Redis that holds messages: uid, messages, payload bytes, and
    /// milliseconds since its oldest message.
    pub(crate) async fn mailboxes(&self) -> Partial<Vec<(String, u64, u64, u64)>> {
        if self.mailbox.is_none() {
            return Partial::default();
        }
        let listed: redis::RedisResult<Vec<(String, u64, u64, u64)>> = self
            .scripts
            .mailboxes
            .arg(self.keys.prefix())
            .invoke_async(&mut self.conn())
            .await;
        match listed {
            Ok(mut listed) => {
                listed.sort();
                Partial {
                    value: listed,
                    incomplete: Vec::new(),
                }
            }
            Err(err) => self.partial(Vec::new(), self.unreachable_note(Some(&err))),
        }
    }

    /// Empties the mailboxes of `uids` in Redis (a kick); returns the messages dropped.
    pub(crate) async fn clear_mailboxes(&self, uids: &[Uid]) -> u64 {
        if self.mailbox.is_none() {
            return 0;
        }
        let mut invocation = self.scripts.clear.prepare_invoke();
        invocation.arg(self.keys.prefix()).arg(0);
        for uid in uids {
            invocation.arg(uid.as_str());
        }
        invocation.invoke_async(&mut self.conn()).await.unwrap_or(0)
    }

    /// Connections of `uid` on the other live nodes, from presence.
    pub(crate) async fn online(&self, uid: &str) -> Partial<u64> {
        if !self.is_up() {
            return self.partial(0, self.unreachable_note(None));
        }
        let found: redis::RedisResult<Vec<(String, u64)>> = self
            .scripts
            .online
            .key(self.keys.nodes())
            .arg(self.keys.prefix())
            .arg(&self.id)
            .arg(uid)
            .invoke_async(&mut self.conn())
            .await;
        match found {
            Ok(found) => Partial {
                value: found.iter().map(|(_, n)| n).sum(),
                incomplete: Vec::new(),
            },
            Err(err) => self.partial(0, self.unreachable_note(Some(&err))),
        }
    }

    /// Asks every other live node to carry out `request` on its own connections and
    /// gathers the replies, waiting at most `--cluster-timeout`.
    pub(crate) async fn fan_out(&self, request: Request) -> Partial<Gathered> {
        let nothing = || Gathered {
            replies: Default::default(),
            missing: Vec::new(),
        };
        if !self.is_up() {
            return self.partial(nothing(), self.unreachable_note(None));
        }
        let (id, wake) = self.pending.open();
        let header = Header::Request {
            from: self.id.clone(),
            id,
            request,
        };
        // The expected nodes are the live ones before publishing: a node joining
        // later is not waited for (its reply still counts if it comes).
        let asked = async {
            let live = self.live_nodes().await?;
            self.pending
                .expect(id, live.into_iter().filter(|node| *node != self.id));
            self.publish(&self.keys.all(), bus::encode(&header, b""))
                .await
        };
        if let Err(err) = asked.await {
            self.pending.close(id);
            return self.partial(nothing(), self.unreachable_note(Some(&err)));
        }
        let gathered = self.wait(id, &wake).await;
        let incomplete = self.missing_notes(&gathered);
        Partial {
            value: gathered,
            incomplete,
        }
    }

    /// Waits until request `id` is complete or the timeout passes, dropping nodes
    /// whose lease ran out meanwhile.
    async fn wait(&self, id: u64, wake: &tokio::sync::Notify) -> Gathered {
        self.wait_until(id, wake, tokio::time::Instant::now() + self.timeout)
            .await
    }

    /// [`Cluster::wait`] with an explicit deadline, shared by several requests.
    async fn wait_until(
        &self,
        id: u64,
        wake: &tokio::sync::Notify,
        deadline: tokio::time::Instant,
    ) -> Gathered {
        while !self.pending.is_complete(id) {
            let recheck = (tokio::time::Instant::now() + LIVENESS_RECHECK).min(deadline);
            tokio::select! {
                () = wake.notified() => continue,
                () = tokio::time::sleep_until(recheck) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            if let Ok(live) = self.live_nodes().await {
                let live: HashSet<String> = live.into_iter().collect();
                self.pending.drop_nodes(&|node| !live.contains(node));
            }
        }
        self.pending.close(id)
    }

    fn missing_notes(&self, gathered: &Gathered) -> Vec<String> {
        gathered
            .missing
            .iter()
            .map(|node| {
                format!(
                    "node {node} did not reply within {}",
                    humantime::format_duration(self.timeout)
                )
            })
            .collect()
    }

    fn partial<T>(&self, value: T, note: String) -> Partial<T> {
        Partial {
            value,
            incomplete: vec![note],
        }
    }

    /// The ids of the nodes whose lease is running, this one included.
    async fn live_nodes(&self) -> redis::RedisResult<Vec<String>> {
        self.scripts
            .live
            .key(self.keys.nodes())
            .invoke_async(&mut self.conn())
            .await
    }

    async fn publish(&self, channel: &str, message: Vec<u8>) -> redis::RedisResult<u64> {
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(message)
            .query_async(&mut self.conn())
            .await
    }

    /// Tells every node that the kick of `uids` is over.
    pub(crate) async fn kick_done(&self, uids: &[Uid]) {
        let header = Header::KickDone {
            from: self.id.clone(),
            uids: uids.to_vec(),
        };
        let _ = self
            .publish(&self.keys.all(), bus::encode(&header, b""))
            .await;
    }

    /// Removes `uids` from the presence of `nodes` (ids) that did not answer a kick.
    pub(crate) async fn forget(&self, nodes: &[String], uids: &[Uid]) {
        let uids: Vec<&str> = uids.iter().map(Uid::as_str).collect();
        let mut pipe = redis::pipe();
        for node in nodes {
            pipe.hdel(self.keys.node(node), &uids).ignore();
        }
        let _: redis::RedisResult<()> = pipe.query_async(&mut self.conn()).await;
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

/// One push as the route script answers it with names: the connections registered by
/// the nodes that received it, those nodes, and the holders without a subscriber.
type NamedRoute = (i64, Vec<String>, Vec<String>);

/// A route script's count: connections, or -1 kept in the mailbox, -2 over its memory.
fn route_result(count: i64) -> Routed {
    Routed {
        connections: count.max(0) as u64,
        queued: count == -1,
        sent: true,
    }
}

/// Connections the replying nodes say took a confirmed push.
fn delivered(gathered: &Gathered) -> u64 {
    gathered
        .replies
        .values()
        .map(|reply| match &reply.result {
            Ok(Response::Delivered { connections, .. }) => *connections,
            _ => 0,
        })
        .sum()
}

/// A Redis URL with any password replaced, for logs and `stats`.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
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
    }
}
