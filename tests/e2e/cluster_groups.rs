//! SPEC "Groups", cluster mode: memberships in Redis, visible on every node
//! when the command returns; a group push through any node reaches members on
//! every node in one bus message per node; honest replies and cluster-wide
//! counts; TTLs and limits over the whole cluster.

use std::time::Duration;

use crate::cluster::http;
use crate::cluster_harness::{NodeOptions, Three};
use crate::harness::{STEP, eventually};
use crate::resume::{bound_v2, split};

/// How many `PUBLISH`es Redis has run since its statistics were reset
/// (those from scripts included).
async fn publishes(three: &Three) -> u64 {
    let stats = three.redis.cli(&["INFO", "commandstats"]).await;
    (stats.lines())
        .find_map(|line| line.strip_prefix("cmdstat_publish:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |calls| calls.parse().unwrap())
}

/// A membership added through one node is seen by the others at once, and a
/// group push through a third reaches every connection of every member on
/// every node once (a `pushd.v2` member's with its id), crossing the bus once
/// per node that holds members; a member held nowhere keeps it in its
/// mailbox, and gets it when it binds on any node.
#[tokio::test]
async fn a_group_push_through_any_node_reaches_members_on_every_node_once() {
    let Some(three) = Three::start_if_available(NodeOptions::default()).await else {
        return;
    };
    let [a, b, c] = [&three.nodes[0], &three.nodes[1], &three.nodes[2]];
    let mut on_a = a.bound_client("ua").await;
    let mut on_b = bound_v2(b, "ub", None).await;
    let mut on_c1 = c.bound_client("uc").await;
    let mut on_c2 = c.bound_client("uc").await;
    let mut outsider = b.bound_client("other").await;
    let added = a
        .ctl(&["group", "add", "g", "ua", "ub", "uc", "away"])
        .await;
    assert_eq!(added.stdout.trim(), "g: 4 added, 0 already members");
    let members = c.ctl(&["--json", "group", "members", "g"]).await.json();
    let connections: Vec<(&str, u64)> = (members.as_array().unwrap().iter())
        .map(|m| {
            (
                m["uid"].as_str().unwrap(),
                m["connections"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        connections,
        [("away", 0), ("ua", 1), ("ub", 1), ("uc", 2)],
        "seen from c at once, with the connections of every node"
    );
    let list = b.ctl(&["--json", "group", "list"]).await.json();
    assert_eq!(
        list,
        serde_json::json!([{"group": "g", "members": 4, "online": 3}])
    );
    let groups = c.ctl(&["--json", "groups", "ua"]).await.json();
    assert_eq!(groups, serde_json::json!({"uid": "ua", "groups": ["g"]}));

    three.redis.cli(&["CONFIG", "RESETSTAT"]).await;
    let mut backend = b.text_client().await;
    let line = r#"{"group":"g","n":1}"#;
    assert_eq!(backend.request(line).await, "ok");
    assert_eq!(
        publishes(&three).await,
        3,
        "one bus message per node with members"
    );
    for page in [&mut on_a, &mut on_c1, &mut on_c2] {
        assert_eq!(page.recv_text().await, line);
    }
    let (id, payload) = split(&on_b.recv_text().await);
    assert_eq!(payload, line);
    assert!(id.contains('-'), "a cluster id: {id}");
    for page in [&mut on_a, &mut on_b, &mut on_c1, &mut on_c2, &mut outsider] {
        assert_eq!(
            page.recv_text_within(Duration::from_millis(200)).await,
            None,
            "once, and only to members"
        );
    }
    let mut away = c.bound_client("away").await;
    assert_eq!(away.recv_text().await, line, "kept in away's mailbox");
}

/// The reply rules hold cluster-wide: `ok` when a connection on any node
/// took it, `queued` when only mailboxes did, `fail` for no such group or a
/// transient push nobody took; `send --group` counts every node's.
#[tokio::test]
async fn a_group_push_answers_by_the_rules_with_cluster_wide_counts() {
    let Some(three) = Three::start_if_available(NodeOptions::default()).await else {
        return;
    };
    let [a, b, c] = [&three.nodes[0], &three.nodes[1], &three.nodes[2]];
    let mut backend = a.text_client().await;
    assert_eq!(backend.request(r#"{"group":"nobody"}"#).await, "fail");
    assert_eq!(a.ctl(&["group", "add", "away", "x", "y"]).await.status, 0);
    assert_eq!(backend.request(r#"{"group":"away","n":1}"#).await, "queued");
    let transient = r#"{"group":"away","transient":true}"#;
    assert_eq!(backend.request(transient).await, "fail");
    let mut x = b.bound_client("x").await;
    assert_eq!(x.recv_text().await, r#"{"group":"away","n":1}"#);
    // x is online on b only: a push through a is ok.
    assert_eq!(backend.request(transient).await, "ok");
    assert_eq!(x.recv_text().await, transient);
    let _x2 = c.bound_client("x").await;
    let sent = c.ctl(&["--json", "send", "--group", "away", "hi"]).await;
    assert_eq!(sent.status, 0, "{sent:?}");
    assert_eq!(
        sent.json(),
        serde_json::json!({"delivered": 2, "queued": 1, "members": 2})
    );
    let stats = b.stats().await;
    assert_eq!(stats["group_memberships"], 2, "{stats}");
}

/// Pushes from one text connection keep their order at a page on the
/// pusher's own node, group pushes among uid pushes.
#[tokio::test]
async fn group_and_uid_pushes_keep_their_order() {
    let Some(three) = Three::start_if_available(NodeOptions::default()).await else {
        return;
    };
    let a = &three.nodes[0];
    let mut page = a.bound_client("o").await;
    assert_eq!(a.ctl(&["group", "add", "og", "o"]).await.status, 0);
    let mut backend = a.text_client().await;
    let lines: Vec<String> = (0..30)
        .map(|n| match n % 3 {
            1 => format!(r#"{{"group":"og","n":{n}}}"#),
            _ => format!(r#"{{"uid":"o","n":{n}}}"#),
        })
        .collect();
    // Sent in one write: they are read, and answered, as one batch.
    backend
        .write(format!("{}\n", lines.join("\n")).as_bytes())
        .await;
    for line in &lines {
        assert_eq!(backend.reply().await, "ok", "{line}");
    }
    for line in &lines {
        assert_eq!(&page.recv_text().await, line);
    }
}

/// A membership's TTL ends it on every node; the limits count memberships
/// of the whole cluster, whichever node adds them; kick --group closes the
/// members' connections on every node and keeps the memberships.
#[tokio::test]
async fn ttls_limits_and_kicks_hold_across_the_cluster() {
    let options = NodeOptions {
        extra: &["--max-groups-per-uid", "2", "--max-memberships", "4"],
        ..NodeOptions::default()
    };
    let Some(three) = Three::start_if_available(options).await else {
        return;
    };
    let [a, b, c] = [&three.nodes[0], &three.nodes[1], &three.nodes[2]];
    let short = a
        .ctl(&["group", "add", "short", "t", "--ttl", "500ms"])
        .await;
    assert_eq!(short.status, 0, "{short:?}");
    let members = b.ctl(&["--json", "group", "members", "short"]).await.json();
    let left = members[0]["expires_ms"].as_u64().unwrap();
    assert!(left <= 500, "{members}");
    eventually(STEP, "the membership to end", || async {
        c.ctl(&["group", "members", "short"]).await.status == 1
    })
    .await;
    eventually(STEP, "the expiry to be counted", || async {
        b.stats().await["counters"]["group_memberships_expired"] == 1
    })
    .await;
    assert_eq!(a.ctl(&["group", "add", "one", "u"]).await.status, 0);
    assert_eq!(b.ctl(&["group", "add", "two", "u"]).await.status, 0);
    let third = c.ctl(&["group", "add", "three", "u"]).await;
    assert_eq!(third.status, 1, "{third:?}");
    assert!(third.stderr.contains("--max-groups-per-uid"), "{third:?}");
    assert_eq!(a.ctl(&["group", "add", "one", "v", "w"]).await.status, 0);
    let full = b.ctl(&["group", "add", "two", "z"]).await;
    assert!(full.stderr.contains("--max-memberships"), "{full:?}");
    assert_eq!(c.stats().await["group_memberships"], 4);

    let mut v_on_b = b.bound_client("v").await;
    let mut w_on_c = c.bound_client("w").await;
    let kicked = a.ctl(&["kick", "--group", "one"]).await;
    assert_eq!(kicked.status, 0, "{kicked:?}");
    assert_eq!(v_on_b.closed(STEP).await.code, Some(4000));
    assert_eq!(w_on_c.closed(STEP).await.code, Some(4000));
    let list = c.ctl(&["--json", "group", "list"]).await.json();
    assert_eq!(
        list,
        serde_json::json!([
            {"group": "one", "members": 3, "online": 0},
            {"group": "two", "members": 1, "online": 0},
        ])
    );
    assert_eq!(b.ctl(&["group", "remove", "one", "u"]).await.status, 0);
    assert_eq!(c.ctl(&["group", "remove", "one", "u"]).await.status, 1);
    assert_eq!(c.ctl(&["group", "drop", "one"]).await.status, 0);
    assert_eq!(a.ctl(&["group", "drop", "one"]).await.status, 1);
    assert_eq!(b.stats().await["group_memberships"], 1);
}

/// A `pushd.v2` member resumes group pushes on another node: those it was
/// given (kept for resumes) after its place, and those sent while it was
/// away (`queued`), with no `!gap`.
#[tokio::test]
async fn a_pushd_v2_member_resumes_group_pushes_on_another_node() {
    let Some(three) = Three::start_if_available(NodeOptions::default()).await else {
        return;
    };
    let [a, b, c] = [&three.nodes[0], &three.nodes[1], &three.nodes[2]];
    assert_eq!(a.ctl(&["group", "add", "rg", "r"]).await.status, 0);
    let mut backend = a.text_client().await;
    let mut page = bound_v2(b, "r", None).await;
    // Resumable once b's take made it so in Redis (a push before that is
    // delivered, not kept: a resume from it would be a gap).
    eventually(STEP, "r to be resumable", || async {
        three.redis.cli(&["EXISTS", "pushd:v2:r"]).await.trim() == "1"
    })
    .await;
    let mut ids = Vec::new();
    for n in 1..=2 {
        let line = format!(r#"{{"group":"rg","n":{n}}}"#);
        assert_eq!(backend.request(&line).await, "ok");
        let (id, payload) = split(&page.recv_text().await);
        assert_eq!(payload, line);
        ids.push(id);
    }
    drop(page);
    b.wait_connections("r", 0).await;
    let away = r#"{"group":"rg","n":3}"#;
    assert_eq!(backend.request(away).await, "queued");
    let mut back = bound_v2(c, "r", Some(&ids[0])).await;
    let (id, payload) = split(&back.recv_text().await);
    assert_eq!(
        (id.as_str(), payload.as_str()),
        (ids[1].as_str(), r#"{"group":"rg","n":2}"#)
    );
    let (_, payload) = split(&back.recv_text().await);
    assert_eq!(payload, away);
}

/// The HTTP API of any node manages the cluster's groups: a bulk change on
/// one, read on another, a percent-encoded name, a group send on a third.
#[tokio::test]
async fn the_http_api_of_any_node_manages_the_cluster_s_groups() {
    let options = NodeOptions {
        extra: &["--http-listen", "127.0.0.1:0"],
        ..NodeOptions::default()
    };
    let Some(three) = Three::start_if_available(options).await else {
        return;
    };
    let api: Vec<String> = (three.nodes.iter())
        .map(|node| format!("http://{}", node.listener("http")))
        .collect();
    let bulk = r#"{"add": ["p", "q"], "ttl": "1h"}"#;
    let (status, body) = http(&api[0], "POST", "/v1/groups/team%20x/members", bulk).await;
    assert_eq!((status, body.trim()), (200, r#"{"added":2,"removed":0}"#));
    let (status, body) = http(&api[1], "GET", "/v1/groups/team%20x", "").await;
    assert_eq!(status, 200, "{body}");
    let group: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(group["group"], "team x");
    assert_eq!(group["members"].as_array().unwrap().len(), 2, "{group}");
    let _p = three.nodes[2].bound_client("p").await;
    let (status, body) = http(&api[2], "POST", "/v1/groups/team%20x/send", "hi").await;
    assert_eq!(status, 200, "{body}");
    let sent: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        sent,
        serde_json::json!({"delivered": 1, "queued": 1, "members": 2})
    );
    let (status, _) = http(&api[1], "DELETE", "/v1/groups/team%20x/members/q", "").await;
    assert_eq!(status, 200);
    let (status, body) = http(&api[0], "GET", "/v1/uids/p/groups", "").await;
    assert_eq!(
        (status, body.trim()),
        (200, r#"{"groups":["team x"],"uid":"p"}"#)
    );
    let (status, body) = http(&api[2], "GET", "/v1/groups", "").await;
    assert_eq!(
        (status, body.trim()),
        (200, r#"[{"group":"team x","members":1,"online":1}]"#)
    );
}

/// Bans apply per member in cluster mode too: a uid banned through a
/// cluster-wide kick keeps no group push in its mailbox, whichever node
/// pushes. With Redis gone, a group push answers `fail` and a membership
/// change is refused with a reason that names Redis, never a false answer.
#[tokio::test]
async fn bans_apply_per_member_and_without_redis_nothing_is_promised() {
    let Some(mut three) = Three::start_if_available(NodeOptions::default()).await else {
        return;
    };
    let [a, b] = [&three.nodes[0], &three.nodes[1]];
    assert_eq!(a.ctl(&["kick", "--ban", "1h", "banned"]).await.status, 1);
    assert_eq!(a.ctl(&["group", "add", "bg", "banned"]).await.status, 0);
    let mut backend = b.text_client().await;
    assert_eq!(backend.request(r#"{"group":"bg"}"#).await, "fail");
    assert_eq!(a.ctl(&["group", "add", "bg", "free"]).await.status, 0);
    assert_eq!(backend.request(r#"{"group":"bg","n":2}"#).await, "queued");
    let mailboxes = a.ctl(&["--json", "mailbox"]).await.json();
    let uids: Vec<&str> = (mailboxes.as_array().unwrap().iter())
        .map(|m| m["uid"].as_str().unwrap())
        .collect();
    assert_eq!(uids, ["free"], "{mailboxes}");

    let mut on_b = b.bound_client("free").await;
    assert_eq!(on_b.recv_text().await, r#"{"group":"bg","n":2}"#);

    three.redis.kill().await;
    assert_eq!(backend.request(r#"{"group":"bg","n":3}"#).await, "fail");
    let refused = a.ctl(&["group", "add", "bg", "x"]).await;
    assert_eq!(refused.status, 2, "{refused:?}");
    assert!(refused.stderr.contains("unreachable"), "{refused:?}");
    assert_eq!(
        on_b.recv_text_within(Duration::from_millis(200)).await,
        None,
        "nothing was promised, nothing arrives"
    );
}
