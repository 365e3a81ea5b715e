//! README "Delivery across reconnects (the mailbox)": a push to a uid with no
//! connection waits for its next one; bounds, transient pushes, kick and ban.

use std::collections::HashSet;
use std::time::Duration;

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{Pushd, STEP, WsClient, eventually, within};

/// The `seq` field of a pushed line.
fn seq(line: &str) -> u64 {
    let value: serde_json::Value = serde_json::from_str(line).expect("a JSON push");
    value["seq"].as_u64().expect("a seq field")
}

async fn counter(pushd: &Pushd, name: &str) -> u64 {
    pushd.stats().await["counters"][name].as_u64().unwrap()
}

#[tokio::test]
async fn a_push_to_an_offline_uid_waits_and_comes_first_in_order_on_the_next_connection() {
    let pushd = Pushd::start(&[]).await;
    let mut backend = pushd.text_client().await;
    for i in 0..3 {
        let line = format!(r#"{{"uid":"away","seq":{i}}}"#);
        assert_eq!(backend.request(&line).await, "queued");
    }
    let sent = pushd.ctl(&["send", "away", r#"{"seq":3}"#]).await;
    assert_eq!(
        (sent.status, sent.stdout.as_str()),
        (0, "away is offline; queued for its next connection\n")
    );
    let listed = pushd.ctl(&["--json", "mailbox"]).await.json();
    assert_eq!(listed[0]["uid"], "away");
    assert_eq!(listed[0]["messages"], 4);
    let mut page = pushd.bound_client("away").await;
    assert_eq!(
        backend.request(r#"{"uid":"away","seq":4}"#).await,
        "ok",
        "bound: delivered now"
    );
    for i in 0..5 {
        assert_eq!(seq(&page.recv_text().await), i);
    }
    // The mailbox went to the first connection only, and is empty now.
    let mut second_tab = pushd.bound_client("away").await;
    pushd.fence("away", &mut [&mut page, &mut second_tab]).await;
    assert_eq!(
        pushd.ctl(&["--json", "mailbox"]).await.json(),
        serde_json::json!([])
    );
    let stats = pushd.stats().await;
    assert_eq!(stats["counters"]["mailbox_stored"], 4);
    assert_eq!(stats["counters"]["mailbox_delivered"], 4);
    assert_eq!(stats["counters"]["text_queued"], 3);
    assert_eq!(stats["mailbox"]["messages"], 0);
}

#[tokio::test]
async fn a_message_older_than_the_ttl_is_dropped_and_counted() {
    let pushd = Pushd::start(&["--mailbox-ttl", "300ms"]).await;
    let mut backend = pushd.text_client().await;
    assert_eq!(backend.request(r#"{"uid":"late","seq":0}"#).await, "queued");
    eventually(STEP, "the message to expire", || async {
        counter(&pushd, "mailbox_expired").await == 1
    })
    .await;
    assert_eq!(pushd.stats().await["mailbox"]["messages"], 0);
    let mut page = pushd.bound_client("late").await;
    pushd.fence("late", &mut [&mut page]).await;
}

#[tokio::test]
async fn a_full_mailbox_drops_its_oldest_and_counts_them() {
    let pushd = Pushd::start(&["--mailbox-size", "3"]).await;
    let mut backend = pushd.text_client().await;
    for i in 0..5 {
        let line = format!(r#"{{"uid":"full","seq":{i}}}"#);
        assert_eq!(backend.request(&line).await, "queued");
    }
    assert_eq!(counter(&pushd, "mailbox_dropped").await, 2);
    let mut page = pushd.bound_client("full").await;
    for i in 2..5 {
        assert_eq!(seq(&page.recv_text().await), i);
    }
    pushd.fence("full", &mut [&mut page]).await;
}

#[tokio::test]
async fn past_the_memory_limit_a_push_that_would_be_kept_fails_and_is_counted() {
    // Each 100-byte line costs 100 + 160 bytes, and each of the three uids' stores
    // 256: five lines fit in 1,400 + 768.
    let pushd = Pushd::start(&["--mailbox-memory", "2168"]).await;
    let mut backend = pushd.text_client().await;
    let line = |uid: &str, i: u64| {
        let pad = "x".repeat(100 - 25 - uid.len());
        format!(r#"{{"uid":"{uid}","seq":{i},"p":"{pad}"}}"#)
    };
    assert_eq!(line("a", 0).len(), 100);
    let mut replies = Vec::new();
    for i in 0..6 {
        // Several uids: the limit is for every mailbox together.
        replies.push(
            backend
                .request(&line(["a", "b", "c"][i % 3], i as u64))
                .await,
        );
    }
    assert_eq!(
        replies,
        ["queued"; 5]
            .into_iter()
            .chain(["fail"])
            .collect::<Vec<_>>()
    );
    assert_eq!(counter(&pushd, "mailbox_refused").await, 1);
    assert!(pushd.log.lock().unwrap().contains("--mailbox-memory"));
    // Delivering frees the room.
    let _a = pushd.bound_client("a").await;
    assert_eq!(backend.request(&line("c", 6)).await, "queued");
}

#[tokio::test]
async fn transient_pushes_are_never_kept_kick_empties_and_a_banned_uid_fails() {
    let pushd = Pushd::start(&[]).await;
    let mut backend = pushd.text_client().await;
    assert_eq!(
        backend.request(r#"{"uid":"t","transient":true}"#).await,
        "fail"
    );
    let transient = pushd.ctl(&["send", "--transient", "t", "x"]).await;
    assert_eq!(
        (transient.status, transient.stdout.as_str()),
        (1, "t is offline\n")
    );
    assert_eq!(
        backend
            .request(r#"{"uid":"t","transient":"yes","seq":1}"#)
            .await,
        "queued",
        "only `true` is transient"
    );
    // A kick empties the mailbox, even of an offline uid.
    let kick = pushd.ctl(&["kick", "t"]).await;
    assert_eq!(kick.status, 1, "nobody was online: {kick:?}");
    assert_eq!(pushd.stats().await["mailbox"]["messages"], 0);
    assert_eq!(counter(&pushd, "mailbox_cleared").await, 1);
    // A banned uid's push fails.
    pushd.ctl(&["kick", "t", "--ban", "1h"]).await;
    assert_eq!(backend.request(r#"{"uid":"t"}"#).await, "fail");
    pushd.ctl(&["unban", "t"]).await;
    assert_eq!(backend.request(r#"{"uid":"t","seq":2}"#).await, "queued");
    let mut page = pushd.bound_client("t").await;
    assert_eq!(seq(&page.recv_text().await), 2);
    pushd.fence("t", &mut [&mut page]).await;
}

#[tokio::test]
async fn a_ttl_of_0_is_the_original_recipe() {
    let pushd = Pushd::start(&["--mailbox-ttl", "0"]).await;
    let mut backend = pushd.text_client().await;
    assert_eq!(backend.request(r#"{"uid":"gone"}"#).await, "fail");
    let sent = pushd.ctl(&["send", "gone", "x"]).await;
    assert_eq!(
        (sent.status, sent.stdout.as_str()),
        (1, "gone is offline\n")
    );
    let mut page = pushd.bound_client("gone").await;
    pushd.fence("gone", &mut [&mut page]).await;
    assert_eq!(pushd.stats().await["counters"]["mailbox_stored"], 0);
}

#[tokio::test]
async fn pushctl_mailbox_lists_and_clears() {
    let pushd = Pushd::start(&[]).await;
    let empty = pushd.ctl(&["mailbox"]).await;
    assert_eq!(
        (empty.status, empty.stdout.as_str()),
        (0, "UID  MESSAGES  BYTES  OLDEST\n")
    );
    let mut backend = pushd.text_client().await;
    for uid in ["b", "a", "b"] {
        backend.request(&format!(r#"{{"uid":"{uid}"}}"#)).await;
    }
    let table = pushd.ctl(&["mailbox"]).await;
    let rows: Vec<Vec<&str>> = table
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["UID", "MESSAGES", "BYTES", "OLDEST"]);
    assert_eq!(&rows[1][..3], ["a", "1", "11"]);
    assert_eq!(&rows[2][..3], ["b", "2", "22"]);
    let cleared = pushd.ctl(&["mailbox", "--clear", "b", "c"]).await;
    assert_eq!(
        (cleared.status, cleared.stdout.as_str()),
        (0, "cleared b (2 messages)\n")
    );
    let none = pushd.ctl(&["mailbox", "--clear", "c"]).await;
    assert_eq!(
        (none.status, none.stdout.as_str()),
        (1, "none of the uids had waiting messages\n")
    );
    let usage = pushd.ctl(&["mailbox", "a"]).await;
    assert_eq!(usage.status, 2, "uids without --clear: {usage:?}");
}

/// The connection of a page that navigates: bind, read for a while, close.
/// Returns the sequence numbers it received.
async fn visit(pushd: &Pushd, stay: Duration, abrupt: bool) -> Vec<u64> {
    let mut page = WsClient::connect(pushd.ws).await;
    page.send_text("nav").await;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(stay, async {
        while let Some(Ok(frame)) = page.ws.next().await {
            if let Message::Text(text) = frame {
                got.push(seq(&text));
            }
        }
    })
    .await;
    if !abrupt {
        // A browser leaving a page closes with 1001; what was in flight is lost.
        let _ = within(STEP, "close", page.ws.close(None)).await;
    }
    got
}

#[tokio::test]
async fn a_page_that_navigates_while_pushes_flow_gets_every_queued_push_once_in_order() {
    let pushd = Pushd::start(&[]).await;
    let mut backend = pushd.text_client().await;
    const PUSHES: u64 = 400;
    let pushing = async {
        let mut replies = Vec::new();
        for i in 0..PUSHES {
            let reply = backend
                .request(&format!(r#"{{"uid":"nav","seq":{i}}}"#))
                .await;
            replies.push(reply);
            tokio::time::sleep(Duration::from_millis(4)).await;
        }
        replies
    };
    let navigating = async {
        let mut received = Vec::new();
        for visit_no in 0u64.. {
            // A page that stays 60 to 140 ms, then 20 ms to load the next.
            let stay = Duration::from_millis(60 + (visit_no * 37) % 80);
            received.extend(visit(&pushd, stay, visit_no % 2 == 1).await);
            tokio::time::sleep(Duration::from_millis(20)).await;
            if received.last() == Some(&(PUSHES - 1)) || visit_no > 200 {
                break;
            }
        }
        received
    };
    let (replies, mut received) = tokio::join!(pushing, navigating);
    // One last page picks up whatever still waits.
    received.extend(visit(&pushd, Duration::from_millis(300), false).await);
    assert!(
        received.windows(2).all(|w| w[0] < w[1]),
        "out of order or twice: {received:?}"
    );
    let got: HashSet<u64> = received.iter().copied().collect();
    let queued: Vec<u64> = (0..PUSHES)
        .filter(|&i| replies[i as usize] == "queued")
        .collect();
    assert!(!queued.is_empty(), "the page was away at some point");
    let missing: Vec<&u64> = queued.iter().filter(|i| !got.contains(i)).collect();
    assert!(missing.is_empty(), "queued but never arrived: {missing:?}");
    let lost: Vec<u64> = (0..PUSHES)
        .filter(|&i| replies[i as usize] == "ok" && !got.contains(&i))
        .collect();
    assert!(
        replies.iter().all(|r| r == "ok" || r == "queued"),
        "{replies:?}"
    );
    // What may still be lost: an `ok` already written to a page as it closed.
    assert!(lost.len() < PUSHES as usize / 10, "lost {lost:?}");
}

#[tokio::test]
async fn pushes_a_closing_connection_had_not_written_go_to_the_next_one() {
    // Room for a backlog that the socket cannot take while the page does not read.
    let pushd = Pushd::start(&["--max-queue-bytes", "67108864"]).await;
    let stalled = pushd.bound_client("stall").await;
    let mut backend = pushd.text_client().await;
    let pad = "x".repeat(60_000);
    const PUSHES: u64 = 150;
    for i in 0..PUSHES {
        let line = format!(r#"{{"uid":"stall","seq":{i},"p":"{pad}"}}"#);
        assert_eq!(backend.request(&line).await, "ok");
    }
    // The page goes away without reading: about 9 MB were taken for it, far more
    // than loopback's socket buffers hold, so most were never written.
    drop(stalled);
    eventually(STEP, "the stalled connection to close", || async {
        pushd.stats().await["connections"] == 0
    })
    .await;
    let mut next = pushd.bound_client("stall").await;
    let mut got = Vec::new();
    while got.last() != Some(&(PUSHES - 1)) {
        got.push(seq(&next.recv_text().await));
    }
    assert!(got.windows(2).all(|w| w[0] < w[1]), "{got:?}");
    assert!(got.len() >= 50, "the unwritten tail came back: {got:?}");
    assert!(counter(&pushd, "mailbox_stored").await >= 50);
    pushd.fence("stall", &mut [&mut next]).await;
}
