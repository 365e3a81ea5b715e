//! The demo page and `clients/js/pushd-client.js` in a real headless Chromium,
//! driven through chromedriver (WebDriver) with fantoccini.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them). Without them
//! the test says so and passes, unless `PUSHD_REQUIRE_BROWSER=1` (set by `.ci/run`) makes
//! a missing browser a failure.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

use crate::harness::{Pushd, STEP, eventually, within};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Whether the browser is here; panics when it must be and is not.
fn browser_available() -> bool {
    let present = Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists();
    if !present {
        assert!(
            std::env::var_os("PUSHD_REQUIRE_BROWSER").is_none(),
            "PUSHD_REQUIRE_BROWSER is set but {CHROMIUM} or {CHROMEDRIVER} is missing \
             (apt-get install chromium chromium-driver)"
        );
        eprintln!("skipped: {CHROMIUM} or {CHROMEDRIVER} is missing");
    }
    present
}

/// Serves the repository's `examples/` and `clients/` folders over HTTP, as a web
/// server would serve the page; nothing else is reachable.
async fn serve_static(root: PathBuf) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let root = root.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut request = String::new();
                if BufReader::new(read).read_line(&mut request).await.is_err() {
                    return;
                }
                let path = request.split_whitespace().nth(1).unwrap_or("/");
                let path = path.split('?').next().unwrap_or("/");
                let allowed = (path.starts_with("/examples/") || path.starts_with("/clients/"))
                    && !path.contains("..");
                let body = if allowed {
                    std::fs::read(root.join(&path[1..])).ok()
                } else {
                    None
                };
                let response = match body {
                    Some(body) => {
                        let kind = if path.ends_with(".js") {
                            "text/javascript"
                        } else {
                            "text/html; charset=utf-8"
                        };
                        let mut head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
                             Cache-Control: no-store\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .into_bytes();
                        head.extend(body);
                        head
                    }
                    None => {
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_vec()
                    }
                };
                let _ = write.write_all(&response).await;
            });
        }
    });
    addr
}

/// chromedriver in its own process group, so that dropping it also ends the Chromium
/// it started, even when the test fails half-way.
struct Chromedriver {
    child: Child,
    port: u16,
}

impl Chromedriver {
    async fn start() -> Chromedriver {
        let mut child = Command::new(CHROMEDRIVER)
            .arg("--port=0")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn chromedriver");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let port = within(STEP, "chromedriver to start", async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(rest) = line.split("started successfully on port ").nth(1) {
                    return rest.trim_end_matches('.').parse::<u16>().unwrap();
                }
            }
            panic!("chromedriver exited before it started");
        })
        .await;
        // Keep draining its stdout so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Chromedriver { child, port }
    }

    /// A new headless Chromium session with a fresh profile in `profile`.
    async fn session(&self, profile: &Path) -> Client {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        within(
            Duration::from_secs(30),
            "a Chromium session",
            ClientBuilder::new(connector)
                .capabilities(capabilities)
                .connect(&format!("http://127.0.0.1:{}", self.port)),
        )
        .await
        .expect("WebDriver session")
    }
}

impl Drop for Chromedriver {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            // SAFETY: kill(2) on the process group we created for chromedriver.
            unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
        }
    }
}

/// What the page shows: its state and the messages received, in order.
async fn page(browser: &Client) -> (String, Vec<String>) {
    let shown = script(
        browser,
        "return [document.getElementById('state').dataset.state,
                 Array.from(document.querySelectorAll('#messages li'), li => li.textContent)];",
    )
    .await;
    let state = shown[0].as_str().unwrap().to_owned();
    let messages = shown[1]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_owned())
        .collect();
    (state, messages)
}

/// Runs `code` in the page and returns its result.
async fn script(browser: &Client, code: &str) -> Value {
    within(STEP, "a script in the page", browser.execute(code, vec![]))
        .await
        .expect("execute")
}

async fn wait_for_state(browser: &Client, state: &str) {
    eventually(STEP, &format!("the page to show {state}"), || async {
        page(browser).await.0 == state
    })
    .await;
}

async fn wait_for_message(browser: &Client, text: &str) {
    eventually(STEP, &format!("the page to show {text:?}"), || async {
        page(browser).await.1.iter().any(|m| m == text)
    })
    .await;
}

#[tokio::test]
async fn demo_page_binds_receives_reconnects_after_restart_and_stays_out_after_a_kick() {
    if !browser_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("pushd.sock");
    let web = serve_static(PathBuf::from(env!("CARGO_MANIFEST_DIR"))).await;
    let origin = format!("http://{web}");
    // A real browser sends a real Origin header: allow only the page's.
    let mut pushd = Pushd::start_at(&socket, &["--allow-origin", &origin]).await;
    let ws = pushd.ws.to_string();

    let driver = Chromedriver::start().await;
    let browser = driver.session(&dir.path().join("profile")).await;
    let uid = "browser-42";
    let url = format!(
        "{origin}/examples/browser/index.html?ws=ws://{ws}/&uid={uid}&minDelay=200&maxDelay=1000"
    );
    within(STEP, "the demo page to load", browser.goto(&url))
        .await
        .expect("goto");

    // The page binds its uid: the state says so and pushctl sees it.
    wait_for_state(&browser, "online").await;
    eventually(STEP, "pushctl online", || pushd.is_online(uid)).await;
    let list = pushd.ctl(&["list"]).await;
    assert_eq!(list.status, 0, "{list:?}");
    assert!(
        list.stdout.lines().any(|l| l.starts_with(uid)),
        "{}",
        list.stdout
    );

    // pushctl send and the text port both show up on the page.
    let sent = pushd.ctl(&["send", uid, "hello from pushctl"]).await;
    assert_eq!(sent.status, 0, "{sent:?}");
    wait_for_message(&browser, "hello from pushctl").await;
    let line = format!(r#"{{"uid":"{uid}","text":"from the backend"}}"#);
    assert_eq!(pushd.text_client().await.request(&line).await, "ok");
    wait_for_message(&browser, &line).await;

    // A restart (1001, then connection refused while down) makes the page come back alone.
    pushd.signal(libc::SIGTERM);
    assert_eq!(pushd.wait(STEP).await, Some(0));
    wait_for_state(&browser, "reconnecting").await;
    let pushd = Pushd::start_at(&socket, &["--ws-listen", &ws, "--allow-origin", &origin]).await;
    wait_for_state(&browser, "online").await;
    let events = script(
        &browser,
        "return document.getElementById('events').textContent;",
    )
    .await;
    assert!(
        events
            .as_str()
            .unwrap()
            .contains("reconnecting (close 1001"),
        "the page saw the shutdown close: {events}"
    );
    eventually(STEP, "the page back online", || pushd.is_online(uid)).await;
    let sent = pushd.ctl(&["send", uid, "after the restart"]).await;
    assert_eq!(sent.status, 0, "{sent:?}");
    wait_for_message(&browser, "after the restart").await;
    // The state file carried the uid's place across the restart: nothing was
    // lost, so the page resumed without a gap.
    let events = script(
        &browser,
        "return document.getElementById('events').textContent;",
    )
    .await;
    assert!(!events.as_str().unwrap().contains("gap"), "{events}");

    // A kick: the page shows it and does not come back: it holds no socket and
    // no reconnect timer, so nothing can bring it back.
    let kicked = pushd.ctl(&["kick", uid, "--reason", "bye"]).await;
    assert_eq!(kicked.status, 0, "{kicked:?}");
    wait_for_state(&browser, "kicked").await;
    let detail = script(
        &browser,
        "return document.getElementById('detail').textContent;",
    )
    .await;
    assert_eq!(detail, Value::from("close 4000 “bye”"));
    let opened = pushd.stats().await["counters"]["connections_opened"].clone();
    let halted = script(
        &browser,
        "return client._running === false && client._timer === null && client._socket === null;",
    )
    .await;
    assert_eq!(
        halted,
        Value::from(true),
        "a kicked client keeps nothing that reconnects"
    );
    assert_eq!(page(&browser).await.0, "kicked");
    assert!(!pushd.is_online(uid).await);
    assert_eq!(
        pushd.stats().await["counters"]["connections_opened"],
        opened,
        "the kicked page must not reconnect"
    );

    // The backoff: exponential from minDelay, capped at maxDelay, half of it jitter.
    let delays = script(
        &browser,
        "const d = (attempt, r) => PushdClient.backoffDelay(attempt, 1000, 30000, () => r);
         return [d(0, 0), d(0, 1), d(1, 0), d(3, 0.5), d(10, 0), d(10, 1), d(1e9, 1)];",
    )
    .await;
    assert_eq!(delays, json!([500, 1000, 1000, 6000, 15000, 30000, 30000]));

    let (_, messages) = page(&browser).await;
    assert_eq!(
        messages,
        ["hello from pushctl", line.as_str(), "after the restart"],
        "every push exactly once, in order"
    );
    within(STEP, "the browser to quit", browser.close())
        .await
        .expect("close session");
}

/// README "Resume for clients that keep their place": the browser client speaks
/// `pushd.v2`, keeps its place in sessionStorage and resumes after each reload.
#[tokio::test]
async fn the_browser_client_resumes_across_reloads_with_every_message_exactly_once() {
    if !browser_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let web = serve_static(PathBuf::from(env!("CARGO_MANIFEST_DIR"))).await;
    let origin = format!("http://{web}");
    let pushd = Pushd::start(&["--allow-origin", &origin]).await;
    let driver = Chromedriver::start().await;
    let browser = driver.session(&dir.path().join("profile")).await;
    let uid = "reloader";
    let url = format!(
        "{origin}/examples/browser/index.html?ws=ws://{}/&uid={uid}&minDelay=100&maxDelay=300",
        pushd.ws
    );
    within(STEP, "the demo page to load", browser.goto(&url))
        .await
        .expect("goto");
    wait_for_state(&browser, "online").await;
    eventually(STEP, "pushctl online", || pushd.is_online(uid)).await;

    const PUSHES: u64 = 150;
    let mut backend = pushd.text_client().await;
    let pushing = async {
        let mut replies = Vec::new();
        for i in 0..PUSHES {
            let line = format!(r#"{{"uid":"{uid}","seq":{i}}}"#);
            replies.push(backend.request(&line).await);
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        replies
    };
    let reloading = async {
        for pause in [250, 400, 300, 350] {
            tokio::time::sleep(Duration::from_millis(pause)).await;
            within(STEP, "a reload", browser.refresh())
                .await
                .expect("refresh");
            wait_for_state(&browser, "online").await;
        }
    };
    let (replies, ()) = tokio::join!(pushing, reloading);
    assert!(
        replies.iter().all(|r| r == "ok" || r == "queued"),
        "{replies:?}"
    );
    let last = format!(r#"{{"uid":"{uid}","seq":{}}}"#, PUSHES - 1);
    wait_for_message(&browser, &last).await;
    let (_, messages) = page(&browser).await;
    let seqs: Vec<u64> = messages
        .iter()
        .map(|m| {
            serde_json::from_str::<Value>(m).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(
        seqs,
        (0..PUSHES).collect::<Vec<_>>(),
        "every push exactly once, in order, across four reloads"
    );
    let events = script(
        &browser,
        "return document.getElementById('events').textContent;",
    )
    .await;
    assert!(!events.as_str().unwrap().contains("gap"), "{events}");
    let ids = script(
        &browser,
        "return Array.from(document.querySelectorAll('#messages li'), li => li.dataset.id);",
    )
    .await;
    assert!(
        ids.as_array()
            .unwrap()
            .iter()
            .all(|id| id.as_str().is_some_and(|id| id.contains('-'))),
        "the page shows each message's id: {ids}"
    );
    within(STEP, "the browser to quit", browser.close())
        .await
        .expect("close session");
}

/// The admin page at `/` of the HTTP API: it loads without the token, asks for it, then shows
/// the online uids (live: a uid that binds appears without a reload, from the event stream),
/// the groups, the counters and the events; its send and kick forms act on the pages. With
/// PUSHD_ADMIN_SCREENSHOT=PATH the test saves what it shows there (docs/admin-page.png).
#[tokio::test]
async fn the_admin_page_shows_presence_live_and_sends_and_kicks() {
    if !browser_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("http-token");
    let token = "an-operator-token-for-the-admin-page";
    std::fs::write(&token_file, token).unwrap();
    let args = [
        "--http-listen",
        "127.0.0.1:0",
        "--http-token-file",
        token_file.to_str().unwrap(),
    ];
    let pushd = Pushd::start(&args).await;
    let mut alice = pushd.bound_client("alice").await;
    assert_eq!(
        pushd
            .ctl(&["group", "add", "team-7", "alice", "carol"])
            .await
            .status,
        0
    );
    let driver = Chromedriver::start().await;
    let browser = driver.session(&dir.path().join("profile")).await;
    let url = format!("http://{}/", pushd.listener("http"));
    within(STEP, "the admin page to load", browser.goto(&url))
        .await
        .expect("goto");
    let shown = |code: &'static str| {
        let browser = &browser;
        async move { script(browser, code).await }
    };
    eventually(STEP, "the page to ask for the token", || async {
        shown("return !document.getElementById('login').hidden").await == json!(true)
    })
    .await;
    let typed = format!(
        "document.getElementById('token').value = {};
         document.getElementById('login').requestSubmit();",
        json!(token)
    );
    script(&browser, &typed).await;
    let uids = "return Array.from(document.querySelectorAll('#uids tr'), r => r.dataset.uid)";
    eventually(STEP, "alice listed", || async {
        shown(uids).await == json!(["alice"])
    })
    .await;
    let groups = "return Array.from(document.querySelectorAll('#groups tr'), r => r.textContent)";
    assert_eq!(
        shown(groups).await,
        json!(["team-721"]),
        "team-7, 2 members, 1 online"
    );
    eventually(STEP, "the events stream to be followed", || async {
        shown("return document.getElementById('status').textContent").await == json!("live")
    })
    .await;
    // Live: bob binds, and the page lists him from the event stream.
    let _bob = pushd.bound_client("bob").await;
    eventually(STEP, "bob listed without a reload", || async {
        shown(uids).await == json!(["alice", "bob"])
    })
    .await;
    let events = "return document.getElementById('events').textContent";
    assert!(
        shown(events)
            .await
            .as_str()
            .unwrap()
            .contains("connect bob"),
        "{}",
        shown(events).await
    );
    let counters = "return document.getElementById('counters').textContent";
    eventually(STEP, "the counters to follow", || async {
        shown(counters)
            .await
            .as_str()
            .unwrap()
            .contains("connections2")
    })
    .await;
    if let Some(path) = std::env::var_os("PUSHD_ADMIN_SCREENSHOT") {
        let png = within(STEP, "a screenshot", browser.screenshot())
            .await
            .unwrap();
        std::fs::write(path, png).unwrap();
    }

    let send = "const f = document.getElementById('send');
                f.uid.value = 'alice'; f.message.value = 'from the admin page'; f.requestSubmit();";
    script(&browser, send).await;
    assert_eq!(alice.recv_text().await, "from the admin page");
    let kick = "const f = document.getElementById('kick');
                f.uid.value = 'alice'; f.reason.value = 'bye'; f.requestSubmit();";
    script(&browser, kick).await;
    let closed = alice.closed(STEP).await;
    assert_eq!((closed.code, closed.reason.as_str()), (Some(4000), "bye"));
    eventually(STEP, "alice gone from the list", || async {
        shown(uids).await == json!(["bob"])
    })
    .await;
    let result = "return document.getElementById('result').textContent";
    assert_eq!(shown(result).await, json!(r#"kicked: {"kicked":1}"#));
}

/// Behind a proxy that refuses WebSocket (nginx answering 403 to any `Upgrade`, as some
/// corporate proxies do), the demo page falls back to Server-Sent Events after two failed
/// attempts, gets what waited for it and later pushes, and resumes across a reload with
/// every message once. Prints the time from page load to the first push shown.
#[tokio::test]
async fn behind_a_proxy_that_refuses_websocket_the_page_falls_back_to_sse_and_resumes() {
    if !browser_available() || !crate::proxies::nginx_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pushd = Pushd::start_at(&dir.path().join("pushd.sock"), &[]).await;
    let site = format!(
        "server {{\n  listen LISTEN;\n  location / {{\n    if ($http_upgrade) {{ return 403; }}\n    \
         proxy_pass http://{};\n    proxy_http_version 1.1;\n    \
         proxy_set_header Connection \"\";\n    proxy_read_timeout 1h;\n  }}\n}}\n",
        pushd.ws
    );
    let proxy = crate::proxies::Nginx::with_site("http", &site).await;
    let web = serve_static(PathBuf::from(env!("CARGO_MANIFEST_DIR"))).await;
    let uid = "behind-proxy";
    // Waiting for the page before it loads: the first push it will show.
    let sent = pushd.ctl(&["send", uid, "m0"]).await;
    assert!(sent.stdout.contains("queued"), "{sent:?}");

    let driver = Chromedriver::start().await;
    let browser = driver.session(&dir.path().join("profile")).await;
    let url = format!(
        "http://{web}/examples/browser/index.html?ws=ws://{}/&uid={uid}",
        proxy.addr
    );
    let loaded = std::time::Instant::now();
    within(STEP, "the demo page to load", browser.goto(&url))
        .await
        .expect("goto");
    wait_for_message(&browser, "m0").await;
    eprintln!(
        "fallback behind a proxy that refuses Upgrade: page load to first push shown in {} ms",
        loaded.elapsed().as_millis()
    );
    let transport = "return document.getElementById('transport').textContent";
    assert_eq!(script(&browser, transport).await, json!("sse"));
    wait_for_state(&browser, "online").await;
    let list = pushd.ctl(&["--json", "list"]).await.json();
    assert_eq!(list[0]["connections"][0]["kind"], "sse", "{list}");
    assert_eq!(pushd.ctl(&["send", uid, "m1"]).await.status, 0);
    wait_for_message(&browser, "m1").await;

    // Away (a reload): what is pushed meanwhile comes after it, once.
    within(STEP, "a blank page", browser.goto("about:blank"))
        .await
        .unwrap();
    eventually(STEP, "the page to be gone", || async {
        !pushd.is_online(uid).await
    })
    .await;
    assert_eq!(pushd.ctl(&["send", uid, "m2"]).await.status, 0);
    within(STEP, "the demo page again", browser.goto(&url))
        .await
        .expect("goto");
    wait_for_message(&browser, "m2").await;
    wait_for_state(&browser, "online").await;
    assert_eq!(pushd.ctl(&["send", uid, "m3"]).await.status, 0);
    wait_for_message(&browser, "m3").await;
    let (_, messages) = page(&browser).await;
    assert_eq!(messages, ["m0", "m1", "m2", "m3"], "each once, in order");
}
