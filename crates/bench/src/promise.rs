//! `promise`: pushd's promise checked under faults. pushbench starts pushd
//! itself (single node), pages of many uids navigate (`pushd.v2` pages
//! resume with `?since=`, raw pages do not), numbered pushes flow through the
//! text port and the HTTP API (`POST /v1/push`) in turn, and pushd is stopped
//! now and then (SIGTERM, or SIGKILL) and
//! started again on the same addresses. At the end every push is accounted for:
//!
//! - answered `fail`, or not answered (pushd was down): nothing was promised;
//! - answered `ok` or `queued` and received: delivered; received twice on one
//!   page visit, or on a later visit that had not been told `!gap`: duplicated;
//!   received on one visit after a push whose answer came before it was even
//!   sent: out of order;
//! - answered `ok` or `queued` and never received: excused only by a `!gap`
//!   that one of its uid's pages got after the push was sent and before that
//!   page read a push surely newer (one sent after this one's answer came);
//!   otherwise lost silently.
//!
//! The rules are written down in docs/RELIABILITY.md. `pushd.v2` pages must
//! show no silent loss, no duplicate and nothing out of order (the exit status
//! says so); raw pages' losses are counted and explained (a push written to a
//! page as it left, which no client can resume).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::report::Report;

/// Parameters of `promise`.
#[derive(Debug, Clone)]
pub struct PromiseParams {
    /// The pushd binary to start.
    pub pushd: PathBuf,
    /// Uids, one page at a time each.
    pub uids: usize,
    /// Every this many uids, one has raw pages; the others speak `pushd.v2`.
    pub raw_every: usize,
    /// How long the run pushes.
    pub duration: Duration,
    /// Pushes per second, in all.
    pub rate: f64,
    /// A fault this often (SIGTERM and SIGKILL in turn); zero for none.
    pub fault_every: Duration,
    /// How long a page stays before it leaves.
    pub stay: Duration,
    /// pushd's `--mailbox-ttl`; every seventh visit of a page is followed by
    /// an absence twice as long, so that what waited for it expires.
    pub mailbox_ttl: Duration,
}

/// One push as the backend saw it.
#[derive(Debug, Clone, Copy)]
struct Sent {
    at: Instant,
    /// When its answer came, and what it was (`None`: no answer).
    answer: Option<(Instant, Answer)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Ok,
    Queued,
    Fail,
}

/// What a page got, in order.
#[derive(Debug, Clone, Copy)]
enum Got {
    Push(u64),
    Gap,
}

/// Everything one uid saw: its pushes, by number, and its pages' receipts.
#[derive(Debug, Default)]
struct Uid {
    sent: HashMap<u64, Sent>,
    /// Per page visit, what it got and when.
    visits: Vec<Vec<(Instant, Got)>>,
    /// Per page visit, when it bound and whether it resumed (had a `since`).
    starts: Vec<(Instant, bool)>,
}

/// The uids' books, shared by the pages and the pusher.
type Books = Arc<Vec<Mutex<Uid>>>;

/// pushd, started and restarted on the same addresses.
struct Daemon {
    binary: PathBuf,
    args: Vec<String>,
    child: Child,
}

impl Daemon {
    /// Starts pushd on free ports; returns it with its WebSocket, text and HTTP addresses.
    async fn start(
        binary: &Path,
        dir: &Path,
        mailbox_ttl: Duration,
    ) -> anyhow::Result<(Daemon, Addresses)> {
        let socket = dir.join("pushd.sock");
        let mut args: Vec<String> = [
            "--ws-listen",
            "127.0.0.1:0",
            "--text-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ]
        .map(String::from)
        .into();
        args.push("--mailbox-ttl".into());
        args.push(format!("{}ms", mailbox_ttl.as_millis()));
        args.push("--socket".into());
        args.push(socket.display().to_string());
        let (child, addresses) = spawn(binary, &args).await?;
        // Restarts come back on the same addresses.
        args[1] = addresses.ws.clone();
        args[3] = addresses.text.clone();
        args[5] = addresses.http.clone();
        let daemon = Daemon {
            binary: binary.to_owned(),
            args,
            child,
        };
        Ok((daemon, addresses))
    }

    /// Stops pushd with `signal` and starts it again.
    async fn restart(&mut self, signal: i32) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id() {
            // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
            #[allow(unsafe_code)]
            unsafe {
                libc::kill(pid as i32, signal);
            }
        }
        tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .context("pushd did not stop")??;
        let (child, _) = spawn(&self.binary, &self.args).await?;
        self.child = child;
        Ok(())
    }
}

/// Where pushd listens.
#[derive(Debug, Clone)]
struct Addresses {
    ws: String,
    text: String,
    http: String,
}

/// Spawns pushd with `args` and waits for its listening line: the child and
/// the addresses it reports.
async fn spawn(binary: &Path, args: &[String]) -> anyhow::Result<(Child, Addresses)> {
    let mut child = Command::new(binary)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let mut lines = BufReader::new(child.stderr.take().expect("piped")).lines();
    let field = |line: &str, key: &str| -> Option<String> {
        let rest = &line[line.find(key)? + key.len()..];
        Some(rest.split_whitespace().next()?.to_owned())
    };
    let listening = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(line) = lines.next_line().await? {
            if line.contains(" listening ") {
                return anyhow::Ok(line);
            }
        }
        bail!("pushd exited before it listened")
    })
    .await
    .context("pushd did not start")??;
    // Keep reading, so that pushd never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let addresses = Addresses {
        ws: field(&listening, "ws=").context("no ws= in the start line")?,
        text: field(&listening, "text=").context("no text= in the start line")?,
        http: field(&listening, "http=").context("no http= in the start line")?,
    };
    Ok((child, addresses))
}

/// The `s` field of a pushed line (after the `ID ` of a `pushd.v2` frame);
/// `navigate` reads its lines with it too.
pub fn sequence(payload: &str) -> Option<u64> {
    let rest = &payload[payload.find("\"s\":")? + 4..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// One page after another for uid `i` until `done`, then a last visit that
/// stays until nothing more comes.
async fn pages(
    ws: String,
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
        let Ok(mut request) =
            format!("ws://{ws}/{}", query.unwrap_or_default()).into_client_request()
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
            // pushd is down: try again soon.
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
            book.starts.push((Instant::now(), v2 && since.is_some()));
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

/// Pushes numbered lines at the rate for the duration, through the text port
/// and the HTTP API in turn, one request at a time, reconnecting while pushd
/// is down; books every push and its answer.
async fn pusher(addresses: Addresses, p: &PromiseParams, books: &Books) -> u64 {
    let start = Instant::now();
    let (mut text, mut api) = (None, None);
    let mut s = 0u64;
    while start.elapsed() < p.duration {
        let due = start + Duration::from_secs_f64(s as f64 / p.rate);
        tokio::time::sleep_until(due.into()).await;
        let i = (s % p.uids as u64) as usize;
        let line = format!("{{\"uid\":\"p{i}\",\"s\":{s}}}\n");
        let sent = Instant::now();
        let reply = if s.is_multiple_of(2) {
            push_over_text(&mut text, &addresses.text, line).await
        } else {
            push_over_http(&mut api, &addresses.http, line).await
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

/// Stops pushd (SIGTERM and SIGKILL in turn) every `every` and starts it again, until `done`.
async fn faults(daemon: &mut Daemon, every: Duration, done: &AtomicBool) -> anyhow::Result<u64> {
    let mut faults = 0u64;
    if every.is_zero() {
        return Ok(0);
    }
    while !done.load(Ordering::Relaxed) {
        tokio::time::sleep(every).await;
        if done.load(Ordering::Relaxed) {
            break;
        }
        let signal = if faults.is_multiple_of(2) {
            libc::SIGTERM
        } else {
            libc::SIGKILL
        };
        daemon.restart(signal).await?;
        faults += 1;
    }
    Ok(faults)
}

/// What the accounting found, for one kind of page.
#[derive(Debug, Default)]
struct Tally {
    promised: u64,
    delivered: u64,
    excused: u64,
    lost: u64,
    duplicated: u64,
    out_of_order: u64,
    gaps: u64,
}

/// Accounts for every push of one uid (see the module's rules); `ttl` is
/// pushd's `--mailbox-ttl`.
fn account(book: &Uid, ttl: Duration, tally: &mut Tally) {
    let promised = |s: &u64| {
        let sent = &book.sent[s];
        matches!(sent.answer, Some((_, Answer::Ok | Answer::Queued)))
    };
    // Where each push was received: (visit, index in the visit).
    let mut received: HashMap<u64, Vec<(usize, usize)>> = HashMap::new();
    for (v, visit) in book.visits.iter().enumerate() {
        for (k, (_, got)) in visit.iter().enumerate() {
            match got {
                Got::Push(s) => received.entry(*s).or_default().push((v, k)),
                Got::Gap => tally.gaps += 1,
            }
        }
    }
    // Surely newer: sent after `a`'s answer came.
    let newer = |a: &Sent, b: &Sent| a.answer.is_some_and(|(answered, _)| b.at > answered);
    for (s, sent) in &book.sent {
        if !promised(s) {
            continue;
        }
        tally.promised += 1;
        match received.get(s) {
            Some(places) => {
                tally.delivered += 1;
                // Twice on one visit, or again on a later visit not told `!gap` first.
                let mut twice = false;
                for pair in places.windows(2) {
                    let ((v1, _), (v2, k2)) = (pair[0], pair[1]);
                    let told = book.visits[v2][..k2]
                        .iter()
                        .any(|(_, g)| matches!(g, Got::Gap));
                    twice |= v1 == v2 || !told;
                }
                tally.duplicated += u64::from(twice);
            }
            None => {
                // A gap after it was sent, before the uid's pages (one after another,
                // each resuming where the last left) read anything surely newer.
                let all = book.visits.iter().flatten();
                let newer_at = (all.clone())
                    .filter_map(|(at, got)| match got {
                        Got::Push(q) if book.sent.get(q).is_some_and(|q| newer(sent, q)) => {
                            Some(*at)
                        }
                        _ => None,
                    })
                    .min();
                let told = all.into_iter().any(|(at, got)| {
                    matches!(got, Got::Gap) && *at > sent.at && newer_at.is_none_or(|n| *at <= n)
                });
                // Or nothing was promised to anyone: `queued`, and the next page
                // came after the TTL, a fresh one (no `since`: nothing to resume).
                let expired_unclaimed = matches!(sent.answer, Some((answered, Answer::Queued))
                    if book.starts.iter().find(|(at, _)| *at > sent.at)
                        .is_none_or(|(at, resumed)| *at > answered + ttl && !resumed));
                let excused = told || expired_unclaimed;
                if excused {
                    tally.excused += 1;
                } else {
                    tally.lost += 1;
                    if std::env::var_os("PUSHBENCH_PROMISE_DEBUG").is_some() {
                        eprintln!(
                            "lost: push {s} sent {:?} answered {:?}",
                            sent.at, sent.answer
                        );
                        for (v, visit) in book.visits.iter().enumerate() {
                            eprintln!("  visit {v}: {visit:?}");
                        }
                    }
                }
            }
        }
    }
    // Out of order: within a visit, a push read after one surely newer than it.
    for visit in &book.visits {
        let mut seen: Vec<&Sent> = Vec::new();
        for (_, got) in visit {
            if let Got::Push(s) = got
                && let Some(sent) = book.sent.get(s)
            {
                if seen.iter().any(|earlier| newer(sent, earlier)) {
                    tally.out_of_order += 1;
                }
                seen.push(sent);
            }
        }
    }
}

/// `promise`: the accounting of every push under faults.
pub async fn promise(p: PromiseParams) -> anyhow::Result<(Report, bool)> {
    let dir = std::env::temp_dir().join(format!("pushbench-promise-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (mut daemon, addresses) = Daemon::start(&p.pushd, &dir, p.mailbox_ttl).await?;
    let ws = addresses.ws.clone();
    let books: Books = Arc::new((0..p.uids).map(|_| Mutex::default()).collect());
    let done = Arc::new(AtomicBool::new(false));
    let raw = |i: usize| p.raw_every > 0 && i.is_multiple_of(p.raw_every);
    let visitors: Vec<_> = (0..p.uids)
        .map(|i| {
            let (ws, books, done) = (ws.clone(), books.clone(), done.clone());
            let times = (p.stay, 2 * p.mailbox_ttl);
            tokio::spawn(pages(ws, i, !raw(i), times, books, done))
        })
        .collect();
    let pushing = async {
        let pushes = pusher(addresses, &p, &books).await;
        done.store(true, Ordering::Relaxed);
        pushes
    };
    let (pushes, faults) = tokio::join!(pushing, faults(&mut daemon, p.fault_every, &done));
    let faults = faults?;
    for visitor in visitors {
        tokio::time::timeout(Duration::from_secs(60), visitor)
            .await
            .context("a page did not finish")??;
    }
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
    let (mut v2, mut raw_tally) = (Tally::default(), Tally::default());
    for (i, book) in books.iter().enumerate() {
        let book = book.lock().expect("not poisoned");
        account(
            &book,
            p.mailbox_ttl,
            if raw(i) { &mut raw_tally } else { &mut v2 },
        );
    }
    let mut report = Report::new(
        "promise",
        json!({
            "uids": p.uids, "raw_every": p.raw_every, "rate": p.rate,
            "duration_s": p.duration.as_secs_f64(), "fault_every_s": p.fault_every.as_secs_f64(),
            "stay_ms": p.stay.as_millis() as u64, "mailbox_ttl_ms": p.mailbox_ttl.as_millis() as u64,
        }),
    );
    report.add("pushes", pushes as f64, "");
    report.add("faults", faults as f64, "");
    for (kind, tally) in [("v2", &v2), ("raw", &raw_tally)] {
        report.add(
            format!("{kind}: promised (ok, queued)"),
            tally.promised as f64,
            "",
        );
        report.add(format!("{kind}: delivered"), tally.delivered as f64, "");
        report.add(
            format!("{kind}: excused (!gap, or expired unclaimed)"),
            tally.excused as f64,
            "",
        );
        report.add(format!("{kind}: lost silently"), tally.lost as f64, "");
        report.add(format!("{kind}: duplicated"), tally.duplicated as f64, "");
        report.add(
            format!("{kind}: out of order"),
            tally.out_of_order as f64,
            "",
        );
        report.add(format!("{kind}: !gap received"), tally.gaps as f64, "");
    }
    let kept = v2.lost == 0 && v2.duplicated == 0 && v2.out_of_order == 0;
    Ok((report, kept))
}
