//! Cluster mode, the uids' own channels (docs/cluster.md, "Routes"): a push
//! that needs no id is one `PUBLISH` on its uid's channel, which every node
//! holding a raw connection of the uid subscribes; anything else goes through
//! the route script. Two real nodes and a real redis-server.

use crate::cluster_harness::{Redis, pause_ms, redis_available, two_nodes, wait_for_nodes};
use crate::harness::{STEP, eventually};
use crate::resume::{bound_v2, split};

/// `calls=` of one command in `INFO commandstats` (0 before its first call).
async fn calls(redis: &Redis, command: &str) -> u64 {
    let stats = redis.cli(&["INFO", "commandstats"]).await;
    let prefix = format!("cmdstat_{command}:calls=");
    (stats.lines())
        .find_map(|line| line.trim().strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

/// Subscriber connections of pushd nodes that Redis has (named `PREFIX:sub:ID`).
async fn subscribers(redis: &Redis) -> usize {
    let clients = redis.cli(&["CLIENT", "LIST"]).await;
    clients
        .lines()
        .filter(|l| l.contains(" name=pushd:sub:"))
        .count()
}

#[tokio::test]
async fn a_push_to_a_raw_uid_on_another_node_is_one_publish_and_no_script() {
    if !redis_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (redis, a, b) = two_nodes(dir.path()).await;
    let mut page = b.bound_client("42").await;
    a.wait_connections("42", 1).await;
    assert_eq!(
        redis.cli(&["PUBSUB", "NUMSUB", "pushd:u:42"]).await.trim(),
        "pushd:u:42\n1",
        "b subscribes the channel of the uid it holds"
    );
    let mut backend = a.text_client().await;
    let (scripts, publishes) = (
        calls(&redis, "evalsha").await,
        calls(&redis, "publish").await,
    );
    for n in 0..200 {
        let answer = backend.request(&format!(r#"{{"uid":"42","n":{n}}}"#)).await;
        assert_eq!(answer, "ok");
    }
    for n in 0..200 {
        assert_eq!(page.recv_text().await, format!(r#"{{"uid":"42","n":{n}}}"#));
    }
    // The lease ticks of both nodes run a few scripts meanwhile; the route
    // script ran once a push (200) before.
    let scripts = calls(&redis, "evalsha").await - scripts;
    assert!(scripts < 40, "{scripts} scripts for 200 pushes");
    let publishes = calls(&redis, "publish").await - publishes;
    assert!(publishes >= 200, "{publishes} publishes for 200 pushes");

    // Its last raw connection gone, b leaves the channel: a push is queued.
    drop(page);
    eventually(STEP, "b to leave 42's channel", || async {
        redis.cli(&["PUBSUB", "NUMSUB", "pushd:u:42"]).await.trim() == "pushd:u:42\n0"
    })
    .await;
    eventually(STEP, "42 offline on a", || async {
        !a.is_online("42").await
    })
    .await;
    assert_eq!(
        backend.request(r#"{"uid":"42","n":"later"}"#).await,
        "queued"
    );
    let mut back = b.bound_client("42").await;
    assert_eq!(back.recv_text().await, r#"{"uid":"42","n":"later"}"#);
}

#[tokio::test]
async fn a_uid_on_the_pushing_node_and_another_gets_each_push_once_on_each_and_ids_once_resumable()
{
    if !redis_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_redis, a, b) = two_nodes(dir.path()).await;
    let mut here = a.bound_client("7").await;
    let mut there = b.bound_client("7").await;
    a.wait_connections("7", 2).await;
    let mut backend = a.text_client().await;
    for n in 0..20 {
        assert_eq!(
            backend.request(&format!(r#"{{"n":{n},"uid":"7"}}"#)).await,
            "ok"
        );
    }
    // The pusher hears its own push on the uid's channel and passes it over:
    // each page gets each push once, in order (the fence proves nothing more came).
    for page in [&mut here, &mut there] {
        for n in 0..20 {
            assert_eq!(page.recv_text().await, format!(r#"{{"n":{n},"uid":"7"}}"#));
        }
    }
    a.fence("7", &mut [&mut here, &mut there]).await;

    // A pushd.v2 page of the uid makes it resumable: its pushes are numbered
    // in the cluster's order (the route script), and the raw pages still get
    // each once.
    let mut resumable = bound_v2(&b, "7", None).await;
    a.wait_connections("7", 3).await;
    let mut last = String::new();
    for n in 20..40 {
        assert_eq!(
            backend.request(&format!(r#"{{"n":{n},"uid":"7"}}"#)).await,
            "ok"
        );
    }
    for n in 20..40 {
        let payload = format!(r#"{{"n":{n},"uid":"7"}}"#);
        let (id, got) = split(&resumable.recv_text().await);
        assert_eq!(got, payload);
        assert!(id > last || last.is_empty(), "{id} after {last}");
        last = id;
        assert_eq!(here.recv_text().await, payload);
        assert_eq!(there.recv_text().await, payload);
    }
    a.fence("7", &mut [&mut here, &mut there, &mut resumable])
        .await;
}

/// A node that stops without closing its Redis connections (a machine gone,
/// a pause) keeps its subscriptions in Redis: its uids' channels still count
/// it. Reaped, and not back within two thirds of a lease, its subscriber is
/// cut: a push to its uid is then queued, never answered `ok` into a
/// subscription nobody reads. Back, the node subscribes again, and its open
/// page gets what was queued for it while it was taken for dead.
#[tokio::test]
async fn a_node_gone_without_closing_its_subscription_is_cut_and_its_uids_pushes_wait() {
    if !redis_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (redis, a, b) = two_nodes(dir.path()).await;
    let mut page = b.bound_client("away").await;
    a.wait_connections("away", 1).await;
    assert_eq!(subscribers(&redis).await, 2);
    let mut backend = a.text_client().await;
    b.signal(libc::SIGSTOP);
    wait_for_nodes(&a, 1).await;
    eventually(STEP * 2, "b's subscription cut", || async {
        subscribers(&redis).await == 1
    })
    .await;
    // While presence settles pushes to its uid fail; then they wait.
    let mut answers = Vec::new();
    let deadline = std::time::Instant::now() + STEP * 2;
    loop {
        let answer = backend.request(r#"{"uid":"away","n":1}"#).await;
        answers.push(answer);
        if answers.last().is_some_and(|a| a == "queued") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never queued: {answers:?}"
        );
        pause_ms(50).await;
    }
    b.signal(libc::SIGCONT);
    assert!(
        answers.iter().all(|a| a != "ok"),
        "answered ok into a subscription nobody reads: {answers:?}"
    );
    // b finds its subscription gone and joins again: its page gets what was
    // queued for it meanwhile, then what is pushed now.
    assert_eq!(page.recv_text().await, r#"{"uid":"away","n":1}"#);
    wait_for_nodes(&a, 2).await;
    eventually(STEP, "a push to b's page to be ok", || async {
        let mut backend = a.text_client().await;
        backend.request(r#"{"uid":"away","n":2}"#).await == "ok"
    })
    .await;
    assert_eq!(page.recv_text().await, r#"{"uid":"away","n":2}"#);
}
