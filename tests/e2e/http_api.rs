//! README "Over HTTP" and docs/http-api.md: the HTTP API, with real clients:
//! hyper over keep-alive, and curl running every example of docs/http-api.md.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use crate::harness::{Pushd, STEP, within};
use crate::http::Http;

const TOKEN: &str = "a-test-token-of-enough-length";

/// pushd with the HTTP API behind `TOKEN`, and the token file.
async fn pushd_with_api(dir: &Path, extra: &[&str]) -> Pushd {
    let token = dir.join("http-token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let mut args = vec![
        "--http-listen",
        "127.0.0.1:0",
        "--http-token-file",
        token.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Pushd::start(&args).await
}

fn client() -> Http {
    Http::new()
}

/// One request: status and body.
async fn call(
    client: &Http,
    method: &str,
    url: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    client.call(method, url, token, body).await
}

#[tokio::test]
async fn backends_push_kick_and_ask_over_keep_alive() {
    let dir = tempfile::tempdir().unwrap();
    let pushd = pushd_with_api(dir.path(), &[]).await;
    let api = format!("http://{}", pushd.listener("http"));
    let client = client();
    let mut page = pushd.bound_client("user one").await;
    let t = Some(TOKEN);

    for i in 0..50 {
        let (status, body) = call(
            &client,
            "POST",
            &format!("{api}/v1/send/user%20one"),
            t,
            &format!("m{i}"),
        )
        .await;
        assert_eq!(
            (status, body.trim()),
            (200, r#"{"delivered":1,"queued":false}"#)
        );
    }
    for i in 0..50 {
        assert_eq!(page.recv_text().await, format!("m{i}"), "in order");
    }
    let opened = pushd.stats().await["counters"]["connections_opened"].clone();
    assert_eq!(opened, 1, "HTTP clients are not WebSocket connections");

    let lines = "{\"uid\":\"user one\",\"message\":\"a\"}\n{\"uid\":\"nobody\",\"message\":\"b\",\"transient\":true}\n";
    let (status, body) = call(&client, "POST", &format!("{api}/v1/push"), t, lines).await;
    assert_eq!((status, body.as_str()), (200, "ok\nfail\n"));
    // As on the text port, the line is the frame.
    assert_eq!(
        page.recv_text().await,
        r#"{"uid":"user one","message":"a"}"#
    );

    let (status, body) = call(
        &client,
        "GET",
        &format!("{api}/v1/online/user%20one"),
        t,
        "",
    )
    .await;
    assert_eq!(
        (status, body.trim()),
        (200, r#"{"connections":1,"uid":"user one"}"#)
    );
    let (status, list) = call(&client, "GET", &format!("{api}/v1/list"), t, "").await;
    assert_eq!(status, 200);
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    let ctl = pushd.ctl(&["--json", "list"]).await.json();
    assert_eq!(list[0]["uid"], "user one");
    let ids = |list: &serde_json::Value| list[0]["connections"][0]["id"].clone();
    assert_eq!(
        ids(&list),
        ids(&ctl),
        "the same JSON as pushctl --json list"
    );

    let kick = r#"{"reason":"bye","ban":"1m"}"#;
    let (status, body) = call(
        &client,
        "POST",
        &format!("{api}/v1/kick/user%20one"),
        t,
        kick,
    )
    .await;
    assert_eq!((status, body.trim()), (200, r#"{"kicked":1}"#));
    let closed = page.closed(STEP).await;
    assert_eq!((closed.code, closed.reason.as_str()), (Some(4000), "bye"));
    assert_eq!(
        pushd.ctl(&["--json", "bans"]).await.json()[0]["uid"],
        "user one"
    );
}

#[tokio::test]
async fn bad_requests_get_their_status_and_the_token_is_never_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let pushd = pushd_with_api(dir.path(), &["--max-message-size", "1024"]).await;
    let api = format!("http://{}", pushd.listener("http"));
    let client = client();
    let t = Some(TOKEN);
    let cases: [(&str, String, Option<&str>, String, u16); 8] = [
        ("POST", format!("{api}/v1/send/42"), None, "x".into(), 401),
        (
            "POST",
            format!("{api}/v1/send/42"),
            Some("wrong-token-of-enough-length"),
            "x".into(),
            401,
        ),
        ("POST", format!("{api}/v1/send/%00"), t, "x".into(), 400),
        ("POST", format!("{api}/v1/send/%E2%82"), t, "x".into(), 400),
        (
            "POST",
            format!("{api}/v1/send/42"),
            t,
            "x".repeat(1025),
            413,
        ),
        ("POST", format!("{api}/v1/kick/42"), t, "[1]".into(), 400),
        ("GET", format!("{api}/v1/nothing"), t, String::new(), 404),
        ("DELETE", format!("{api}/v1/list"), t, String::new(), 405),
    ];
    for (method, url, token, body, expected) in cases {
        let (status, answer) = call(&client, method, &url, token, &body).await;
        assert_eq!(status, expected, "{method} {url}: {answer}");
        let answer: serde_json::Value = serde_json::from_str(&answer).expect("a JSON error");
        assert!(answer["error"].is_string(), "{answer}");
        assert!(!answer.to_string().contains("token-of-enough"), "{answer}");
    }
    assert!(!pushd.log.lock().unwrap().contains("token-of-enough"));
}

#[tokio::test]
async fn a_slow_request_is_dropped_after_the_handshake_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let pushd = pushd_with_api(dir.path(), &["--handshake-timeout", "300ms"]).await;
    let mut slow = tokio::net::TcpStream::connect(pushd.listener("http"))
        .await
        .unwrap();
    slow.write_all(b"POST /v1/send/42 HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    within(
        STEP,
        "pushd to drop the slow head",
        slow.read_to_end(&mut rest),
    )
    .await
    .ok();
    // A head that arrives, then a body that does not: 408.
    let mut slow = tokio::net::TcpStream::connect(pushd.listener("http"))
        .await
        .unwrap();
    let head = format!(
        "POST /v1/send/42 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 10\r\n\r\nab"
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0; 512];
    let n = within(STEP, "the 408", slow.read(&mut answer))
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]).to_string();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[tokio::test]
async fn metrics_listen_serves_metrics_alone_and_the_api_token_rotates_on_reload() {
    let dir = tempfile::tempdir().unwrap();
    let pushd = pushd_with_api(dir.path(), &["--metrics-listen", "127.0.0.1:0"]).await;
    let (api, metrics) = (pushd.listener("http"), pushd.listener("metrics"));
    let client = client();
    let (status, body) = call(
        &client,
        "GET",
        &format!("http://{metrics}/metrics"),
        None,
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.contains("pushd_connections 0"), "{body}");
    let (status, _) = call(
        &client,
        "GET",
        &format!("http://{metrics}/v1/list"),
        Some(TOKEN),
        "",
    )
    .await;
    assert_eq!(status, 404, "the metrics listener serves no API");
    let (status, _) = call(&client, "GET", &format!("http://{api}/metrics"), None, "").await;
    assert_eq!(status, 401, "on the API listener, /metrics needs the token");

    std::fs::write(
        dir.path().join("http-token"),
        "the-next-token-of-enough-length",
    )
    .unwrap();
    let out = pushd.ctl(&["reload"]).await;
    assert_eq!(
        (out.status, out.stdout.trim()),
        (0, "reloaded: HTTP token"),
        "{out:?}"
    );
    let url = format!("http://{api}/v1/stats");
    assert_eq!(call(&client, "GET", &url, Some(TOKEN), "").await.0, 401);
    let (status, stats) = call(
        &client,
        "GET",
        &url,
        Some("the-next-token-of-enough-length"),
        "",
    )
    .await;
    assert_eq!(status, 200);
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["version"], env!("CARGO_PKG_VERSION"));
}

/// Every `$ command` in docs/http-api.md's console blocks, with the output under it.
fn examples(doc: &str) -> Vec<(String, Vec<String>)> {
    let mut examples: Vec<(String, Vec<String>)> = Vec::new();
    let mut in_console = false;
    for line in doc.lines() {
        if line.starts_with("```") {
            in_console = line == "```console";
            continue;
        }
        if !in_console {
            continue;
        }
        match line.strip_prefix("$ ") {
            Some(command) => examples.push((command.to_owned(), Vec::new())),
            None => examples
                .last_mut()
                .expect("output after a command")
                .1
                .push(line.to_owned()),
        }
    }
    examples
}

/// Whether `actual` is `expected`, where `...` in an expected line stands for anything.
fn matches(expected: &str, actual: &str) -> bool {
    let mut pieces = expected.split("...");
    let first = pieces.next().unwrap_or_default();
    let Some(mut rest) = actual.strip_prefix(first) else {
        return false;
    };
    let pieces: Vec<&str> = pieces.collect();
    for (i, piece) in pieces.iter().enumerate() {
        if i == pieces.len() - 1 {
            return rest.ends_with(piece);
        }
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

#[tokio::test]
async fn every_example_in_http_api_md_runs_as_shown() {
    if !Path::new("/usr/bin/curl").exists() {
        assert!(
            std::env::var_os("PUSHD_REQUIRE_CURL").is_none(),
            "PUSHD_REQUIRE_CURL is set but /usr/bin/curl is missing (apt-get install curl)"
        );
        eprintln!("skipped: /usr/bin/curl is missing");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pushd = pushd_with_api(dir.path(), &[]).await;
    let api = format!("http://{}", pushd.listener("http"));
    let mut page = pushd.bound_client("42").await;
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/http-api.md"))
            .unwrap();
    let examples = examples(&doc);
    assert!(examples.len() >= 15, "{} examples", examples.len());
    for (command, expected) in examples {
        // The events example shows a page connecting while it listens.
        let page_for_events = command.contains("/v1/events").then(|| {
            let (ws, socket) = (pushd.ws, pushd.socket.clone());
            tokio::spawn(async move {
                let mut client = pushd_ctl::client::Client::connect(&socket).await.unwrap();
                loop {
                    let request = pushd_proto::admin::Request::Stats;
                    if let pushd_proto::admin::Response::Stats(stats) =
                        client.request(request).await.unwrap()
                        && stats.event_subscribers > 0
                    {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let mut page = crate::harness::WsClient::connect(ws).await;
                page.send_text("ann").await;
                page.round_trip().await;
                page
            })
        });
        let run = Command::new("sh")
            .args(["-c", &command])
            .env("API", &api)
            .env("TOKEN", TOKEN)
            .kill_on_drop(true)
            .output();
        let out = within(STEP, &command, run).await.expect("sh");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let actual: Vec<&str> = stdout.lines().collect();
        let agree = actual.len() == expected.len()
            && expected.iter().zip(&actual).all(|(e, a)| matches(e, a));
        assert!(
            agree,
            "$ {command}\nexpected:\n{}\ngot:\n{stdout}",
            expected.join("\n")
        );
        if let Some(page) = page_for_events {
            drop(page.await.unwrap());
        }
    }
    // What the examples sent the page, in order, and the kick that ended it.
    for text in [
        "hello",
        r#"{"uid":42,"message":"one"}"#,
        "maintenance at 22:00",
    ] {
        assert_eq!(page.recv_text().await, text);
    }
    let closed = page.closed(Duration::from_secs(5)).await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (Some(4000), "account suspended")
    );
}

#[test]
fn the_example_matcher_matches() {
    assert!(matches("a...c", "abc"));
    assert!(matches("a...c...e", "abcde"));
    assert!(matches("abc", "abc"));
    assert!(!matches("abc", "abcd"));
    assert!(!matches("a...c", "abd"));
    assert!(matches("{\"x\":...}", "{\"x\":12}"));
}

/// Without a token, the API serves loopback clients as themselves only: a
/// request naming another host (a DNS-rebound page) or from another origin (a
/// cross-site form in a browser on the same machine) is refused with 403.
/// (Issue 22: any loopback request was served, whatever its Host or Origin.)
#[tokio::test]
async fn without_a_token_a_page_of_another_site_cannot_drive_the_api() {
    let pushd = Pushd::start(&["--http-listen", "127.0.0.1:0"]).await;
    let _page = pushd.bound_client("42").await;
    let url = format!("http://{}/v1/kick/42", pushd.listener("http"));
    let client = Http::new();
    let cases: [&[(&str, &str)]; 3] = [
        &[("Host", "evil.example")],
        &[("Origin", "http://evil.example")],
        &[("Origin", "null")],
    ];
    for headers in cases {
        let response = client.send_with("POST", &url, headers, "").await;
        assert_eq!(response.status(), 403, "{headers:?}");
    }
    assert!(pushd.is_online("42").await, "nobody was kicked");
    let (status, _) = client.call("POST", &url, None, "").await;
    assert_eq!(status, 200, "a local backend still is served");
}

/// SPEC "Deploys": `GET /v1/health` and `GET /v1/ready` answer without the
/// API token, on the API listener and on the metrics one; a cluster node that
/// has not joined (its Redis is not there) is healthy but not ready.
#[tokio::test]
async fn health_and_ready_answer_without_the_token_on_every_listener() {
    let dir = tempfile::tempdir().unwrap();
    let pushd = pushd_with_api(dir.path(), &["--metrics-listen", "127.0.0.1:0"]).await;
    let client = client();
    for listener in [pushd.listener("http"), pushd.listener("metrics")] {
        let (status, body) = call(
            &client,
            "GET",
            &format!("http://{listener}/v1/health"),
            None,
            "",
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let health: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(health["status"], "ok");
        let (status, body) = call(
            &client,
            "GET",
            &format!("http://{listener}/v1/ready"),
            None,
            "",
        )
        .await;
        assert_eq!((status, body.trim()), (200, r#"{"ready":true}"#));
    }
    // The probes open nothing else: the API still wants its token.
    let api = pushd.listener("http");
    let (status, _) = call(&client, "GET", &format!("http://{api}/v1/stats"), None, "").await;
    assert_eq!(status, 401);

    let socket = dir.path().join("lonely.sock");
    let missing = format!(
        "redis+unix://{}",
        dir.path().join("no-redis.sock").display()
    );
    let lonely = Pushd::start_at(
        &socket,
        &["--cluster", &missing, "--http-listen", "127.0.0.1:0"],
    )
    .await;
    let lonely_api = lonely.listener("http");
    let (status, _) = call(
        &client,
        "GET",
        &format!("http://{lonely_api}/v1/health"),
        None,
        "",
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = call(
        &client,
        "GET",
        &format!("http://{lonely_api}/v1/ready"),
        None,
        "",
    )
    .await;
    assert_eq!(
        (status, body.trim()),
        (503, r#"{"ready":false,"reason":"joining the cluster"}"#)
    );
}

/// SPEC "Groups", over HTTP: add (a TTL refreshed), the bulk change, members,
/// the list, a uid's groups, send (404 with the same body when nothing took
/// it), remove and drop with their 404s, percent-encoded names, a limit's 429,
/// and a wrong method's 405 naming the allowed ones.
#[tokio::test]
async fn groups_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let pushd = pushd_with_api(dir.path(), &["--max-groups-per-uid", "2"]).await;
    let api = format!("http://{}/v1", pushd.listener("http"));
    let client = client();
    let t = Some(TOKEN);
    let mut page = pushd.bound_client("a b").await;
    let json = |body: &str| -> serde_json::Value { serde_json::from_str(body).unwrap() };

    let member = format!("{api}/groups/team%207/members/a%20b");
    let (status, body) = call(&client, "PUT", &member, t, "").await;
    assert_eq!(
        (status, json(&body)),
        (200, serde_json::json!({"added": true}))
    );
    let (status, body) = call(&client, "PUT", &member, t, r#"{"ttl": "1h"}"#).await;
    assert_eq!(
        (status, json(&body)),
        (200, serde_json::json!({"added": false}))
    );
    let bulk = format!("{api}/groups/team%207/members");
    let (status, body) = call(
        &client,
        "POST",
        &bulk,
        t,
        r#"{"add": ["c", "d"], "remove": ["d"]}"#,
    )
    .await;
    assert_eq!(
        (status, json(&body)),
        (200, serde_json::json!({"added": 2, "removed": 1}))
    );

    let (status, body) = call(&client, "GET", &format!("{api}/groups/team%207"), t, "").await;
    let group = json(&body);
    assert_eq!(
        (status, &group["group"]),
        (200, &serde_json::json!("team 7"))
    );
    assert_eq!(group["members"][0]["uid"], "a b");
    assert_eq!(group["members"][0]["connections"], 1);
    assert!(group["members"][0]["expires_ms"].as_u64().unwrap() > 3_500_000);
    assert_eq!(
        group["members"][1],
        serde_json::json!({"uid": "c", "connections": 0, "expires_ms": null})
    );
    let (_, body) = call(&client, "GET", &format!("{api}/groups"), t, "").await;
    assert_eq!(
        json(&body),
        serde_json::json!([{"group": "team 7", "members": 2, "online": 1}])
    );
    let (_, body) = call(&client, "GET", &format!("{api}/uids/a%20b/groups"), t, "").await;
    assert_eq!(
        json(&body),
        serde_json::json!({"uid": "a b", "groups": ["team 7"]})
    );

    let send = format!("{api}/groups/team%207/send");
    let (status, body) = call(&client, "POST", &send, t, "hello").await;
    assert_eq!(
        (status, json(&body)),
        (
            200,
            serde_json::json!({"delivered": 1, "queued": 1, "members": 2})
        )
    );
    assert_eq!(page.recv_text().await, "hello");
    let nobody = format!("{api}/groups/nobody/send?transient=1");
    let (status, body) = call(&client, "POST", &nobody, t, "x").await;
    assert_eq!(
        (status, json(&body)),
        (
            404,
            serde_json::json!({"delivered": 0, "queued": 0, "members": 0})
        )
    );

    // A limit: a uid in two groups already.
    call(
        &client,
        "PUT",
        &format!("{api}/groups/second/members/a%20b"),
        t,
        "",
    )
    .await;
    let (status, body) = call(
        &client,
        "PUT",
        &format!("{api}/groups/third/members/a%20b"),
        t,
        "",
    )
    .await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("--max-groups-per-uid"), "{body}");

    let (status, allow) = {
        let response = client.send("PATCH", &member, t, "").await;
        (
            response.status().as_u16(),
            response.headers()["allow"].to_str().unwrap().to_owned(),
        )
    };
    assert_eq!((status, allow.as_str()), (405, "PUT, DELETE"));
    let (status, _) = call(&client, "DELETE", &member, t, "").await;
    assert_eq!(status, 200);
    let (status, _) = call(&client, "DELETE", &member, t, "").await;
    assert_eq!(status, 404);
    let (status, body) = call(&client, "DELETE", &format!("{api}/groups/team%207"), t, "").await;
    assert_eq!(
        (status, json(&body)),
        (200, serde_json::json!({"removed": 1}))
    );
    let (status, _) = call(&client, "DELETE", &format!("{api}/groups/team%207"), t, "").await;
    assert_eq!(status, 404);
    let (status, _) = call(&client, "GET", &format!("{api}/groups/team%207"), t, "").await;
    assert_eq!(status, 404);
    let (status, _) = call(&client, "GET", &format!("{api}/groups"), None, "").await;
    assert_eq!(status, 401, "behind the token like every route");
}
