//! Start-up, the admin socket's life, shutdown, configuration by environment.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use tokio::process::Command;

use crate::harness::{Pushd, STEP};

#[tokio::test]
async fn the_admin_socket_is_private() {
    let pushd = Pushd::start(&[]).await;
    let mode = std::fs::metadata(&pushd.socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
}

#[tokio::test]
async fn a_second_pushd_on_the_same_socket_refuses_and_the_first_keeps_serving() {
    let first = Pushd::start(&[]).await;
    let _client = first.bound_client("42").await;
    let second = Pushd::try_start_at(&first.socket, &[]).await;
    let log = second.err().expect("the second pushd must not start");
    assert!(log.contains("already serving"), "{log}");
    assert!(
        first.is_online("42").await,
        "the first daemon still answers on its socket"
    );
}

#[tokio::test]
async fn a_stale_socket_left_by_a_killed_daemon_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("pushd.sock");
    let mut first = Pushd::start_at(&socket, &[]).await;
    first.signal(libc::SIGKILL);
    first.wait(STEP).await;
    assert!(socket.exists(), "SIGKILL leaves the file behind");
    let second = Pushd::start_at(&socket, &[]).await;
    let _client = second.bound_client("42").await;
    assert!(
        second
            .log
            .lock()
            .unwrap()
            .contains("removed stale admin socket")
    );
}

#[tokio::test]
async fn a_non_socket_file_is_not_removed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("precious.txt");
    std::fs::write(&path, "data").unwrap();
    let err = Pushd::try_start_at(&path, &[])
        .await
        .err()
        .expect("must refuse");
    assert!(err.contains("is not a socket"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "data");
}

#[tokio::test]
async fn sigterm_closes_clients_with_1001_removes_the_socket_and_exits_0() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let mut pushd = Pushd::start(&[]).await;
        let mut client = pushd.bound_client("42").await;
        let mut backend = pushd.text_client().await;
        // A served request proves the text connection was accepted before the signal.
        assert_eq!(backend.request(r#"{"uid":"43"}"#).await, "queued");
        pushd.signal(signal);
        let closed = client.closed(STEP).await;
        assert_eq!(closed.code, Some(1001), "{closed:?}");
        let started = std::time::Instant::now();
        assert_eq!(
            pushd.wait(STEP).await,
            Some(0),
            "{}",
            pushd.log.lock().unwrap()
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(!pushd.socket.exists(), "the socket file is removed");
        assert!(
            backend.read_to_end().await.is_empty(),
            "text connections are closed"
        );
        assert!(
            tokio::net::TcpStream::connect(pushd.ws).await.is_err(),
            "no longer accepting"
        );
    }
}

#[tokio::test]
async fn every_option_has_an_environment_variable() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("env.sock");
    let mut command = Command::new(env!("CARGO_BIN_EXE_pushd"));
    command
        .env("PUSHD_WS_LISTEN", "127.0.0.1:0")
        .env("PUSHD_TEXT_LISTEN", "127.0.0.1:0")
        .env("PUSHD_SOCKET", &socket)
        .env("PUSHD_HEARTBEAT", "700ms")
        .env("PUSHD_PING_INTERVAL", "0")
        .env("PUSHD_MAX_MESSAGE_SIZE", "300");
    let pushd = Pushd::spawn(command, &socket)
        .await
        .expect("start from env");
    assert!(socket.exists());
    let mut client = pushd.bound_client("42").await;
    let closed = client.closed(STEP).await;
    assert_eq!(closed.code, Some(4001), "PUSHD_HEARTBEAT took effect");
    let out = pushd.ctl(&["broadcast", &"x".repeat(301)]).await;
    assert_eq!(out.status, 2, "PUSHD_MAX_MESSAGE_SIZE took effect: {out:?}");
}

#[tokio::test]
async fn the_start_line_reports_the_bound_addresses() {
    let pushd = Pushd::start(&[]).await;
    let log = pushd.log.lock().unwrap().clone();
    assert!(log.contains(&format!("ws={}", pushd.ws)), "{log}");
    assert!(log.contains(&format!("text={}", pushd.text)), "{log}");
    assert_ne!(pushd.ws.port(), 0);
}

#[tokio::test]
async fn the_admin_protocol_survives_malformed_requests() {
    let pushd = Pushd::start(&[]).await;
    let socket = pushd.socket.clone();
    let replies = tokio::task::spawn_blocking(move || {
        let stream = UnixStream::connect(&socket).unwrap();
        stream.set_read_timeout(Some(STEP)).unwrap();
        let mut writer = stream.try_clone().unwrap();
        writer
            .write_all(
                b"garbage\n{\"version\":1,\"cmd\":\"nope\"}\n{\"version\":99,\"cmd\":\"list\"}\n\
                  \xff\xfe\n{\"version\":1,\"cmd\":\"ping\"}\n",
            )
            .unwrap();
        let mut reader = BufReader::new(stream);
        (0..5)
            .map(|_| {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                serde_json::from_str::<serde_json::Value>(&line).unwrap()
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert!(
        replies[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("malformed request"),
        "{replies:?}"
    );
    assert!(
        replies[1]["error"]
            .as_str()
            .unwrap()
            .contains("unknown variant"),
        "{replies:?}"
    );
    assert!(
        replies[2]["error"]
            .as_str()
            .unwrap()
            .contains("version mismatch"),
        "{replies:?}"
    );
    assert!(replies[3]["error"].is_string(), "{replies:?}");
    assert_eq!(replies[4]["result"]["type"], "pong", "{replies:?}");
}

/// A push answered `ok` is written to its connection before the close frame,
/// at shutdown too. (Issue 22: what a slow reader had not taken yet was
/// dropped, so every wss client lost its last pushes.)
#[tokio::test]
async fn at_shutdown_every_push_answered_ok_is_written_before_the_close_frame() {
    let mut pushd = Pushd::start(&["--max-queue-bytes", "67108864"]).await;
    let mut page = crate::harness::WsClient::connect_with_small_window(pushd.ws).await;
    page.send_text("slow").await;
    pushd.wait_connections("slow", 1).await;
    let mut backend = pushd.text_client().await;
    let pad = "x".repeat(16_000);
    const PUSHES: usize = 1000;
    for i in 0..PUSHES {
        let line = format!(r#"{{"uid":"slow","i":{i},"pad":"{pad}"}}"#);
        assert_eq!(backend.request(&line).await, "ok");
    }
    pushd.signal(libc::SIGTERM);
    for i in 0..PUSHES {
        let text = page.recv_text().await;
        assert!(text.contains(&format!(r#""i":{i},"#)), "push {i} missing");
    }
    assert_eq!(page.closed(STEP).await.code, Some(1001));
    assert_eq!(pushd.wait(STEP).await, Some(0));
}

/// SIGTERM tells every event stream of the connections it closes: each
/// `disconnect` (reason `shutdown`) and the `offline` after it, whatever the
/// grace, and only then does the stream end. (Issue 22: the streams were cut
/// before the connections closed.)
#[tokio::test]
async fn sigterm_tells_event_streams_of_each_disconnect_and_offline_before_they_end() {
    let mut pushd = Pushd::start(&["--http-listen", "127.0.0.1:0", "--offline-grace", "60s"]).await;
    let mut sse = crate::http::Sse::open(&pushd, "").await;
    let _page = pushd.bound_client("42").await;
    let mut seen = Vec::new();
    for _ in 0..2 {
        let event = sse.next().await;
        seen.push(event["type"].as_str().unwrap().to_owned());
    }
    seen.sort();
    assert_eq!(seen, ["connect", "online"]);
    pushd.signal(libc::SIGTERM);
    let rest = sse.rest(STEP).await;
    let told: Vec<(&str, &str, Option<&str>)> = rest
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap(),
                e["uid"].as_str().unwrap(),
                e["reason"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        told,
        [
            ("disconnect", "42", Some("shutdown")),
            ("offline", "42", None)
        ]
    );
    assert_eq!(pushd.wait(STEP).await, Some(0));
}
