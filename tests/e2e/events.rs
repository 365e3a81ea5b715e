//! README "Presence events": connect, disconnect with its reason, online, and
//! offline after `--offline-grace`; read as Server-Sent Events with hyper, by
//! `pushctl events`, and POSTed to a real HTTP receiver by `--webhook`.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::harness::{Pushd, STEP, WsClient, eventually, within};
use crate::http::{Receiver, Sse};

fn kind_uid(event: &Value) -> (String, String) {
    (
        event["type"].as_str().unwrap().to_owned(),
        event["uid"].as_str().unwrap().to_owned(),
    )
}

fn pair(kind: &str, uid: &str) -> (String, String) {
    (kind.to_owned(), uid.to_owned())
}

#[tokio::test]
async fn sse_tells_connect_online_disconnect_and_offline_after_the_grace() {
    let pushd = Pushd::start(&["--http-listen", "127.0.0.1:0", "--offline-grace", "300ms"]).await;
    let mut sse = Sse::open(&pushd, "").await;
    let client = pushd.bound_client("42").await;
    // The connection first, then what it caused.
    let connect = sse.next().await;
    assert_eq!(kind_uid(&connect), pair("connect", "42"));
    let online = sse.next().await;
    assert_eq!(kind_uid(&online), pair("online", "42"));
    assert!(
        connect["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{connect}"
    );
    assert!(connect["conn"].is_u64() && connect["at_ms"].is_u64() && connect["node"].is_string());
    assert_ne!(online["id"], connect["id"]);
    drop(client);
    let disconnect = sse.next().await;
    assert_eq!(kind_uid(&disconnect), pair("disconnect", "42"));
    assert_eq!(disconnect["conn"], connect["conn"]);
    assert_eq!(
        disconnect["reason"], "lost",
        "gone without a closing handshake"
    );
    let offline = sse.next().await;
    assert_eq!(kind_uid(&offline), pair("offline", "42"));
    let waited = offline["at_ms"].as_u64().unwrap() - disconnect["at_ms"].as_u64().unwrap();
    assert!(waited >= 250, "offline came {waited} ms after the close");
}

/// Every stream tells a connection before what it causes: `connect` before its `online`,
/// `disconnect` before its `offline`, also without a grace and for a kick (where the
/// uid goes offline before its connection's task has closed the socket).
#[tokio::test]
async fn connect_comes_before_online_and_disconnect_before_offline() {
    let pushd = Pushd::start(&["--http-listen", "127.0.0.1:0", "--offline-grace", "0"]).await;
    let mut sse = Sse::open(&pushd, "").await;
    for round in 0..3 {
        let uid = format!("o{round}");
        let mut client = pushd.bound_client(&uid).await;
        assert_eq!(kind_uid(&sse.next().await), pair("connect", &uid));
        assert_eq!(kind_uid(&sse.next().await), pair("online", &uid));
        match round {
            0 => drop(client),
            _ => {
                assert_eq!(pushd.ctl(&["kick", &uid]).await.status, 0);
                assert_eq!(client.closed(STEP).await.code, Some(4000));
            }
        }
        assert_eq!(kind_uid(&sse.next().await), pair("disconnect", &uid));
        assert_eq!(kind_uid(&sse.next().await), pair("offline", &uid));
    }
}

#[tokio::test]
async fn a_page_navigation_within_the_grace_is_not_offline_then_online() {
    let pushd = Pushd::start(&["--http-listen", "127.0.0.1:0", "--offline-grace", "5s"]).await;
    let mut sse = Sse::open(&pushd, "?type=online,offline,disconnect").await;
    let first = pushd.bound_client("7").await;
    assert_eq!(kind_uid(&sse.next().await), pair("online", "7"));
    drop(first);
    assert_eq!(kind_uid(&sse.next().await), pair("disconnect", "7"));
    // The next page of the same user, within the grace.
    let mut second = pushd.bound_client("7").await;
    // And a kick: its reason is in the event, and the uid goes offline (after the grace).
    let kicked = pushd.ctl(&["kick", "7", "--reason", "bye"]).await;
    assert_eq!(kicked.status, 0);
    assert_eq!(second.closed(STEP).await.code, Some(4000));
    let disconnect = sse.next().await;
    assert_eq!(kind_uid(&disconnect), pair("disconnect", "7"));
    assert_eq!(disconnect["reason"], "kicked");
    let offline = within(Duration::from_secs(8), "offline", sse.next()).await;
    assert_eq!(
        kind_uid(&offline),
        pair("offline", "7"),
        "no second online before it"
    );
}

#[tokio::test]
async fn pushctl_events_prints_them_as_they_happen() {
    let pushd = Pushd::start(&["--offline-grace", "0"]).await;
    let mut command = Command::new(env!("CARGO_BIN_EXE_pushctl"));
    command
        .arg("--socket")
        .arg(&pushd.socket)
        .args(["--json", "events", "--type", "online,offline"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut events = command.spawn().unwrap();
    let mut lines = BufReader::new(events.stdout.take().unwrap()).lines();
    eventually(STEP, "pushctl to subscribe", || async {
        pushd.stats().await["event_subscribers"] == 1
    })
    .await;
    let client = pushd.bound_client("9").await;
    let line = within(STEP, "online", lines.next_line())
        .await
        .unwrap()
        .unwrap();
    let online: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(kind_uid(&online), pair("online", "9"));
    drop(client);
    let line = within(STEP, "offline", lines.next_line())
        .await
        .unwrap()
        .unwrap();
    let offline: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(kind_uid(&offline), pair("offline", "9"));

    let bad = pushd.ctl(&["events", "--type", "nonsense"]).await;
    assert_eq!(bad.status, 2);
    assert!(bad.stderr.contains("unknown event type"), "{bad:?}");
}

const WEBHOOK_SECRET: &str = "a webhook secret of at least thirty-two bytes";

fn hex_hmac(body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, WEBHOOK_SECRET.as_bytes());
    let tag = ring::hmac::sign(&key, body);
    tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn the_webhook_signs_batches_and_retries_through_500s_and_while_the_receiver_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("webhook-secret");
    std::fs::write(&secret, WEBHOOK_SECRET).unwrap();
    // The receiver's address, with nothing listening on it yet.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{addr}/hooks/pushd");
    let pushd = Pushd::start(&[
        "--webhook",
        &url,
        "--webhook-secret-file",
        secret.to_str().unwrap(),
        "--offline-grace",
        "0",
    ])
    .await;
    let client = pushd.bound_client("5").await;
    drop(client);
    // Down: the attempts fail and are counted, the events wait.
    eventually(STEP, "failed attempts", || async {
        pushd.stats().await["counters"]["webhook_failures"].as_u64() >= Some(2)
    })
    .await;
    // Up, but answering 500 twice more: then the batch goes through.
    let receiver = Receiver::start_at(addr, vec![500, 500]).await;
    eventually(
        Duration::from_secs(40),
        "a batch to be accepted",
        || async { pushd.stats().await["counters"]["webhook_posts"].as_u64() >= Some(1) },
    )
    .await;
    let posts = receiver.posts.lock().unwrap().clone();
    assert!(
        posts.len() >= 3,
        "two 500s, then the batch again: {}",
        posts.len()
    );
    for (signature, body) in &posts {
        assert_eq!(
            signature.as_deref(),
            Some(&*format!("sha256={}", hex_hmac(body)))
        );
    }
    // Retries repeat whole batches; ids tell the copies apart from new events.
    let mut seen: Vec<(String, String)> = Vec::new();
    for event in receiver.events() {
        let id = event["id"].as_str().unwrap().to_owned();
        if !seen.iter().any(|(known, _)| *known == id) {
            seen.push((id, event["type"].as_str().unwrap().to_owned()));
        }
    }
    let kinds: Vec<&str> = seen.iter().map(|(_, kind)| kind.as_str()).collect();
    assert_eq!(kinds, ["connect", "online", "disconnect", "offline"]);
    let stats = pushd.stats().await;
    assert!(
        stats["counters"]["webhook_posts"].as_u64() >= Some(1),
        "{stats}"
    );
}

#[tokio::test]
async fn a_reader_that_stops_reading_loses_events_not_pushd_memory() {
    let pushd = Pushd::start(&["--offline-grace", "0"]).await;
    // An events stream on the admin socket that is never read after its answer.
    let mut stalled = pushd_ctl::client::Client::connect(&pushd.socket)
        .await
        .unwrap();
    let answer = stalled
        .request(pushd_proto::admin::Request::Events {
            types: Vec::new(),
            since: None,
        })
        .await
        .unwrap();
    assert_eq!(answer, pushd_proto::admin::Response::Events);
    let rss_before = rss_kib(pushd.pid());
    // 3,000 pages open and close: about 12,000 events, more than the socket
    // buffers and the 4,096 pushd keeps.
    for round in 0..30 {
        let mut clients = Vec::new();
        for i in 0..100 {
            let mut client = WsClient::connect(pushd.ws).await;
            client.send_text(&format!("u{round}-{i}")).await;
            clients.push(client);
        }
        pushd.wait_connections(&format!("u{round}-99"), 1).await;
        drop(clients);
    }
    let grown = rss_kib(pushd.pid()).saturating_sub(rss_before);
    assert!(grown < 16 * 1024, "pushd grew by {grown} KiB");
    // The reader reads on: what it missed is counted, and the stream goes on.
    let reading = tokio::spawn(async move { while let Ok(Some(_)) = stalled.next_line().await {} });
    eventually(STEP, "the events it missed to be counted", || async {
        pushd.stats().await["counters"]["events_dropped"].as_u64() > Some(0)
    })
    .await;
    reading.abort();
}

/// A process's resident memory, in KiB.
fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

/// The webhook gets the events of a shutdown too: each `disconnect` (reason
/// `shutdown`) and the `offline` after it, posted before pushd exits.
/// (Issue 22: the pending batch was dropped at SIGTERM.)
#[tokio::test]
async fn the_webhook_is_told_of_the_shutdown_before_pushd_exits() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let receiver = Receiver::start_at(addr, Vec::new()).await;
    let url = format!("http://{addr}/hook");
    let mut pushd = Pushd::start(&["--webhook", &url, "--offline-grace", "60s"]).await;
    let _page = pushd.bound_client("9").await;
    eventually(STEP, "connect and online to be posted", || async {
        receiver.events().len() == 2
    })
    .await;
    pushd.signal(libc::SIGTERM);
    assert_eq!(pushd.wait(STEP).await, Some(0));
    let told: Vec<(String, Option<String>)> = receiver.events()[2..]
        .iter()
        .map(|e| {
            let reason = e["reason"].as_str().map(str::to_owned);
            (e["type"].as_str().unwrap().to_owned(), reason)
        })
        .collect();
    assert_eq!(
        told,
        [
            ("disconnect".to_owned(), Some("shutdown".to_owned())),
            ("offline".to_owned(), None)
        ]
    );
}

/// `--upstream`: a bound page's text messages are `message` events with the uid, the
/// connection, its number on the connection and the text, in order; past
/// `--upstream-rate` (after its burst) they are dropped, counted. Without `--upstream` a
/// page's messages are only activity, as they always were.
#[tokio::test]
async fn pages_talk_back_as_message_events_within_their_rate() {
    let args = [
        "--http-listen",
        "127.0.0.1:0",
        "--upstream",
        "--upstream-rate",
        "1",
        "--upstream-burst",
        "5",
    ];
    let pushd = Pushd::start(&args).await;
    let mut sse = Sse::open(&pushd, "?type=connect,message").await;
    let mut page = pushd.bound_client("talker").await;
    let connect = sse.next().await;
    for n in 1..=3 {
        page.send_text(&format!("hello {n}\nsecond line")).await;
    }
    for n in 1..=3u64 {
        let message = sse.next().await;
        assert_eq!(kind_uid(&message), pair("message", "talker"));
        assert_eq!(message["seq"], n);
        assert_eq!(message["data"], format!("hello {n}\nsecond line"));
        assert_eq!(message["conn"], connect["conn"]);
        assert!(message["node"].is_string() && message["id"].is_string());
    }
    // A flood: the bucket has 2 left, and refills at one a second.
    for _ in 0..50 {
        page.send_text("flood").await;
    }
    eventually(STEP, "the flood to be judged", || async {
        let counters = pushd.stats().await["counters"].clone();
        counters["upstream_messages"].as_u64().unwrap()
            + counters["upstream_dropped"].as_u64().unwrap()
            == 53
    })
    .await;
    let counters = pushd.stats().await["counters"].clone();
    let told = counters["upstream_messages"].as_u64().unwrap();
    assert!((5..=8).contains(&told), "{counters}");
    for _ in 3..told {
        assert_eq!(sse.next().await["data"], "flood");
    }

    let quiet = Pushd::start(&[]).await;
    let mut page = quiet.bound_client("talker").await;
    page.send_text("nobody listens").await;
    let counters = quiet.stats().await["counters"].clone();
    assert_eq!(
        (
            counters["upstream_messages"].as_u64(),
            counters["upstream_dropped"].as_u64()
        ),
        (Some(0), Some(0))
    );
}

/// SPEC "Resume", on one node: a consumer that comes back with the id of the
/// last event it saw gets what came after it; one from before the oldest
/// event held (`--events-retain`) or from an earlier process first gets a
/// `gap` event.
#[tokio::test]
async fn a_consumer_that_comes_back_gets_what_it_missed_or_is_told_of_a_gap() {
    let pushd = Pushd::start(&[
        "--http-listen",
        "127.0.0.1:0",
        "--offline-grace",
        "0",
        "--events-retain",
        "4",
    ])
    .await;
    let id = |event: &Value| event["id"].as_str().unwrap().to_owned();
    let mut live = Sse::open(&pushd, "").await;
    let page = pushd.bound_client("r1").await;
    let connect = live.next().await;
    let online = live.next().await;
    assert_eq!(kind_uid(&online), pair("online", "r1"));
    drop(page);
    let mut next_kinds = Vec::new();
    for _ in 0..2 {
        next_kinds.push(kind_uid(&live.next().await));
    }
    assert_eq!(
        next_kinds,
        [pair("disconnect", "r1"), pair("offline", "r1")]
    );

    let mut back = Sse::open_with(&pushd, "", &[("Last-Event-ID", &id(&online))]).await;
    assert_eq!(kind_uid(&back.next().await), pair("disconnect", "r1"));
    assert_eq!(kind_uid(&back.next().await), pair("offline", "r1"));
    assert!(back.next_within(Duration::from_millis(300)).await.is_none());

    // Four more: the history (4) no longer reaches back to the first.
    drop(pushd.bound_client("r2").await);
    for _ in 0..4 {
        live.next().await;
    }
    let mut late = Sse::open(&pushd, &format!("?since={}", id(&connect))).await;
    let gap = late.next().await;
    assert_eq!(gap["type"], "gap", "{gap}");
    assert_eq!(gap["after"], id(&connect).as_str());
    let mut told = Vec::new();
    for _ in 0..4 {
        told.push(kind_uid(&late.next().await));
    }
    assert_eq!(
        told,
        [
            pair("connect", "r2"),
            pair("online", "r2"),
            pair("disconnect", "r2"),
            pair("offline", "r2")
        ]
    );
    // An id of an earlier process: a gap, then what this one holds.
    let mut older = Sse::open(&pushd, "?since=1000-1").await;
    assert_eq!(older.next().await["type"], "gap");

    // pushctl, for people: the gap says so.
    let mut command = Command::new(env!("CARGO_BIN_EXE_pushctl"));
    command
        .arg("--socket")
        .arg(&pushd.socket)
        .args(["events", "--since", &id(&connect)])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut events = command.spawn().unwrap();
    let mut lines = BufReader::new(events.stdout.take().unwrap()).lines();
    let line = within(STEP, "the gap", lines.next_line())
        .await
        .unwrap()
        .unwrap();
    assert!(
        line.contains("gap") && line.contains(&id(&connect)),
        "{line}"
    );
    let line = within(STEP, "the next", lines.next_line())
        .await
        .unwrap()
        .unwrap();
    assert!(line.contains("connect") && line.contains("r2"), "{line}");
}
