//! SPEC "State across a restart (single node)": the state file, with the real
//! binary stopped by SIGTERM and started again.

use std::path::Path;
use std::time::Duration;

use crate::harness::{Pushd, STEP, WsClient};
use crate::resume::{bound_v2, split};

/// Stops `pushd` as a deploy does (SIGTERM) and waits for it to exit 0.
async fn stop(mut pushd: Pushd) -> String {
    pushd.signal(libc::SIGTERM);
    assert_eq!(pushd.wait(STEP).await, Some(0));
    pushd.log.lock().unwrap().clone()
}

/// A raw client of `uid` on `pushd`, and the first thing it is sent.
async fn first_push(pushd: &Pushd, uid: &str) -> String {
    let mut client = pushd.bound_client(uid).await;
    client.recv_text().await
}

/// Messages waiting for an away uid, a `pushd.v2` uid's place, bans and ids
/// all survive a restart: the raw page gets its message after it, the v2 page
/// resumes with no `!gap` and no repeat, the ban holds, ids go on increasing.
#[tokio::test]
async fn a_restart_keeps_waiting_messages_places_bans_and_ids() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("pushd.sock");
    let pushd = Pushd::start_at(&socket, &[]).await;
    let mut backend = pushd.text_client().await;
    assert_eq!(backend.request(r#"{"uid":"away","seq":1}"#).await, "queued");
    let mut page = bound_v2(&pushd, "v2", None).await;
    assert_eq!(backend.request(r#"{"uid":"v2","seq":1}"#).await, "ok");
    let (since, _) = split(&page.recv_text().await);
    drop(page);
    pushd.wait_connections("v2", 0).await;
    assert_eq!(backend.request(r#"{"uid":"v2","seq":2}"#).await, "queued");
    // Exit 1: nobody was online to kick; the ban is set all the same.
    assert_eq!(
        pushd.ctl(&["kick", "--ban", "1h", "banned"]).await.status,
        1
    );
    drop(backend);
    let log = stop(pushd).await;
    assert!(log.contains("state file written"), "{log}");

    let pushd = Pushd::start_at(&socket, &[]).await;
    let log = pushd.log.lock().unwrap().clone();
    assert!(log.contains("state restored"), "{log}");
    assert!(
        !Path::new(&socket.with_extension("state")).exists(),
        "read, then removed"
    );
    assert_eq!(
        first_push(&pushd, "away").await,
        r#"{"uid":"away","seq":1}"#
    );
    let mut page = bound_v2(&pushd, "v2", Some(&since)).await;
    let (id, payload) = split(&page.recv_text().await);
    assert_eq!(payload, r#"{"uid":"v2","seq":2}"#, "no !gap, no repeat");
    let mut backend = pushd.text_client().await;
    assert_eq!(backend.request(r#"{"uid":"v2","seq":3}"#).await, "ok");
    let (newer, _) = split(&page.recv_text().await);
    let number = |id: &str| -> (u64, u64) {
        let (boot, n) = id.split_once('-').unwrap();
        (boot.parse().unwrap(), n.parse().unwrap())
    };
    assert_eq!(number(&newer).0, number(&since).0, "the same boot");
    assert!(number(&since).1 < number(&id).1 && number(&id).1 < number(&newer).1);
    let bans = pushd.ctl(&["--json", "bans"]).await.json();
    assert_eq!(bans[0]["uid"], "banned", "{bans}");
    let mut refused = WsClient::connect(pushd.ws).await;
    refused.send_text("banned").await;
    assert_eq!(refused.closed(STEP).await.code, Some(4003));
}

/// What expired while pushd was down is dropped and counted, not delivered.
#[tokio::test]
async fn what_expired_while_pushd_was_down_is_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("pushd.sock");
    let options = ["--mailbox-ttl", "1s"];
    let pushd = Pushd::start_at(&socket, &options).await;
    let mut backend = pushd.text_client().await;
    assert_eq!(backend.request(r#"{"uid":"late","seq":1}"#).await, "queued");
    drop(backend);
    stop(pushd).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let pushd = Pushd::start_at(&socket, &options).await;
    let stats = pushd.stats().await;
    assert_eq!(stats["counters"]["mailbox_expired"], 1, "{stats}");
    let mut page = pushd.bound_client("late").await;
    assert_eq!(
        page.recv_text_within(Duration::from_millis(300)).await,
        None
    );
}

/// A state file pushd cannot read (not its own, damaged) is moved aside and
/// pushd starts empty, serving; `--state-file none` writes nothing.
#[tokio::test]
async fn an_unreadable_state_file_is_moved_aside_and_pushd_starts_empty() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("pushd.sock");
    let state = socket.with_extension("state");
    std::fs::write(&state, b"pushd-state\n\x01\0\0\0garbage").unwrap();
    let pushd = Pushd::start_at(&socket, &[]).await;
    let log = pushd.log.lock().unwrap().clone();
    assert!(log.contains("unreadable"), "{log}");
    assert!(!state.exists());
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with("pushd.state.unreadable-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    let mut backend = pushd.text_client().await;
    assert_eq!(backend.request(r#"{"uid":"u","seq":1}"#).await, "queued");
    stop(pushd).await;
    assert!(state.exists(), "written at the stop");

    let none = dir.path().join("none.sock");
    let pushd = Pushd::start_at(&none, &["--state-file", "none"]).await;
    let mut backend = pushd.text_client().await;
    assert_eq!(backend.request(r#"{"uid":"u","seq":1}"#).await, "queued");
    let log = stop(pushd).await;
    assert!(!log.contains("state file"), "{log}");
    assert!(!none.with_extension("state").exists());
}
