//! SPEC "One connection by id": every connection has an id unique in the cluster (in
//! `list --json`, `/v1/list` and events), and a kick by id closes that tab alone, on any node
//! ("how do I disconnect the connection of a uid I give you": that one, not every tab).

use crate::cluster::http;
use crate::cluster_harness::{NodeOptions, Three};
use crate::harness::{Pushd, STEP, eventually};
use crate::http::Sse;

/// The ids of `uid`'s connections, oldest first, as `pushctl --json list` gives them.
async fn ids(pushd: &Pushd, uid: &str) -> Vec<String> {
    let list = pushd.ctl(&["--json", "list"]).await.json();
    (list.as_array().unwrap().iter())
        .filter(|entry| entry["uid"] == uid)
        .flat_map(|entry| entry["connections"].as_array().unwrap().clone())
        .map(|conn| conn["connection"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_kick_by_connection_id_closes_that_tab_alone() {
    let pushd = Pushd::start(&["--http-listen", "127.0.0.1:0"]).await;
    let mut events = Sse::open(&pushd, "?type=connect").await;
    let mut first = pushd.bound_client("42").await;
    let mut second = pushd.bound_client("42").await;
    let tabs = ids(&pushd, "42").await;
    assert_eq!(tabs.len(), 2, "{tabs:?}");
    assert_ne!(tabs[0], tabs[1]);
    assert_eq!(
        events.next().await["connection"],
        tabs[0],
        "events name it too"
    );

    let kicked = pushd
        .ctl(&["kick", "--connection", &tabs[0], "--reason", "this tab"])
        .await;
    assert_eq!(kicked.status, 0, "{kicked:?}");
    assert_eq!(kicked.stdout.trim(), "kicked 42 (1 connection)");
    let closed = first.closed(STEP).await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (Some(4000), "this tab")
    );
    assert_eq!(pushd.ctl(&["send", "42", "still here"]).await.status, 0);
    assert_eq!(second.recv_text().await, "still here");
    let again = pushd.ctl(&["kick", "--connection", &tabs[0]]).await;
    assert_eq!(again.status, 1, "{again:?}");

    let api = format!("http://{}", pushd.listener("http"));
    let path = format!("/v1/connections/{}/kick", tabs[1]);
    let (status, body) = http(&api, "POST", &path, r#"{"reason":"from the API"}"#).await;
    assert_eq!((status, body.trim()), (200, r#"{"kicked":1}"#));
    assert_eq!(second.closed(STEP).await.code, Some(4000));
    let (status, _) = http(&api, "POST", "/v1/connections/nobody.1/kick", "").await;
    assert_eq!(status, 404);
    let (status, _) = http(&api, "POST", &path, r#"{"ban":"1h"}"#).await;
    assert_eq!(status, 400, "a ban is a uid's");
}

#[tokio::test]
async fn a_connection_on_another_node_is_kicked_by_its_id() {
    let Some(three) = Three::start_if_available(NodeOptions::default()).await else {
        return;
    };
    let [a, c] = [&three.nodes[0], &three.nodes[2]];
    let mut on_a = a.bound_client("7").await;
    let mut on_c = c.bound_client("7").await;
    eventually(STEP, "both tabs listed", || async {
        ids(a, "7").await.len() == 2
    })
    .await;
    let tabs = ids(a, "7").await;
    let on_c_id = (tabs.iter())
        .find(|id| id.starts_with("c-"))
        .expect("an id names its node")
        .clone();
    let kicked = a.ctl(&["kick", "--connection", &on_c_id]).await;
    assert_eq!(kicked.status, 0, "{kicked:?}");
    assert_eq!(on_c.closed(STEP).await.code, Some(4000));
    assert_eq!(a.ctl(&["send", "7", "a's tab stays"]).await.status, 0);
    assert_eq!(on_a.recv_text().await, "a's tab stays");
}

/// A push to one connection by id, three ways: a text-port line `{"connection": ...}`
/// (the whole line is the frame, as for a uid), `pushctl send --connection`, and the HTTP
/// API; the other tab of the uid gets none of them; an unknown id is `fail`, exit 1, 404.
#[tokio::test]
async fn a_push_by_connection_id_reaches_that_tab_alone() {
    let pushd = Pushd::start(&["--http-listen", "127.0.0.1:0"]).await;
    let mut first = pushd.bound_client("42").await;
    let mut second = pushd.bound_client("42").await;
    let tabs = ids(&pushd, "42").await;
    let mut backend = pushd.text_client().await;
    let line = format!(r#"{{"connection":"{}","n":1}}"#, tabs[1]);
    assert_eq!(backend.request(&line).await, "ok");
    assert_eq!(second.recv_text().await, line);
    assert_eq!(
        backend.request(r#"{"connection":"nobody.1"}"#).await,
        "fail"
    );
    let sent = pushd
        .ctl(&["send", "--connection", &tabs[0], "just you"])
        .await;
    assert_eq!(sent.status, 0, "{sent:?}");
    assert_eq!(first.recv_text().await, "just you");
    let nobody = pushd.ctl(&["send", "--connection", "nobody.1", "x"]).await;
    assert_eq!(nobody.status, 1, "{nobody:?}");
    let api = format!("http://{}", pushd.listener("http"));
    let path = format!("/v1/connections/{}/send", tabs[0]);
    let (status, body) = http(&api, "POST", &path, "over http").await;
    assert_eq!((status, body.trim()), (200, r#"{"delivered":1}"#));
    assert_eq!(first.recv_text().await, "over http");
    let (status, _) = http(&api, "POST", "/v1/connections/nobody.1/send", "x").await;
    assert_eq!(status, 404);
    assert_eq!(
        second
            .recv_text_within(std::time::Duration::from_millis(200))
            .await,
        None,
        "the other tab got only its own"
    );
}

/// In cluster mode a connection line through any node's text port reaches the connection
/// on the node that has it.
#[tokio::test]
async fn a_connection_line_reaches_a_connection_on_another_node() {
    let Some(three) = Three::start_if_available(NodeOptions::default()).await else {
        return;
    };
    let [a, b] = [&three.nodes[0], &three.nodes[1]];
    let mut on_b = b.bound_client("9").await;
    let id = ids(b, "9").await.remove(0);
    let mut backend = a.text_client().await;
    let line = format!(r#"{{"connection":"{id}","hello":true}}"#);
    assert_eq!(backend.request(&line).await, "ok");
    assert_eq!(on_b.recv_text().await, line);
    assert_eq!(backend.request(r#"{"connection":"b-0-0.1"}"#).await, "fail");
}
