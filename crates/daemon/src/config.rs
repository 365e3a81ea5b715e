//! Command-line options and the configuration they produce.
//!
//! The clap definition lives in the library (not in `main.rs`) so that the
//! completion and man-page generators render exactly what the binary parses.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use ipnet::IpNet;

use crate::core::clock::LONGEST;

/// Hard upper bound for `--max-message-size`: keeps one text-port line and
/// one admin `send` comfortably inside the admin protocol's line limit.
pub const MAX_MESSAGE_SIZE_CEILING: usize = 16 * 1024 * 1024;

/// How long a connection being closed by pushd may take to answer the close
/// frame before the socket is dropped (kick, heartbeat, shutdown, refusals).
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long shutdown waits for every connection to finish closing.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// `pushd`: the WebSocket push daemon.
///
/// Holds WebSocket connections bound to uids, takes pushes from backends on a
/// line-based text port, and answers `pushctl` on a local admin socket.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "pushd",
    version,
    about = "WebSocket push daemon: uid registry, text port for backends, admin socket for pushctl",
    long_about = None,
    after_help = "pushd is also a bash builtin (the directory stack): run this program by path, \
                  under systemd, or as `command pushd`."
)]
pub struct DaemonArgs {
    /// WebSocket listener for clients (port 0 picks a free port).
    #[arg(
        long,
        env = "PUSHD_WS_LISTEN",
        default_value = "0.0.0.0:1234",
        value_name = "ADDR"
    )]
    pub ws_listen: SocketAddr,

    /// Text port for backends: one JSON line in, `ok` or `fail` out.
    #[arg(
        long,
        env = "PUSHD_TEXT_LISTEN",
        default_value = "127.0.0.1:5678",
        value_name = "ADDR"
    )]
    pub text_listen: SocketAddr,

    /// Most text-port connections at once; one more is closed at once and counted.
    #[arg(long, env = "PUSHD_MAX_TEXT_CONNECTIONS", default_value_t = 512, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_text_connections: u64,

    /// A text-port connection that sends nothing for this long is closed and
    /// counted. 0: never.
    #[arg(long, env = "PUSHD_TEXT_IDLE_TIMEOUT", default_value = "10m", value_name = "DUR",
          value_parser = duration)]
    pub text_idle_timeout: Duration,

    /// Admin socket for pushctl [default: $XDG_RUNTIME_DIR/pushd.sock, else /tmp/pushd-EUID/pushd.sock].
    #[arg(long, env = "PUSHD_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// Let the members of GROUP (a name or a numeric gid) use pushctl: the admin socket is
    /// given to that group with mode 0660 instead of 0600. pushd must be a member of it.
    #[arg(long, env = "PUSHD_SOCKET_GROUP", value_name = "GROUP")]
    pub socket_group: Option<String>,

    /// Close a connection that sent nothing for longer than this; 0 disables.
    #[arg(long, env = "PUSHD_HEARTBEAT", default_value = "55s", value_name = "DUR",
          value_parser = duration)]
    pub heartbeat: Duration,

    /// Send a WebSocket ping this often; 0 disables.
    #[arg(long, env = "PUSHD_PING_INTERVAL", default_value = "25s", value_name = "DUR",
          value_parser = duration)]
    pub ping_interval: Duration,

    /// Largest inbound WebSocket message (larger: close 1009) and largest
    /// text-port line (larger: `fail`), in bytes.
    #[arg(long, env = "PUSHD_MAX_MESSAGE_SIZE", default_value_t = 64 * 1024, value_name = "BYTES",
          value_parser = clap::value_parser!(u64).range(256..=MAX_MESSAGE_SIZE_CEILING as u64))]
    pub max_message_size: u64,

    /// Most messages waiting for one connection; one more and the connection
    /// is a slow consumer: closed with 4002 and counted.
    #[arg(long, env = "PUSHD_MAX_QUEUE", default_value_t = 1024, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_queue: u64,

    /// Most payload bytes waiting for one connection (at least
    /// --max-message-size); over it, as for --max-queue.
    #[arg(long, env = "PUSHD_MAX_QUEUE_BYTES", default_value_t = 4 * 1024 * 1024, value_name = "BYTES")]
    pub max_queue_bytes: u64,

    /// Most WebSocket connections in all; over it the handshake is answered
    /// HTTP 503. 0: only the open-file limit (minus 64 descriptors) applies.
    #[arg(
        long,
        env = "PUSHD_MAX_CONNECTIONS",
        default_value_t = 0,
        value_name = "N"
    )]
    pub max_connections: usize,

    /// Most WebSocket connections from one IP address; over it the
    /// handshake is answered HTTP 429. 0: no limit.
    #[arg(
        long,
        env = "PUSHD_MAX_CONNECTIONS_PER_IP",
        default_value_t = 0,
        value_name = "N"
    )]
    pub max_connections_per_ip: usize,

    /// Most connections bound to one uid; what happens to one more is
    /// --per-uid-policy. 0: no limit.
    #[arg(
        long,
        env = "PUSHD_MAX_CONNECTIONS_PER_UID",
        default_value_t = 0,
        value_name = "N"
    )]
    pub max_connections_per_uid: usize,

    /// Over --max-connections-per-uid: close the uid's oldest connection
    /// (code 4004), or refuse the new one (code 1008).
    #[arg(long, env = "PUSHD_PER_UID_POLICY", value_enum, default_value_t = PerUidPolicy::CloseOldest)]
    pub per_uid_policy: PerUidPolicy,

    /// Only browsers from these origins may connect (exact `scheme://host[:port]`,
    /// repeatable or comma-separated); others get HTTP 403. Default: any origin.
    #[arg(
        long,
        env = "PUSHD_ALLOW_ORIGIN",
        value_name = "URL",
        value_delimiter = ','
    )]
    pub allow_origin: Vec<String>,

    /// How clients prove their uid: `none` trusts the first message (the
    /// original recipe's behaviour); `token` requires a signed token (JWT
    /// HS256, uid in `sub`, `exp` required) as the first message or as
    /// `?token=` in the URL.
    #[arg(long, env = "PUSHD_AUTH", value_enum, default_value_t = AuthMode::None,
          requires_if("token", "auth_key"))]
    pub auth: AuthMode,

    /// File holding the token secret (at least 32 bytes), for HS256 tokens.
    /// With `--auth token`, give this or --auth-public-key-file. The secret
    /// never goes on the command line.
    #[arg(
        long,
        env = "PUSHD_AUTH_SECRET_FILE",
        value_name = "PATH",
        group = "auth_key"
    )]
    pub auth_secret_file: Option<PathBuf>,

    /// PEM public key (RSA, EC P-256/P-384 or Ed25519) verifying tokens signed
    /// with RS256, ES256 or EdDSA by its private half, which stays with the
    /// backend; instead of --auth-secret-file.
    #[arg(
        long,
        env = "PUSHD_AUTH_PUBLIC_KEY_FILE",
        value_name = "PATH",
        group = "auth_key"
    )]
    pub auth_public_key_file: Option<PathBuf>,

    /// PEM certificate chain for the WebSocket listener, which then speaks TLS
    /// (`wss://`) only. Reloaded on SIGHUP and `pushctl reload`.
    #[arg(
        long,
        env = "PUSHD_TLS_CERT",
        value_name = "PATH",
        requires = "tls_key",
        help_heading = "TLS and proxies"
    )]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(
        long,
        env = "PUSHD_TLS_KEY",
        value_name = "PATH",
        requires = "tls_cert",
        help_heading = "TLS and proxies"
    )]
    pub tls_key: Option<PathBuf>,

    /// A proxy in this range (CIDR, or one address; repeatable or comma-separated)
    /// is believed about the client's address: `Forwarded`, else the rightmost
    /// untrusted `X-Forwarded-For` address, else `X-Real-IP`, and with
    /// --proxy-protocol its PROXY header. Other peers' headers are ignored.
    #[arg(long, env = "PUSHD_TRUSTED_PROXY", value_name = "CIDR", value_delimiter = ',',
          value_parser = parse_cidr, help_heading = "TLS and proxies")]
    pub trusted_proxy: Vec<IpNet>,

    /// Every WebSocket connection starts with a PROXY protocol header (v1 or v2,
    /// as HAProxy, nginx and load balancers send it) from a --trusted-proxy; a
    /// connection without one, or from another peer, is dropped and counted.
    #[arg(
        long,
        env = "PUSHD_PROXY_PROTOCOL",
        requires = "trusted_proxy",
        help_heading = "TLS and proxies"
    )]
    pub proxy_protocol: bool,

    /// Longest a WebSocket handshake may take before the socket is dropped.
    #[arg(long, env = "PUSHD_HANDSHAKE_TIMEOUT", default_value = "10s", value_name = "DUR",
          value_parser = duration)]
    pub handshake_timeout: Duration,

    /// On SIGTERM, drain over DUR before stopping: refuse new WebSocket clients and
    /// close each connection with 1012 at a random moment within DUR, so that clients
    /// come back spread out. 0 closes every connection at once with 1001. Also
    /// `pushctl drain`'s default window (30s when this is 0). At most 1 day.
    #[arg(long, env = "PUSHD_DRAIN", default_value = "0s", value_name = "DUR",
          value_parser = duration)]
    pub drain: Duration,

    /// Most groups one uid may belong to; an add past it is refused (counted).
    #[arg(long, env = "PUSHD_MAX_GROUPS_PER_UID", default_value_t = 1_000, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_groups_per_uid: u64,

    /// Most group memberships in all groups together; an add past it is refused (counted).
    #[arg(long, env = "PUSHD_MAX_MEMBERSHIPS", default_value_t = 10_000_000, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_memberships: u64,

    /// Single node: where what pushd holds in memory (waiting messages, copies kept for
    /// resumes, bans, the message-id position) is written at a stop and read back at the
    /// next start; `none` turns it off. Not used in cluster mode (Redis holds all of it)
    /// [default: $STATE_DIRECTORY/pushd.state under systemd, else
    /// $XDG_STATE_HOME/pushd/pushd.state, else ~/.local/state/pushd/pushd.state].
    #[arg(long, env = "PUSHD_STATE_FILE", value_name = "PATH")]
    pub state_file: Option<PathBuf>,

    /// Serve Prometheus metrics at http://ADDR/metrics, and the probes /v1/health and
    /// /v1/ready, to whoever reaches ADDR (no token); off by default. `--http-listen`
    /// serves /metrics too, behind its access rule (the probes without it).
    #[arg(long, env = "PUSHD_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,

    /// Serve the HTTP API for backends (/v1/send, /v1/push, /v1/kick, ... and
    /// /metrics) on ADDR; off by default. See docs/http-api.md.
    #[arg(
        long,
        env = "PUSHD_HTTP_LISTEN",
        value_name = "ADDR",
        help_heading = "HTTP API"
    )]
    pub http_listen: Option<SocketAddr>,

    /// Every API request must carry `Authorization: Bearer <this file's token>`
    /// (at least 16 bytes; reloaded with the other keys). Without it the API
    /// serves loopback clients only.
    #[arg(
        long,
        env = "PUSHD_HTTP_TOKEN_FILE",
        value_name = "PATH",
        help_heading = "HTTP API"
    )]
    pub http_token_file: Option<PathBuf>,

    /// Most connections to each HTTP listener (the API, the metrics) at once;
    /// one more is closed at once and counted.
    #[arg(long, env = "PUSHD_MAX_HTTP_CONNECTIONS", default_value_t = 256, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..), help_heading = "HTTP API")]
    pub max_http_connections: u64,

    /// An HTTP connection with no byte either way for this long is closed and
    /// counted (an event stream sends a comment every 15 s). 0: never.
    #[arg(long, env = "PUSHD_HTTP_IDLE_TIMEOUT", default_value = "60s", value_name = "DUR",
          value_parser = duration, help_heading = "HTTP API")]
    pub http_idle_timeout: Duration,

    /// A uid whose last connection closed is announced `offline` only if it has
    /// not bound again within this (so a page navigation is not offline/online).
    #[arg(long, env = "PUSHD_OFFLINE_GRACE", default_value = "5s", value_name = "DUR",
          value_parser = duration, help_heading = "Events")]
    pub offline_grace: Duration,

    /// Messages from pages: a bound client's text messages become `message`
    /// events (uid, connection, seq, data), on every event consumer.
    #[arg(long, env = "PUSHD_UPSTREAM", help_heading = "Events")]
    pub upstream: bool,

    /// With --upstream: messages per second one connection may send (a bucket
    /// refilled at this rate); more are dropped, counted.
    #[arg(long, env = "PUSHD_UPSTREAM_RATE", default_value_t = 20.0, value_name = "N",
          value_parser = positive_rate, help_heading = "Events")]
    pub upstream_rate: f64,

    /// With --upstream: the bucket's size, the most messages a connection may
    /// send at once after a quiet while [default: the rate, rounded up].
    #[arg(long, env = "PUSHD_UPSTREAM_BURST", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..), help_heading = "Events")]
    pub upstream_burst: Option<u32>,

    /// Events kept for consumers that come back (`Last-Event-ID`, `?since=`,
    /// `pushctl events --since`); in cluster mode, the length of the cluster's
    /// event stream in Redis. 0 keeps none (and a single node then makes no
    /// event while nobody listens).
    #[arg(long, env = "PUSHD_EVENTS_RETAIN", default_value_t = 10_000, value_name = "N",
          value_parser = clap::value_parser!(u32).range(0..=1_000_000), help_heading = "Events")]
    pub events_retain: u32,

    /// POST events to URL (http:// or https://) in batches, retried with backoff
    /// while the receiver fails.
    #[arg(
        long,
        env = "PUSHD_WEBHOOK",
        value_name = "URL",
        help_heading = "Events"
    )]
    pub webhook: Option<String>,

    /// Sign each webhook body: `X-Pushd-Signature: sha256=<hex HMAC-SHA256 of the
    /// body>` with the secret in this file (at least 32 bytes).
    #[arg(
        long,
        env = "PUSHD_WEBHOOK_SECRET_FILE",
        value_name = "PATH",
        requires = "webhook",
        help_heading = "Events"
    )]
    pub webhook_secret_file: Option<PathBuf>,

    /// Log lines as text for people, or as one JSON object per line for log
    /// shippers. The level comes from RUST_LOG (default `info`; `debug`
    /// adds a line per connection bound and closed).
    #[arg(long, env = "PUSHD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// Close a connection that has not sent its uid this long after the
    /// handshake (code 1008); 0 disables.
    #[arg(long, env = "PUSHD_BIND_TIMEOUT", default_value = "30s", value_name = "DUR",
          value_parser = duration)]
    pub bind_timeout: Duration,

    /// How long a push waits in the mailbox of a uid that has no connection, for
    /// its next connection (a page reload or navigation); 0 turns the mailbox off:
    /// such a push answers `fail`, as in the original recipe.
    #[arg(long, env = "PUSHD_MAILBOX_TTL", default_value = "30s", value_name = "DUR",
          value_parser = duration, help_heading = "Mailbox")]
    pub mailbox_ttl: Duration,

    /// Most messages waiting for one uid; one more pushes the oldest out (counted).
    #[arg(long, env = "PUSHD_MAILBOX_SIZE", default_value_t = 100, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..), help_heading = "Mailbox")]
    pub mailbox_size: u64,

    /// Bytes kept by all mailboxes together (each message: its payload plus 160 bytes;
    /// each uid's store: 256); past it a push that would be kept answers `fail` (counted).
    #[arg(long, env = "PUSHD_MAILBOX_MEMORY", default_value_t = 64 * 1024 * 1024,
          value_name = "BYTES", help_heading = "Mailbox")]
    pub mailbox_memory: u64,

    /// Cluster mode: share presence and routing with other nodes through the Redis at URL
    /// (`redis://HOST:PORT`, `redis+unix:///PATH`, or
    /// `redis+sentinel://HOST:PORT[,HOST:PORT...]/MASTER` to find and follow the
    /// master through Redis Sentinel). Off by default: a single node.
    #[arg(
        long,
        env = "PUSHD_CLUSTER",
        value_name = "URL",
        help_heading = "Cluster"
    )]
    pub cluster: Option<String>,

    /// Key and channel prefix in Redis, so several clusters can share one Redis.
    #[arg(
        long,
        env = "PUSHD_CLUSTER_PREFIX",
        default_value = "pushd",
        value_name = "NAME",
        help_heading = "Cluster"
    )]
    pub cluster_prefix: String,

    /// This node's name in `list` and `stats` [default: the host name].
    #[arg(
        long,
        env = "PUSHD_NODE_NAME",
        value_name = "LABEL",
        help_heading = "Cluster"
    )]
    pub node_name: Option<String>,

    /// A node whose lease (renewed every third of it, on Redis's clock) runs out is
    /// taken for dead and its uids leave presence.
    #[arg(long, env = "PUSHD_CLUSTER_LEASE", default_value = "3s", value_name = "DUR",
          value_parser = duration, help_heading = "Cluster")]
    pub cluster_lease: Duration,

    /// Longest wait for Redis and for the other nodes' replies (list, stats, kick,
    /// confirmed sends) before answering with what arrived (pushctl exit status 3).
    #[arg(long, env = "PUSHD_CLUSTER_TIMEOUT", default_value = "2s", value_name = "DUR",
          value_parser = duration, help_heading = "Cluster")]
    pub cluster_timeout: Duration,

    /// When the text port answers `ok` for a uid held by another node: once that node
    /// `received` the message from Redis, or once it `delivered` it to a connection
    /// (a round trip more). pushctl send always waits for delivery.
    #[arg(long, env = "PUSHD_TEXT_CONFIRM", value_enum, default_value_t = Confirm::Received,
          help_heading = "Cluster")]
    pub text_confirm: Confirm,
}

/// When a push routed to another node counts as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Confirm {
    /// The node holding the uid received the message from Redis.
    Received,
    /// The node holding the uid queued it to at least one connection.
    Delivered,
}

/// Cluster-mode settings, resolved from [`DaemonArgs`].
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Redis URL.
    pub url: String,
    /// Key and channel prefix.
    pub prefix: String,
    /// This node's display name.
    pub node_name: String,
    /// Lease length.
    pub lease: Duration,
    /// Redis and reply timeout.
    pub timeout: Duration,
    /// Text-port confirmation mode.
    pub text_confirm: Confirm,
    /// The events stream's length in Redis (`--events-retain`, at least
    /// [`MIN_CLUSTER_EVENTS`]: the stream carries the events between nodes).
    pub events_retain: usize,
}

/// The cluster's events stream keeps at least this many.
pub const MIN_CLUSTER_EVENTS: usize = 1000;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Text for people (colour only on a terminal).
    Human,
    /// One JSON object per line.
    Json,
}

/// How clients prove their uid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// The first text message is the uid, unverified.
    None,
    /// The client presents a signed token carrying the uid.
    Token,
}

/// What to do with one connection too many for a uid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PerUidPolicy {
    /// Refuse the new connection ("several tabs, but not more than N").
    RefuseNew,
    /// Close the oldest one ("one session per user": the newest page wins).
    CloseOldest,
}

/// Where tokens are checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthKey {
    /// HS256 with the shared secret in this file.
    Secret(PathBuf),
    /// RS256, ES256 or EdDSA with the PEM public key in this file.
    PublicKey(PathBuf),
}

/// The WebSocket listener's TLS certificate chain and key files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// `--trusted-proxy`: a CIDR range, or one address (a range of one).
fn parse_cidr(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        .map(|net| net.trunc())
        .map_err(|_| format!("{text:?} is not an address or a CIDR range like 10.0.0.0/8"))
}

/// A rate above zero (messages per second).
fn positive_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate > 0.0 && rate.is_finite() => Ok(rate),
        _ => Err(format!(
            "{text:?} is not a rate above 0 (messages per second)"
        )),
    }
}

/// A duration option (`30s`, `5m`, `1h 30m`): humantime's syntax, at most
/// [`LONGEST`], so that no deadline computed from it can overflow.
fn duration(text: &str) -> Result<Duration, String> {
    let parsed = humantime::parse_duration(text).map_err(|err| err.to_string())?;
    if parsed > LONGEST {
        return Err(format!("{text:?} is longer than 100 years"));
    }
    Ok(parsed)
}

/// The daemon's settings, resolved from [`DaemonArgs`].
#[derive(Debug, Clone)]
pub struct Config {
    /// Address for the WebSocket listener.
    pub ws_listen: SocketAddr,
    /// Address for the text port.
    pub text_listen: SocketAddr,
    /// Admin socket path.
    pub socket: PathBuf,
    /// Group given access to the admin socket (name or gid), if any.
    pub socket_group: Option<String>,
    /// Idle time after which a connection is closed (4001); `None` disables.
    pub heartbeat: Option<Duration>,
    /// Interval between server pings; `None` disables.
    pub ping_interval: Option<Duration>,
    /// Largest inbound WebSocket message and text-port line, in bytes.
    pub max_message_size: usize,
    /// Bounds of each connection's outbound queue.
    pub max_queue: usize,
    /// Payload bytes bound of each connection's outbound queue.
    pub max_queue_bytes: usize,
    /// Most WebSocket connections in all (`None`: the open-file limit decides).
    pub max_connections: Option<usize>,
    /// Most WebSocket connections per IP address.
    pub max_connections_per_ip: Option<usize>,
    /// Most text-port connections at once.
    pub max_text_connections: usize,
    /// Idle time after which a text-port connection is closed; `None` disables.
    pub text_idle_timeout: Option<Duration>,
    /// Most connections to each HTTP listener at once.
    pub max_http_connections: usize,
    /// Idle time after which an HTTP connection is closed; `None` disables.
    pub http_idle_timeout: Option<Duration>,
    /// Most connections per uid, and what to do with one more.
    pub max_connections_per_uid: Option<(usize, PerUidPolicy)>,
    /// Allowed `Origin` values, lowercased; empty allows every origin.
    pub allow_origin: Vec<String>,
    /// Where to serve `/metrics` alone, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// Where to serve the HTTP API, if anywhere.
    pub http_listen: Option<SocketAddr>,
    /// The HTTP API's bearer token file.
    pub http_token_file: Option<PathBuf>,
    /// How long a uid stays unannounced after its last connection closed.
    pub offline_grace: Duration,
    /// `--events-retain`.
    pub events_retain: usize,
    /// `--upstream`: pages' messages become events, within this rate.
    pub(crate) upstream: Option<crate::core::upstream::UpstreamLimit>,
    /// Where events are POSTed, and the file of the secret that signs them.
    pub webhook: Option<(String, Option<PathBuf>)>,
    /// This node's name in events and, in cluster mode, in `list` and `stats`.
    pub node_name: String,
    /// With `--auth token`, the file holding the secret or public key.
    pub auth_key: Option<AuthKey>,
    /// With `--tls-cert`: the WebSocket listener's certificate and key.
    pub tls: Option<TlsFiles>,
    /// Peers believed about the client's address.
    pub trusted_proxies: Vec<IpNet>,
    /// Whether every WebSocket connection starts with a PROXY header.
    pub proxy_protocol: bool,
    /// Longest a WebSocket handshake may take.
    pub handshake_timeout: Duration,
    /// `--drain`: SIGTERM's drain window (0: none).
    pub drain: Duration,
    /// `--state-file`, resolved; `None` when off or in cluster mode.
    pub state_file: Option<PathBuf>,
    /// `--max-groups-per-uid`.
    pub max_groups_per_uid: usize,
    /// `--max-memberships`.
    pub max_memberships: usize,
    /// Longest a connection may stay unbound; `None` disables.
    pub bind_timeout: Option<Duration>,
    /// How long a push waits for a uid with no connection; `None`: the mailbox is off.
    pub mailbox_ttl: Option<Duration>,
    /// Most messages waiting per uid.
    pub mailbox_size: usize,
    /// Bytes kept by all mailboxes together.
    pub mailbox_memory: usize,
    /// Cluster mode, with `--cluster`.
    pub cluster: Option<ClusterConfig>,
}

impl From<DaemonArgs> for Config {
    fn from(args: DaemonArgs) -> Self {
        let nonzero = |d: Duration| (!d.is_zero()).then_some(d);
        Config {
            ws_listen: args.ws_listen,
            text_listen: args.text_listen,
            socket: args
                .socket
                .unwrap_or_else(pushd_proto::socket_path::default_socket_path),
            socket_group: args.socket_group,
            heartbeat: nonzero(args.heartbeat),
            ping_interval: nonzero(args.ping_interval),
            max_message_size: args.max_message_size as usize,
            max_queue: args.max_queue as usize,
            // A queue must hold at least one message of the largest size.
            max_queue_bytes: (args.max_queue_bytes as usize).max(args.max_message_size as usize),
            max_connections: (args.max_connections > 0).then_some(args.max_connections),
            max_connections_per_ip: (args.max_connections_per_ip > 0)
                .then_some(args.max_connections_per_ip),
            max_text_connections: args.max_text_connections as usize,
            text_idle_timeout: nonzero(args.text_idle_timeout),
            max_http_connections: args.max_http_connections as usize,
            http_idle_timeout: nonzero(args.http_idle_timeout),
            max_connections_per_uid: (args.max_connections_per_uid > 0)
                .then_some((args.max_connections_per_uid, args.per_uid_policy)),
            allow_origin: args
                .allow_origin
                .iter()
                .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
                .collect(),
            auth_key: match args.auth {
                AuthMode::Token => args
                    .auth_public_key_file
                    .map(AuthKey::PublicKey)
                    .or(args.auth_secret_file.map(AuthKey::Secret)),
                AuthMode::None => None,
            },
            tls: args
                .tls_cert
                .zip(args.tls_key)
                .map(|(cert, key)| TlsFiles { cert, key }),
            trusted_proxies: args.trusted_proxy,
            proxy_protocol: args.proxy_protocol,
            metrics_listen: args.metrics_listen,
            http_listen: args.http_listen,
            http_token_file: args.http_token_file,
            offline_grace: args.offline_grace,
            events_retain: args.events_retain as usize,
            upstream: args
                .upstream
                .then_some(crate::core::upstream::UpstreamLimit {
                    per_second: args.upstream_rate,
                    burst: args
                        .upstream_burst
                        .unwrap_or(args.upstream_rate.ceil().min(f64::from(u32::MAX)) as u32),
                }),
            webhook: args.webhook.map(|url| (url, args.webhook_secret_file)),
            node_name: args.node_name.clone().unwrap_or_else(host_name),
            handshake_timeout: args.handshake_timeout,
            drain: args.drain,
            max_groups_per_uid: args.max_groups_per_uid as usize,
            max_memberships: args.max_memberships as usize,
            state_file: match args.state_file {
                _ if args.cluster.is_some() => None,
                Some(path) if path.as_os_str() == "none" => None,
                Some(path) => Some(path),
                None => default_state_file(
                    std::env::var_os("STATE_DIRECTORY"),
                    std::env::var_os("XDG_STATE_HOME"),
                    std::env::var_os("HOME"),
                ),
            },
            bind_timeout: nonzero(args.bind_timeout),
            mailbox_ttl: nonzero(args.mailbox_ttl),
            mailbox_size: args.mailbox_size as usize,
            mailbox_memory: args.mailbox_memory as usize,
            cluster: args.cluster.map(|url| ClusterConfig {
                url,
                prefix: args.cluster_prefix,
                node_name: args.node_name.unwrap_or_else(host_name),
                // A lease under 300 ms would be renewed more often than Redis can be trusted
                // to answer on a loaded machine.
                lease: args.cluster_lease.max(Duration::from_millis(300)),
                timeout: args.cluster_timeout.max(Duration::from_millis(50)),
                text_confirm: args.text_confirm,
                events_retain: (args.events_retain as usize).max(MIN_CLUSTER_EVENTS),
            }),
        }
    }
}

impl Config {
    /// The registry's bounds: every connection's outbound queue, connections per uid.
    pub(crate) fn registry_limits(&self) -> crate::core::registry::RegistryLimits {
        use crate::core::registry::PerUidPolicy as Policy;
        crate::core::registry::RegistryLimits {
            queue: crate::core::conn::QueueLimits {
                messages: self.max_queue,
                bytes: self.max_queue_bytes,
            },
            per_uid: self.max_connections_per_uid.map(|(limit, policy)| {
                let policy = match policy {
                    PerUidPolicy::RefuseNew => Policy::RefuseNew,
                    PerUidPolicy::CloseOldest => Policy::CloseOldest,
                };
                (limit, policy)
            }),
            // In cluster mode the mailboxes live in Redis, shared by every node; a
            // connection that binds is held until its uid's mailbox was taken from there.
            mailbox: self.mailbox_limits().filter(|_| self.cluster.is_none()),
            hold_at_bind: self.cluster.is_some() && self.mailbox_limits().is_some(),
            groups: self.group_limits(),
        }
    }

    /// The groups' bounds (on this node's memberships, or in cluster mode on
    /// Redis's).
    pub(crate) fn group_limits(&self) -> crate::core::groups::GroupLimits {
        crate::core::groups::GroupLimits {
            per_uid: self.max_groups_per_uid,
            memberships: self.max_memberships,
        }
    }

    /// The mailbox's bounds; `None` with `--mailbox-ttl 0`.
    pub(crate) fn mailbox_limits(&self) -> Option<crate::core::mailbox::MailboxLimits> {
        self.mailbox_ttl
            .map(|ttl| crate::core::mailbox::MailboxLimits {
                ttl,
                size: self.mailbox_size,
                memory: self.mailbox_memory,
            })
    }

    /// Granularity of connection timers: deadlines are rounded up to a
    /// multiple of this, so that connections whose pings fall due at about the
    /// same time are served in one timer tick and one worker wake-up instead
    /// of one each. A twentieth of the shortest interval, at most 1 s: a
    /// heartbeat may fire up to that much late, never early.
    pub(crate) fn timer_grain(&self) -> Duration {
        let shortest = [self.heartbeat, self.ping_interval]
            .into_iter()
            .flatten()
            .min();
        shortest.map_or(Duration::from_secs(1), |d| {
            (d / 20).clamp(Duration::from_millis(1), Duration::from_secs(1))
        })
    }
}

/// The machine's host name, the default node name.
fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "pushd".to_owned())
}

/// `--state-file`'s default: systemd's `StateDirectory=` when set, else the XDG
/// state directory, else `~/.local/state`; `None` with none of them (no state file).
/// Only absolute directories count, as the XDG rules say.
fn default_state_file(
    state_directory: Option<std::ffi::OsString>,
    xdg_state_home: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> Option<PathBuf> {
    let absolute =
        |dir: Option<std::ffi::OsString>| dir.map(PathBuf::from).filter(|dir| dir.is_absolute());
    // systemd joins several directories with ':'; the first is the unit's own.
    let systemd = state_directory.and_then(|dirs| {
        let first = dirs.to_str()?.split(':').next()?.to_owned();
        absolute(Some(first.into()))
    });
    if let Some(dir) = systemd {
        return Some(dir.join("pushd.state"));
    }
    let state_home =
        absolute(xdg_state_home).or_else(|| Some(absolute(home)?.join(".local/state")));
    Some(state_home?.join("pushd").join("pushd.state"))
}

/// An optional interval for people: humantime text, or `off`.
pub fn describe(interval: Option<Duration>) -> String {
    interval.map_or_else(
        || "off".to_owned(),
        |d| humantime::format_duration(d).to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_file_follows_systemd_then_xdg_then_home() {
        let os = |s: &str| Some(std::ffi::OsString::from(s));
        let path = |s: &str| Some(PathBuf::from(s));
        assert_eq!(
            default_state_file(os("/var/lib/pushd:/var/lib/other"), os("/x"), os("/home/u")),
            path("/var/lib/pushd/pushd.state")
        );
        assert_eq!(
            default_state_file(None, os("/x/state"), os("/home/u")),
            path("/x/state/pushd/pushd.state")
        );
        assert_eq!(
            default_state_file(None, os("relative"), os("/home/u")),
            path("/home/u/.local/state/pushd/pushd.state")
        );
        assert_eq!(default_state_file(None, None, None), None);
    }

    #[test]
    fn zero_durations_disable() {
        let args = DaemonArgs::parse_from(["pushd", "--heartbeat", "0", "--ping-interval", "0"]);
        let config = Config::from(args);
        assert_eq!(config.heartbeat, None);
        assert_eq!(config.ping_interval, None);
    }

    #[test]
    fn humantime_durations() {
        let args =
            DaemonArgs::parse_from(["pushd", "--heartbeat", "1m 5s", "--ping-interval", "250ms"]);
        let config = Config::from(args);
        assert_eq!(config.heartbeat, Some(Duration::from_secs(65)));
        assert_eq!(config.ping_interval, Some(Duration::from_millis(250)));
    }

    #[test]
    fn timer_grain_follows_the_shortest_interval() {
        let config = |hb: &str, ping: &str| {
            Config::from(DaemonArgs::parse_from([
                "pushd",
                "--heartbeat",
                hb,
                "--ping-interval",
                ping,
            ]))
        };
        assert_eq!(config("55s", "25s").timer_grain(), Duration::from_secs(1));
        assert_eq!(
            config("1s", "200ms").timer_grain(),
            Duration::from_millis(10)
        );
        assert_eq!(config("0", "0").timer_grain(), Duration::from_secs(1));
    }

    #[test]
    fn auth_token_needs_exactly_one_key_file() {
        let parse = |extra: &[&str]| {
            let args = ["pushd", "--auth", "token"].iter().chain(extra);
            DaemonArgs::try_parse_from(args).map(Config::from)
        };
        assert!(parse(&[]).is_err());
        assert!(parse(&["--auth-secret-file", "s", "--auth-public-key-file", "p"]).is_err());
        let config = parse(&["--auth-public-key-file", "p.pem"]).unwrap();
        assert_eq!(config.auth_key, Some(AuthKey::PublicKey("p.pem".into())));
        let config = parse(&["--auth-secret-file", "s"]).unwrap();
        assert_eq!(config.auth_key, Some(AuthKey::Secret("s".into())));
    }

    #[test]
    fn tls_and_proxy_options_come_in_pairs() {
        let parse = |extra: &[&str]| DaemonArgs::try_parse_from(["pushd"].iter().chain(extra));
        assert!(parse(&["--tls-cert", "c.pem"]).is_err());
        assert!(parse(&["--proxy-protocol"]).is_err());
        let args = parse(&[
            "--trusted-proxy",
            "10.0.0.0/8,192.0.2.7",
            "--trusted-proxy",
            "10.1.2.3/8",
            "--proxy-protocol",
        ])
        .unwrap();
        let ranges: Vec<String> = args.trusted_proxy.iter().map(|n| n.to_string()).collect();
        assert_eq!(ranges, ["10.0.0.0/8", "192.0.2.7/32", "10.0.0.0/8"]);
        assert!(parse(&["--trusted-proxy", "10.0.0.0/33"]).is_err());
        assert!(parse(&["--trusted-proxy", "nginx"]).is_err());
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        DaemonArgs::command().debug_assert();
    }
}
