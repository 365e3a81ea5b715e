//! `--auth token`: signed tokens instead of bare uids.

use std::path::{Path, PathBuf};

use tokio::process::Command;

use crate::harness::{Pushd, STEP, WsClient, run_ctl, within};

const SECRET: &str = "a secret of at least thirty-two bytes, for tests only";

fn secret_file(dir: &Path) -> PathBuf {
    let path = dir.join("secret");
    std::fs::write(&path, format!("{SECRET}\n")).unwrap();
    path
}

async fn mint(secret: &Path, uid: &str) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pushctl"));
    command
        .args(["token", uid, "--ttl", "10m", "--secret-file"])
        .arg(secret);
    let out = run_ctl(command, None).await;
    assert_eq!(out.status, 0, "{out:?}");
    out.stdout.trim().to_owned()
}

async fn pushd_with_tokens(dir: &Path) -> Pushd {
    let secret = secret_file(dir);
    let secret = secret.to_str().unwrap();
    Pushd::start(&["--auth", "token", "--auth-secret-file", secret]).await
}

#[tokio::test]
async fn a_minted_token_binds_its_uid_as_first_message_or_in_the_url() {
    let dir = tempfile::tempdir().unwrap();
    let pushd = pushd_with_tokens(dir.path()).await;
    let secret = dir.path().join("secret");

    let mut by_message = WsClient::connect(pushd.ws).await;
    by_message.send_text(&mint(&secret, "42").await).await;
    pushd.wait_connections("42", 1).await;

    let url = format!("ws://{}/?v=1&token={}", pushd.ws, mint(&secret, "7").await);
    let (by_url, _) = within(STEP, "handshake", tokio_tungstenite::connect_async(url))
        .await
        .unwrap();
    pushd.wait_connections("7", 1).await;

    assert_eq!(pushd.ctl(&["send", "42", "hi"]).await.status, 0);
    assert_eq!(by_message.recv_text().await, "hi");
    drop(by_url);
}

#[tokio::test]
async fn bad_expired_foreign_and_missing_tokens_close_with_1008() {
    let dir = tempfile::tempdir().unwrap();
    let pushd = pushd_with_tokens(dir.path()).await;
    let past = pushd_proto::token::now_secs() - 3600;
    let expired = pushd_proto::token::mint(SECRET.as_bytes(), "42", past).unwrap();
    let now = pushd_proto::token::now_secs();
    let foreign =
        pushd_proto::token::mint(b"some other secret of thirty-two bytes", "42", now + 600)
            .unwrap();
    for (what, first_message) in [
        ("a bare uid", "42"),
        ("garbage", "x.y.z"),
        ("expired", &expired),
        ("foreign", &foreign),
    ] {
        let mut client = WsClient::connect(pushd.ws).await;
        client.send_text(first_message).await;
        let closed = client.closed(STEP).await;
        assert_eq!(closed.code, Some(1008), "{what}: {closed:?}");
        assert!(
            closed.reason.starts_with("invalid token"),
            "{what}: {closed:?}"
        );
    }
    let url = format!("ws://{}/?token=not-a-token", pushd.ws);
    let (ws, _) = within(STEP, "handshake", tokio_tungstenite::connect_async(url))
        .await
        .unwrap();
    let mut client = WsClient { ws };
    assert_eq!(client.closed(STEP).await.code, Some(1008));
    assert_eq!(pushd.stats().await["counters"]["invalid_tokens"], 5);
    assert!(!pushd.is_online("42").await);
}

#[tokio::test]
async fn token_mode_needs_a_usable_secret_file() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("s");
    let missing = Pushd::try_start_at(&socket, &["--auth", "token"]).await;
    assert!(
        missing.is_err(),
        "--auth token without --auth-secret-file must not start"
    );
    let short = dir.path().join("short");
    std::fs::write(&short, "too short").unwrap();
    let err = Pushd::try_start_at(
        &socket,
        &[
            "--auth",
            "token",
            "--auth-secret-file",
            short.to_str().unwrap(),
        ],
    )
    .await
    .err()
    .expect("a short secret must not start");
    assert!(err.contains("at least 32"), "{err}");
    let mut command = Command::new(env!("CARGO_BIN_EXE_pushctl"));
    command.args(["token", "42", "--secret-file"]).arg(&short);
    let out = run_ctl(command, None).await;
    assert_eq!(out.status, 2, "{out:?}");
    assert!(out.stderr.contains("at least 32"), "{out:?}");
}

#[tokio::test]
async fn the_default_mode_warns_that_uids_are_not_authenticated() {
    let pushd = Pushd::start(&[]).await;
    assert!(
        pushd
            .log
            .lock()
            .unwrap()
            .contains("--auth none: uids are not authenticated")
    );
}
