//! Every counter pushd keeps, declared once.
//!
//! The table at the bottom generates the [`Counter`] names the daemon bumps, the
//! wire struct [`Counters`] that `stats` carries (its JSON fields are the names in
//! the table), the cluster-wide sum, and where each counter appears in `/metrics`.
//! It lives here, next to the wire format, because `pushctl` renders the same
//! fields the daemon counts; adding a counter is adding one row.

use serde::{Deserialize, Serialize};

/// Where a counter appears in `/metrics` (as `pushd_<name>_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// A counter of its own, named and described like the row.
    Alone,
    /// One label value of a family.
    In(Family, &'static str),
}

/// Counters shown in `/metrics` as one family with a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Connections closed by pushd, by reason.
    Disconnects,
    /// Connections refused before they were served, by reason.
    Refused,
    /// Text-port requests, by answer.
    TextRequests,
    /// Mailbox messages, by what became of them.
    Mailbox,
}

impl Family {
    /// Every family, in the order `/metrics` shows them.
    pub const ALL: [Family; 4] = [
        Family::Disconnects,
        Family::Refused,
        Family::TextRequests,
        Family::Mailbox,
    ];

    /// The metric name, without prefix and suffix.
    pub fn name(self) -> &'static str {
        match self {
            Family::Disconnects => "disconnects",
            Family::Refused => "refused",
            Family::TextRequests => "text_requests",
            Family::Mailbox => "mailbox_messages",
        }
    }

    /// The label that tells the members apart.
    pub fn label(self) -> &'static str {
        match self {
            Family::Disconnects | Family::Refused => "reason",
            Family::TextRequests => "result",
            Family::Mailbox => "event",
        }
    }

    /// The `# HELP` text.
    pub fn help(self) -> &'static str {
        match self {
            Family::Disconnects => "Connections closed by pushd, by reason",
            Family::Refused => "Connections refused before they were served, by reason",
            Family::TextRequests => "Text-port requests, by answer",
            Family::Mailbox => "Mailbox messages, by what became of them",
        }
    }
}

macro_rules! counters {
    ($( $(#[doc = $doc:literal])+ $variant:ident $field:ident => $metric:expr; )+) => {
        /// One of the counters; see [`Counters`] for their meaning.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Counter {
            $( $(#[doc = $doc])+ $variant, )+
        }

        impl Counter {
            /// Every counter, in table order.
            pub const ALL: &'static [Counter] = &[ $(Counter::$variant,)+ ];

            /// How many counters there are.
            pub const COUNT: usize = Self::ALL.len();

            /// The field name in `stats` (and the metric name of an [`Metric::Alone`] counter).
            pub fn name(self) -> &'static str {
                match self { $(Counter::$variant => stringify!($field),)+ }
            }

            /// What it counts, in one sentence.
            pub fn help(self) -> &'static str {
                match self { $(Counter::$variant => concat!($($doc),+),)+ }.trim()
            }

            /// Where it appears in `/metrics`.
            pub fn metric(self) -> Metric {
                match self { $(Counter::$variant => $metric,)+ }
            }
        }

        /// Monotonic event counters since the daemon started. Counters added in
        /// later releases default to 0 when an older daemon leaves them out.
        #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(default)]
        pub struct Counters {
            $( $(#[doc = $doc])+ pub $field: u64, )+
        }

        impl Counters {
            /// The value of one counter.
            pub fn get(&self, counter: Counter) -> u64 {
                match counter { $(Counter::$variant => self.$field,)+ }
            }

            /// Counters whose values come from `value`.
            pub fn from_fn(mut value: impl FnMut(Counter) -> u64) -> Self {
                Counters { $( $field: value(Counter::$variant), )+ }
            }
        }
    };
}

impl Counters {
    /// Adds `other` to these counters, counter by counter (for cluster-wide sums).
    pub fn accumulate(&mut self, other: &Counters) {
        *self = Counters::from_fn(|counter| self.get(counter) + other.get(counter));
    }
}

use Family::{Disconnects, Mailbox, Refused, TextRequests};
use Metric::{Alone, In};

counters! {
    /// WebSocket connections accepted (handshake completed).
    ConnectionsOpened connections_opened => Alone;
    /// WebSocket connections closed, for any reason.
    ConnectionsClosed connections_closed => Alone;
    /// WebSocket handshakes that failed or timed out.
    HandshakesFailed handshakes_failed => Alone;
    /// Connections (WebSocket or text port) closed unserved because pushd
    /// was out of file descriptors.
    ConnectionsRefused connections_refused => In(Refused, "no_fds");
    /// Connections dropped for a missing, malformed or untrusted PROXY header
    /// (`--proxy-protocol`).
    ProxyHeadersRefused proxy_headers_refused => In(Refused, "proxy_header");
    /// TLS handshakes that failed or timed out (`--tls-cert`): a plaintext
    /// client on the TLS port, a client that refused the certificate.
    TlsHandshakesFailed tls_handshakes_failed => In(Refused, "tls");
    /// WebSocket connections refused at once, before TLS or the handshake (HTTP
    /// 503 on a plain listener): over `--max-connections` or the open-file cap.
    CapacityRefused capacity_refused => In(Refused, "capacity");
    /// WebSocket connections refused at once while the node drains (HTTP 503
    /// with `Retry-After`).
    DrainRefused drain_refused => In(Refused, "draining");
    /// WebSocket connections refused over `--max-connections-per-ip` (HTTP 429):
    /// at once for a direct client, at the handshake for one behind a trusted proxy.
    PerIpRefused per_ip_refused => In(Refused, "per_ip");
    /// Handshakes answered HTTP 403: `Origin` not in `--allow-origin`.
    OriginRefused origin_refused => In(Refused, "origin");
    /// Binds refused over `--max-connections-per-uid` (policy refuse-new, close 1008).
    PerUidRefused per_uid_refused => In(Disconnects, "per_uid");
    /// Connections closed to make room for a newer one of the same uid (close 4004).
    PerUidReplaced per_uid_replaced => In(Disconnects, "replaced");
    /// Connections closed for not sending a uid within `--bind-timeout` (close 1008).
    BindTimeouts bind_timeouts => In(Disconnects, "bind_timeout");
    /// Binds refused because the uid is banned (close 4003).
    BannedRefused banned_refused => In(Disconnects, "banned");
    /// Connections closed for an invalid, expired or missing token (close 1008).
    InvalidTokens invalid_tokens => In(Disconnects, "invalid_token");
    /// Connections bound to a uid.
    Binds binds => Alone;
    /// Connections refused for an invalid uid (close 1008).
    InvalidUids invalid_uids => In(Disconnects, "invalid_uid");
    /// Connections closed by a drain (close 1012).
    Drained drained => In(Disconnects, "drain");
    /// Connections closed by the heartbeat (close 4001).
    HeartbeatTimeouts heartbeat_timeouts => In(Disconnects, "heartbeat");
    /// Connections closed by an operator (close 4000).
    Kicked kicked => In(Disconnects, "kicked");
    /// Connections closed because their outbound queue was full (close 4002).
    SlowConsumers slow_consumers => In(Disconnects, "slow_consumer");
    /// Inbound messages over the size limit (close 1009).
    OversizedMessages oversized_messages => In(Disconnects, "too_big");
    /// Messages queued to a connection (one per recipient).
    MessagesDelivered messages_delivered => Alone;
    /// Text-port requests answered `ok`.
    TextOk text_ok => In(TextRequests, "ok");
    /// Text-port requests answered `fail`.
    TextFail text_fail => In(TextRequests, "fail");
    /// Text-port requests answered `queued`.
    TextQueued text_queued => In(TextRequests, "queued");
    /// Messages kept in a mailbox because their uid had no connection.
    MailboxStored mailbox_stored => In(Mailbox, "stored");
    /// Messages handed from a mailbox to the uid's next connection.
    MailboxDelivered mailbox_delivered => In(Mailbox, "delivered");
    /// Messages dropped from a mailbox after `--mailbox-ttl`.
    MailboxExpired mailbox_expired => In(Mailbox, "expired");
    /// Messages dropped from a full mailbox (`--mailbox-size`), oldest first.
    MailboxDropped mailbox_dropped => In(Mailbox, "dropped");
    /// Messages not kept because every mailbox together was at `--mailbox-memory`.
    MailboxRefused mailbox_refused => In(Mailbox, "refused");
    /// Messages dropped by a kick or `pushctl mailbox --clear`.
    MailboxCleared mailbox_cleared => In(Mailbox, "cleared");
    /// Messages sent again to a `pushd.v2` client resuming with `since`.
    MailboxResent mailbox_resent => In(Mailbox, "resent");
    /// `pushd.v2` resumes that began with `!gap`: not everything after `since` was kept.
    ResumeGaps resume_gaps => Alone;
    /// Group memberships refused: `--max-groups-per-uid` or `--max-memberships` reached.
    GroupsRefused groups_refused => Alone;
    /// Group memberships that ended at their TTL.
    GroupMembershipsExpired group_memberships_expired => Alone;
    /// Key files (TLS, auth) that did not load on SIGHUP or `pushctl reload`;
    /// the previous key stayed in use.
    ReloadFailures reload_failures => Alone;
    /// Events a slow consumer (an SSE stream, `pushctl events`, the webhook's
    /// backlog) fell too far behind to get.
    EventsDropped events_dropped => Alone;
    /// Batches of events the webhook receiver accepted (a 2xx answer).
    WebhookPosts webhook_posts => Alone;
    /// Webhook attempts that failed (no answer, or not 2xx); each is retried.
    WebhookFailures webhook_failures => Alone;
    /// Text-port connections closed at once: over `--max-text-connections`.
    TextRefused text_refused => In(Refused, "text_capacity");
    /// Text-port connections closed after `--text-idle-timeout` without a byte.
    TextIdleClosed text_idle_closed => In(Disconnects, "text_idle");
    /// HTTP connections (API and metrics) closed at once: over `--max-http-connections`.
    HttpRefused http_refused => In(Refused, "http_capacity");
    /// HTTP connections closed after `--http-idle-timeout` without a byte either way.
    HttpIdleClosed http_idle_closed => In(Disconnects, "http_idle");
    /// Cluster mode: times this node did not hear its own probe on the bus (or Redis
    /// delivered it to nobody) and subscribed again.
    BusResubscribes bus_resubscribes => Alone;
    /// Messages from pages told as `message` events (`--upstream`).
    UpstreamMessages upstream_messages => Alone;
    /// Messages from pages dropped: over `--upstream-rate`.
    UpstreamDropped upstream_dropped => Alone;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_accumulate_every_field() {
        let one = Counters::from_fn(|counter| counter as u64 + 1);
        let mut sum = one.clone();
        sum.accumulate(&one);
        for &counter in Counter::ALL {
            assert_eq!(sum.get(counter), 2 * (counter as u64 + 1), "{counter:?}");
        }
    }

    #[test]
    fn names_are_the_json_fields() {
        let json = serde_json::to_value(Counters::from_fn(|c| c as u64)).unwrap();
        let fields = json.as_object().unwrap();
        assert_eq!(fields.len(), Counter::COUNT);
        for &counter in Counter::ALL {
            assert_eq!(fields[counter.name()], counter as u64);
        }
        assert_eq!(
            Counter::ConnectionsRefused.help(),
            "Connections (WebSocket or text port) closed unserved because pushd was out of file descriptors."
        );
    }
}
