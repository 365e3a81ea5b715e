//! SPEC "Server-Sent Events for pages": on the WebSocket listener, a `GET` that accepts
//! `text/event-stream` is a page's connection, bound to `?uid=` (or `?token=`), resumable
//! from `Last-Event-ID`, listed, kicked and counted like a WebSocket. Read here with a plain
//! TCP client, byte for byte.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::harness::{Pushd, STEP, within};

/// A page's event stream, read as the bytes come.
struct Stream {
    reader: BufReader<TcpStream>,
    /// The status line and headers.
    head: String,
}

/// One event: its fields as they came (`id`, `event`, `data` lines joined by `\n`).
#[derive(Debug, Default, PartialEq, Eq)]
struct Event {
    id: Option<String>,
    event: Option<String>,
    data: String,
}

impl Stream {
    /// `GET path` with `headers`, accepting `text/event-stream`.
    async fn open(ws: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Stream {
        let mut tcp = within(STEP, "connect", TcpStream::connect(ws))
            .await
            .unwrap();
        let mut request =
            format!("GET {path} HTTP/1.1\r\nHost: {ws}\r\nAccept: text/event-stream\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut reader = BufReader::new(tcp);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            let n = within(STEP, "the response head", reader.read_line(&mut line))
                .await
                .unwrap();
            if n == 0 || line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        Stream { reader, head }
    }

    fn status(&self) -> u16 {
        self.head
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap()
    }

    /// The next event (comments skipped); `None` at the end of the stream.
    async fn next(&mut self) -> Option<Event> {
        within(STEP, "an event", async {
            let mut event = Event::default();
            let mut lines = Vec::new();
            loop {
                let mut line = String::new();
                if self.reader.read_line(&mut line).await.unwrap() == 0 {
                    return None;
                }
                let line = line.trim_end_matches('\n');
                if line.is_empty() {
                    if lines.is_empty() && event == Event::default() {
                        continue;
                    }
                    event.data = lines.join("\n");
                    return Some(event);
                }
                if line.starts_with(':') {
                    continue;
                }
                let (field, value) = line.split_once(": ").unwrap_or((line, ""));
                match field {
                    "id" => event.id = Some(value.to_owned()),
                    "event" => event.event = Some(value.to_owned()),
                    "data" => lines.push(value.to_owned()),
                    other => panic!("unexpected field {other:?}"),
                }
            }
        })
        .await
    }
}

/// A page's stream gets every push as one event (its id, a `data:` line per line), is
/// listed as `sse` and told so in presence events, counts as online, and a kick ends it
/// with `event: close` (4000 and the reason) and the end of the response.
#[tokio::test]
async fn a_page_stream_gets_pushes_as_events_is_listed_and_kicked() {
    let args = ["--ping-interval", "200ms", "--http-listen", "127.0.0.1:0"];
    let pushd = Pushd::start(&args).await;
    let mut presence = crate::http::Sse::open(&pushd, "?type=connect,disconnect").await;
    let mut page = Stream::open(pushd.ws, "/?uid=42", &[]).await;
    assert_eq!(page.status(), 200, "{}", page.head);
    let head = page.head.to_ascii_lowercase();
    for header in [
        "content-type: text/event-stream",
        "cache-control: no-store",
        "x-accel-buffering: no",
        "access-control-allow-origin: *",
    ] {
        assert!(head.contains(header), "{header} missing: {}", page.head);
    }
    pushd.wait_connections("42", 1).await;
    let list = pushd.ctl(&["--json", "list"]).await.json();
    assert_eq!(list[0]["connections"][0]["kind"], "sse", "{list}");
    let connect = presence.next().await;
    assert_eq!(
        (&connect["type"], &connect["kind"]),
        (&"connect".into(), &"sse".into())
    );
    let mut backend = pushd.text_client().await;
    let line = r#"{"uid":42,"text":"hi"}"#;
    assert_eq!(backend.request(line).await, "ok");
    let first = page.next().await.unwrap();
    assert_eq!(first.data, line);
    assert!(
        first.id.as_deref().is_some_and(|id| id.contains('-')),
        "{first:?}"
    );
    assert_eq!(
        pushd.ctl(&["send", "42", "one\ntwo\r\nthree"]).await.status,
        0
    );
    assert_eq!(page.next().await.unwrap().data, "one\ntwo\nthree");
    // Pings are comments: a second of them changes nothing the page sees.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        pushd.ctl(&["kick", "42", "--reason", "bye"]).await.status,
        0
    );
    let close = page.next().await.unwrap();
    assert_eq!(close.event.as_deref(), Some("close"));
    let close: serde_json::Value = serde_json::from_str(&close.data).unwrap();
    assert_eq!(close, serde_json::json!({"code": 4000, "reason": "bye"}));
    assert_eq!(page.next().await, None, "the response ends");
    pushd.wait_connections("42", 0).await;
    let gone = presence.next().await;
    assert_eq!(
        (&gone["reason"], &gone["kind"]),
        (&"kicked".into(), &"sse".into())
    );
}

/// `Last-Event-ID` (what a browser sends when it reconnects by itself) resumes exactly
/// like `pushd.v2`: what came after it, queued or delivered; an id that places nothing is
/// a gap, told as `event: gap` before everything kept.
#[tokio::test]
async fn last_event_id_resumes_and_an_unknown_one_is_a_gap() {
    let pushd = Pushd::start(&[]).await;
    let mut page = Stream::open(pushd.ws, "/?uid=7", &[]).await;
    pushd.wait_connections("7", 1).await;
    assert_eq!(pushd.ctl(&["send", "7", "a"]).await.status, 0);
    assert_eq!(pushd.ctl(&["send", "7", "b"]).await.status, 0);
    let a = page.next().await.unwrap();
    let b = page.next().await.unwrap();
    drop(page);
    pushd.wait_connections("7", 0).await;
    let sent = pushd.ctl(&["send", "7", "c"]).await;
    assert!(sent.stdout.contains("queued"), "{sent:?}");
    let last = a.id.clone().unwrap();
    let mut back = Stream::open(pushd.ws, "/?uid=7", &[("Last-Event-ID", &last)]).await;
    assert_eq!(
        back.next().await.unwrap(),
        b,
        "what came after it, with its id"
    );
    assert_eq!(back.next().await.unwrap().data, "c");
    drop(back);
    pushd.wait_connections("7", 0).await;
    let mut lost = Stream::open(pushd.ws, "/?uid=7&since=1-1", &[]).await;
    assert_eq!(lost.next().await.unwrap().event.as_deref(), Some("gap"));
}

/// A banned uid's page is refused with 403; another origin than `--allow-origin`'s with
/// 403; the allowed one gets its CORS answer; with `--auth token` a uid alone is refused.
#[tokio::test]
async fn bans_origins_and_tokens_hold_for_page_streams() {
    let pushd = Pushd::start(&["--allow-origin", "https://app.example"]).await;
    let origin = [("Origin", "https://app.example")];
    let page = Stream::open(pushd.ws, "/?uid=u1", &origin).await;
    assert_eq!(page.status(), 200);
    assert!(
        page.head
            .contains("Access-Control-Allow-Origin: https://app.example"),
        "{}",
        page.head
    );
    // A stream is bound by its URL, never by cookies: no credentialed reads for other sites.
    assert!(
        !page.head.contains("Access-Control-Allow-Credentials"),
        "{}",
        page.head
    );
    pushd.wait_connections("u1", 1).await;
    let other = Stream::open(pushd.ws, "/?uid=u2", &[("Origin", "https://evil.example")]).await;
    assert_eq!(other.status(), 403);
    assert_eq!(pushd.ctl(&["kick", "u1", "--ban", "1h"]).await.status, 0);
    let banned = Stream::open(pushd.ws, "/?uid=u1", &origin).await;
    assert_eq!(banned.status(), 403);
    let nameless = Stream::open(pushd.ws, "/", &origin).await;
    assert_eq!(nameless.status(), 400);

    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(
        &secret,
        "a secret of at least thirty-two bytes, for tests only",
    )
    .unwrap();
    let tokens = Pushd::start(&[
        "--auth",
        "token",
        "--auth-secret-file",
        secret.to_str().unwrap(),
    ])
    .await;
    let uid_alone = Stream::open(tokens.ws, "/?uid=42", &[]).await;
    assert_eq!(uid_alone.status(), 401);
    let now = pushd_proto::token::now_secs();
    let token = pushd_proto::token::mint(
        b"a secret of at least thirty-two bytes, for tests only",
        "42",
        now + 600,
    )
    .unwrap();
    let signed = Stream::open(tokens.ws, &format!("/?token={token}"), &[]).await;
    assert_eq!(signed.status(), 200);
    tokens.wait_connections("42", 1).await;
}
