//! `upstream`: pages talking back (`--upstream`). P pages each send M text messages as fast
//! as they can; a consumer counts the `message` events, read from the HTTP API's event
//! stream (`--http`) or received as a webhook (`--webhook-port`: pushd must run with
//! `--webhook http://127.0.0.1:PORT/`). Reports the rate, server CPU per message (with
//! --pid), and what pushd counted as told and dropped.

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
use crate::{Common, admin, clients, sys};

/// Where the events are read.
#[derive(Debug, Clone, Copy)]
pub enum Consumer {
    /// `GET /v1/events?type=message` on the HTTP API at this address.
    Stream(std::net::SocketAddr),
    /// A webhook receiver listening on this port.
    Webhook(u16),
}

pub async fn upstream(
    common: &Common,
    pages: usize,
    messages: usize,
    consumer: Consumer,
) -> anyhow::Result<Report> {
    let mut report = Report::new(
        "upstream",
        json!({ "pages": pages, "messages_per_page": messages,
                "consumer": match consumer { Consumer::Stream(_) => "sse", Consumer::Webhook(_) => "webhook" } }),
    );
    let received = Arc::new(AtomicU64::new(0));
    match consumer {
        Consumer::Stream(addr) => {
            let stream = events_stream(addr).await?;
            tokio::spawn(count_stream(stream, received.clone()));
        }
        Consumer::Webhook(port) => {
            let listener = TcpListener::bind(("127.0.0.1", port)).await?;
            tokio::spawn(receive_webhooks(listener, received.clone()));
        }
    }
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
    let before = common.pid.map(sys::sample).transpose()?;
    let counted_before = admin::stats(&mut admin).await?.counters;
    let started = Instant::now();
    let senders = sockets.into_iter().map(|mut ws| {
        tokio::spawn(async move {
            for k in 0..messages {
                ws.feed(Message::text(format!("m{k}"))).await?;
            }
            ws.flush().await?;
            anyhow::Ok(ws)
        })
    });
    let mut open = Vec::with_capacity(pages);
    for sender in senders {
        open.push(sender.await??);
    }
    let total = (pages * messages) as u64;
    let deadline = Instant::now() + common.timeout;
    loop {
        let counters = admin::stats(&mut admin).await?.counters;
        let judged = counters.upstream_messages + counters.upstream_dropped
            - counted_before.upstream_messages
            - counted_before.upstream_dropped;
        let told = counters.upstream_messages - counted_before.upstream_messages;
        if judged >= total && received.load(Ordering::Relaxed) >= told {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "{} of {total} messages judged, {} of {told} received, in {:?}",
                judged,
                received.load(Ordering::Relaxed),
                common.timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let counters = admin::stats(&mut admin).await?.counters;
    let told = counters.upstream_messages - counted_before.upstream_messages;
    let dropped = counters.upstream_dropped - counted_before.upstream_dropped;
    report.add("messages sent", total as f64, "");
    report.add("told as events", told as f64, "");
    report.add("dropped (rate)", dropped as f64, "");
    report.add(
        "received by the consumer",
        received.load(Ordering::Relaxed) as f64,
        "",
    );
    report.add("rate (told)", told as f64 / elapsed, "msg/s");
    if let (Some(pid), Some(before)) = (common.pid, before) {
        let cpu = sys::sample(pid)?.cpu - before.cpu;
        report.add(
            "server CPU per message sent",
            cpu.as_secs_f64() * 1e6 / total as f64,
            "µs",
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
