//! The uids' own channels (`P:u:<uid>`): a node subscribes the channel of every
//! uid it holds a raw (not `pushd.v2`) connection of, on its subscriber
//! connection, so that a push that needs no id reaches it with one `PUBLISH`
//! whose receiver count says whether a node took it (`routes`).
//!
//! The presence writer is their only keeper: it subscribes a uid's channel
//! alongside the uid's presence write, so before a bind takes the uid's
//! mailbox (pushes that arrive meanwhile wait behind it; one pushed between
//! the presence write and the subscription, no node taking it on the channel,
//! goes through the route script to the node's inbox), unsubscribes it once
//! the uid's last raw connection here is gone, and subscribes every held uid's
//! on a new subscriber connection, once the subscriber has subscribed the
//! node's own (requests and replies must not wait behind presence writes). A
//! push meanwhile that no node takes on its uid's channel goes through the
//! route script to the node's inbox.

use pushd_proto::uid::Uid;
use redis::aio::MultiplexedConnection;
use tracing::debug;

use super::Cluster;

/// Channels per `SUBSCRIBE` or `UNSUBSCRIBE`: a node with 20,000 uids would
/// otherwise get 20,000 confirmations in one burst, and its connection's
/// buffers would keep that size.
const CHUNK: usize = 500;

/// A new subscriber connection, subscribed to this node's own channels by the
/// subscriber: subscribes the channel of each uid in `held`.
pub(super) async fn attach(cluster: &Cluster, held: Vec<Uid>) -> Result<(), String> {
    let Some((made, mut conn)) = cluster.subscription() else {
        return Err("the subscriber connection is gone".into());
    };
    let subscribed = change(cluster, &mut conn, &held, true);
    let failed = match tokio::time::timeout(cluster.timeout, subscribed).await {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(err)) => format!("Redis: {err}"),
        Err(_) => "Redis: subscribing timed out".into(),
    };
    cluster.subscription_failed(made);
    Err(failed)
}

/// Brings the subscriptions in line with `changes` (a uid, and whether it has
/// a raw connection here): subscribed if so, else unsubscribed (both harmless
/// when already so; nothing else remembers which are). Without a subscriber
/// connection nothing is done: the next one subscribes what is held then.
/// When the change fails the subscriptions are not what they should be, and
/// the subscriber connection is made again.
pub(super) async fn update<'a>(
    cluster: &Cluster,
    changes: impl IntoIterator<Item = (&'a Uid, bool)>,
) {
    let Some((made, mut conn)) = cluster.subscription() else {
        return;
    };
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for (uid, raw) in changes {
        if raw {
            on.push(uid.clone());
        } else {
            off.push(uid.clone());
        }
    }
    let changed = async {
        change(cluster, &mut conn, &on, true).await?;
        change(cluster, &mut conn, &off, false).await
    };
    match tokio::time::timeout(cluster.timeout, changed).await {
        Ok(Ok(())) => return,
        Ok(Err(err)) => debug!(%err, "cluster: could not change the uids' subscriptions"),
        Err(_) => debug!("cluster: changing the uids' subscriptions timed out"),
    }
    cluster.subscription_failed(made);
}

/// Subscribes (`on`) or unsubscribes the channels of `uids`, [`CHUNK`] a command.
async fn change(
    cluster: &Cluster,
    conn: &mut MultiplexedConnection,
    uids: &[Uid],
    on: bool,
) -> redis::RedisResult<()> {
    for chunk in uids.chunks(CHUNK) {
        let channels: Vec<String> = (chunk.iter())
            .map(|uid| cluster.keys.uid_channel(uid.as_str()))
            .collect();
        if on {
            conn.subscribe(channels).await?;
        } else {
            conn.unsubscribe(channels).await?;
        }
    }
    Ok(())
}
