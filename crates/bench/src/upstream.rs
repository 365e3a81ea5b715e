//! `upstream`: pages talking back (`--upstream`). P pages each send M text messages as fast
//! as they can; consumers count the `message` events, read from HTTP API event streams
//! (`--events ADDR`, repeated for several nodes, `--readers N` streams each) or received
//! as a webhook (`--webhook-port`: pushd must run with `--webhook
//! http://127.0.0.1:PORT/`). Reports the rate at which every consumer had every event,
//! server CPU per message (with --pid, and --also-pid for other nodes), Redis CPU per
//! event (with --redis-socket, in cluster mode), and what pushd counted as told and
//! dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::SinkExt;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

use crate::report::Report;
use crate::{Common, admin, clients, redis_info};

/// Where the events are read.
#[derive(Debug, Clone)]
pub enum Consumer {
    /// `GET /v1/events?type=message` on the HTTP API at each address (one
    /// stream per entry).
    Streams(Vec<std::net::SocketAddr>),
    /// A webhook receiver listening on this port.
    Webhook(u16),
}

pub async fn upstream(
    common: &Common,
    pages: usize,
    messages: usize,
    consumer: Consumer,
    rate: Option<f64>,
) -> anyhow::Result<Report> {
    let mut report = Report::new(
        "upstream",
        json!({ "pages": pages, "messages_per_page": messages, "rate": rate,
                "consumer": match &consumer {
                    Consumer::Streams(addrs) => json!({"sse": addrs.len()}),
                    Consumer::Webhook(_) => json!("webhook"),
                } }),
    );
    // One count per consumer.
    let mut received = Vec::new();
    match consumer {
        Consumer::Streams(addrs) => {
            for addr in addrs {
                let count = Arc::new(AtomicU64::new(0));
                let stream = events_stream(addr).await?;
                tokio::spawn(count_stream(stream, count.clone()));
                received.push(count);
            }
        }
        Consumer::Webhook(port) => {
            let count = Arc::new(AtomicU64::new(0));
            let listener = TcpListener::bind(("127.0.0.1", port)).await?;
            tokio::spawn(receive_webhooks(listener, count.clone()));
            received.push(count);
        }
    }
    let consumers = received.len() as u64;
    let fewest = || {
        received
            .iter()
            .map(|count| count.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
    };
    let sockets = clients::open_plain(
        common.ws,
        &common.uid_prefix,
        pages,
        common.concurrency,
        common.timeout,
        |_, _, ws| ws,
    )
    .await?;
    let mut admin = admin::connect(&common.socket).await?;
    admin::wait_for_uids(&mut admin, pages as u64, common.timeout).await?;
    let before = common.servers_cpu()?;
    let redis_before = common
        .redis_socket
        .as_deref()
        .map(redis_info::sample)
        .transpose()?;
    let counted_before = admin::stats(&mut admin).await?.counters;
    let started = Instant::now();
    // With a rate, each page sends one message every `pages / rate` seconds.
    let period = rate.map(|rate| Duration::from_secs_f64(pages as f64 / rate));
    let senders: Vec<_> = sockets
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                let Some(period) = period else {
                    for k in 0..messages {
                        ws.feed(Message::text(format!("m{k}"))).await?;
                    }
                    ws.flush().await?;
                    return anyhow::Ok(ws);
                };
                let mut ticks = tokio::time::interval(period);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                for k in 0..messages {
                    ticks.tick().await;
                    ws.send(Message::text(format!("m{k}")))
                        .await
                        .with_context(|| format!("page message {k}"))?;
                }
                anyhow::Ok(ws)
            })
        })
        .collect();
    let mut open = Vec::with_capacity(pages);
    for sender in senders {
        open.push(sender.await??);
    }
    let total = (pages * messages) as u64;
    let deadline = Instant::now() + common.timeout;
    // A consumer that fell too far behind lost events (counted by the node it reads):
    // once every message is judged, waiting ends when the consumers stop progressing.
    let mut progress = (0, Instant::now());
    let ended = loop {
        let counters = admin::stats(&mut admin).await?.counters;
        let judged = counters.upstream_messages + counters.upstream_dropped
            - counted_before.upstream_messages
            - counted_before.upstream_dropped;
        let told = counters.upstream_messages - counted_before.upstream_messages;
        let slowest = fewest();
        if judged >= total && slowest >= told {
            break Instant::now();
        }
        if slowest != progress.0 {
            progress = (slowest, Instant::now());
        } else if judged >= total && progress.1.elapsed() > Duration::from_secs(2) {
            break progress.1;
        }
        if Instant::now() > deadline {
            bail!(
                "{judged} of {total} messages judged, {slowest} of {told} received by the slowest consumer, in {:?}",
                common.timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let elapsed = (ended - started).as_secs_f64();
    let counters = admin::stats(&mut admin).await?.counters;
    let told = counters.upstream_messages - counted_before.upstream_messages;
    let dropped = counters.upstream_dropped - counted_before.upstream_dropped;
    report.add("messages sent", total as f64, "");
    report.add("told as events", told as f64, "");
    report.add("dropped (rate)", dropped as f64, "");
    report.add(
        "events dropped (slow consumers)",
        (counters.events_dropped - counted_before.events_dropped) as f64,
        "",
    );
    report.add("consumers", consumers as f64, "");
    report.add("received by the slowest consumer", fewest() as f64, "");
    report.add(
        "rate (told, every consumer had it)",
        told as f64 / elapsed,
        "msg/s",
    );
    if let (Some(cpu), Some(before)) = (common.servers_cpu()?, before) {
        let cpu = (cpu - before).as_secs_f64() * 1e6;
        report.add("server CPU per message sent", cpu / total as f64, "µs");
        report.add(
            "server CPU per event delivered",
            cpu / (told * consumers).max(1) as f64,
            "µs",
        );
    }
    if let (Some(socket), Some(before)) = (&common.redis_socket, redis_before) {
        let after = redis_info::sample(socket)?;
        let cpu = (after.cpu - before.cpu).as_secs_f64() * 1e6;
        report.add("Redis CPU per event", cpu / told.max(1) as f64, "µs");
        report.add(
            "XADD calls per event",
            (after.xadds - before.xadds) as f64 / told.max(1) as f64,
            "",
        );
    }
    drop(open);
    Ok(report)
}

/// The HTTP API's event stream of `message` events, past its response head.
async fn events_stream(addr: std::net::SocketAddr) -> anyhow::Result<BufReader<TcpStream>> {
    let mut tcp = TcpStream::connect(addr).await.context("the HTTP API")?;
    let request = format!(
        "GET /v1/events?type=message HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await?;
    let mut reader = BufReader::new(tcp);
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    anyhow::ensure!(line.starts_with("HTTP/1.1 200"), "events: {line:?}");
    Ok(reader)
}

/// Counts `event: message` lines until the stream ends (chunked framing lines never
/// start so).
async fn count_stream(mut reader: BufReader<TcpStream>, received: Arc<AtomicU64>) {
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) if line.starts_with("event: message") => {
                received.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {}
        }
    }
}

/// A webhook receiver: answers every POST 200 and counts the message events in it.
async fn receive_webhooks(listener: TcpListener, received: Arc<AtomicU64>) {
    while let Ok((stream, _)) = listener.accept().await {
        let received = received.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stream);
            loop {
                let mut length = 0usize;
                let mut line = String::new();
                loop {
                    line.clear();
                    match reader.read_line(&mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    if line == "\r\n" {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(value) = lower.strip_prefix("content-length:") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).await.is_err() {
                    return;
                }
                let needle = b"\"type\":\"message\"";
                let count = body.windows(needle.len()).filter(|w| w == needle).count();
                received.fetch_add(count as u64, Ordering::Relaxed);
                let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
                if reader.get_mut().write_all(answer).await.is_err() {
                    return;
                }
            }
        });
    }
}
