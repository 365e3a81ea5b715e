//! README "Operator side: pushctl": every subcommand, its output and its exit status.

use std::time::Duration;

use tokio::process::Command;

use crate::harness::{Pushd, STEP, WsClient, run_ctl};

#[tokio::test]
async fn list_shows_uids_with_connections_idle_time_and_address() {
    let pushd = Pushd::start(&[]).await;
    let empty = pushd.ctl(&["--json", "list"]).await;
    assert_eq!((empty.status, empty.json()), (0, serde_json::json!([])));

    let _a = pushd.bound_client("alice").await;
    let _b1 = pushd.bound_client("bob").await;
    let mut b2 = pushd.bound_client("bob").await;
    // Bob bound last: once his connections are a second idle, so is alice.
    pushd.wait_idle("bob", Duration::from_secs(1)).await;
    b2.send_text("activity").await;
    b2.round_trip().await;

    let out = pushd.ctl(&["list"]).await;
    assert_eq!(out.status, 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    let header: Vec<&str> = lines[0]
        .split("  ")
        .filter(|s| !s.is_empty())
        .map(str::trim)
        .collect();
    assert_eq!(
        header,
        ["UID", "CONNS", "IDLE", "ONLINE FOR", "ADDRESS"],
        "{}",
        out.stdout
    );
    assert_eq!(lines.len(), 3, "{}", out.stdout);
    let alice: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(&alice[..3], ["alice", "1", "1s"], "{}", out.stdout);
    assert!(alice[4].starts_with("127.0.0.1:"), "{}", out.stdout);
    let bob: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(
        &bob[..3],
        ["bob", "2", "0s"],
        "the least idle connection counts: {}",
        out.stdout
    );
    assert_eq!(bob[5], "+1", "{}", out.stdout);
    assert!(!out.stdout.contains('\x1b'), "no terminal codes on a pipe");

    let json = pushd.ctl(&["--json", "list"]).await.json();
    let uids = json.as_array().unwrap();
    assert_eq!(uids.len(), 2);
    assert_eq!(uids[1]["uid"], "bob");
    let conns = uids[1]["connections"].as_array().unwrap();
    assert_eq!(conns.len(), 2);
    for conn in conns {
        assert!(
            conn["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
            "{conn}"
        );
        assert!(
            conn["idle_ms"].is_u64() && conn["connected_ms"].as_u64().unwrap() >= 1000,
            "{conn}"
        );
    }
    assert!(uids[0]["connections"][0]["idle_ms"].as_u64().unwrap() >= 1000);
}

#[tokio::test]
async fn kick_exit_status_says_whether_anything_was_kicked() {
    let pushd = Pushd::start(&[]).await;
    let _a = pushd.bound_client("a").await;
    let none = pushd.ctl(&["kick", "nobody", "ghost"]).await;
    assert_eq!(none.status, 1, "{none:?}");
    let some = pushd.ctl(&["--json", "kick", "a", "nobody"]).await;
    assert_eq!(some.status, 0, "{some:?}");
    assert_eq!(
        some.json(),
        serde_json::json!({"connections": 1, "uids": [{"uid": "a", "connections": 1}]})
    );
    let usage = pushd.ctl(&["kick"]).await;
    assert_eq!(usage.status, 2, "{usage:?}");
}

#[tokio::test]
async fn after_kick_returns_the_uid_is_offline_even_if_the_client_never_answers() {
    let pushd = Pushd::start(&[]).await;
    // This client never reads again, so it never completes the close handshake.
    let _frozen = pushd.bound_client("42").await;
    let kick = pushd.ctl(&["kick", "42"]).await;
    assert_eq!(kick.status, 0, "{kick:?}");
    assert_eq!(pushd.ctl(&["online", "42"]).await.status, 1);
    assert_eq!(
        pushd.ctl(&["send", "--transient", "42", "x"]).await.status,
        1
    );
    let mut backend = pushd.text_client().await;
    let line = r#"{"uid":42,"transient":true}"#;
    assert_eq!(backend.request(line).await, "fail");
    let queued = pushd.ctl(&["send", "42", "x"]).await;
    assert_eq!(
        queued.stdout, "42 is offline; queued for its next connection\n",
        "offline, so kept for its return (a kick is not a ban)"
    );
    // And the socket is dropped after the close timeout.
    crate::harness::eventually(STEP, "the frozen connection to be dropped", || async {
        pushd.stats().await["connections"] == 0
    })
    .await;
}

#[tokio::test]
async fn kick_idle_over_kicks_only_idle_connections() {
    let pushd = Pushd::start(&[]).await;
    let mut idle = pushd.bound_client("idle").await;
    let mut busy = pushd.bound_client("busy").await;
    pushd.wait_idle("idle", Duration::from_millis(501)).await;
    busy.send_text("still here").await;
    busy.round_trip().await;
    let out = pushd
        .ctl(&["kick", "--idle-over", "500ms", "--reason", "idle"])
        .await;
    assert_eq!(out.status, 0, "{out:?}");
    assert_eq!(
        out.stdout,
        "kicked idle (1 connection)\n1 connection kicked for being idle\n"
    );
    let closed = idle.closed(STEP).await;
    assert_eq!((closed.code, closed.reason.as_str()), (Some(4000), "idle"));
    assert!(pushd.is_online("busy").await);
    let nothing = pushd.ctl(&["kick", "--idle-over", "1h"]).await;
    assert_eq!(
        nothing.status, 0,
        "cron-friendly: nothing to kick is not an error"
    );
    pushd.fence("busy", &mut [&mut busy]).await;
}

#[tokio::test]
async fn send_reports_delivery_and_reads_stdin() {
    let pushd = Pushd::start(&[]).await;
    let mut client = pushd.bound_client("42").await;
    let offline = pushd.ctl(&["send", "--transient", "7", "hello"]).await;
    assert_eq!(
        (offline.status, offline.stdout.as_str()),
        (1, "7 is offline\n")
    );
    let queued = pushd.ctl(&["--json", "send", "7", "hello"]).await;
    assert_eq!(queued.status, 0, "queued is a success: {queued:?}");
    assert_eq!(
        queued.json(),
        serde_json::json!({"uid": "7", "delivered": 0, "queued": true, "connections": 0})
    );
    let out = pushd.ctl(&["--json", "send", "42", "hello"]).await;
    assert_eq!(out.status, 0);
    assert_eq!(
        out.json(),
        serde_json::json!({"uid": "42", "delivered": 1, "queued": false, "connections": 1})
    );
    assert_eq!(client.recv_text().await, "hello");
    let piped = pushd
        .ctl_stdin(&["send", "42", "-"], "{\"from\":\"stdin\"}\n")
        .await;
    assert_eq!(piped.status, 0, "{piped:?}");
    assert_eq!(client.recv_text().await, r#"{"from":"stdin"}"#);
}

#[tokio::test]
async fn broadcast_reaches_every_bound_connection() {
    let pushd = Pushd::start(&[]).await;
    let mut a = pushd.bound_client("a").await;
    let mut b = pushd.bound_client("b").await;
    let mut unbound = WsClient::connect(pushd.ws).await;
    let out = pushd.ctl(&["broadcast", "to all"]).await;
    assert_eq!(
        (out.status, out.stdout.as_str()),
        (0, "delivered to 2 connections\n")
    );
    assert_eq!(a.recv_text().await, "to all");
    assert_eq!(b.recv_text().await, "to all");
    // Once bound, the first frame it gets is a later push: the broadcast skipped it.
    unbound.send_text("late").await;
    pushd.wait_connections("late", 1).await;
    pushd.fence("late", &mut [&mut unbound]).await;
    let nobody = Pushd::start(&[]).await.ctl(&["broadcast", "x"]).await;
    assert_eq!(nobody.status, 0);
}

#[tokio::test]
async fn online_answers_with_its_exit_status() {
    let pushd = Pushd::start(&[]).await;
    let _c = pushd.bound_client("42").await;
    let yes = pushd.ctl(&["online", "42"]).await;
    assert_eq!(
        (yes.status, yes.stdout.as_str()),
        (0, "42 is online (1 connection)\n")
    );
    let no = pushd.ctl(&["--json", "online", "43"]).await;
    assert_eq!(no.status, 1);
    assert_eq!(
        no.json(),
        serde_json::json!({"uid": "43", "online": false, "connections": 0})
    );
}

#[tokio::test]
async fn stats_reports_version_uptime_addresses_and_counters() {
    let pushd = Pushd::start(&[]).await;
    let _c = pushd.bound_client("42").await;
    pushd.ctl(&["send", "42", "x"]).await;
    let stats = pushd.stats().await;
    assert_eq!(stats["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(stats["ws_listen"], pushd.ws.to_string());
    assert_eq!(stats["text_listen"], pushd.text.to_string());
    assert_eq!(stats["socket"], pushd.socket.display().to_string());
    assert_eq!(
        (stats["connections"].as_u64(), stats["uids"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(stats["uptime_ms"].is_u64());
    assert_eq!(stats["counters"]["binds"], 1);
    assert_eq!(stats["counters"]["messages_delivered"], 1);
    let text = pushd.ctl(&["stats"]).await;
    assert_eq!(text.status, 0);
    assert!(
        text.stdout
            .contains(&format!("websocket:          {}", pushd.ws)),
        "{}",
        text.stdout
    );
}

#[tokio::test]
async fn an_unreachable_daemon_is_exit_2_naming_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("nobody-home.sock");
    for args in [
        &["list"][..],
        &["kick", "42"],
        &["send", "42", "x"],
        &["online", "42"],
        &["stats"],
    ] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_pushctl"));
        command.arg("--socket").arg(&socket).args(args);
        let out = run_ctl(command, None).await;
        assert_eq!(out.status, 2, "{args:?}: {out:?}");
        assert!(
            out.stderr.contains(&socket.display().to_string()),
            "{out:?}"
        );
        assert!(out.stdout.is_empty());
    }
    // The socket can also come from the environment.
    let mut command = Command::new(env!("CARGO_BIN_EXE_pushctl"));
    command.env("PUSHD_SOCKET", &socket).arg("list");
    let out = run_ctl(command, None).await;
    assert!(
        out.status == 2 && out.stderr.contains("nobody-home.sock"),
        "{out:?}"
    );
}

#[tokio::test]
async fn usage_errors_are_exit_2() {
    let pushd = Pushd::start(&[]).await;
    for args in [
        &["frobnicate"][..],
        &["send", "42"],
        &["kick", "--idle-over", "soon"],
        &["online", ""],
    ] {
        let out = pushd.ctl(args).await;
        assert_eq!(out.status, 2, "{args:?}: {out:?}");
    }
}

#[tokio::test]
async fn daemon_errors_name_the_problem() {
    let pushd = Pushd::start(&["--max-message-size", "256"]).await;
    let out = pushd.ctl(&["send", "42", &"x".repeat(300)]).await;
    assert_eq!(out.status, 2, "{out:?}");
    assert!(out.stderr.contains("over the 256-byte limit"), "{out:?}");
}

#[tokio::test]
async fn a_closed_stdout_pipe_is_not_an_error() {
    let pushd = Pushd::start(&[]).await;
    let _c = pushd.bound_client("42").await;
    for _ in 0..3 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pushctl"))
            .arg("--socket")
            .arg(&pushd.socket)
            .arg("list")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        // Like `pushctl list | head -0`: the reader is gone before pushctl writes.
        drop(child.stdout.take());
        let out = crate::harness::within(STEP, "pushctl", child.wait_with_output())
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test]
async fn kick_with_a_ban_refuses_the_uid_until_unbanned() {
    let pushd = Pushd::start(&[]).await;
    let mut client = pushd.bound_client("42").await;
    let kick = pushd
        .ctl(&["kick", "42", "--ban", "1h", "--reason", "cool down"])
        .await;
    assert_eq!(kick.status, 0, "{kick:?}");
    assert_eq!(kick.stdout, "kicked 42 (1 connection)\nbanned 42 for 1h\n");
    assert_eq!(client.closed(STEP).await.code, Some(4000));

    let mut again = WsClient::connect(pushd.ws).await;
    again.send_text("42").await;
    let closed = again.closed(STEP).await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (Some(4003), "banned")
    );

    let bans = pushd.ctl(&["--json", "bans"]).await.json();
    assert_eq!(bans[0]["uid"], "42");
    let remaining = bans[0]["remaining_ms"].as_u64().unwrap();
    assert!(
        remaining > 3_500_000 && remaining <= 3_600_000,
        "{remaining}"
    );
    let table = pushd.ctl(&["bans"]).await.stdout;
    assert!(table.starts_with("UID  REMAINING\n42   59m"), "{table}");
    let stats = pushd.stats().await;
    assert_eq!(
        (
            stats["bans"].as_u64(),
            stats["counters"]["banned_refused"].as_u64()
        ),
        (Some(1), Some(1))
    );

    let unban = pushd.ctl(&["unban", "42"]).await;
    assert_eq!((unban.status, unban.stdout.as_str()), (0, "unbanned 42\n"));
    assert_eq!(
        pushd.ctl(&["unban", "42"]).await.status,
        1,
        "nothing left to unban"
    );
    let _back = pushd.bound_client("42").await;

    // A ban also applies to a uid that is not online (kick still exits 1).
    assert_eq!(pushd.ctl(&["kick", "7", "--ban", "10m"]).await.status, 1);
    let mut seven = WsClient::connect(pushd.ws).await;
    seven.send_text("7").await;
    assert_eq!(seven.closed(STEP).await.code, Some(4003));
}

#[tokio::test]
async fn list_sorts_and_limits() {
    let pushd = Pushd::start(&[]).await;
    let _a1 = pushd.bound_client("a").await;
    let _a2 = pushd.bound_client("a").await;
    let _b = pushd.bound_client("b").await;
    pushd.wait_idle("b", Duration::from_secs(1)).await;
    let mut c = pushd.bound_client("c").await;
    c.send_text("activity").await;
    let uids = |out: crate::harness::Ctl| -> Vec<String> {
        out.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["uid"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        uids(
            pushd
                .ctl(&["--json", "list", "--sort", "conns", "--limit", "1"])
                .await
        ),
        ["a"]
    );
    let by_idle = uids(pushd.ctl(&["--json", "list", "--sort", "idle"]).await);
    assert_eq!(by_idle.last().map(String::as_str), Some("c"), "{by_idle:?}");
    let table = pushd.ctl(&["list", "--limit", "2"]).await.stdout;
    assert_eq!(table.lines().count(), 3, "header and two rows: {table}");
}

#[tokio::test]
async fn watch_prints_snapshots_with_rates_and_no_control_codes_on_a_pipe() {
    let pushd = Pushd::start(&[]).await;
    let _a = pushd.bound_client("a").await;
    let _b = pushd.bound_client("b").await;
    let out = pushd
        .ctl(&[
            "watch",
            "--interval",
            "300ms",
            "--iterations",
            "2",
            "--top",
            "1",
        ])
        .await;
    assert_eq!(out.status, 0, "{out:?}");
    assert!(
        !out.stdout.contains('\x1b'),
        "no terminal codes on a pipe: {:?}",
        out.stdout
    );
    let snapshots: Vec<&str> = out
        .stdout
        .split("pushd ")
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(snapshots.len(), 2, "{}", out.stdout);
    assert!(
        snapshots[0].contains("connections 2  uids 2"),
        "{}",
        out.stdout
    );
    assert!(
        snapshots[0].contains("rates from the next refresh on"),
        "{}",
        out.stdout
    );
    assert!(snapshots[1].contains("delivered 0/s"), "{}", out.stdout);
    // --top 1: the header row and one uid.
    assert_eq!(
        snapshots[1]
            .lines()
            .filter(|l| l.starts_with("a ") || l.starts_with("b "))
            .count(),
        1
    );
}

/// Regression: `pushctl online -5` answered "unexpected argument '-5' found"
/// (exit 2), though `-5` is the uid of the integer -5; the same for every uid
/// and message argument that begins with `-`.
#[tokio::test]
async fn uids_and_messages_may_begin_with_a_hyphen() {
    let pushd = Pushd::start(&[]).await;
    let mut minus5 = pushd.bound_client("-5").await;
    let mut dash_x = pushd.bound_client("-x").await;
    let online = pushd.ctl(&["online", "-5"]).await;
    assert_eq!(
        (online.status, online.stdout.as_str()),
        (0, "-5 is online (1 connection)\n")
    );
    let sent = pushd.ctl(&["send", "-5", "-x"]).await;
    assert_eq!(sent.status, 0, "{sent:?}");
    assert_eq!(minus5.recv_text().await, "-x");
    let dashes = pushd.ctl(&["send", "--", "-x", "--y"]).await;
    assert_eq!(dashes.status, 0, "`--` works too: {dashes:?}");
    assert_eq!(dash_x.recv_text().await, "--y");
    // The integer -5 on the text port is the same uid.
    let mut backend = pushd.text_client().await;
    assert_eq!(backend.request(r#"{"uid":-5}"#).await, "ok");
    assert_eq!(minus5.recv_text().await, r#"{"uid":-5}"#);
    let kicked = pushd
        .ctl(&["kick", "-5", "-x", "--reason", "bye", "--ban", "1h"])
        .await;
    assert_eq!(kicked.status, 0, "{kicked:?}");
    for client in [&mut minus5, &mut dash_x] {
        let closed = client.closed(STEP).await;
        assert_eq!((closed.code, closed.reason.as_str()), (Some(4000), "bye"));
    }
    let unbanned = pushd.ctl(&["--json", "unban", "-x", "-5"]).await;
    assert_eq!(unbanned.status, 0, "{unbanned:?}");
    assert_eq!(unbanned.json()["unbanned"], serde_json::json!(["-x", "-5"]));
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "0123456789abcdef0123456789abcdef\n").unwrap();
    let secret = secret.to_str().unwrap();
    let token = pushd.ctl(&["token", "-5", "--secret-file", secret]).await;
    assert_eq!(token.status, 0, "{token:?}");
}
