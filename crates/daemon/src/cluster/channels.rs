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
//! on a new subscriber connection before the node's own channels: a push never
//! finds the node listening to its inbox but not yet to its uids.

use pushd_proto::uid::Uid;
use redis::aio::MultiplexedConnection;
use tracing::debug;

use super::Cluster;

/// Channels per `SUBSCRIBE` or `UNSUBSCRIBE`: a node with 20,000 uids would
/// otherwise get 20,000 confirmations in one burst, and its connection's
/// buffers would keep that size.
const CHUNK: usize = 500;

/// A new subscriber connection: subscribes the channel of each uid in `held`,
/// then this node's own channels (its inbox last: a node that answers on its
/// inbox hears its uids too).
pub(super) async fn attach(cluster: &Cluster, held: Vec<Uid>) -> Result<(), String> {
    let Some(mut conn) = cluster.subscription() else {
        return Err("the subscriber connection is gone".into());
    };
    let keys = &cluster.keys;
    let subscribed = async {
        change(cluster, &mut conn, &held, true).await?;
        conn.subscribe(&[keys.all(), keys.inbox(&cluster.id)]).await
    };
    match tokio::time::timeout(cluster.timeout, subscribed).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(format!("Redis: {err}")),
        Err(_) => Err("Redis: subscribing timed out".into()),
    }
}

/// Brings the subscriptions in line with `changes` (a uid, and whether it has
/// a raw connection here): subscribed if so, else unsubscribed (both harmless
/// when already so; nothing else remembers which are). Without a subscriber
/// connection nothing is done: the next one subscribes what is held then.
/// False when the change failed: the subscriptions are not what they should be,
/// and the subscriber connection must be made again.
pub(super) async fn update<'a>(
    cluster: &Cluster,
    changes: impl IntoIterator<Item = (&'a Uid, bool)>,
) -> bool {
    let Some(mut conn) = cluster.subscription() else {
        return true;
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
        Ok(Ok(())) => return true,
        Ok(Err(err)) => debug!(%err, "cluster: could not change the uids' subscriptions"),
        Err(_) => debug!("cluster: changing the uids' subscriptions timed out"),
    }
    false
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
