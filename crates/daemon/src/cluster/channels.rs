//! The uids' own channels (`P:u:<uid>`): a node subscribes the channel of every
//! uid it holds a raw (not `pushd.v2`) connection of, on its subscriber
//! connection, so that a push that needs no id reaches it with one `PUBLISH`
//! whose receiver count says whether a node took it (`routes`).
//!
//! The presence writer is their only keeper: it subscribes a uid's channel
//! before it writes the uid's presence (so before a bind takes the uid's
//! mailbox, and pushes that arrive meanwhile wait behind it), unsubscribes it
//! once the uid's last raw connection here is gone, and subscribes the whole
//! set on every new subscriber connection in the same `SUBSCRIBE` as the node's
//! own channels: a push never finds the node listening to its inbox but not
//! yet to its uids.

use std::collections::HashSet;

use pushd_proto::uid::Uid;
use tracing::debug;

use super::Cluster;

/// The uids whose channels the subscriber connection has.
#[derive(Default)]
pub(super) struct UidChannels {
    uids: HashSet<Uid>,
}

impl UidChannels {
    /// A new subscriber connection: subscribes this node's own channels and
    /// the channel of each uid in `held`, in one command.
    pub(super) async fn attach(
        &mut self,
        cluster: &Cluster,
        held: HashSet<Uid>,
    ) -> Result<(), String> {
        self.uids.clear();
        let Some(mut conn) = cluster.subscription() else {
            return Err("the subscriber connection is gone".into());
        };
        let keys = &cluster.keys;
        let channels: Vec<String> = [keys.all(), keys.inbox(&cluster.id)]
            .into_iter()
            .chain(held.iter().map(|uid| keys.uid_channel(uid.as_str())))
            .collect();
        match tokio::time::timeout(cluster.timeout, conn.subscribe(&channels)).await {
            Ok(Ok(())) => {
                self.uids = held;
                Ok(())
            }
            Ok(Err(err)) => Err(format!("Redis: {err}")),
            Err(_) => Err("Redis: subscribing timed out".into()),
        }
    }

    /// Brings the subscriptions in line with `changes` (a uid, and whether it
    /// has a raw connection here). With `complete`, `changes` names every uid
    /// that should have its channel: any other loses it. Without a subscriber
    /// connection nothing is done: the next one subscribes what is held then.
    /// False when the change failed: the subscriptions are not what they should
    /// be, and the subscriber connection must be made again.
    pub(super) async fn update<'a>(
        &mut self,
        cluster: &Cluster,
        changes: impl IntoIterator<Item = (&'a Uid, bool)>,
        complete: bool,
    ) -> bool {
        let Some(mut conn) = cluster.subscription() else {
            return true;
        };
        let mut on = Vec::new();
        let mut off = Vec::new();
        let mut named = HashSet::new();
        for (uid, raw) in changes {
            if complete && raw {
                named.insert(uid);
            }
            if raw && !self.uids.contains(uid) {
                on.push(uid.clone());
            } else if !raw && self.uids.contains(uid) {
                off.push(uid.clone());
            }
        }
        if complete {
            off.extend(
                (self.uids.iter())
                    .filter(|uid| !named.contains(uid))
                    .cloned(),
            );
        }
        if on.is_empty() && off.is_empty() {
            return true;
        }
        let channels = |uids: &[Uid]| -> Vec<String> {
            (uids.iter())
                .map(|uid| cluster.keys.uid_channel(uid.as_str()))
                .collect()
        };
        let subscribed = async {
            if !on.is_empty() {
                conn.subscribe(channels(&on)).await?;
            }
            if !off.is_empty() {
                conn.unsubscribe(channels(&off)).await?;
            }
            redis::RedisResult::Ok(())
        };
        match tokio::time::timeout(cluster.timeout, subscribed).await {
            Ok(Ok(())) => {
                for uid in off {
                    self.uids.remove(&uid);
                }
                self.uids.extend(on);
                return true;
            }
            Ok(Err(err)) => debug!(%err, "cluster: could not change the uids' subscriptions"),
            Err(_) => debug!("cluster: changing the uids' subscriptions timed out"),
        }
        false
    }
}
