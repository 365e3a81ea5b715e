//! SPEC "Groups: push to many uids by name", single node: memberships by uid
//! through pushctl, the text port's group push with its reply rules, TTLs,
//! limits, and memberships across a restart.

use std::time::Duration;

use crate::harness::{Pushd, STEP, WsClient, eventually};
use crate::resume::{bound_v2, split};

/// A group line reaches every connection of every member once, bytes
/// unchanged (a `pushd.v2` member's as `ID LINE`, its own id); a member with
/// no connection keeps it in its mailbox; a banned one does not; nobody else
/// gets it. `ok` when a connection took it.
#[tokio::test]
async fn a_group_push_reaches_every_connection_of_every_member_once() {
    let pushd = Pushd::start(&[]).await;
    let mut a1 = pushd.bound_client("a").await;
    let mut a2 = pushd.bound_client("a").await;
    let mut b = bound_v2(&pushd, "b", None).await;
    let mut outsider = pushd.bound_client("e").await;
    assert_eq!(pushd.ctl(&["kick", "--ban", "1h", "d"]).await.status, 1);
    let added = pushd.ctl(&["group", "add", "g", "a", "b", "c", "d"]).await;
    assert_eq!(added.status, 0, "{added:?}");
    assert_eq!(added.stdout.trim(), "g: 4 added, 0 already members");
    let mut backend = pushd.text_client().await;
    let line = r#"{"group":"g","n":1}"#;
    assert_eq!(backend.request(line).await, "ok");
    assert_eq!(a1.recv_text().await, line);
    assert_eq!(a2.recv_text().await, line);
    let (id, payload) = split(&b.recv_text().await);
    assert_eq!(payload, line);
    assert!(!id.is_empty());
    // A line with a uid is a push to that uid, whatever else it holds.
    let to_uid = r#"{"uid":"e","group":"g"}"#;
    assert_eq!(backend.request(to_uid).await, "ok");
    assert_eq!(
        outsider.recv_text().await,
        to_uid,
        "the group line never reached e"
    );
    for client in [&mut a1, &mut a2, &mut b] {
        assert_eq!(
            client.recv_text_within(Duration::from_millis(100)).await,
            None
        );
    }
    // c was offline: its mailbox kept it. d is banned: nothing kept.
    let mut c = pushd.bound_client("c").await;
    assert_eq!(c.recv_text().await, line);
    let mailbox = pushd.ctl(&["--json", "mailbox"]).await.json();
    assert_eq!(mailbox, serde_json::json!([]), "nothing kept for d");
}

/// The reply rules: `queued` when no connection took it but a member's
/// mailbox did; `fail` for no such group, or when nothing took or kept it.
#[tokio::test]
async fn a_group_push_answers_queued_or_fail_by_the_rules() {
    let pushd = Pushd::start(&[]).await;
    let mut backend = pushd.text_client().await;
    assert_eq!(backend.request(r#"{"group":"nobody"}"#).await, "fail");
    assert_eq!(
        pushd.ctl(&["group", "add", "away", "x", "y"]).await.status,
        0
    );
    assert_eq!(backend.request(r#"{"group":"away","n":1}"#).await, "queued");
    let transient = r#"{"group":"away","transient":true}"#;
    assert_eq!(backend.request(transient).await, "fail");
    assert_eq!(backend.request(r#"{"group":""}"#).await, "fail");
    let mut x = pushd.bound_client("x").await;
    assert_eq!(x.recv_text().await, r#"{"group":"away","n":1}"#);
}

/// pushctl manages memberships: members with their connections and TTLs,
/// the list with online counts, a uid's groups, remove and drop with their
/// exit statuses, send --group and kick --group.
#[tokio::test]
async fn pushctl_manages_groups_and_pushes_and_kicks_by_group() {
    let pushd = Pushd::start(&[]).await;
    let mut page = pushd.bound_client("m1").await;
    assert_eq!(
        pushd
            .ctl(&["group", "add", "team", "m1", "m2"])
            .await
            .status,
        0
    );
    let added = pushd
        .ctl(&["group", "add", "team", "m2", "m3", "--ttl", "1h"])
        .await;
    assert_eq!(added.stdout.trim(), "team: 1 added, 1 already members");
    let members = pushd
        .ctl(&["--json", "group", "members", "team"])
        .await
        .json();
    assert_eq!(
        members[0],
        serde_json::json!({"uid": "m1", "connections": 1, "expires_ms": null})
    );
    assert!(
        members[1]["expires_ms"].as_u64().unwrap() > 3_500_000,
        "{members}"
    );
    assert_eq!(members.as_array().unwrap().len(), 3);
    let online = pushd
        .ctl(&["--json", "group", "members", "team", "--online"])
        .await
        .json();
    assert_eq!(online.as_array().unwrap().len(), 1);
    let table = pushd.ctl(&["group", "members", "team"]).await;
    assert!(
        table
            .stdout
            .starts_with("UID  CONNS  EXPIRES\nm1   1      -\n"),
        "{table:?}"
    );
    let list = pushd.ctl(&["--json", "group", "list"]).await.json();
    assert_eq!(
        list,
        serde_json::json!([{"group": "team", "members": 3, "online": 1}])
    );
    let groups = pushd.ctl(&["--json", "groups", "m1"]).await.json();
    assert_eq!(groups, serde_json::json!({"uid": "m1", "groups": ["team"]}));
    assert_eq!(pushd.ctl(&["groups", "nobody"]).await.status, 1);

    let sent = pushd
        .ctl(&["--json", "send", "--group", "team", "hello"])
        .await;
    assert_eq!(sent.status, 0, "{sent:?}");
    assert_eq!(
        sent.json(),
        serde_json::json!({"delivered": 1, "queued": 2, "members": 3})
    );
    assert_eq!(page.recv_text().await, "hello");

    assert_eq!(
        pushd.ctl(&["group", "remove", "team", "m3"]).await.status,
        0
    );
    assert_eq!(
        pushd.ctl(&["group", "remove", "team", "m3"]).await.status,
        1
    );
    let kicked = pushd
        .ctl(&["kick", "--group", "team", "--reason", "bye"])
        .await;
    assert_eq!(kicked.status, 0, "{kicked:?}");
    assert_eq!(page.closed(STEP).await.code, Some(4000));
    // Kicks do not change memberships; the online count follows the uids.
    assert_eq!(pushd.ctl(&["group", "members", "team"]).await.status, 0);
    let list = pushd.ctl(&["--json", "group", "list"]).await.json();
    assert_eq!(
        list,
        serde_json::json!([{"group": "team", "members": 2, "online": 0}])
    );
    let _m2 = pushd.bound_client("m2").await;
    let list = pushd.ctl(&["--json", "group", "list"]).await.json();
    assert_eq!(
        list,
        serde_json::json!([{"group": "team", "members": 2, "online": 1}])
    );
    assert_eq!(pushd.ctl(&["group", "drop", "team"]).await.status, 0);
    assert_eq!(pushd.ctl(&["group", "drop", "team"]).await.status, 1);
    assert_eq!(pushd.ctl(&["group", "members", "team"]).await.status, 1);
    let empty = pushd.ctl(&["send", "--group", "team", "x"]).await;
    assert_eq!(
        (empty.status, empty.stdout.trim()),
        (1, "team has no members")
    );
}

/// A membership with a TTL ends by itself, counted; the limits refuse new
/// memberships (exit 1, with why), counted.
#[tokio::test]
async fn memberships_end_at_their_ttl_and_the_limits_refuse_new_ones() {
    let pushd = Pushd::start(&["--max-groups-per-uid", "1", "--max-memberships", "3"]).await;
    assert_eq!(
        pushd
            .ctl(&["group", "add", "short", "t", "--ttl", "500ms"])
            .await
            .status,
        0
    );
    eventually(STEP, "the membership to end", || async {
        pushd.ctl(&["group", "members", "short"]).await.status == 1
    })
    .await;
    let stats = pushd.stats().await;
    assert_eq!(stats["counters"]["group_memberships_expired"], 1, "{stats}");
    assert_eq!(pushd.ctl(&["group", "add", "one", "u"]).await.status, 0);
    let second = pushd.ctl(&["group", "add", "two", "u"]).await;
    assert_eq!(second.status, 1, "{second:?}");
    assert!(second.stderr.contains("--max-groups-per-uid"), "{second:?}");
    assert_eq!(
        pushd.ctl(&["group", "add", "one", "v", "w"]).await.status,
        0
    );
    let full = pushd.ctl(&["group", "add", "one", "z"]).await;
    assert!(full.stderr.contains("--max-memberships"), "{full:?}");
    let stats = pushd.stats().await;
    assert_eq!(stats["counters"]["groups_refused"], 2, "{stats}");
    assert_eq!(stats["group_memberships"], 3, "{stats}");
}

/// Memberships outlive a restart (the state file), TTLs included.
#[tokio::test]
async fn memberships_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("pushd.sock");
    let mut pushd = Pushd::start_at(&socket, &[]).await;
    assert_eq!(
        pushd
            .ctl(&["group", "add", "kept", "k1", "k2"])
            .await
            .status,
        0
    );
    assert_eq!(
        pushd
            .ctl(&["group", "add", "brief", "k1", "--ttl", "1h"])
            .await
            .status,
        0
    );
    pushd.signal(libc::SIGTERM);
    assert_eq!(pushd.wait(STEP).await, Some(0));
    let pushd = Pushd::start_at(&socket, &[]).await;
    let groups = pushd.ctl(&["--json", "groups", "k1"]).await.json();
    assert_eq!(groups["groups"], serde_json::json!(["brief", "kept"]));
    let members = pushd
        .ctl(&["--json", "group", "members", "brief"])
        .await
        .json();
    assert!(
        members[0]["expires_ms"].as_u64().unwrap() > 3_500_000,
        "{members}"
    );
    let mut page = WsClient::connect(pushd.ws).await;
    page.send_text("k2").await;
    pushd.wait_connections("k2", 1).await;
    let mut backend = pushd.text_client().await;
    assert_eq!(backend.request(r#"{"group":"kept"}"#).await, "ok");
    assert_eq!(page.recv_text().await, r#"{"group":"kept"}"#);
}
