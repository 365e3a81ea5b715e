//! Names of the keys and channels one cluster uses in Redis, all under one prefix.

/// Key and channel names for the prefix `P` (default `pushd`).
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// The names under `prefix`.
    pub fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    /// The prefix itself (scripts build per-node names from it).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `P:nodes`: sorted set, node id → lease deadline (ms on Redis's clock).
    pub fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    /// `P:node:<id>`: hash, uid → connections on that node.
    pub fn node(&self, id: &str) -> String {
        format!("{}:node:{id}", self.prefix)
    }

    /// `P:settle`: until when (ms on Redis's clock) presence in Redis may be
    /// missing uids that are online: set when a node that had joined finds its
    /// lease gone (Redis restarted empty, or paused past the leases).
    pub fn settle(&self) -> String {
        format!("{}:settle", self.prefix)
    }

    /// `P:all`: the channel every node listens to.
    pub fn all(&self) -> String {
        format!("{}:all", self.prefix)
    }

    /// `P:n:<id>`: one node's inbox channel.
    pub fn inbox(&self, id: &str) -> String {
        format!("{}:n:{id}", self.prefix)
    }

    /// `P:u:<uid>`: the uid's own channel, subscribed by every node that holds
    /// a raw (not `pushd.v2`) connection of it: a push that needs no id is one
    /// `PUBLISH` there, and its receiver count says whether a node took it.
    pub fn uid_channel(&self, uid: &str) -> String {
        format!("{}:u:{uid}", self.prefix)
    }

    /// `P:sub:<id>`: the client name of a node's subscriber connection (what
    /// `CLIENT SETNAME` allows: printable, no spaces), by which a node that
    /// reaps it finds it in `CLIENT LIST`.
    pub fn subscriber_name(&self, id: &str) -> String {
        format!("{}:sub:{id}", self.prefix)
            .chars()
            .map(|c| if c.is_ascii_graphic() { c } else { '_' })
            .collect()
    }

    /// `P:chan`: set of the node ids that subscribe their uids' channels. While
    /// a live node is missing from it (an older version, in a rolling deploy),
    /// every push goes through the route script.
    pub fn channel_nodes(&self) -> String {
        format!("{}:chan", self.prefix)
    }

    /// `P:v2:<uid>`: hash, the uid is resumable (`l`: the last message number that may be
    /// missing from its stream, `t`: the last one handed over at a bind).
    pub fn v2(&self, uid: &str) -> String {
        format!("{}:v2:{uid}", self.prefix)
    }

    /// `P:g:<group>`: hash, member uid → when its membership ends (ms on Redis's
    /// clock; `0`: never).
    pub fn group(&self, group: &str) -> String {
        format!("{}:g:{group}", self.prefix)
    }

    /// `P:groups`: set of the groups that have members.
    pub fn groups(&self) -> String {
        format!("{}:groups", self.prefix)
    }

    /// `P:gcount`: memberships in all groups together.
    pub fn memberships(&self) -> String {
        format!("{}:gcount", self.prefix)
    }

    /// `P:events`: stream of the cluster's events; an entry's id is the
    /// event's, field `t` its type, `e` its JSON without the id.
    pub fn events(&self) -> String {
        format!("{}:events", self.prefix)
    }

    /// `P:hook`: the id of the node posting to the webhook, with a TTL.
    pub fn webhook(&self) -> String {
        format!("{}:hook", self.prefix)
    }
}
