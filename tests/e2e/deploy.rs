//! SPEC "Deploys without a storm and without loss": drains and health, with
//! the real binaries.

use std::time::{Duration, Instant};

use crate::harness::{Pushd, STEP, within};
use crate::http::Http;

/// Opens `n` clients bound to `PREFIX0..`, each waiting for its close in a
/// task of its own; returns the tasks, which give the close and when it came.
async fn watched_clients(
    pushd: &Pushd,
    prefix: &str,
    n: usize,
) -> Vec<tokio::task::JoinHandle<(crate::harness::Closed, Instant)>> {
    let mut watched = Vec::new();
    for i in 0..n {
        let mut client = pushd.bound_client(&format!("{prefix}{i}")).await;
        watched.push(tokio::spawn(async move {
            let closed = client.closed(Duration::from_secs(30)).await;
            (closed, Instant::now())
        }));
    }
    watched
}

/// `pushctl drain`: every WebSocket connection is closed with 1012 at a
/// random moment within the window (so their clients come back spread out),
/// each after what it was sent is written; meanwhile new clients get 503 with
/// `Retry-After`, `/v1/ready` 503, and the text port keeps answering.
#[tokio::test]
async fn pushctl_drain_spreads_1012_closes_over_the_window_and_refuses_newcomers() {
    let pushd = Pushd::start(&["--http-listen", "127.0.0.1:0"]).await;
    let api = format!("http://{}", pushd.listener("http"));
    let http = Http::new();
    let watched = watched_clients(&pushd, "d", 20).await;
    // One that is sent 200 pushes it has not read yet: all of them come before its 1012.
    let mut busy = pushd.bound_client("busy").await;
    let mut backend = pushd.text_client().await;
    for seq in 0..200 {
        let line = format!(r#"{{"uid":"busy","seq":{seq}}}"#);
        assert_eq!(backend.request(&line).await, "ok");
    }

    let started = Instant::now();
    let drain = tokio::spawn({
        let socket = pushd.socket.clone();
        async move {
            let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_pushctl"));
            command
                .arg("--socket")
                .arg(socket)
                .args(["drain", "--over", "1500ms"]);
            crate::harness::run_ctl(command, None).await
        }
    });
    crate::harness::eventually(STEP, "the drain to begin", || async {
        http.call("GET", &format!("{api}/v1/ready"), None, "")
            .await
            .0
            == 503
    })
    .await;
    let (status, body) = http.call("GET", &format!("{api}/v1/ready"), None, "").await;
    assert_eq!(
        (status, body.trim()),
        (503, r#"{"ready":false,"reason":"draining"}"#)
    );
    assert_eq!(
        http.call("GET", &format!("{api}/v1/health"), None, "")
            .await
            .0,
        200
    );
    // A newcomer is refused at once, told when to come back.
    match tokio_tungstenite::connect_async(format!("ws://{}/", pushd.ws)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
            assert_eq!(response.headers()["retry-after"], "2");
        }
        other => panic!("expected 503, got {other:?}"),
    }
    // The text port serves on: a uid that is away gets its push kept.
    assert_eq!(backend.request(r#"{"uid":"away","seq":0}"#).await, "queued");

    for seq in 0..200 {
        let expected = format!(r#"{{"uid":"busy","seq":{seq}}}"#);
        assert_eq!(busy.recv_text().await, expected);
    }
    let closed = busy.closed(STEP).await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (Some(1012), "service restart")
    );
    let mut moments = Vec::new();
    for task in watched {
        let (closed, at) = within(STEP, "a client's close", task).await.unwrap();
        assert_eq!(
            (closed.code, closed.reason.as_str()),
            (Some(1012), "service restart")
        );
        moments.push(at - started);
    }
    moments.sort();
    let (first, last) = (moments[0], moments[moments.len() - 1]);
    assert!(
        last - first > Duration::from_millis(500),
        "20 closes within {:?}: not spread over the window ({moments:?})",
        last - first
    );
    assert!(last < Duration::from_secs(4), "{moments:?}");

    let drained = within(Duration::from_secs(30), "pushctl drain", drain)
        .await
        .unwrap();
    assert_eq!(
        (drained.status, drained.stdout.as_str()),
        (0, "drained: closed 21 connections over 1s 500ms\n"),
        "{drained:?}"
    );
    let stats = pushd.stats().await;
    assert_eq!(stats["counters"]["drained"], 21, "{stats}");
    assert!(
        stats["counters"]["drain_refused"].as_u64() >= Some(1),
        "{stats}"
    );
}

/// `--drain`: SIGTERM drains first (1012, not 1001), then pushd stops, exit 0.
#[tokio::test]
async fn sigterm_with_drain_closes_with_1012_then_stops() {
    let mut pushd = Pushd::start(&["--drain", "300ms"]).await;
    let mut client = pushd.bound_client("t").await;
    pushd.signal(libc::SIGTERM);
    let closed = client.closed(STEP).await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (Some(1012), "service restart")
    );
    assert_eq!(pushd.wait(STEP).await, Some(0));
    assert!(pushd.log.lock().unwrap().contains("drained"));
}

/// A window longer than a day is refused, by pushctl and by pushd.
#[tokio::test]
async fn a_drain_window_over_a_day_is_refused() {
    let pushd = Pushd::start(&[]).await;
    let out = pushd.ctl(&["drain", "--over", "2days"]).await;
    assert_eq!(out.status, 2, "{out:?}");
    assert!(out.stderr.contains("at most 1 day"), "{out:?}");
    let mut client = pushd.bound_client("still").await;
    client.round_trip().await;
}
