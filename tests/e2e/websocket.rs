//! README "Web page side" and "Close codes": binding, fan-out, heartbeat, pings, close codes.

use std::time::Duration;

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{Pushd, STEP, WsClient, eventually, within};

#[tokio::test]
async fn first_text_message_binds_the_trimmed_uid() {
    let pushd = Pushd::start(&[]).await;
    let _client = pushd.bound_client("  42 \n").await;
    assert!(pushd.is_online("42").await);
    let list = pushd.ctl(&["--json", "list"]).await.json();
    assert_eq!(list[0]["uid"], "42");
}

#[tokio::test]
async fn a_push_reaches_every_connection_of_the_uid_and_no_other() {
    let pushd = Pushd::start(&[]).await;
    let mut tab1 = pushd.bound_client("42").await;
    let mut tab2 = pushd.bound_client("42").await;
    let mut other = pushd.bound_client("7").await;
    let out = pushd.ctl(&["send", "42", "hello"]).await;
    assert_eq!(out.status, 0, "{out:?}");
    assert_eq!(out.stdout, "delivered to 2 connections of 42\n");
    assert_eq!(tab1.recv_text().await, "hello");
    assert_eq!(tab2.recv_text().await, "hello");
    pushd.fence("7", &mut [&mut other]).await;
}

#[tokio::test]
async fn later_text_messages_do_not_rebind() {
    let pushd = Pushd::start(&[]).await;
    let mut client = pushd.bound_client("42").await;
    client.send_text("43").await;
    client.send_text("heartbeat").await;
    // Once pushd has read them, nothing moved.
    client.round_trip().await;
    assert!(pushd.is_online("42").await);
    assert!(!pushd.is_online("43").await);
    assert!(!pushd.is_online("heartbeat").await);
}

#[tokio::test]
async fn pushd_sends_no_frames_of_its_own() {
    // No welcome, no bind ack: with pings off, the first frame is the push.
    let pushd = Pushd::start(&["--ping-interval", "0"]).await;
    let mut client = pushd.bound_client("42").await;
    pushd.ctl(&["send", "42", "first"]).await;
    match within(STEP, "first frame", client.ws.next()).await {
        Some(Ok(Message::Text(text))) => assert_eq!(text, "first"),
        other => panic!("expected the push as the first frame, got {other:?}"),
    }
}

#[tokio::test]
async fn invalid_uids_close_with_1008() {
    let pushd = Pushd::start(&[]).await;
    let too_long = "x".repeat(129);
    for uid in ["", "   ", "a\u{1}b", too_long.as_str()] {
        let mut client = WsClient::connect(pushd.ws).await;
        client.send_text(uid).await;
        let closed = client.closed(STEP).await;
        assert_eq!(closed.code, Some(1008), "uid {uid:?}: {closed:?}");
        assert!(closed.reason.starts_with("invalid uid"), "{closed:?}");
    }
    // 128 bytes is still fine.
    let longest = "y".repeat(128);
    let _ok = pushd.bound_client(&longest).await;
    assert_eq!(pushd.stats().await["counters"]["invalid_uids"], 4);
}

#[tokio::test]
async fn binary_frames_count_as_activity_but_do_not_bind() {
    let pushd = Pushd::start(&["--heartbeat", "1s", "--ping-interval", "0"]).await;
    let mut client = WsClient::connect(pushd.ws).await;
    for _ in 0..8 {
        within(
            STEP,
            "send",
            futures_util::SinkExt::send(&mut client.ws, Message::binary(vec![1, 2])),
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Two seconds of binary frames kept a 1 s heartbeat happy, and bound nothing.
    assert_eq!(pushd.stats().await["connections"], 1);
    assert_eq!(pushd.stats().await["uids"], 0);
    client.send_text("42").await;
    pushd.wait_connections("42", 1).await;
}

#[tokio::test]
async fn silent_connections_are_closed_by_the_heartbeat_with_4001() {
    let pushd = Pushd::start(&["--heartbeat", "1s", "--ping-interval", "0"]).await;
    let mut silent = pushd.bound_client("silent").await;
    let mut unbound = WsClient::connect(pushd.ws).await;
    let mut chatty = pushd.bound_client("chatty").await;
    let started = std::time::Instant::now();
    let heartbeats = async {
        for _ in 0..12 {
            chatty.send_text("ping").await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        chatty
    };
    let (closed, closed_unbound, chatty) = tokio::join!(
        silent.closed(Duration::from_secs(5)),
        unbound.closed(Duration::from_secs(5)),
        heartbeats
    );
    assert_eq!(closed.code, Some(4001), "{closed:?}");
    assert_eq!(closed.reason, "heartbeat timeout");
    assert_eq!(
        closed_unbound.code,
        Some(4001),
        "an unbound connection times out too"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "closed too early: {:?}",
        started.elapsed()
    );
    assert!(
        !pushd.is_online("silent").await,
        "the uid mapping goes with the connection"
    );
    assert!(
        pushd.is_online("chatty").await,
        "activity keeps a connection open"
    );
    drop(chatty);
    assert_eq!(pushd.stats().await["counters"]["heartbeat_timeouts"], 2);
}

#[tokio::test]
async fn server_pings_are_answered_by_the_client_and_keep_it_online() {
    // A client that never sends anything itself, like a browser page without
    // app-level heartbeats: tungstenite answers pings automatically.
    let pushd = Pushd::start(&["--heartbeat", "1s", "--ping-interval", "200ms"]).await;
    let mut client = pushd.bound_client("42").await;
    let pings = within(STEP, "pings", async {
        let mut pings = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(2500);
        while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, client.ws.next()).await {
            if matches!(frame, Message::Ping(_)) {
                pings += 1;
            }
        }
        pings
    })
    .await;
    assert!(
        pings >= 5,
        "expected pings every 200 ms, got {pings} in 2.5 s"
    );
    assert!(pushd.is_online("42").await, "pongs are activity");
}

#[tokio::test]
async fn the_heartbeat_does_not_wait_behind_a_blocked_write() {
    // The client stops reading; pushes fill the socket buffers so pushd's
    // writes block. The heartbeat must still close it on time.
    let pushd = Pushd::start(&[
        "--heartbeat",
        "1s",
        "--ping-interval",
        "0",
        "--max-message-size",
        "1048576",
        "--max-queue-bytes",
        "67108864",
    ])
    .await;
    let stalled = pushd.bound_client("stalled").await;
    let big = format!(
        "{{\"uid\":\"stalled\",\"pad\":\"{}\"}}\n",
        "x".repeat(1_000_000)
    );
    let mut backend = pushd.text_client().await;
    // 40 MB: far more than loopback socket buffers hold, less than the
    // 64 MiB queue allowed here, so this is the heartbeat, not the
    // slow-consumer rule.
    for _ in 0..40 {
        backend.write(big.as_bytes()).await;
        assert_eq!(backend.reply().await, "ok");
    }
    let started = std::time::Instant::now();
    eventually(
        Duration::from_secs(6),
        "the stalled client to go offline",
        || async { !pushd.is_online("stalled").await },
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    let counters = &pushd.stats().await["counters"];
    assert_eq!(counters["heartbeat_timeouts"], 1, "{counters}");
    assert_eq!(counters["slow_consumers"], 0, "{counters}");
    drop(stalled);
}

#[tokio::test]
async fn oversized_messages_close_with_1009() {
    let pushd = Pushd::start(&["--max-message-size", "1024"]).await;
    let mut client = pushd.bound_client("42").await;
    client.send_text(&"x".repeat(2000)).await;
    let closed = client.closed(STEP).await;
    assert_eq!(closed.code, Some(1009), "{closed:?}");
    assert!(!pushd.is_online("42").await);
    assert_eq!(pushd.stats().await["counters"]["oversized_messages"], 1);
}

#[tokio::test]
async fn kick_closes_with_4000_and_the_reason() {
    let pushd = Pushd::start(&[]).await;
    let mut tab1 = pushd.bound_client("42").await;
    let mut tab2 = pushd.bound_client("42").await;
    let out = pushd
        .ctl(&["kick", "42", "--reason", "account suspended"])
        .await;
    assert_eq!(out.status, 0, "{out:?}");
    assert_eq!(out.stdout, "kicked 42 (2 connections)\n");
    for tab in [&mut tab1, &mut tab2] {
        let closed = tab.closed(STEP).await;
        assert_eq!(closed.code, Some(4000));
        assert_eq!(closed.reason, "account suspended");
    }
}

#[tokio::test]
async fn a_client_on_ipv6_is_listed_as_bracketed_address() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("s");
    let Ok(pushd) = Pushd::try_start_at(&socket, &["--ws-listen", "[::1]:0"]).await else {
        eprintln!("skipped: no IPv6 loopback on this machine");
        return;
    };
    let _client = pushd.bound_client("v6").await;
    let list = pushd.ctl(&["--json", "list"]).await.json();
    let peer = list[0]["connections"][0]["peer"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(peer.starts_with("[::1]:"), "{peer}");
    let stats = pushd.stats().await;
    assert!(
        stats["ws_listen"].as_str().unwrap().starts_with("[::1]:"),
        "{stats}"
    );
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_as_a_slow_consumer_without_slowing_others() {
    let pushd = Pushd::start(&["--ping-interval", "0"]).await;
    let stalled = pushd.bound_client("stalled").await;
    let mut healthy = pushd.bound_client("healthy").await;
    let mut backend = pushd.text_client().await;
    // 1,300 pushes of 60 KB: more than the socket buffers plus the 4 MiB queue.
    let line = format!(
        "{{\"uid\":\"stalled\",\"pad\":\"{}\"}}\n",
        "x".repeat(60_000)
    );
    let mut replies = Vec::new();
    for round in 0..13 {
        backend.write(line.repeat(100).as_bytes()).await;
        for _ in 0..100 {
            replies.push(backend.reply().await);
        }
        // The healthy client is served between the stalled client's pushes.
        assert_eq!(
            backend
                .request(&format!("{{\"uid\":\"healthy\",\"round\":{round}}}"))
                .await,
            "ok"
        );
        assert_eq!(
            healthy.recv_text().await,
            format!("{{\"uid\":\"healthy\",\"round\":{round}}}")
        );
    }
    assert_eq!(
        replies.last().unwrap(),
        "queued",
        "the stalled uid went offline"
    );
    assert!(!pushd.is_online("stalled").await);
    let counters = &pushd.stats().await["counters"];
    assert_eq!(counters["slow_consumers"], 1, "{counters}");
    drop(stalled);
}
