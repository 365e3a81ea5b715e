//! `upgrade`: a live upgrade under load. N plain clients bound on `--ws`; a
//! stream of pushes at `--rate` through 4 text connections (each uid always on
//! the same one, so a uid's pushes are answered in order); after `--before`,
//! `pushctl upgrade` through `--socket`; pushing goes on for `--after`. A text
//! connection that the upgrade ends (after its requests in flight) is opened
//! again and what it had not had answered is sent again. Reports the closes
//! the clients saw, pushes answered `ok` and how many arrived once, in order,
//! twice or never, the longest pause in the whole stream of receipts (every
//! client together: about 50 µs apart at 20,000/s), the longest time from a
//! push's write to its receipt, and the hand-over's duration.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::Common;
use crate::clients::{open_plain, uid};
use crate::report::Report;

/// Text connections pushing.
const TEXT_CONNECTIONS: usize = 4;

/// Pushes written per text connection at a time (then their answers read).
const BATCH_EVERY: Duration = Duration::from_millis(10);

/// What the clients saw, all together.
#[derive(Default)]
struct Seen {
    /// Per client: the last seq received.
    last: Vec<AtomicU64>,
    received: AtomicU64,
    /// A seq other than the next one: a gap or a repeat.
    out_of_line: AtomicU64,
    closed: AtomicU64,
    /// Nanoseconds since the start: the last receipt, the longest pause
    /// between two receipts while measuring, the longest write-to-receipt.
    last_receipt: AtomicU64,
    longest_pause: AtomicU64,
    longest_latency: AtomicU64,
    measuring: AtomicBool,
}

/// Runs the scenario; see the module's comment.
pub async fn upgrade(
    common: &Common,
    clients: usize,
    rate: u64,
    before: Duration,
    after: Duration,
    binary: Option<std::path::PathBuf>,
) -> anyhow::Result<Report> {
    let epoch = Instant::now();
    let seen = Arc::new(Seen {
        last: (0..clients).map(|_| AtomicU64::new(0)).collect(),
        ..Seen::default()
    });
    open_plain(
        common.ws,
        &common.uid_prefix,
        clients,
        common.concurrency,
        common.timeout,
        |i, _, ws| {
            tokio::spawn(read(ws, i, seen.clone(), epoch));
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let pushers: Vec<_> = (0..TEXT_CONNECTIONS)
        .map(|k| {
            let uids: Vec<usize> = (k..clients).step_by(TEXT_CONNECTIONS).collect();
            let per_second = rate / TEXT_CONNECTIONS as u64;
            let (text, prefix, stop) = (common.text, common.uid_prefix.clone(), stop.clone());
            tokio::spawn(push(text, prefix, uids, per_second, stop, epoch))
        })
        .collect();
    tokio::time::sleep(before).await;
    seen.measuring.store(true, Ordering::Relaxed);
    seen.last_receipt.store(nanos(epoch), Ordering::Relaxed);
    let asked = Instant::now();
    let mut admin = pushd_ctl::client::Client::connect(&common.socket).await?;
    let request = pushd_proto::admin::Request::Upgrade {
        binary: binary.map(|b| b.to_string_lossy().into_owned()),
        drain_if_refused_ms: None,
    };
    let answer = admin
        .request_within(request, Duration::from_secs(120))
        .await?;
    let asked_took = asked.elapsed();
    let upgraded = match answer {
        pushd_proto::admin::Response::Upgraded(upgraded) => upgraded,
        other => bail!("the upgrade did not happen: {other:?}"),
    };
    tokio::time::sleep(after).await;
    seen.measuring.store(false, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let mut sent = vec![0u64; clients];
    let (mut ok, mut not_ok, mut resent) = (0, 0, 0);
    for pusher in pushers {
        let pushed = pusher.await??;
        for (i, n) in pushed.last {
            sent[i] = n;
        }
        (ok, not_ok, resent) = (
            ok + pushed.ok,
            not_ok + pushed.not_ok,
            resent + pushed.resent,
        );
    }
    // Everything answered `ok` arrives, or the limit.
    let until = Instant::now() + Duration::from_secs(15);
    let arrived =
        |seen: &Seen| (0..clients).all(|i| seen.last[i].load(Ordering::Relaxed) >= sent[i]);
    while !arrived(&seen) && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let missing: u64 = (0..clients)
        .map(|i| sent[i].saturating_sub(seen.last[i].load(Ordering::Relaxed)))
        .sum();

    let mut report = Report::new(
        "upgrade",
        json!({ "clients": clients, "rate": rate, "before_s": before.as_secs_f64(),
                "after_s": after.as_secs_f64() }),
    );
    let ms = |ns: u64| ns as f64 / 1e6;
    report.add(
        "connections handed over (pushd)",
        upgraded.connections as f64,
        "",
    );
    report.add(
        "hand-over, new process start to ready (pushd)",
        upgraded.took_ms as f64,
        "ms",
    );
    report.add(
        "pushctl upgrade round trip",
        asked_took.as_secs_f64() * 1e3,
        "ms",
    );
    report.add(
        "connections closed (clients)",
        seen.closed.load(Ordering::Relaxed) as f64,
        "",
    );
    report.add("pushes answered ok", ok as f64, "");
    report.add("pushes not answered ok", not_ok as f64, "");
    report.add(
        "pushes sent again after a text connection ended",
        resent as f64,
        "",
    );
    report.add(
        "pushes received",
        seen.received.load(Ordering::Relaxed) as f64,
        "",
    );
    report.add("answered ok, never received", missing as f64, "");
    report.add(
        "received out of line (twice or skipped)",
        seen.out_of_line.load(Ordering::Relaxed) as f64,
        "",
    );
    report.add(
        "longest pause between two receipts, all clients",
        ms(seen.longest_pause.load(Ordering::Relaxed)),
        "ms",
    );
    report.add(
        "longest write-to-receipt",
        ms(seen.longest_latency.load(Ordering::Relaxed)),
        "ms",
    );
    Ok(report)
}

fn nanos(epoch: Instant) -> u64 {
    epoch.elapsed().as_nanos() as u64
}

/// One client: checks that its pushes come one after the other.
async fn read<S>(
    mut ws: tokio_tungstenite::WebSocketStream<S>,
    i: usize,
    seen: Arc<Seen>,
    epoch: Instant,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(Ok(frame)) = ws.next().await {
        let Message::Text(text) = frame else {
            continue;
        };
        let now = nanos(epoch);
        // `{"s":SEQ,"t":NANOS}`
        let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let (Some(seq), Some(at)) = (value["s"].as_u64(), value["t"].as_u64()) else {
            continue;
        };
        if seen.last[i].swap(seq, Ordering::Relaxed) + 1 != seq {
            seen.out_of_line.fetch_add(1, Ordering::Relaxed);
        }
        seen.received.fetch_add(1, Ordering::Relaxed);
        seen.longest_latency
            .fetch_max(now.saturating_sub(at), Ordering::Relaxed);
        if seen.measuring.load(Ordering::Relaxed) {
            let previous = seen.last_receipt.swap(now, Ordering::Relaxed);
            seen.longest_pause
                .fetch_max(now.saturating_sub(previous), Ordering::Relaxed);
        }
    }
    seen.closed.fetch_add(1, Ordering::Relaxed);
}

/// What one pusher did: per client the last seq answered `ok`.
struct Pushed {
    last: Vec<(usize, u64)>,
    ok: u64,
    not_ok: u64,
    resent: u64,
}

/// Pushes to `uids` (client numbers) in turn, `per_second`, until `stop`.
async fn push(
    text: SocketAddr,
    prefix: String,
    uids: Vec<usize>,
    per_second: u64,
    stop: Arc<AtomicBool>,
    epoch: Instant,
) -> anyhow::Result<Pushed> {
    let mut next = vec![1u64; uids.len()];
    let mut pushed = Pushed {
        last: Vec::new(),
        ok: 0,
        not_ok: 0,
        resent: 0,
    };
    let per_batch = ((per_second as f64) * BATCH_EVERY.as_secs_f64()).ceil() as usize;
    let mut connection = None;
    let mut turn = 0usize;
    let mut pending: Vec<(usize, u64)> = Vec::new();
    let mut tick = tokio::time::interval(BATCH_EVERY);
    while !stop.load(Ordering::Relaxed) || !pending.is_empty() {
        tick.tick().await;
        if pending.is_empty() {
            for _ in 0..per_batch {
                let k = turn % uids.len();
                turn += 1;
                pending.push((k, next[k]));
                next[k] += 1;
            }
        }
        if connection.is_none() {
            let stream = TcpStream::connect(text).await.context("text port")?;
            let (read, write) = stream.into_split();
            connection = Some((BufReader::new(read), write));
        }
        let (read, write) = connection.as_mut().expect("just made");
        let mut out = String::new();
        for (k, seq) in &pending {
            let line = json!({ "uid": uid(&prefix, uids[*k]), "s": seq, "t": nanos(epoch) });
            out.push_str(&line.to_string());
            out.push('\n');
        }
        let mut answered = 0;
        if write.write_all(out.as_bytes()).await.is_ok() {
            let mut reply = String::new();
            while answered < pending.len() {
                reply.clear();
                match read.read_line(&mut reply).await {
                    Ok(n) if n > 0 => {
                        if reply.trim() == "ok" {
                            pushed.ok += 1;
                        } else {
                            pushed.not_ok += 1;
                        }
                        answered += 1;
                    }
                    _ => break,
                }
            }
        }
        pending.drain(..answered);
        if !pending.is_empty() {
            // The connection ended (an upgrade): what it did not answer, it did
            // not read; sent again, in order, on a new one.
            pushed.resent += pending.len() as u64;
            connection = None;
        }
    }
    pushed.last = (0..uids.len()).map(|k| (uids[k], next[k] - 1)).collect();
    Ok(pushed)
}
