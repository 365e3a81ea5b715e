//! README "Resume for clients that keep their place (`pushd.v2`)": `ID PAYLOAD`
//! frames, `?since=ID`, `!gap`.

use std::time::Duration;

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{Pushd, STEP, WsClient, eventually, within};

/// A `pushd.v2` frame's id and payload.
pub fn split(frame: &str) -> (String, String) {
    let (id, payload) = frame
        .split_once(' ')
        .unwrap_or_else(|| panic!("not ID PAYLOAD: {frame:?}"));
    assert!(!id.is_empty() && !id.contains(' '));
    (id.to_owned(), payload.to_owned())
}

fn seq(payload: &str) -> u64 {
    let value: serde_json::Value = serde_json::from_str(payload).expect("a JSON push");
    value["seq"].as_u64().expect("a seq field")
}

pub async fn bound_v2(pushd: &Pushd, uid: &str, since: Option<&str>) -> WsClient {
    let before = pushd.connections(uid).await;
    let mut client = WsClient::connect_v2(pushd.ws, since).await;
    client.send_text(uid).await;
    pushd.wait_connections(uid, before + 1).await;
    client
}

#[tokio::test]
async fn a_v2_client_gets_id_payload_frames_with_increasing_ids_and_a_raw_one_the_bare_payload() {
    let pushd = Pushd::start(&[]).await;
    let mut v2 = bound_v2(&pushd, "42", None).await;
    let mut raw = pushd.bound_client("42").await;
    let mut backend = pushd.text_client().await;
    let lines = [r#"{"uid":42, "b":1,  "seq":0}"#, r#"{"uid":"42","seq":1}"#];
    for line in lines {
        assert_eq!(backend.request(line).await, "ok");
    }
    let sent = pushd.ctl(&["send", "42", "plain text"]).await;
    assert_eq!(sent.status, 0);
    let mut ids = Vec::new();
    for expected in [lines[0], lines[1], "plain text"] {
        let (id, payload) = split(&v2.recv_text().await);
        assert_eq!(payload, expected, "the payload is unchanged");
        assert_eq!(raw.recv_text().await, expected);
        ids.push(id);
    }
    let numbers: Vec<(u64, u64)> = ids
        .iter()
        .map(|id| {
            let (a, b) = id.split_once('-').expect("BOOT-N");
            (a.parse().unwrap(), b.parse().unwrap())
        })
        .collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
}

#[tokio::test]
async fn a_v2_client_that_drops_again_and_again_while_pushes_flow_loses_nothing_and_gets_nothing_twice()
 {
    let pushd = Pushd::start(&[]).await;
    let mut backend = pushd.text_client().await;
    const PUSHES: u64 = 300;
    let pushing = async {
        let mut replies = Vec::new();
        for i in 0..PUSHES {
            replies.push(
                backend
                    .request(&format!(r#"{{"uid":"r","seq":{i}}}"#))
                    .await,
            );
            tokio::time::sleep(Duration::from_millis(4)).await;
        }
        replies
    };
    let resuming = async {
        let mut received = Vec::new();
        let mut last: Option<String> = None;
        for visit in 0u64..300 {
            let mut page = WsClient::connect_v2(pushd.ws, last.as_deref()).await;
            page.send_text("r").await;
            let stay = Duration::from_millis(40 + (visit * 29) % 70);
            let _ = tokio::time::timeout(stay, async {
                while let Some(Ok(frame)) = page.ws.next().await {
                    if let Message::Text(text) = frame {
                        assert_ne!(text.as_str(), "!gap", "nothing was let go");
                        let (id, payload) = split(&text);
                        received.push(seq(&payload));
                        last = Some(id);
                    }
                }
            })
            .await;
            // Abruptly: no close frame, whatever was in flight is lost on the wire.
            drop(page);
            if received.last() == Some(&(PUSHES - 1)) {
                break;
            }
        }
        received
    };
    let (replies, received) = tokio::join!(pushing, resuming);
    assert!(
        replies.iter().all(|r| r == "ok" || r == "queued"),
        "{replies:?}"
    );
    assert!(
        replies.iter().any(|r| r == "queued"),
        "the page was away at some point"
    );
    let expected: Vec<u64> = (0..PUSHES).collect();
    assert_eq!(received, expected, "every push exactly once, in order");
    let stats = pushd.stats().await;
    assert_eq!(stats["counters"]["resume_gaps"], 0);
}

#[tokio::test]
async fn a_since_older_than_what_is_kept_gets_gap_first_then_what_is_kept() {
    let pushd = Pushd::start(&["--mailbox-size", "3"]).await;
    let mut backend = pushd.text_client().await;
    let mut page = bound_v2(&pushd, "g", None).await;
    assert_eq!(backend.request(r#"{"uid":"g","seq":0}"#).await, "ok");
    let (first_id, _) = split(&page.recv_text().await);
    drop(page);
    pushd.wait_connections("g", 0).await;
    for i in 1..6 {
        let line = format!(r#"{{"uid":"g","seq":{i}}}"#);
        assert_eq!(backend.request(&line).await, "queued");
    }
    let mut back = bound_v2(&pushd, "g", Some(&first_id)).await;
    assert_eq!(back.recv_text().await, "!gap");
    for i in 3..6 {
        assert_eq!(seq(&split(&back.recv_text().await).1), i);
    }
    pushd.fence("g", &mut [&mut back]).await;
    drop(back);
    pushd.wait_connections("g", 0).await;
    // A since that means nothing here is unknown: `!gap`, then what is kept.
    for since in ["garbage", "1-2-3", "%zz", "17-1"] {
        let mut odd = bound_v2(&pushd, "g", Some(since)).await;
        assert_eq!(odd.recv_text().await, "!gap", "since={since}");
        for _ in 0..3 {
            split(&odd.recv_text().await);
        }
        pushd.fence("g", &mut [&mut odd]).await;
        drop(odd);
        pushd.wait_connections("g", 0).await;
    }
    assert_eq!(pushd.stats().await["counters"]["resume_gaps"], 5);
}

#[tokio::test]
async fn a_raw_client_never_sees_ids_or_gaps_even_with_since_in_its_url() {
    let pushd = Pushd::start(&[]).await;
    let mut backend = pushd.text_client().await;
    assert_eq!(
        backend.request(r#"{"uid":"plain","seq":0}"#).await,
        "queued"
    );
    let url = format!("ws://{}/?since=garbage", pushd.ws);
    let (ws, response) = within(STEP, "connect", tokio_tungstenite::connect_async(url))
        .await
        .unwrap();
    assert!(response.headers().get("Sec-WebSocket-Protocol").is_none());
    let mut raw = WsClient { ws };
    raw.send_text("plain").await;
    assert_eq!(raw.recv_text().await, r#"{"uid":"plain","seq":0}"#);
}

/// A page away for longer than `--mailbox-ttl` while its uid was pushed to must
/// hear `!gap` when it comes back: the message waiting for it expired.
/// (Issue 22: the bind made a fresh resumable store before the resume looked,
/// so the loss was forgotten and the page got nothing at all.)
#[tokio::test]
async fn a_page_back_after_what_waited_for_it_expired_is_told_gap() {
    let pushd = Pushd::start(&["--mailbox-ttl", "300ms"]).await;
    let mut backend = pushd.text_client().await;
    let mut page = bound_v2(&pushd, "g", None).await;
    assert_eq!(backend.request(r#"{"uid":"g","seq":0}"#).await, "ok");
    let (first, _) = split(&page.recv_text().await);
    drop(page);
    pushd.wait_connections("g", 0).await;
    assert_eq!(backend.request(r#"{"uid":"g","seq":1}"#).await, "queued");
    eventually(STEP, "the waiting message to expire", || async {
        pushd.stats().await["counters"]["mailbox_expired"] == 1
    })
    .await;
    let mut back = bound_v2(&pushd, "g", Some(&first)).await;
    assert_eq!(back.recv_text().await, "!gap");
    pushd.fence("g", &mut [&mut back]).await;
}

/// `since` is a claim, never trusted: an id of another uid, or one newer than
/// any pushd issued, gets `!gap` and every message the uid has waiting, which
/// is never discarded because of `since`. (Issue 22: `b`'s waiting message was
/// dropped and `b`'s page told nothing.)
#[tokio::test]
async fn a_since_pushd_did_not_issue_to_the_uid_gets_gap_and_everything_waiting() {
    let pushd = Pushd::start(&[]).await;
    let mut backend = pushd.text_client().await;
    assert_eq!(backend.request(r#"{"uid":"b","seq":0}"#).await, "queued");
    assert_eq!(backend.request(r#"{"uid":"c","seq":0}"#).await, "queued");
    let mut a = bound_v2(&pushd, "a", None).await;
    let mut last = String::new();
    for i in 0..3 {
        let line = format!(r#"{{"uid":"a","seq":{i}}}"#);
        assert_eq!(backend.request(&line).await, "ok");
        last = split(&a.recv_text().await).0;
    }
    // An id of another uid's.
    let mut b = bound_v2(&pushd, "b", Some(&last)).await;
    assert_eq!(b.recv_text().await, "!gap");
    assert_eq!(seq(&split(&b.recv_text().await).1), 0);
    pushd.fence("b", &mut [&mut b]).await;
    // An id of this boot's, newer than any pushd issued.
    let (boot, n) = last.split_once('-').unwrap();
    let ahead = format!("{boot}-{}", n.parse::<u64>().unwrap() + 1000);
    let mut c = bound_v2(&pushd, "c", Some(&ahead)).await;
    assert_eq!(c.recv_text().await, "!gap");
    assert_eq!(seq(&split(&c.recv_text().await).1), 0);
    pushd.fence("c", &mut [&mut c]).await;
}
