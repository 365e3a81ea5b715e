//! SPEC "Backends see everything, from any node", in cluster mode: three real
//! nodes and a real redis-server; every node's event stream carries every
//! node's events in one order with ids that increase in the cluster, a
//! consumer resumes on another node, and the webhook (a real HTTP receiver)
//! gets each event once for the cluster, even when the node posting dies.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::cluster_harness::{NodeOptions, Three};
use crate::harness::{Pushd, STEP, WsClient, eventually, within};
use crate::http::{Receiver, Sse};

/// Nodes with the HTTP API, a short offline grace and `extra`.
fn options(extra: &[&str]) -> NodeOptions {
    let mut all = vec!["--http-listen", "127.0.0.1:0", "--offline-grace", "300ms"];
    all.extend(extra.iter().map(|s| &*String::leak(s.to_string())));
    NodeOptions {
        extra: all.leak(),
        ..NodeOptions::default()
    }
}

/// `type uid` of an event.
fn said(event: &Value) -> String {
    format!(
        "{} {}",
        event["type"].as_str().unwrap(),
        event["uid"].as_str().unwrap()
    )
}

/// The events `stream` tells until `done` holds for what it has, within `limit`.
async fn read_until(
    stream: &mut Sse,
    limit: Duration,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let mut seen = Vec::new();
    within(limit, "the events expected", async {
        while !done(&seen) {
            seen.push(stream.next_within(limit).await.expect("an event"));
        }
    })
    .await;
    seen
}

fn id(event: &Value) -> String {
    event["id"].as_str().expect("an id").to_owned()
}

/// `MS-N` as numbers, to compare.
fn order(id: &str) -> (u64, u64) {
    let (ms, n) = id.split_once('-').unwrap();
    (ms.parse().unwrap(), n.parse().unwrap())
}

fn assert_increasing(events: &[Value]) {
    for pair in events.windows(2) {
        assert!(
            order(&id(&pair[0])) < order(&id(&pair[1])),
            "ids increase: {pair:?}"
        );
    }
}

#[tokio::test]
async fn every_node_tells_every_nodes_events_in_one_order() {
    let Some(three) = Three::start_if_available(options(&[])).await else {
        return;
    };
    let [a, b, c] = &three.nodes[..] else {
        unreachable!()
    };
    let (mut on_a, mut on_c) = (Sse::open(a, "").await, Sse::open(c, "").await);
    let page = b.bound_client("u1").await;
    drop(page);
    let finished = |seen: &[Value]| seen.iter().any(|e| said(e) == "offline u1");
    let seen_a = read_until(&mut on_a, STEP, finished).await;
    let seen_c = read_until(&mut on_c, STEP, finished).await;
    let told: Vec<String> = seen_a.iter().map(said).collect();
    assert_eq!(
        told,
        ["connect u1", "online u1", "disconnect u1", "offline u1"]
    );
    assert_increasing(&seen_a);
    // The same events, with the same ids, on every node.
    let ids = |seen: &[Value]| seen.iter().map(id).collect::<Vec<_>>();
    assert_eq!(ids(&seen_a), ids(&seen_c));
    let connect = &seen_a[0];
    assert_eq!(connect["node"], "b", "{connect}");
    assert!(
        connect["connection"].as_str().unwrap().starts_with("b-"),
        "b's connection id: {connect}"
    );
    assert!(seen_a[2]["reason"].is_string(), "{}", seen_a[2]);
}

#[tokio::test]
async fn a_consumer_resumes_on_another_node_and_pushctl_from_an_id() {
    let Some(three) = Three::start_if_available(options(&[])).await else {
        return;
    };
    let [a, b, c] = &three.nodes[..] else {
        unreachable!()
    };
    let mut first = Sse::open(a, "").await;
    let x = c.bound_client("x").await;
    let seen = read_until(&mut first, STEP, |seen| seen.len() == 2).await;
    let last_seen = id(&seen[1]);
    assert_eq!(said(&seen[1]), "online x");
    // The consumer goes away; meanwhile x leaves and y comes.
    drop(first);
    drop(x);
    let _y = a.bound_client("y").await;
    let expected = ["disconnect x", "connect y", "online y", "offline x"];
    let missed = |seen: &[Value]| {
        let told: HashSet<String> = seen.iter().map(said).collect();
        expected.iter().all(|e| told.contains(*e))
    };
    // Back, on b, with what an EventSource sends.
    let mut again = Sse::open_with(b, "", &[("Last-Event-ID", &last_seen)]).await;
    let resumed = read_until(&mut again, STEP, missed).await;
    assert_eq!(
        said(&resumed[0]),
        "disconnect x",
        "nothing twice, nothing skipped: {resumed:?}"
    );
    assert!(order(&id(&resumed[0])) > order(&last_seen));
    assert_increasing(&resumed);
    assert!(resumed.iter().all(|e| e["type"] != "gap"), "{resumed:?}");

    // pushctl on c, from the same id: the same events, the same ids.
    let mut events = Command::new(env!("CARGO_BIN_EXE_pushctl"))
        .arg("--socket")
        .arg(&c.socket)
        .args(["--json", "events", "--since", &last_seen])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(events.stdout.take().unwrap()).lines();
    for event in &resumed {
        let line = within(STEP, "pushctl's event", lines.next_line())
            .await
            .unwrap()
            .unwrap();
        let told: Value = serde_json::from_str(&line).unwrap();
        assert_eq!((said(&told), id(&told)), (said(event), id(event)));
    }

    let bad = c.ctl(&["events", "--since", "yesterday"]).await;
    assert_eq!(bad.status, 2, "{bad:?}");
    assert!(bad.stderr.contains("not an event id"), "{bad:?}");
    let url = format!("http://{}/v1/events?since=yesterday", b.listener("http"));
    let (status, body) = crate::http::Http::new().call("GET", &url, None, "").await;
    assert_eq!(
        (status, body.contains("not an event id")),
        (400, true),
        "{body}"
    );
}

/// Messages from pages (`--upstream`) cross the cluster too, and a resume
/// from before what the stream still holds begins with a gap.
#[tokio::test]
async fn pages_talk_to_every_node_and_an_old_resume_is_told_of_its_gap() {
    let extra = [
        "--upstream",
        "--upstream-rate",
        "100000",
        "--events-retain",
        "1000",
    ];
    let Some(three) = Three::start_if_available(options(&extra)).await else {
        return;
    };
    let [a, b, _] = &three.nodes[..] else {
        unreachable!()
    };
    let mut stream = Sse::open(a, "?type=message").await;
    let mut page = b.bound_client("talker").await;
    page.send_text("hello from b").await;
    let message = stream.next().await;
    assert_eq!(message["type"], "message");
    assert_eq!(message["node"], "b");
    assert_eq!(
        (message["seq"].as_u64(), message["data"].as_str()),
        (Some(1), Some("hello from b"))
    );
    assert!(message["connection"].as_str().unwrap().starts_with("b-"));
    let oldest = id(&message);

    // More than the stream keeps (1,000, `~`: a little more).
    const MORE: u64 = 3000;
    for n in 2..=MORE + 1 {
        page.send_text(&format!("m{n}")).await;
    }
    let last = within(Duration::from_secs(20), "every message", async {
        loop {
            let event = stream.next().await;
            if event["seq"].as_u64() == Some(MORE + 1) {
                return event;
            }
        }
    })
    .await;
    let mut late = Sse::open_with(b, "?type=message", &[("Last-Event-ID", &oldest)]).await;
    let gap = late.next().await;
    assert_eq!(gap["type"], "gap", "{gap}");
    assert_eq!(gap["after"], oldest.as_str());
    let next = late.next().await;
    assert_eq!(next["type"], "message");
    assert!(next["seq"].as_u64().unwrap() > 2, "the oldest went: {next}");
    // From the last id: nothing missed, nothing to tell yet.
    let mut current = Sse::open_with(a, "?type=message", &[("Last-Event-ID", &id(&last))]).await;
    assert!(
        current
            .next_within(Duration::from_millis(500))
            .await
            .is_none()
    );
}

/// The node that holds the webhook's lease, by Redis.
async fn poster(three: &Three) -> &Pushd {
    eventually(STEP, "a node to hold the webhook's lease", || async {
        !three
            .redis
            .cli(&["GET", "pushd:hook"])
            .await
            .trim()
            .is_empty()
    })
    .await;
    let holder = three.redis.cli(&["GET", "pushd:hook"]).await;
    let name = holder.trim().split('-').next().unwrap().to_owned();
    let index = ["a", "b", "c"]
        .iter()
        .position(|n| *n == name)
        .expect("a node's id");
    &three.nodes[index]
}

fn ids_of(receiver: &Receiver) -> Vec<String> {
    receiver.events().iter().map(id).collect()
}

#[tokio::test]
async fn the_webhook_gets_each_event_once_for_the_cluster() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{addr}/hook");
    let receiver = Receiver::start_at(addr, Vec::new()).await;
    let Some(three) = Three::start_if_available(options(&["--webhook", &url])).await else {
        return;
    };
    let pages: Vec<WsClient> = futures_util::future::join_all(
        three
            .nodes
            .iter()
            .zip(["p1", "p2", "p3"])
            .map(|(node, uid)| node.bound_client(uid)),
    )
    .await;
    drop(pages);
    eventually(Duration::from_secs(10), "every offline posted", || async {
        receiver
            .events()
            .iter()
            .filter(|e| e["type"] == "offline")
            .count()
            == 3
    })
    .await;
    let events = receiver.events();
    let ids = ids_of(&receiver);
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "each once: {ids:?}");
    assert_increasing(&events);
    for kind in ["connect", "online", "disconnect", "offline"] {
        let count = events.iter().filter(|e| e["type"] == kind).count();
        assert_eq!(count, 3, "{kind}: {events:?}");
    }
    let nodes: HashSet<&str> = events.iter().filter_map(|e| e["node"].as_str()).collect();
    assert_eq!(nodes, HashSet::from(["a", "b", "c"]));
}

/// The node posting is SIGKILLed right after a bind, while the receiver
/// fails: the events it had read and not delivered are posted by another
/// node, with the same ids.
#[tokio::test]
async fn a_killed_poster_does_not_take_its_events_with_it() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{addr}/hook");
    // Fails its first posts: the poster holds what it read, unacknowledged.
    let receiver = Receiver::start_at(addr, vec![500; 4]).await;
    let Some(three) = Three::start_if_available(options(&["--webhook", &url])).await else {
        return;
    };
    let doomed = poster(&three).await;
    let survivor = three
        .nodes
        .iter()
        .find(|n| !std::ptr::eq(*n, doomed))
        .unwrap();
    let mut watch = Sse::open(survivor, "?type=online").await;
    let page = doomed.bound_client("k").await;
    let online = watch.next().await;
    assert_eq!(said(&online), "online k");
    eventually(STEP, "the poster to fail once", || async {
        doomed.stats().await["counters"]["webhook_failures"].as_u64() >= Some(1)
    })
    .await;
    doomed.signal(libc::SIGKILL);
    drop(page);
    eventually(
        Duration::from_secs(20),
        "k's online and offline posted",
        || async {
            let told: Vec<String> = receiver.events().iter().map(said).collect();
            told.contains(&"online k".to_owned()) && told.contains(&"offline k".to_owned())
        },
    )
    .await;
    let posted = receiver.events();
    let online_posted = posted.iter().find(|e| said(e) == "online k").unwrap();
    assert_eq!(id(online_posted), id(&online), "the same id");
    let offline = posted.iter().find(|e| said(e) == "offline k").unwrap();
    assert!(order(&id(offline)) > order(&id(&online)));
}

/// `XREAD` calls Redis has served so far.
async fn xread_calls(three: &Three) -> u64 {
    let stats = three.redis.cli(&["INFO", "commandstats"]).await;
    stats
        .lines()
        .find_map(|line| line.strip_prefix("cmdstat_xread:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |calls| calls.parse().unwrap())
}

/// An entry this version does not know (a newer node's event type) is passed
/// over once: the nodes read on past it instead of reading it again and again.
#[tokio::test]
async fn an_entry_of_an_unknown_type_is_passed_over_once() {
    let Some(three) = Three::start_if_available(options(&[])).await else {
        return;
    };
    let mut stream = Sse::open(&three.nodes[0], "").await;
    three
        .redis
        .cli(&["XADD", "pushd:events", "*", "t", "future", "e", "{}"])
        .await;
    let before = xread_calls(&three).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let calls = xread_calls(&three).await - before;
    // Three nodes each waiting up to 2 s per read: a handful, not thousands.
    assert!(calls < 30, "{calls} reads in a second");
    let _page = three.nodes[1].bound_client("after").await;
    assert_eq!(said(&stream.next().await), "connect after");
}
