//! The run's traffic: pages of every uid that come and go, to any node, and
//! the backend that pushes numbered lines through every node's text port and
//! HTTP API, booking every push and every receipt.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::PromiseParams;
use super::account::{Answer, Books, Got, Sent};
use super::servers::Addresses;

/// The `s` field of a pushed line (after the `ID ` of a `pushd.v2` frame);
/// `navigate` reads its lines with it too.
pub fn sequence(payload: &str) -> Option<u64> {
    let rest = &payload[payload.find("\"s\":")? + 4..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// One page after another for uid `i` until `done`, each on the next node of
/// `ws` (a page that resumes does so wherever it lands), then a last visit
/// that stays until nothing more comes.
pub(super) async fn pages(
    ws: Arc<Vec<String>>,
    i: usize,
    v2: bool,
    (stay, away): (Duration, Duration),
    books: Books,
    done: Arc<AtomicBool>,
) {
    let uid = format!("p{i}");
    let mut since: Option<String> = None;
    let mut visits = 0u64;
    loop {
        let last = done.load(Ordering::Relaxed);
        let query = since.as_ref().filter(|_| v2).map(|s| format!("?since={s}"));
        let node = &ws[(i + visits as usize) % ws.len()];
        let Ok(mut request) =
            format!("ws://{node}/{}", query.unwrap_or_default()).into_client_request()
        else {
            return;
        };
        if v2 {
            request.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                "pushd.v2".parse().expect("a header"),
            );
        }
        let Ok(Ok((mut socket, _))) = tokio::time::timeout(
            Duration::from_secs(5),
            tokio_tungstenite::connect_async(request),
        )
        .await
        else {
            // The node is down: try again soon (the next one).
            visits += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if socket.send(Message::text(uid.clone())).await.is_err() {
            continue;
        }
        visits += 1;
        let visit = {
            let mut book = books[i].lock().expect("not poisoned");
            book.visits.push(Vec::new());
            let node = (i + visits as usize - 1) % ws.len();
            book.starts
                .push((Instant::now(), v2 && since.is_some(), node));
            book.visits.len() - 1
        };
        let stay = if last { Duration::from_secs(2) } else { stay };
        let _ = tokio::time::timeout(stay, async {
            while let Some(Ok(frame)) = socket.next().await {
                let Message::Text(text) = frame else { continue };
                let at = Instant::now();
                let got = if v2 && text.as_str() == "!gap" {
                    Some(Got::Gap)
                } else {
                    let payload = match (v2, text.split_once(' ')) {
                        (true, Some((id, payload))) => {
                            since = Some(id.to_owned());
                            payload
                        }
                        _ => text.as_str(),
                    };
                    sequence(payload).map(Got::Push)
                };
                if let Some(got) = got {
                    books[i].lock().expect("not poisoned").visits[visit].push((at, got));
                }
            }
        })
        .await;
        if last {
            return;
        }
        // Half the visits end with a close frame (a navigation), half without (a crash).
        if visits.is_multiple_of(2) {
            let _ = socket.close(None).await;
        }
        drop(socket);
        // Now and then away for longer than what waits for the page is kept.
        let gone = if visits.is_multiple_of(7) {
            away
        } else {
            Duration::from_millis(20)
        };
        tokio::time::sleep(gone).await;
    }
}

/// An HTTP/1.1 connection to the API (keep-alive).
type Api = hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>;

/// Pushes `line` with `POST /v1/push`; the answer's line, or `None` when there
/// was no answer (the connection is then dropped, to be made again).
async fn push_over_http(api: &mut Option<Api>, http: &str, line: String) -> Option<String> {
    use http_body_util::BodyExt;
    if api.is_none() {
        let stream = TcpStream::connect(http).await.ok()?;
        let io = hyper_util::rt::TokioIo::new(stream);
        let (sender, connection) = hyper::client::conn::http1::handshake(io).await.ok()?;
        tokio::spawn(connection);
        *api = Some(sender);
    }
    let request = hyper::Request::post("/v1/push")
        .header("host", http)
        .body(http_body_util::Full::new(bytes::Bytes::from(line)))
        .ok()?;
    let asked = async {
        let response = api.as_mut()?.send_request(request).await.ok()?;
        let body = response.into_body().collect().await.ok()?.to_bytes();
        Some(String::from_utf8_lossy(&body).trim_end().to_owned())
    };
    let answer = tokio::time::timeout(Duration::from_secs(5), asked)
        .await
        .ok()
        .flatten();
    if answer.is_none() {
        *api = None;
    }
    answer
}

/// Pushes `line` on the text port; the answer's line, or `None` when there was
/// no answer (the connection is then dropped, to be made again).
async fn push_over_text(
    text: &mut Option<BufReader<TcpStream>>,
    addr: &str,
    line: String,
) -> Option<String> {
    if text.is_none() {
        *text = TcpStream::connect(addr).await.ok().map(BufReader::new);
    }
    let stream = text.as_mut()?;
    let mut reply = String::new();
    let asked = async {
        stream.get_mut().write_all(line.as_bytes()).await?;
        stream.read_line(&mut reply).await
    };
    match tokio::time::timeout(Duration::from_secs(5), asked).await {
        Ok(Ok(n)) if n > 0 => Some(reply.trim_end().to_owned()),
        _ => {
            *text = None;
            None
        }
    }
}

/// Pushes numbered lines at the rate for the duration, through every node in
/// turn and, on each, through the text port and the HTTP API in turn, one
/// request at a time, reconnecting while a node is down; books every push and
/// its answer.
pub(super) async fn pusher(nodes: &[Addresses], p: &PromiseParams, books: &Books) -> u64 {
    let start = Instant::now();
    let mut links: Vec<(Option<BufReader<TcpStream>>, Option<Api>)> =
        nodes.iter().map(|_| (None, None)).collect();
    let mut s = 0u64;
    while start.elapsed() < p.duration {
        let due = start + Duration::from_secs_f64(s as f64 / p.rate);
        tokio::time::sleep_until(due.into()).await;
        let i = (s % p.uids as u64) as usize;
        let line = format!("{{\"uid\":\"p{i}\",\"s\":{s}}}\n");
        let sent = Instant::now();
        let node = (s as usize) % nodes.len();
        let (text, api) = &mut links[node];
        let reply = if (s / nodes.len() as u64).is_multiple_of(2) {
            push_over_text(text, &nodes[node].text, line).await
        } else {
            push_over_http(api, &nodes[node].http, line).await
        };
        let answer = reply.map(|reply| {
            let kind = match reply.as_str() {
                "ok" => Answer::Ok,
                "queued" => Answer::Queued,
                _ => Answer::Fail,
            };
            (Instant::now(), kind)
        });
        books[i]
            .lock()
            .expect("not poisoned")
            .sent
            .insert(s, Sent { at: sent, answer });
        s += 1;
    }
    s
}
