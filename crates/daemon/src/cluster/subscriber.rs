//! The subscriber connection: receives `P:all`, this node's inbox and its uids'
//! channels (`channels`, which the presence writer keeps), and serves what
//! arrives. It has its own reconnect loop (a connection's subscriptions end with
//! it); after each (re)subscription the presence hash is rewritten, since
//! anything may have happened while it was away.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::core::payload::Payload;
use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::{ProtocolVersion, PushInfo, PushKind, Value};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::bus::{self, Header};
use super::pending::NodeReply;
use super::presence::PresenceCommand;
use super::{Cluster, Local, Recipients, catch_up};
use crate::core::registry::Registry;

/// First and longest wait between subscription attempts.
const RETRY: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(1));

/// Runs until cancelled.
pub async fn run(
    cluster: Arc<Cluster>,
    registry: Arc<Registry>,
    local: Arc<dyn Local>,
    token: CancellationToken,
    catch_up_at_start: bool,
) {
    let mut delay = RETRY.0;
    let mut ever_subscribed = false;
    loop {
        let connected = tokio::time::timeout(cluster.timeout, connect(&cluster)).await;
        let (open, subscribed) = match connected {
            // The presence writer subscribes: this node's channels and its uids'.
            Ok(Ok((conn, messages))) => {
                let open = Open::new(&cluster, conn);
                (Some(open), subscribe(&cluster).await.map(|()| messages))
            }
            Ok(Err(err)) => (None, Err(err.to_string())),
            Err(_) => (None, Err("timed out".to_owned())),
        };
        match subscribed {
            Ok(mut messages) => {
                delay = RETRY.0;
                cluster.subscribed.store(true, Ordering::Relaxed);
                if ever_subscribed {
                    warn!("cluster: resubscribed to Redis");
                }
                // A subscription that follows another (of this process's, or of
                // the one it took over from) catches the pushd.v2 connections up.
                if ever_subscribed || catch_up_at_start {
                    let (done, _) = oneshot::channel();
                    let _ = cluster.presence.try_send(PresenceCommand::Resync(done));
                    if cluster.mailbox_on() {
                        // Held before the first message of the new subscription.
                        let held = registry.hold_connections(true);
                        tokio::spawn(catch_up::run(cluster.clone(), registry.clone(), held));
                    }
                }
                ever_subscribed = true;
                let uid_channels = cluster.keys.uid_channel("");
                loop {
                    tokio::select! {
                        () = token.cancelled() => return,
                        // The health check did not hear this node's probe: this
                        // subscription is dropped and made again.
                        () = cluster.health.resubscribe.notified() => break,
                        push = messages.recv() => match push {
                            Some(PushInfo { kind: PushKind::Message, data }) => {
                                if let [Value::BulkString(channel), Value::BulkString(payload)] = &data[..] {
                                    let on_uid = channel.starts_with(uid_channels.as_bytes());
                                    serve(&cluster, &registry, &local, payload, on_uid);
                                }
                            }
                            Some(PushInfo { kind: PushKind::Disconnection, .. }) | None => break,
                            // Confirmations of (un)subscribing.
                            Some(_) => {}
                        },
                    }
                }
                cluster.subscribed.store(false, Ordering::Relaxed);
                warn!(
                    "cluster: lost the Redis subscription; pushes to other nodes answer fail until it is back"
                );
            }
            Err(err) => debug!(%err, "cluster: cannot subscribe"),
        }
        drop(open);
        tokio::select! {
            () = token.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(RETRY.1);
    }
}

/// A connection of its own for the subscriptions, in RESP3 (what Redis sends
/// it comes on the receiver, and it still takes commands), named after this
/// node (`Keys::subscriber_name`): a node that reaps this one cuts it, so that
/// a node gone without closing it is no longer counted on its uids' channels.
async fn connect(
    cluster: &Cluster,
) -> redis::RedisResult<(MultiplexedConnection, UnboundedReceiver<PushInfo>)> {
    let info = cluster.client().get_connection_info().clone();
    let resp3 = (info.redis_settings().clone()).set_protocol(ProtocolVersion::RESP3);
    let client = redis::Client::open(info.set_redis_settings(resp3))?;
    let (pushes, messages) = tokio::sync::mpsc::unbounded_channel();
    let config = redis::AsyncConnectionConfig::new()
        .set_push_sender(pushes)
        .set_connection_timeout(Some(cluster.timeout))
        .set_response_timeout(Some(cluster.timeout));
    let mut conn = (client)
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    (redis::cmd("CLIENT").arg("SETNAME"))
        .arg(cluster.keys.subscriber_name(&cluster.id))
        .query_async::<()>(&mut conn)
        .await?;
    Ok((conn, messages))
}

/// The subscriber connection in [`Cluster::subscription`] while it is this
/// task's: it goes with this, whichever way the task leaves it.
struct Open<'a>(&'a Cluster);

impl<'a> Open<'a> {
    fn new(cluster: &'a Cluster, conn: MultiplexedConnection) -> Self {
        let made = cluster.subscriptions_made.fetch_add(1, Ordering::Relaxed) + 1;
        *cluster
            .subscription
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some((made, conn));
        Open(cluster)
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        *self
            .0
            .subscription
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// Subscribes this node's own channels on the new subscriber connection, and
/// has the presence writer, which keeps the uids' channels, subscribe those:
/// it may be waiting on Redis, so that goes on in its own task (a failure makes
/// the subscription anew: [`Cluster::subscription_failed`]).
async fn subscribe(cluster: &Arc<Cluster>) -> Result<(), String> {
    let (_, mut conn) = (cluster.subscription()).ok_or("the subscriber connection is gone")?;
    let own = [cluster.keys.all(), cluster.keys.inbox(&cluster.id)];
    match tokio::time::timeout(cluster.timeout, conn.subscribe(&own)).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => return Err(format!("Redis: {err}")),
        Err(_) => return Err("Redis: subscribing timed out".into()),
    }
    let (done, subscribed) = oneshot::channel();
    let cluster = cluster.clone();
    tokio::spawn(async move {
        if (cluster
            .presence
            .send(PresenceCommand::Subscribe(done))
            .await)
            .is_err()
        {
            return;
        }
        if let Ok(Err(err)) = subscribed.await {
            debug!(%err, "cluster: could not subscribe the uids' channels");
        }
    });
    Ok(())
}

/// Serves one bus message. Pushes and kicks are carried out right here, in arrival
/// order; anything that needs Redis again (replies) runs in its own task so the
/// subscription is never held up. `on_uid`: it came on a uid's own channel.
fn serve(
    cluster: &Arc<Cluster>,
    registry: &Registry,
    local: &Arc<dyn Local>,
    message: &[u8],
    on_uid: bool,
) {
    let (header, payload) = match bus::decode(message) {
        Ok(decoded) => decoded,
        Err(err) => {
            debug!(%err, "cluster: ignoring an unreadable bus message");
            if let Some((from, id)) = bus::unreadable_request(message)
                && from != cluster.id
            {
                let cluster = cluster.clone();
                tokio::spawn(async move {
                    let refusal = format!(
                        "cannot carry out this request (pushd {}: {err})",
                        env!("CARGO_PKG_VERSION")
                    );
                    cluster.reply(&from, id, Err(refusal)).await;
                });
            }
            return;
        }
    };
    let own = header.from() == cluster.id;
    let for_me = matches!(
        header,
        Header::Send { .. } | Header::SendGroup { .. } | Header::Probe { .. }
    );
    if own && !for_me {
        // Our own requests and announcements on P:all.
        return;
    }
    match header {
        Header::Send { here, .. } if on_uid && own && here => {
            // Our own push, heard on the uid's channel: ours took it already.
        }
        Header::Send { uid, .. } if on_uid => {
            // A push with no id, for raw connections only (a uid that has
            // pushd.v2 ones goes through the route script).
            let to = Recipients {
                id: None,
                raw: true,
                v2: false,
            };
            if let Ok(message) = Payload::try_from(Bytes::copy_from_slice(payload)) {
                local.push(&uid, &message, to);
            }
        }
        Header::Send {
            from,
            uid,
            reply,
            id,
            ..
        } => {
            // One of our own pushes comes back for our pushd.v2 connections only:
            // the others had it when it was pushed.
            let to = Recipients {
                id,
                raw: !own,
                v2: true,
            };
            let delivered = match Payload::try_from(Bytes::copy_from_slice(payload)) {
                Ok(message) => local.push(&uid, &message, to),
                Err(_) => 0,
            };
            if own {
                return;
            }
            if let Some(id) = reply {
                let cluster = cluster.clone();
                tokio::spawn(async move {
                    let result = Ok(pushd_proto::admin::Response::Delivered {
                        connections: delivered,
                        queued: false,
                    });
                    cluster.reply(&from, id, result).await;
                });
            }
        }
        Header::SendGroup {
            from,
            reply,
            confirm,
            id,
            uids,
            ..
        } => {
            // Every connection of these members here, raw ones too: a group
            // push reaches the pusher's own connections this way as well.
            let delivered = match Payload::try_from(Bytes::copy_from_slice(payload)) {
                Ok(message) => local.push_members(&uids, &message, id.as_deref()),
                Err(_) => 0,
            };
            let result = Ok(pushd_proto::admin::Response::Delivered {
                connections: delivered,
                queued: false,
            });
            if own {
                let node = cluster.name.clone();
                cluster
                    .pending
                    .reply(reply, from, NodeReply { node, result });
            } else if confirm {
                let cluster = cluster.clone();
                tokio::spawn(async move { cluster.reply(&from, reply, result).await });
            }
        }
        Header::Request { from, id, request } => {
            let result = local.clone().serve(request);
            let cluster = cluster.clone();
            tokio::spawn(async move {
                let result = result.await;
                cluster.reply(&from, id, result).await;
            });
        }
        Header::Reply {
            from,
            id,
            node,
            result,
        } => cluster.pending.reply(id, from, NodeReply { node, result }),
        Header::KickDone { uids, .. } => {
            for uid in uids {
                registry.kick_done(&uid);
            }
        }
        Header::Leave { from } => cluster.pending.drop_nodes(&|node| node == from),
        Header::Probe { nonce, .. } if own => cluster.health.heard(nonce),
        Header::Probe { .. } => {}
    }
}

impl Cluster {
    /// Sends one node's reply to request `id` to the inbox of node `to`.
    async fn reply(&self, to: &str, id: u64, result: Result<pushd_proto::admin::Response, String>) {
        let header = Header::Reply {
            from: self.id.clone(),
            id,
            node: self.name.clone(),
            result,
        };
        if let Err(err) = self
            .publish(&self.keys.inbox(to), bus::encode(&header, b""))
            .await
        {
            debug!(%err, "cluster: could not reply");
        }
    }
}
