//! The admin protocol spoken over pushd's local socket.
//!
//! One JSON object per line in each direction; a client may send several
//! requests on one connection and gets the replies in order. Every request
//! and reply carries [`PROTOCOL_VERSION`], so a `pushctl` and a `pushd` from
//! different releases fail with a readable message instead of a parse error.
//! The format is documented for people in `docs/admin-protocol.md`.

use serde::{Deserialize, Serialize};

pub use crate::counters::Counters;
use crate::uid::Uid;

/// Version of this protocol; bumped on any incompatible change.
pub const PROTOCOL_VERSION: u32 = 1;

/// Longest admin line accepted in either direction, in bytes.
///
/// Large enough for a `send` of the largest pushable message with JSON
/// escaping, and for a `list` reply with tens of thousands of connections.
pub const MAX_LINE: usize = 64 * 1024 * 1024;

/// Longest close-frame reason, in bytes (RFC 6455: 125 minus the 2-byte code).
pub const MAX_CLOSE_REASON: usize = 123;

/// A request as written on the wire: the version next to the command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestLine {
    /// The client's [`PROTOCOL_VERSION`].
    pub version: u32,
    /// What the client asks for.
    #[serde(flatten)]
    pub request: Request,
}

/// One thing a client can ask the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Is the daemon there? Answered with [`Response::Pong`].
    Ping,
    /// Every bound uid with its connections ([`Response::List`]).
    List,
    /// Close every connection of each uid ([`Response::Kicked`]).
    Kick {
        /// The uids to kick.
        uids: Vec<Uid>,
        /// Reason text for the close frame (at most [`MAX_CLOSE_REASON`] bytes).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// Also refuse binds of these uids for this many milliseconds (close 4003).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ban_ms: Option<u64>,
    },
    /// Push one text message to exactly one connection, by its id
    /// ([`Response::Delivered`]).
    SendConnection {
        /// The connection's id.
        connection: String,
        /// The message.
        message: String,
    },
    /// Close exactly one connection, by its id (`connection` in `list` and
    /// events), with 4000 ([`Response::Kicked`]).
    KickConnection {
        /// The connection's id.
        connection: String,
        /// Reason text for the close frame (at most [`MAX_CLOSE_REASON`] bytes).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Lift the bans on these uids ([`Response::Unbanned`]).
    Unban {
        /// The uids to unban.
        uids: Vec<Uid>,
    },
    /// Active bans ([`Response::Bans`]).
    Bans,
    /// Close every connection, bound or not, idle for longer than the given time.
    KickIdle {
        /// Idle threshold in milliseconds.
        idle_over_ms: u64,
        /// Reason text for the close frame.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Push one text message to every connection of a uid, or keep it in the
    /// uid's mailbox while it has none ([`Response::Delivered`]).
    Send {
        /// The addressed uid.
        uid: Uid,
        /// The text frame's payload, sent as is.
        message: String,
        /// Never keep it in the mailbox: deliver now or not at all.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        transient: bool,
    },
    /// Push one text message to every bound connection ([`Response::Delivered`]).
    Broadcast {
        /// The text frame's payload, sent as is.
        message: String,
    },
    /// How many connections does a uid have? ([`Response::Online`])
    Online {
        /// The uid asked about.
        uid: Uid,
    },
    /// Daemon-wide figures ([`Response::Stats`]).
    Stats,
    /// Uids with messages waiting in their mailbox ([`Response::Mailboxes`]).
    Mailboxes,
    /// Empty these uids' mailboxes ([`Response::Cleared`]).
    ClearMailboxes {
        /// The uids whose waiting messages are dropped.
        uids: Vec<Uid>,
    },
    /// Read the TLS certificate and key and the auth key files again
    /// ([`Response::Reloaded`]); this node only, as the files are its own.
    /// An error reply when a file did not load (its old key stays in use).
    Reload,
    /// Drain this node ([`Response::Drained`]): stop taking WebSocket clients,
    /// answer `/v1/ready` with 503, and close every WebSocket connection with
    /// 1012 at a random moment within the window, each after what it was sent
    /// is written; answered when the last one is closed. This node only.
    Drain {
        /// The window in milliseconds; without it, the daemon's `--drain`, or
        /// 30 s when that is 0.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        over_ms: Option<u64>,
    },
    /// Make `uids` members of `group`, for `ttl_ms` or for good
    /// ([`Response::GroupAdded`]).
    GroupAdd {
        /// The group (named like a uid).
        group: Uid,
        /// The uids to add.
        uids: Vec<Uid>,
        /// How long the memberships last; a member's TTL is refreshed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ttl_ms: Option<u64>,
    },
    /// End `uids`' memberships of `group` ([`Response::GroupRemoved`]).
    GroupRemove {
        /// The group.
        group: Uid,
        /// The uids to remove.
        uids: Vec<Uid>,
    },
    /// Remove `group` with all its members ([`Response::GroupRemoved`]).
    GroupDrop {
        /// The group.
        group: Uid,
    },
    /// `group`'s members ([`Response::GroupMembers`]).
    GroupMembers {
        /// The group.
        group: Uid,
    },
    /// Every group ([`Response::Groups`]).
    GroupList,
    /// The groups `uid` belongs to ([`Response::UidGroups`]).
    UidGroups {
        /// The uid.
        uid: Uid,
    },
    /// Push one text message to every member of `group` ([`Response::GroupSent`]).
    SendGroup {
        /// The group.
        group: Uid,
        /// The text frame's payload, sent as is.
        message: String,
        /// Never keep it in a mailbox: deliver now or not at all.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        transient: bool,
    },
    /// Upgrade this pushd in place ([`Response::Upgraded`], or
    /// [`Response::UpgradeFailed`] when the new process did not take over and
    /// this one serves on): start `binary` (default: the path this pushd was
    /// started from) with the same arguments and environment, and hand it the
    /// listeners and every plain WebSocket connection. This node only.
    Upgrade {
        /// The new binary.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        binary: Option<String>,
        /// When the new binary speaks another hand-over format: drain this
        /// node over this many milliseconds instead (then restart it), as
        /// [`Request::Drain`] does.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        drain_if_refused_ms: Option<u64>,
    },
    /// Stream presence events ([`Response::Events`], then one JSON event per
    /// line until the client hangs up): the whole cluster's in cluster mode.
    Events {
        /// The event types wanted (`connect`, `disconnect`, `online`,
        /// `offline`, `message`); every type when empty.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        types: Vec<String>,
        /// First every event held after this id (`MS-N`), and a `gap` event
        /// when some of those are gone.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<String>,
    },
}

/// A reply as written on the wire: the daemon's version and either a result
/// or an error message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyLine {
    /// The daemon's [`PROTOCOL_VERSION`].
    pub version: u32,
    /// Present when the request was carried out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Response>,
    /// Present when it was not: a sentence for a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// In cluster mode, what the result could not confirm (a node that did not reply in
    /// time, Redis unreachable), one sentence each; the result covers the rest.
    /// pushctl prints them and exits 3.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub incomplete: Vec<String>,
}

impl ReplyLine {
    /// A successful reply.
    pub fn ok(result: Response) -> Self {
        Self {
            version: PROTOCOL_VERSION,
            result: Some(result),
            error: None,
            incomplete: Vec::new(),
        }
    }

    /// A result that does not cover everything it should; `incomplete` says what is missing.
    pub fn partial(result: Response, incomplete: Vec<String>) -> Self {
        Self {
            incomplete,
            ..Self::ok(result)
        }
    }

    /// A refusal with a message for a person.
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            version: PROTOCOL_VERSION,
            result: None,
            error: Some(message.into()),
            incomplete: Vec::new(),
        }
    }
}

/// What the daemon answers to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    /// Answer to [`Request::Ping`].
    Pong {
        /// The daemon's release, e.g. `0.1.0`.
        daemon_version: String,
    },
    /// Answer to [`Request::List`], uids sorted.
    List {
        /// One entry per bound uid.
        uids: Vec<UidInfo>,
    },
    /// Answer to [`Request::Kick`] and [`Request::KickIdle`].
    Kicked {
        /// Connections closed in all.
        connections: u64,
        /// The uids that lost connections, with how many each.
        uids: Vec<UidCount>,
    },
    /// Answer to [`Request::Send`] and [`Request::Broadcast`].
    Delivered {
        /// Connections whose queue took the message.
        connections: u64,
        /// `send` only: no connection took it, and it waits in the uid's mailbox.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        queued: bool,
    },
    /// Answer to [`Request::Online`].
    Online {
        /// The normalised uid.
        uid: String,
        /// Its open connections; 0 means offline.
        connections: u64,
    },
    /// Answer to [`Request::Stats`].
    Stats(Box<Stats>),
    /// Answer to [`Request::Unban`].
    Unbanned {
        /// The uids that were banned and no longer are.
        uids: Vec<String>,
    },
    /// Answer to [`Request::Bans`].
    Bans {
        /// Active bans, sorted by uid.
        bans: Vec<BanInfo>,
    },
    /// Answer to [`Request::Mailboxes`].
    Mailboxes {
        /// Every uid with waiting messages, sorted by uid.
        uids: Vec<MailboxInfo>,
    },
    /// Answer to [`Request::ClearMailboxes`].
    Cleared {
        /// The uids that had waiting messages, with what was dropped.
        uids: Vec<MailboxInfo>,
    },
    /// Answer to [`Request::Events`]: the stream of events follows, one JSON
    /// object per line.
    Events,
    /// Answer to [`Request::Reload`] when every file loaded.
    Reloaded {
        /// What was loaded again (`TLS certificate`, `auth key`); empty when
        /// pushd reads no key files.
        loaded: Vec<String>,
    },
    /// Answer to [`Request::Drain`] once the last connection closed.
    Drained {
        /// The WebSocket connections the drain closed.
        closed: u64,
        /// The window they were closed over, in milliseconds.
        over_ms: u64,
    },
    /// Answer to [`Request::Upgrade`]: the new process serves (the old one,
    /// which answers, exits right after). Boxed: the largest answer otherwise.
    Upgraded(Box<UpgradeInfo>),
    /// Answer to [`Request::GroupAdd`].
    GroupAdded {
        /// New members.
        added: u64,
        /// Members already (their TTL refreshed when one was given).
        already: u64,
        /// The uids refused (a limit), with why.
        refused: Vec<RefusedMember>,
    },
    /// Answer to [`Request::GroupRemove`] and [`Request::GroupDrop`].
    GroupRemoved {
        /// Memberships that ended.
        removed: u64,
    },
    /// Answer to [`Request::GroupMembers`]: sorted by uid; empty when there is
    /// no such group.
    GroupMembers {
        /// The members.
        members: Vec<MemberInfo>,
    },
    /// Answer to [`Request::GroupList`]: sorted by name.
    Groups {
        /// The groups.
        groups: Vec<GroupInfo>,
    },
    /// Answer to [`Request::UidGroups`]: sorted.
    UidGroups {
        /// The uid's groups.
        groups: Vec<String>,
    },
    /// Answer to [`Request::SendGroup`].
    GroupSent {
        /// Connections whose queue took it.
        delivered: u64,
        /// Members with no connection whose mailbox kept it.
        queued: u64,
        /// Members of the group.
        members: u64,
    },
    /// Answer to [`Request::Upgrade`]: the new process did not take over;
    /// this one serves on.
    UpgradeFailed {
        /// Why.
        reason: String,
        /// With `drain_if_refused_ms`, when it applied: the connections drained.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        drained: Option<u64>,
    },
}

impl Response {
    /// The reply's `type` tag, for messages about a reply of the wrong kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Response::Pong { .. } => "pong",
            Response::List { .. } => "list",
            Response::Kicked { .. } => "kicked",
            Response::Delivered { .. } => "delivered",
            Response::Online { .. } => "online",
            Response::Stats(_) => "stats",
            Response::Unbanned { .. } => "unbanned",
            Response::Bans { .. } => "bans",
            Response::Mailboxes { .. } => "mailboxes",
            Response::Cleared { .. } => "cleared",
            Response::Reloaded { .. } => "reloaded",
            Response::Events => "events",
            Response::Drained { .. } => "drained",
            Response::Upgraded(_) => "upgraded",
            Response::GroupAdded { .. } => "group_added",
            Response::GroupRemoved { .. } => "group_removed",
            Response::GroupMembers { .. } => "group_members",
            Response::Groups { .. } => "groups",
            Response::UidGroups { .. } => "uid_groups",
            Response::GroupSent { .. } => "group_sent",
            Response::UpgradeFailed { .. } => "upgrade_failed",
        }
    }
}

/// A uid an add refused ([`Response::GroupAdded`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedMember {
    /// The uid.
    pub uid: String,
    /// Why, for a person.
    pub reason: String,
}

/// One member of a group ([`Response::GroupMembers`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// The uid.
    pub uid: String,
    /// Its connections.
    pub connections: u64,
    /// Milliseconds until its membership ends; `None` without a TTL.
    pub expires_ms: Option<u64>,
}

/// One group ([`Response::Groups`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInfo {
    /// Its name.
    pub group: String,
    /// Its members.
    pub members: u64,
    /// Members with a connection.
    pub online: u64,
}

/// A live upgrade that happened ([`Response::Upgraded`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeInfo {
    /// The process that goes.
    pub old_pid: u32,
    /// Its version.
    pub old_version: String,
    /// The process that took over.
    pub new_pid: u32,
    /// Its version.
    pub new_version: String,
    /// WebSocket connections handed over.
    pub connections: u64,
    /// From the new process's start to its taking over, in milliseconds.
    pub took_ms: u64,
}

/// One uid's mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxInfo {
    /// The uid.
    pub uid: String,
    /// Messages waiting.
    pub messages: u64,
    /// Their payload bytes.
    pub bytes: u64,
    /// Milliseconds since the oldest of them was pushed.
    pub oldest_ms: u64,
}

/// Every mailbox together, for `stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MailboxTotals {
    /// Uids with waiting messages.
    pub uids: u64,
    /// Messages waiting.
    pub messages: u64,
    /// Their payload bytes.
    pub bytes: u64,
}

/// One active ban.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanInfo {
    /// The banned uid.
    pub uid: String,
    /// Milliseconds until the ban ends.
    pub remaining_ms: u64,
}

/// A bound uid and its connections, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UidInfo {
    /// The uid.
    pub uid: String,
    /// Its connections, oldest first.
    pub connections: Vec<ConnInfo>,
}

impl UidInfo {
    /// Idle time of the uid's most recently active connection, in
    /// milliseconds (0 for a uid listed without connections).
    pub fn least_idle_ms(&self) -> u64 {
        self.connections
            .iter()
            .map(|c| c.idle_ms)
            .min()
            .unwrap_or(0)
    }
}

/// One WebSocket connection, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnInfo {
    /// Daemon-unique connection number.
    pub id: u64,
    /// The client's address, `IP:PORT` or `[IPv6]:PORT`.
    pub peer: String,
    /// Milliseconds since the last inbound frame.
    pub idle_ms: u64,
    /// Milliseconds since the connection was accepted.
    pub connected_ms: u64,
    /// In cluster mode, the `--node-name` of the node holding the connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// `sse` for a page's event stream; absent for a WebSocket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Its id, unique in the cluster: what `kick --connection` takes.
    #[serde(default)]
    pub connection: String,
}

/// A uid and a number of its connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UidCount {
    /// The uid.
    pub uid: String,
    /// How many of its connections.
    pub connections: u64,
}

/// Daemon-wide figures, as reported by `pushctl stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// The daemon's release.
    pub version: String,
    /// Milliseconds since the daemon started.
    pub uptime_ms: u64,
    /// Bound WebSocket listener address.
    pub ws_listen: String,
    /// Bound text-port address.
    pub text_listen: String,
    /// Path of the admin socket.
    pub socket: String,
    /// Open WebSocket connections, bound or not.
    pub connections: u64,
    /// Distinct bound uids.
    pub uids: u64,
    /// Open text-port connections.
    pub text_connections: u64,
    /// Active bans.
    #[serde(default)]
    pub bans: u64,
    /// Group memberships, in all groups together.
    #[serde(default)]
    pub group_memberships: u64,
    /// Messages waiting in mailboxes.
    #[serde(default)]
    pub mailbox: MailboxTotals,
    /// Consumers of presence events now (SSE streams, `pushctl events`, the webhook).
    #[serde(default)]
    pub event_subscribers: u64,
    /// Monotonic counters since start.
    pub counters: Counters,
    /// In cluster mode: this node, Redis, and every node's figures. `connections`,
    /// `uids`, `text_connections`, `bans` and `counters` above are then sums over the
    /// nodes that replied (a uid online on two nodes counts on each).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterInfo>,
}

/// The cluster as one node sees it, for `pushctl stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInfo {
    /// This node's `--node-name`.
    pub node: String,
    /// This node's id in Redis (name, pid and a start stamp).
    pub node_id: String,
    /// The Redis address, without credentials.
    pub redis: String,
    /// Whether this node currently reaches Redis.
    pub redis_up: bool,
    /// Every node that replied, this one included, sorted by name.
    pub nodes: Vec<NodeStats>,
}

/// One node's own figures inside [`ClusterInfo`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStats {
    /// `--node-name`.
    pub name: String,
    /// Node id in Redis.
    pub id: String,
    /// Its WebSocket listener.
    pub ws_listen: String,
    /// Milliseconds since it started.
    pub uptime_ms: u64,
    /// Its open WebSocket connections.
    pub connections: u64,
    /// Its distinct bound uids.
    pub uids: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_wire_format_is_flat() {
        let line = RequestLine {
            version: PROTOCOL_VERSION,
            request: Request::Kick {
                uids: vec![Uid::parse("42").unwrap()],
                reason: None,
                ban_ms: None,
            },
        };
        let json = serde_json::to_string(&line).unwrap();
        assert_eq!(json, r#"{"version":1,"cmd":"kick","uids":["42"]}"#);
        assert_eq!(serde_json::from_str::<RequestLine>(&json).unwrap(), line);
    }

    #[test]
    fn unit_requests_round_trip() {
        let line: RequestLine = serde_json::from_str(r#"{"version":1,"cmd":"list"}"#).unwrap();
        assert_eq!(line.request, Request::List);
    }

    #[test]
    fn replies_round_trip() {
        let reply = ReplyLine::ok(Response::Delivered {
            connections: 3,
            queued: false,
        });
        let json = serde_json::to_string(&reply).unwrap();
        assert_eq!(
            json,
            r#"{"version":1,"result":{"type":"delivered","connections":3}}"#
        );
        assert_eq!(serde_json::from_str::<ReplyLine>(&json).unwrap(), reply);
        let err = serde_json::to_string(&ReplyLine::error("nope")).unwrap();
        assert_eq!(err, r#"{"version":1,"error":"nope"}"#);
    }
}
