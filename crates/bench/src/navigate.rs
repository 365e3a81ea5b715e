//! `navigate`: pages that reconnect all the time (a navigation, a reload) while
//! pushes flow, as raw clients or as `pushd.v2` clients that resume with
//! `?since=`; counts what was lost and what arrived twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::promise::sequence;
use crate::report::Report;
use crate::{Common, clients};

/// Parameters of `navigate`.
#[derive(Debug, Clone, Copy)]
pub struct NavigateParams {
    /// Pages, one uid each.
    pub pages: usize,
    /// Messages in all, spread over the pages' uids.
    pub messages: u64,
    /// Total push rate in messages/s.
    pub rate: f64,
    /// How long a page stays before it navigates.
    pub stay: Duration,
    /// How long the next page takes to load.
    pub gap: Duration,
    /// Speak `pushd.v2` and resume with `since`.
    pub v2: bool,
}

/// What a reply or a receipt says about message `s`: bits 0–1 the reply
/// (1 ok, 2 queued, 3 fail), bits 2–7 how many times it arrived.
struct Book(Vec<AtomicU8>);

const OK: u8 = 1;
const QUEUED: u8 = 2;
const FAIL: u8 = 3;

impl Book {
    fn reply(&self, s: u64, reply: u8) {
        self.0[s as usize].fetch_or(reply, Ordering::Relaxed);
    }

    fn arrived(&self, s: u64) {
        self.0[s as usize].fetch_add(4, Ordering::Relaxed);
    }
}

/// One page after another for uid `i`, until `done` and a last page saw nothing new.
async fn pages(
    common: &Common,
    i: usize,
    p: NavigateParams,
    book: &Book,
    done: &AtomicBool,
) -> anyhow::Result<u64> {
    let uid = clients::uid(&common.uid_prefix, i);
    let mut since: Option<String> = None;
    let mut visits = 0u64;
    loop {
        let finishing = done.load(Ordering::Relaxed);
        let query = since
            .as_ref()
            .filter(|_| p.v2)
            .map(|s| format!("?since={s}"))
            .unwrap_or_default();
        let mut request = format!("ws://{}/{query}", common.ws).into_client_request()?;
        if p.v2 {
            request
                .headers_mut()
                .insert("Sec-WebSocket-Protocol", "pushd.v2".parse()?);
        }
        let (mut ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .context("page connect")?;
        ws.send(Message::text(uid.clone())).await?;
        visits += 1;
        // The last page stays until nothing more comes.
        let stay = if finishing {
            Duration::from_millis(500)
        } else {
            p.stay
        };
        let _ = tokio::time::timeout(stay, async {
            while let Some(Ok(frame)) = ws.next().await {
                let Message::Text(text) = frame else { continue };
                let payload = match (p.v2, text.split_once(' ')) {
                    (true, Some((id, payload))) => {
                        since = Some(id.to_owned());
                        payload
                    }
                    _ => text.as_str(),
                };
                if let Some(s) = sequence(payload) {
                    book.arrived(s);
                }
            }
        })
        .await;
        if finishing {
            return Ok(visits);
        }
        // Half the pages leave with a close frame (a navigation), half without (a crash).
        if visits.is_multiple_of(2) {
            let _ = ws.close(None).await;
        }
        drop(ws);
        tokio::time::sleep(p.gap).await;
    }
}

/// Pushes the messages at the rate, one line each, and books every reply.
async fn pusher(common: &Common, p: NavigateParams, book: &Book) -> anyhow::Result<()> {
    let stream = TcpStream::connect(common.text).await.context("text port")?;
    stream.set_nodelay(true)?;
    let (mut read, mut write) = stream.into_split();
    let replies = async {
        let mut input = Vec::new();
        let mut next = 0u64;
        while next < p.messages {
            if read.read_buf(&mut input).await? == 0 {
                bail!("text port closed after {next} replies");
            }
            let mut consumed = 0;
            while let Some(end) = input[consumed..].iter().position(|&b| b == b'\n') {
                let reply = match &input[consumed..consumed + end] {
                    b"ok" => OK,
                    b"queued" => QUEUED,
                    _ => FAIL,
                };
                book.reply(next, reply);
                next += 1;
                consumed += end + 1;
            }
            input.drain(..consumed);
        }
        anyhow::Ok(())
    };
    let writes = async {
        let start = Instant::now();
        for s in 0..p.messages {
            let due = start + Duration::from_secs_f64(s as f64 / p.rate);
            tokio::time::sleep_until(due.into()).await;
            let uid = clients::uid(&common.uid_prefix, (s % p.pages as u64) as usize);
            write
                .write_all(format!("{{\"uid\":\"{uid}\",\"s\":{s}}}\n").as_bytes())
                .await?;
        }
        anyhow::Ok(())
    };
    let (replies, writes) = tokio::join!(replies, writes);
    replies.and(writes)
}

/// `navigate`: lost and duplicated messages for pages that keep reconnecting.
pub async fn navigate(common: &Common, p: NavigateParams) -> anyhow::Result<Report> {
    let mut report = Report::new(
        "navigate",
        json!({
            "pages": p.pages, "messages": p.messages, "rate": p.rate, "v2": p.v2,
            "stay_ms": p.stay.as_millis() as u64, "gap_ms": p.gap.as_millis() as u64,
        }),
    );
    let book = Arc::new(Book((0..p.messages).map(|_| AtomicU8::new(0)).collect()));
    let done = Arc::new(AtomicBool::new(false));
    let visitors: Vec<_> = (0..p.pages)
        .map(|i| {
            let (common, book, done) = (common.clone(), book.clone(), done.clone());
            tokio::spawn(async move { pages(&common, i, p, &book, &done).await })
        })
        .collect();
    tokio::time::timeout(common.timeout, pusher(common, p, &book))
        .await
        .context("pushing timed out")??;
    done.store(true, Ordering::Relaxed);
    let mut visits = 0;
    for visitor in visitors {
        visits += tokio::time::timeout(common.timeout, visitor)
            .await
            .context("pages timed out")???;
    }
    let (mut ok, mut queued, mut fail, mut lost_ok, mut lost_queued, mut twice) =
        (0, 0, 0, 0, 0, 0);
    for entry in book.0.iter() {
        let entry = entry.load(Ordering::Relaxed);
        let (reply, arrived) = (entry & 3, entry >> 2);
        match reply {
            OK => ok += 1,
            QUEUED => queued += 1,
            _ => fail += 1,
        }
        if arrived == 0 && reply == OK {
            lost_ok += 1;
        }
        if arrived == 0 && reply == QUEUED {
            lost_queued += 1;
        }
        if arrived > 1 {
            twice += 1;
        }
    }
    report.add("page visits", visits as f64, "");
    report.add("ok", ok as f64, "");
    report.add("queued", queued as f64, "");
    report.add("fail", fail as f64, "");
    report.add("lost (ok, never arrived)", lost_ok as f64, "");
    report.add("lost (queued, never arrived)", lost_queued as f64, "");
    report.add("lost in all", (lost_ok + lost_queued + fail) as f64, "");
    report.add("duplicated", twice as f64, "");
    Ok(report)
}
