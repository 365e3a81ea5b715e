//! Running out of file descriptors: refuse new clients cleanly, keep serving
//! the others, warn once per interval, recover when connections close.

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::Command;

use crate::harness::{Pushd, STEP, WsClient, eventually, within};

/// Starts pushd under `ulimit -n 200`: 64.min(200 / 4) = 50 descriptors of
/// headroom leave 150 WebSocket slots.
async fn pushd_with_200_files() -> (Pushd, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("pushd.sock");
    let mut command = Command::new("bash");
    command
        .arg("-c")
        .arg(r#"ulimit -n 200 && exec "$0" "$@""#)
        .arg(env!("CARGO_BIN_EXE_pushd"))
        .args([
            "--ws-listen",
            "127.0.0.1:0",
            "--text-listen",
            "127.0.0.1:0",
            "--socket",
        ])
        .arg(&socket);
    let pushd = Pushd::spawn(command, &socket).await.expect("pushd starts");
    (pushd, dir)
}

#[tokio::test]
async fn at_the_file_limit_new_clients_are_refused_and_the_rest_keeps_working() {
    let (pushd, _dir) = pushd_with_200_files().await;
    assert!(
        pushd.log.lock().unwrap().contains("max_connections=150"),
        "{}",
        pushd.log.lock().unwrap()
    );

    let mut clients = Vec::new();
    for i in 0..150 {
        let mut client = WsClient::connect(pushd.ws).await;
        client.send_text(&format!("c{i}")).await;
        clients.push(client);
    }
    eventually(STEP, "150 bound clients", || async {
        pushd.stats().await["uids"] == 150
    })
    .await;

    // Over the limit: the connection is closed at once, not left hanging.
    for _ in 0..3 {
        let url = format!("ws://{}/", pushd.ws);
        let refused = within(
            STEP,
            "a refused handshake",
            tokio_tungstenite::connect_async(url),
        )
        .await;
        assert!(refused.is_err(), "the 151st connection must be refused");
    }
    let stats = pushd.stats().await;
    assert_eq!(stats["counters"]["connections_refused"], 3, "{stats}");
    let log = pushd.log.lock().unwrap().clone();
    assert_eq!(
        log.matches("at the limit of 150 WebSocket connections")
            .count(),
        1,
        "one warning per interval:\n{log}"
    );

    // Everyone already connected is still served, through both push paths.
    let mut backend = pushd.text_client().await;
    assert_eq!(backend.request(r#"{"uid":"c7"}"#).await, "ok");
    assert_eq!(clients[7].recv_text().await, r#"{"uid":"c7"}"#);
    assert_eq!(pushd.ctl(&["send", "c149", "still here"]).await.status, 0);
    assert_eq!(clients[149].recv_text().await, "still here");

    // Recovery: close ten, and new clients get in again.
    clients.truncate(140);
    eventually(STEP, "closed clients to be gone", || async {
        pushd.stats().await["connections"] == 140
    })
    .await;
    let _late = pushd.bound_client("late").await;
}

#[tokio::test]
async fn out_of_descriptors_on_the_text_port_closes_the_new_connection_and_recovers() {
    let (pushd, _dir) = pushd_with_200_files().await;
    let _client = pushd.bound_client("42").await;
    // The WebSocket cap does not apply to the text port, so about 185 text
    // connections exhaust the 200 descriptors. pushd then accepts and closes
    // each further one with its spare descriptor.
    let mut opened = Vec::new();
    for _ in 0..220 {
        opened.push(pushd.text_client().await);
    }
    // A refused connection reads EOF (or a reset) at once; a served one stays quiet.
    let quiet = futures_util::future::join_all(opened.iter_mut().map(|backend| async {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(
            Duration::from_millis(500),
            backend.read_half().read(&mut byte),
        );
        read.await.is_err()
    }))
    .await;
    let closed_at_once = quiet.iter().filter(|q| !**q).count() as u64;
    let mut backends: Vec<_> = opened
        .into_iter()
        .zip(quiet)
        .filter(|(_, q)| *q)
        .map(|(b, _)| b)
        .collect();
    assert!(closed_at_once > 0, "some text connections must be refused");
    assert!(
        backends.len() >= 150,
        "only {} text connections were served",
        backends.len()
    );
    assert_eq!(
        backends[0].request(r#"{"uid":"42"}"#).await,
        "ok",
        "accepted ones keep working"
    );
    backends.clear();
    // With descriptors back, the admin socket and the text port work again.
    eventually(STEP, "pushd to answer again", || async {
        pushd.ctl(&["--json", "stats"]).await.status == 0
    })
    .await;
    let stats = pushd.stats().await;
    assert!(
        stats["counters"]["connections_refused"].as_u64().unwrap() >= closed_at_once,
        "{stats}"
    );
    let mut backend = pushd.text_client().await;
    assert_eq!(backend.request(r#"{"uid":"42"}"#).await, "ok");
}
