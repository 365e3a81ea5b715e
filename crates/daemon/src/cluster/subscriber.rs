//! The subscriber connection: receives `P:all` and this node's inbox, and serves
//! what arrives. It has its own reconnect loop (the connection manager does not
//! resubscribe); after each (re)subscription the presence hash is rewritten, since
//! anything may have happened while it was away.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::core::payload::Payload;
use bytes::Bytes;
use futures_util::StreamExt;
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
    let channels = [cluster.keys.all(), cluster.keys.inbox(&cluster.id)];
    let mut delay = RETRY.0;
    let mut ever_subscribed = false;
    loop {
        let subscribed = tokio::time::timeout(cluster.timeout, async {
            let mut pubsub = cluster.client().get_async_pubsub().await?;
            pubsub.subscribe(&channels).await?;
            redis::RedisResult::Ok(pubsub)
        })
        .await;
        match subscribed {
            Ok(Ok(pubsub)) => {
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
                        let held = registry.hold_v2_connections();
                        tokio::spawn(catch_up::run(cluster.clone(), registry.clone(), held));
                    }
                }
                ever_subscribed = true;
                let mut messages = pubsub.into_on_message();
                loop {
                    tokio::select! {
                        () = token.cancelled() => return,
                        // The health check did not hear this node's probe: this
                        // subscription is dropped and made again.
                        () = cluster.health.resubscribe.notified() => break,
                        message = messages.next() => match message {
                            Some(message) => {
                                serve(&cluster, &registry, &local, message.get_payload_bytes());
                            }
                            None => break,
                        },
                    }
                }
                cluster.subscribed.store(false, Ordering::Relaxed);
                warn!(
                    "cluster: lost the Redis subscription; pushes to other nodes answer fail until it is back"
                );
            }
            Ok(Err(err)) => debug!(%err, "cluster: cannot subscribe"),
            Err(_) => debug!("cluster: subscribing timed out"),
        }
        tokio::select! {
            () = token.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(RETRY.1);
    }
}

/// Serves one bus message. Pushes and kicks are carried out right here, in arrival
/// order; anything that needs Redis again (replies) runs in its own task so the
/// subscription is never held up.
fn serve(cluster: &Arc<Cluster>, registry: &Registry, local: &Arc<dyn Local>, message: &[u8]) {
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
        Header::Send {
            from,
            uid,
            reply,
            id,
        } => {
            // One of our own pushes comes back for our pushd.v2 connections only:
            // the others had it when it was pushed.
            let to = Recipients { id, raw: !own };
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
