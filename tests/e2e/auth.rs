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

/// A private key made by openssl (`RSA`, `EC` or `ED25519`), and its public
/// half's PEM file.
fn openssl_key_pair(dir: &Path, kind: &str, name: &str) -> (Vec<u8>, PathBuf) {
    let private = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub"));
    let mut genpkey = std::process::Command::new("openssl");
    genpkey
        .args(["genpkey", "-algorithm", kind, "-out"])
        .arg(&private);
    match kind {
        "RSA" => genpkey.args(["-pkeyopt", "rsa_keygen_bits:2048"]),
        "EC" => genpkey.args(["-pkeyopt", "ec_paramgen_curve:P-256"]),
        _ => &mut genpkey,
    };
    let mut pubout = std::process::Command::new("openssl");
    pubout
        .args(["pkey", "-pubout", "-in"])
        .arg(&private)
        .arg("-out")
        .arg(&public);
    for mut command in [genpkey, pubout] {
        let out = command.output().expect("openssl (installed by .ci/run)");
        assert!(out.status.success(), "{out:?}");
    }
    (std::fs::read(&private).unwrap(), public)
}

/// A token for `uid` signed with `private` (PEM) by `algorithm`.
fn sign(algorithm: jsonwebtoken::Algorithm, private: &[u8], uid: &str) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let key = match algorithm {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(private),
        Algorithm::ES256 => EncodingKey::from_ec_pem(private),
        _ => EncodingKey::from_ed_pem(private),
    }
    .unwrap();
    let claims = pushd_proto::token::Claims {
        sub: uid.to_owned(),
        exp: pushd_proto::token::now_secs() + 600,
    };
    jsonwebtoken::encode(&Header::new(algorithm), &claims, &key).unwrap()
}

async fn first_message_closes_with(pushd: &Pushd, token: &str) -> Option<u16> {
    let mut client = WsClient::connect(pushd.ws).await;
    client.send_text(token).await;
    client.closed(STEP).await.code
}

#[tokio::test]
async fn tokens_signed_by_a_private_key_bind_with_its_public_key_rs256_es256_eddsa() {
    use jsonwebtoken::Algorithm;
    let dir = tempfile::tempdir().unwrap();
    for (kind, algorithm) in [
        ("RSA", Algorithm::RS256),
        ("EC", Algorithm::ES256),
        ("ED25519", Algorithm::EdDSA),
    ] {
        let (private, public) = openssl_key_pair(dir.path(), kind, kind);
        let (stranger, _) = openssl_key_pair(dir.path(), kind, &format!("{kind}-other"));
        let public = public.to_str().unwrap();
        let pushd = Pushd::start(&["--auth", "token", "--auth-public-key-file", public]).await;

        let mut client = WsClient::connect(pushd.ws).await;
        client.send_text(&sign(algorithm, &private, "42")).await;
        pushd.wait_connections("42", 1).await;

        let hs256 = pushd_proto::token::mint(SECRET.as_bytes(), "43", 4_000_000_000).unwrap();
        let foreign = sign(algorithm, &stranger, "44");
        for token in [hs256, foreign] {
            assert_eq!(
                first_message_closes_with(&pushd, &token).await,
                Some(1008),
                "{kind}"
            );
        }
        assert_eq!(
            pushd.stats().await["counters"]["invalid_tokens"],
            2,
            "{kind}"
        );
    }
}

#[tokio::test]
async fn a_reload_rotates_the_public_key_and_a_bad_key_file_keeps_the_old_one() {
    use jsonwebtoken::Algorithm::EdDSA;
    let dir = tempfile::tempdir().unwrap();
    let (old_private, public) = openssl_key_pair(dir.path(), "ED25519", "old");
    let (new_private, new_public) = openssl_key_pair(dir.path(), "ED25519", "new");
    let public_arg = public.to_str().unwrap();
    let pushd = Pushd::start(&["--auth", "token", "--auth-public-key-file", public_arg]).await;
    let mut bound = WsClient::connect(pushd.ws).await;
    bound.send_text(&sign(EdDSA, &old_private, "stays")).await;
    pushd.wait_connections("stays", 1).await;

    std::fs::write(&public, "-----BEGIN PUBLIC KEY-----\ngarbage\n").unwrap();
    let out = pushd.ctl(&["reload"]).await;
    assert_eq!(out.status, 2, "{out:?}");
    assert!(
        out.stderr.contains(public_arg) && out.stderr.contains("previous auth key"),
        "{out:?}"
    );
    let mut still_old = WsClient::connect(pushd.ws).await;
    still_old.send_text(&sign(EdDSA, &old_private, "old")).await;
    pushd.wait_connections("old", 1).await;

    std::fs::copy(&new_public, &public).unwrap();
    let out = pushd.ctl(&["reload"]).await;
    assert_eq!(
        (out.status, out.stdout.trim()),
        (0, "reloaded: auth key"),
        "{out:?}"
    );
    let old_token = sign(EdDSA, &old_private, "late");
    assert_eq!(
        first_message_closes_with(&pushd, &old_token).await,
        Some(1008)
    );
    let mut new = WsClient::connect(pushd.ws).await;
    new.send_text(&sign(EdDSA, &new_private, "new")).await;
    pushd.wait_connections("new", 1).await;
    assert_eq!(
        pushd
            .ctl(&["send", "stays", "no one was closed"])
            .await
            .status,
        0
    );
    assert_eq!(bound.recv_text().await, "no one was closed");
}

#[tokio::test]
async fn auth_token_takes_exactly_one_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("s");
    let secret = secret_file(dir.path());
    let (_, public) = openssl_key_pair(dir.path(), "ED25519", "k");
    let both = [
        "--auth",
        "token",
        "--auth-secret-file",
        secret.to_str().unwrap(),
        "--auth-public-key-file",
        public.to_str().unwrap(),
    ];
    let err = Pushd::try_start_at(&socket, &both).await.err().unwrap();
    assert!(err.contains("cannot be used with"), "{err}");
    let wrong = [
        "--auth",
        "token",
        "--auth-public-key-file",
        secret.to_str().unwrap(),
    ];
    let err = Pushd::try_start_at(&socket, &wrong).await.err().unwrap();
    assert!(err.contains("not a PEM RSA, EC"), "{err}");
}
