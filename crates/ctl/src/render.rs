//! Text output for people: tables and durations. (JSON output is serde's.)

use std::time::Duration;

use pushd_proto::admin::{BanInfo, GroupInfo, MailboxInfo, MemberInfo, Stats, UidInfo};
use tabled::settings::{Padding, Style};
use tabled::{Table, Tabled};

/// A duration in milliseconds as humantime text, to the second ("1m 5s", "0s").
pub fn duration_ms(ms: u64) -> String {
    humantime::format_duration(Duration::from_secs(ms / 1000)).to_string()
}

/// "1 connection", "2 connections".
pub fn connections(n: u64) -> String {
    format!("{n} connection{}", if n == 1 { "" } else { "s" })
}

/// The `pushctl list` table: one row per uid. IDLE is the least idle of its
/// connections, ONLINE FOR the oldest, ADDRESS the oldest connection's peer
/// followed by `+N` when the uid has N more connections. In cluster mode a NODE
/// column names the nodes holding the uid (comma-separated, sorted); when any
/// connection is a page's event stream, an SSE column counts each uid's.
pub fn uid_table(uids: &[UidInfo]) -> String {
    let all = || uids.iter().flat_map(|info| &info.connections);
    let clustered = all().any(|conn| conn.node.is_some());
    let streams = all().any(|conn| conn.kind.is_some());
    let mut header = vec!["UID", "CONNS"];
    if streams {
        header.push("SSE");
    }
    header.extend(["IDLE", "ONLINE FOR"]);
    if clustered {
        header.push("NODE");
    }
    header.push("ADDRESS");
    let mut builder = tabled::builder::Builder::new();
    builder.push_record(header);
    for info in uids {
        let Some(oldest) = info.connections.iter().max_by_key(|c| c.connected_ms) else {
            continue;
        };
        let more = info.connections.len() - 1;
        let mut row = vec![info.uid.clone(), info.connections.len().to_string()];
        if streams {
            let sse = info.connections.iter().filter(|c| c.kind.is_some()).count();
            row.push(sse.to_string());
        }
        row.extend([
            duration_ms(info.least_idle_ms()),
            duration_ms(oldest.connected_ms),
        ]);
        if clustered {
            let mut nodes: Vec<&str> = (info.connections.iter())
                .filter_map(|conn| conn.node.as_deref())
                .collect();
            nodes.sort_unstable();
            nodes.dedup();
            row.push(nodes.join(","));
        }
        row.push(if more == 0 {
            oldest.peer.clone()
        } else {
            format!("{} +{more}", oldest.peer)
        });
        builder.push_record(row);
    }
    plain_table(builder.build())
}

#[derive(Tabled)]
struct BanRow {
    #[tabled(rename = "UID")]
    uid: String,
    #[tabled(rename = "REMAINING")]
    remaining: String,
}

/// The `pushctl bans` table.
pub fn ban_table(bans: &[BanInfo]) -> String {
    let rows = bans.iter().map(|ban| BanRow {
        uid: ban.uid.clone(),
        remaining: duration_ms(ban.remaining_ms),
    });
    plain_table(Table::new(rows))
}

#[derive(Tabled)]
struct MailboxRow {
    #[tabled(rename = "UID")]
    uid: String,
    #[tabled(rename = "MESSAGES")]
    messages: u64,
    #[tabled(rename = "BYTES")]
    bytes: u64,
    #[tabled(rename = "OLDEST")]
    oldest: String,
}

/// The `pushctl mailbox` table.
pub fn mailbox_table(uids: &[MailboxInfo]) -> String {
    let rows = uids.iter().map(|info| MailboxRow {
        uid: info.uid.clone(),
        messages: info.messages,
        bytes: info.bytes,
        oldest: duration_ms(info.oldest_ms),
    });
    plain_table(Table::new(rows))
}

#[derive(Tabled)]
struct MemberRow {
    #[tabled(rename = "UID")]
    uid: String,
    #[tabled(rename = "CONNS")]
    connections: u64,
    #[tabled(rename = "EXPIRES")]
    expires: String,
}

/// The `pushctl group members` table; EXPIRES is `-` without a TTL.
pub fn members_table(members: &[MemberInfo]) -> String {
    let rows = members.iter().map(|member| MemberRow {
        uid: member.uid.clone(),
        connections: member.connections,
        expires: member
            .expires_ms
            .map_or_else(|| "-".to_owned(), duration_ms),
    });
    plain_table(Table::new(rows))
}

#[derive(Tabled)]
struct GroupRow {
    #[tabled(rename = "GROUP")]
    group: String,
    #[tabled(rename = "MEMBERS")]
    members: u64,
    #[tabled(rename = "ONLINE")]
    online: u64,
}

/// The `pushctl group list` table.
pub fn groups_table(groups: &[GroupInfo]) -> String {
    let rows = groups.iter().map(|info| GroupRow {
        group: info.group.clone(),
        members: info.members,
        online: info.online,
    });
    plain_table(Table::new(rows))
}

/// A table without borders, two spaces between columns, no trailing blanks.
fn plain_table(mut table: Table) -> String {
    table.with(Style::blank()).with(Padding::new(0, 1, 0, 0));
    table
        .to_string()
        .lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
}

/// `pushctl stats` as aligned `key: value` lines.
pub fn stats(stats: &Stats) -> String {
    let c = &stats.counters;
    // One line per counter, and the 14 figures before them: a counter added to
    // the table without a line here does not compile.
    let lines: [(&str, String); 14 + pushd_proto::counters::Counter::COUNT] = [
        ("version", stats.version.clone()),
        ("uptime", duration_ms(stats.uptime_ms)),
        ("websocket", stats.ws_listen.clone()),
        ("text port", stats.text_listen.clone()),
        ("admin socket", stats.socket.clone()),
        ("connections", stats.connections.to_string()),
        ("uids", stats.uids.to_string()),
        ("text connections", stats.text_connections.to_string()),
        ("bans", stats.bans.to_string()),
        ("memberships", stats.group_memberships.to_string()),
        ("mailbox uids", stats.mailbox.uids.to_string()),
        ("mailbox messages", stats.mailbox.messages.to_string()),
        ("mailbox bytes", stats.mailbox.bytes.to_string()),
        ("event subscribers", stats.event_subscribers.to_string()),
        ("connections opened", c.connections_opened.to_string()),
        ("connections closed", c.connections_closed.to_string()),
        ("handshakes failed", c.handshakes_failed.to_string()),
        ("refused (no fds)", c.connections_refused.to_string()),
        ("refused (capacity)", c.capacity_refused.to_string()),
        ("refused (draining)", c.drain_refused.to_string()),
        ("refused (per ip)", c.per_ip_refused.to_string()),
        ("refused (origin)", c.origin_refused.to_string()),
        ("refused (tls)", c.tls_handshakes_failed.to_string()),
        ("refused (proxy)", c.proxy_headers_refused.to_string()),
        ("refused (per uid)", c.per_uid_refused.to_string()),
        ("replaced (per uid)", c.per_uid_replaced.to_string()),
        ("bind timeouts", c.bind_timeouts.to_string()),
        ("refused (banned)", c.banned_refused.to_string()),
        ("invalid tokens", c.invalid_tokens.to_string()),
        ("binds", c.binds.to_string()),
        ("invalid uids", c.invalid_uids.to_string()),
        ("drained", c.drained.to_string()),
        ("heartbeat timeouts", c.heartbeat_timeouts.to_string()),
        ("kicked", c.kicked.to_string()),
        ("slow consumers", c.slow_consumers.to_string()),
        ("oversized messages", c.oversized_messages.to_string()),
        ("messages delivered", c.messages_delivered.to_string()),
        ("text ok", c.text_ok.to_string()),
        ("text fail", c.text_fail.to_string()),
        ("text queued", c.text_queued.to_string()),
        ("mailbox stored", c.mailbox_stored.to_string()),
        ("mailbox delivered", c.mailbox_delivered.to_string()),
        ("mailbox expired", c.mailbox_expired.to_string()),
        ("mailbox dropped", c.mailbox_dropped.to_string()),
        ("mailbox refused", c.mailbox_refused.to_string()),
        ("mailbox cleared", c.mailbox_cleared.to_string()),
        ("mailbox resent", c.mailbox_resent.to_string()),
        ("resume gaps", c.resume_gaps.to_string()),
        ("groups refused", c.groups_refused.to_string()),
        ("memberships ended", c.group_memberships_expired.to_string()),
        ("reload failures", c.reload_failures.to_string()),
        ("events dropped", c.events_dropped.to_string()),
        ("webhook posts", c.webhook_posts.to_string()),
        ("webhook failures", c.webhook_failures.to_string()),
        ("refused (text)", c.text_refused.to_string()),
        ("text idle closed", c.text_idle_closed.to_string()),
        ("refused (http)", c.http_refused.to_string()),
        ("http idle closed", c.http_idle_closed.to_string()),
        ("bus resubscribes", c.bus_resubscribes.to_string()),
        ("upstream messages", c.upstream_messages.to_string()),
        ("upstream dropped", c.upstream_dropped.to_string()),
    ];
    let mut lines = lines.to_vec();
    if let Some(cluster) = &stats.cluster {
        lines.push(("node", format!("{} ({})", cluster.node, cluster.node_id)));
        let redis_state = if cluster.redis_up {
            "up"
        } else {
            "UNREACHABLE"
        };
        lines.push(("redis", format!("{} ({redis_state})", cluster.redis)));
        lines.push(("nodes", cluster.nodes.len().to_string()));
        for node in &cluster.nodes {
            lines.push((
                "  node",
                format!(
                    "{}: {} connections, {} uids, ws {}, up {} ({})",
                    node.name,
                    node.connections,
                    node.uids,
                    node.ws_listen,
                    duration_ms(node.uptime_ms),
                    node.id
                ),
            ));
        }
    }
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    lines
        .iter()
        .map(|(key, value)| format!("{:width$} {value}", format!("{key}:")))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use pushd_proto::admin::ConnInfo;

    fn conn(peer: &str, idle_ms: u64, connected_ms: u64) -> ConnInfo {
        ConnInfo {
            id: 1,
            peer: peer.into(),
            idle_ms,
            connected_ms,
            node: None,
            kind: None,
            connection: "n.1".into(),
        }
    }

    #[test]
    fn durations_are_humantime_to_the_second() {
        assert_eq!(duration_ms(999), "0s");
        assert_eq!(duration_ms(65_400), "1m 5s");
        assert_eq!(duration_ms(3_600_000), "1h");
    }

    #[test]
    fn one_row_per_uid() {
        let uids = vec![
            UidInfo {
                uid: "42".into(),
                connections: vec![
                    conn("127.0.0.1:5000", 3_000, 90_000),
                    conn("[::1]:6000", 1_000, 5_000),
                ],
            },
            UidInfo {
                uid: "7".into(),
                connections: vec![conn("10.0.0.2:7000", 0, 1_000)],
            },
        ];
        let table = uid_table(&uids);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(
            lines[0].starts_with("UID  CONNS  IDLE  ONLINE FOR  ADDRESS"),
            "{table}"
        );
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            ["42", "2", "1s", "1m", "30s", "127.0.0.1:5000", "+1"]
        );
        assert_eq!(
            lines[2].split_whitespace().collect::<Vec<_>>(),
            ["7", "1", "0s", "1s", "10.0.0.2:7000"]
        );
    }
}
