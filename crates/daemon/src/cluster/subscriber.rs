//! The subscriber connection: receives `P:all` and this node's inbox, and serves
//! what arrives. It has its own reconnect loop (the connection manager does not
//! resubscribe); after each (re)subscription the presence hash is rewritten, since
//! anything may have happened while it was away.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use pushd_proto::admin::Request;
use pushd_proto::uid::normalize_uid;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::Cluster;
use super::bus::{self, Header};
use super::pending::NodeReply;
use super::presence::PresenceCommand;
use crate::Daemon;

/// First and longest wait between subscription attempts.
const RETRY: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(1));

/// Runs until cancelled.
pub async fn run(daemon: Arc<Daemon>, token: CancellationToken) {
    let cluster = daemon.cluster.clone().expect("cluster mode");
    let channels = [cluster.keys.all(), cluster.keys.inbox(&cluster.id)];
    let mut delay = RETRY.0;
    let mut ever_subscribed = false;
    loop {
        let subscribed = tokio::time::timeout(cluster.timeout, async {
            let mut pubsub = cluster.client.get_async_pubsub().await?;
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
                    let (done, _) = oneshot::channel();
                    let _ = cluster.presence.try_send(PresenceCommand::Resync(done));
                }
                ever_subscribed = true;
                let mut messages = pubsub.into_on_message();
                loop {
                    tokio::select! {
                        () = token.cancelled() => return,
                        message = messages.next() => match message {
                            Some(message) => serve(&daemon, &cluster, message.get_payload_bytes()),
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

/// Serves one bus message. Pushes are queued right here, in arrival order; anything
/// that needs Redis again (replies) runs in its own task so the subscription is never
/// held up.
fn serve(daemon: &Arc<Daemon>, cluster: &Arc<Cluster>, message: &[u8]) {
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
    if header.from() == cluster.id {
        // Our own requests and announcements on P:all.
        return;
    }
    match header {
        Header::Send { from, uid, reply } => {
            let delivered = match Utf8Bytes::try_from(Bytes::copy_from_slice(payload)) {
                Ok(message) => daemon.registry.push_to_uid(&uid, &message),
                Err(_) => 0,
            };
            if let Some(id) = reply {
                let cluster = cluster.clone();
                tokio::spawn(async move {
                    let result = Ok(pushd_proto::admin::Response::Delivered {
                        connections: delivered,
                    });
                    cluster.reply(&from, id, result).await;
                });
            }
        }
        Header::Request { from, id, request } => {
            let kicks = matches!(request, Request::Kick { .. } | Request::KickIdle { .. });
            if let Request::Kick { uids, reason, .. } = &request {
                cluster.hold_kicked(daemon, uids, reason.as_deref());
            }
            let result = crate::ops::local(daemon, request);
            let cluster = cluster.clone();
            tokio::spawn(async move {
                if kicks {
                    // The uid leaves this node's presence before the kick is confirmed.
                    let _ = cluster.flush_presence().await;
                }
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
                daemon.registry.kick_done(&uid);
            }
        }
        Header::Leave { from } => cluster.pending.drop_nodes(&|node| node == from),
    }
}

impl Cluster {
    /// Refuses rebinds of `uids` on this node until the coordinator says the kick is
    /// done (or the lease plus the timeout pass, if it never does).
    pub fn hold_kicked(&self, daemon: &Daemon, uids: &[String], reason: Option<&str>) {
        let until = Instant::now() + self.lease + self.timeout;
        let reason = reason.unwrap_or(crate::ops::DEFAULT_KICK_REASON);
        for uid in uids {
            if let Ok(uid) = normalize_uid(uid) {
                daemon.registry.hold_kicked(uid, reason, until);
            }
        }
    }

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
