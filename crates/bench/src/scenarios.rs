//! The scenarios. Each opens its clients, measures, and returns a report;
//! every loop is bounded in count and every wait in time.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use pushd_proto::admin::Request;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::receipts::{Receipts, histogram};
use crate::report::Report;
use crate::{Common, admin, clients, probe, redis_info, sys};

/// Clients plus the receipt book they write into.
struct Crowd {
    readers: Vec<JoinHandle<()>>,
    receipts: Arc<Receipts>,
    connect_time: Duration,
}

impl Drop for Crowd {
    fn drop(&mut self) {
        for reader in &self.readers {
            reader.abort();
        }
    }
}

/// Opens `n` bound clients and waits until pushd has bound them all.
async fn crowd(
    common: &Common,
    n: usize,
    messages: u64,
    broadcasts: usize,
) -> anyhow::Result<Crowd> {
    let receipts = Arc::new(Receipts::new(Instant::now(), messages, broadcasts));
    let tls = common
        .tls_ca
        .as_deref()
        .map(clients::tls_connector)
        .transpose()?;
    let (readers, connect_time) = clients::open(
        &common.ws_targets(),
        &common.uid_prefix,
        n,
        common.concurrency,
        receipts.clone(),
        common.timeout,
        tls,
        common.sse,
    )
    .await?;
    if common.bind_probe {
        probe::wait_for_uids(common.text, &common.uid_prefix, n, common.timeout).await?;
    } else {
        let mut admin = admin::connect(&common.socket).await?;
        admin::wait_for_uids(&mut admin, n as u64, common.timeout).await?;
    }
    Ok(Crowd {
        readers,
        receipts,
        connect_time,
    })
}

fn server_pid(common: &Common) -> anyhow::Result<u32> {
    common
        .pid
        .context("--pid (the pushd process id) is required for this scenario")
}

/// `idle`: memory per bound connection and CPU while connections sit idle.
pub async fn idle(common: &Common, connections: usize, hold: Duration) -> anyhow::Result<Report> {
    let pid = server_pid(common)?;
    let mut report = Report::new(
        "idle",
        json!({ "connections": connections, "hold_s": hold.as_secs_f64() }),
    );
    let before = sys::sample(pid)?;
    let crowd = crowd(common, connections, 0, 0).await?;
    // Let allocator and kernel settle before reading RSS.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = sys::sample(pid)?;
    tokio::time::sleep(hold).await;
    let held = sys::sample(pid)?;
    let cpu_percent = (held.cpu - after.cpu).as_secs_f64() / hold.as_secs_f64() * 100.0;
    report.add("connections", connections as f64, "");
    report.add("connect time", crowd.connect_time.as_secs_f64(), "s");
    report.add(
        "connect rate",
        connections as f64 / crowd.connect_time.as_secs_f64(),
        "conn/s",
    );
    report.add_rss(&before, &after);
    report.add(
        "RSS per connection",
        (after.rss_bytes.saturating_sub(before.rss_bytes)) as f64 / connections as f64,
        "bytes",
    );
    report.add("server CPU while idle", cpu_percent, "% of a core");
    Ok(report)
}

/// Parameters of `push`.
#[derive(Debug, Clone, Copy)]
pub struct PushParams {
    /// Bound clients.
    pub clients: usize,
    /// Messages in all.
    pub messages: u64,
    /// Text-port connections.
    pub text_connections: usize,
    /// Requests in flight per text connection.
    pub in_flight: usize,
    /// Total send rate in messages/s; `None` sends as fast as replies allow.
    pub rate: Option<f64>,
    /// Extra payload bytes per message.
    pub padding: usize,
    /// Push through the HTTP API at this address (`POST /v1/push`, one
    /// request of `in_flight` lines at a time per connection, keep-alive)
    /// instead of the text port.
    pub http: Option<std::net::SocketAddr>,
    /// Push to each client by its connection id (`{"connection": ID}`)
    /// instead of its uid: client i's id at i. Leaked, to keep the
    /// parameters `Copy`: a bench process lives for one run.
    pub connections: Option<&'static [String]>,
}

/// `push`: text-port pushes to bound clients: rate, latency, loss.
pub async fn push(common: &Common, p: PushParams, by_connection: bool) -> anyhow::Result<Report> {
    let mut report = Report::new(
        "push",
        json!({
            "clients": p.clients, "messages": p.messages, "text_connections": p.text_connections,
            "in_flight": p.in_flight, "rate": p.rate, "padding": p.padding,
            "via": if p.http.is_some() { "http" } else { "text" },
            "to": if by_connection { "connection" } else { "uid" },
        }),
    );
    let crowd = crowd(common, p.clients, p.messages, 0).await?;
    let mut p = p;
    if by_connection {
        let mut admin = admin::connect(&common.socket).await?;
        let ids = admin::connection_ids(&mut admin).await?;
        let ids: Vec<String> = (0..p.clients)
            .map(|i| {
                let uid = clients::uid(&common.uid_prefix, i);
                ids.get(&uid)
                    .cloned()
                    .with_context(|| format!("no connection of {uid}"))
            })
            .collect::<anyhow::Result<_>>()?;
        p.connections = Some(Vec::leak(ids));
    }
    let receipts = crowd.receipts.clone();
    let acked: Arc<Vec<AtomicU64>> = Arc::new(
        (0..p.messages.div_ceil(64))
            .map(|_| AtomicU64::new(0))
            .collect(),
    );
    let started_ns = receipts.now_ns();
    let cpu_before = common.servers_cpu()?;
    let writers: Vec<_> = (0..p.text_connections)
        .map(|conn| {
            let (common, receipts, acked) = (common.clone(), receipts.clone(), acked.clone());
            tokio::spawn(async move {
                match p.http {
                    Some(addr) => http_writer(&common, addr, conn, p, &receipts, &acked).await,
                    None => text_writer(&common, conn, p, &receipts, &acked).await,
                }
            })
        })
        .collect();
    let (mut ok, mut fail) = (0u64, 0u64);
    for writer in writers {
        let (o, f) = tokio::time::timeout(common.timeout, writer)
            .await
            .context("text writers timed out")???;
        ok += o;
        fail += f;
    }
    // Drain: wait for every acknowledged message to arrive, bounded.
    let drain_until = Instant::now() + Duration::from_secs(10);
    while receipts.received.load(Ordering::Relaxed) < ok && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let lost = (0..p.messages)
        .filter(|&s| {
            acked[(s / 64) as usize].load(Ordering::Relaxed) & (1 << (s % 64)) != 0
                && !receipts.seen(s)
        })
        .count();
    let received = receipts.received.load(Ordering::Relaxed);
    // --pid's and every --also-pid's (a cluster's nodes) together.
    let cpu = match (cpu_before, common.servers_cpu()?) {
        (Some(before), Some(after)) => Some(after.saturating_sub(before)),
        _ => None,
    };
    let span = (receipts
        .last_receipt_ns
        .load(Ordering::Relaxed)
        .saturating_sub(started_ns)) as f64
        / 1e9;
    report.add("ok", ok as f64, "");
    report.add("fail", fail as f64, "");
    report.add("received", received as f64, "");
    report.add("lost (ok but never received)", lost as f64, "");
    report.add(
        "duplicates",
        receipts.duplicates.load(Ordering::Relaxed) as f64,
        "",
    );
    report.add("elapsed", span, "s");
    report.add("delivered rate", received as f64 / span.max(1e-9), "msg/s");
    if let Some(cpu) = cpu {
        // From the first write to the drain: pushd's whole cost of the run.
        report.add(
            "server CPU per message",
            cpu.as_secs_f64() * 1e6 / received.max(1) as f64,
            "µs",
        );
    }
    report.add_latencies("latency", &receipts.latencies());
    drop(crowd);
    Ok(report)
}

/// One text-port connection: sends its share of the messages (sequence
/// numbers `conn`, `conn + K`, ...) with at most `in_flight` unanswered.
async fn text_writer(
    common: &Common,
    conn: usize,
    p: PushParams,
    receipts: &Receipts,
    acked: &[AtomicU64],
) -> anyhow::Result<(u64, u64)> {
    let stream = TcpStream::connect(common.text).await.context("text port")?;
    stream.set_nodelay(true)?;
    let (mut read, mut write) = stream.into_split();
    let step = p.text_connections as u64;
    let mut next_seq = conn as u64;
    let mut in_flight = std::collections::VecDeque::with_capacity(p.in_flight);
    let (mut ok, mut fail) = (0u64, 0u64);
    let mut out = Vec::new();
    let mut input = Vec::with_capacity(64 * 1024);
    let padding = "x".repeat(p.padding);
    let rate_per_conn = p.rate.map(|r| r / p.text_connections as f64);
    let start = Instant::now();
    let mut sent = 0u64;
    loop {
        // How many may go now: window, remaining messages, and the pace.
        let mut room = p.in_flight - in_flight.len();
        if let Some(rate) = rate_per_conn {
            let due = (start.elapsed().as_secs_f64() * rate) as u64 + 1;
            room = room.min(due.saturating_sub(sent) as usize);
        }
        if room > 0 && next_seq < p.messages {
            let t = receipts.now_ns();
            while room > 0 && next_seq < p.messages {
                push_line(&mut out, common, &p, next_seq, t, &padding);
                in_flight.push_back(next_seq);
                next_seq += step;
                sent += 1;
                room -= 1;
            }
            write.write_all(&out).await?;
            out.clear();
        }
        if in_flight.is_empty() {
            if next_seq >= p.messages {
                return Ok((ok, fail));
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
            continue;
        }
        let read_once = read.read_buf(&mut input);
        let n = match rate_per_conn {
            // When pacing, wake up for the next message even without replies.
            Some(_) => match tokio::time::timeout(Duration::from_micros(500), read_once).await {
                Ok(n) => n?,
                Err(_) => continue,
            },
            None => read_once.await?,
        };
        if n == 0 {
            bail!(
                "text port closed with {} requests unanswered",
                in_flight.len()
            );
        }
        let mut consumed = 0;
        while let Some(end) = input[consumed..].iter().position(|&b| b == b'\n') {
            let reply = &input[consumed..consumed + end];
            let seq = in_flight.pop_front().context("reply without request")?;
            if reply == b"ok" {
                ok += 1;
                acked[(seq / 64) as usize].fetch_or(1 << (seq % 64), Ordering::Relaxed);
            } else {
                fail += 1;
            }
            consumed += end + 1;
        }
        input.drain(..consumed);
    }
}

/// Appends the text-port line of message `seq`, stamped `t`.
fn push_line(out: &mut Vec<u8>, common: &Common, p: &PushParams, seq: u64, t: u64, padding: &str) {
    let client = (seq % p.clients as u64) as usize;
    let (key, target) = match p.connections {
        Some(ids) => ("connection", ids[client].clone()),
        None => ("uid", clients::uid(&common.uid_prefix, client)),
    };
    let line = if padding.is_empty() {
        format!("{{\"{key}\":\"{target}\",\"s\":{seq},\"t\":{t}}}\n")
    } else {
        format!("{{\"{key}\":\"{target}\",\"s\":{seq},\"t\":{t},\"p\":\"{padding}\"}}\n")
    };
    out.extend_from_slice(line.as_bytes());
}

/// One HTTP connection's share of the pushes, as `POST /v1/push` bodies of
/// `in_flight` lines, one request at a time (keep-alive).
async fn http_writer(
    common: &Common,
    addr: std::net::SocketAddr,
    conn: usize,
    p: PushParams,
    receipts: &Receipts,
    acked: &[AtomicU64],
) -> anyhow::Result<(u64, u64)> {
    use http_body_util::{BodyExt, Full};
    let stream = TcpStream::connect(addr).await.context("HTTP API")?;
    stream.set_nodelay(true)?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let step = p.text_connections as u64;
    let mut next_seq = conn as u64;
    let padding = "x".repeat(p.padding);
    let (mut ok, mut fail) = (0u64, 0u64);
    while next_seq < p.messages {
        let t = receipts.now_ns();
        let mut body = Vec::new();
        let mut batch = Vec::with_capacity(p.in_flight);
        while batch.len() < p.in_flight && next_seq < p.messages {
            push_line(&mut body, common, &p, next_seq, t, &padding);
            batch.push(next_seq);
            next_seq += step;
        }
        let request = hyper::Request::post("/v1/push")
            .header("host", addr.to_string())
            .body(Full::new(bytes::Bytes::from(body)))?;
        let response = sender.send_request(request).await?;
        anyhow::ensure!(
            response.status() == 200,
            "POST /v1/push answered {}",
            response.status()
        );
        let replies = response.into_body().collect().await?.to_bytes();
        let mut replies = replies.split(|&b| b == b'\n');
        for seq in batch {
            if replies.next() == Some(b"ok") {
                ok += 1;
                acked[(seq / 64) as usize].fetch_or(1 << (seq % 64), Ordering::Relaxed);
            } else {
                fail += 1;
            }
        }
    }
    Ok((ok, fail))
}

/// `mailbox`: memory of messages waiting for offline uids, through one
/// pipelined text connection (64 in flight).
pub async fn mailbox(
    common: &Common,
    uids: usize,
    messages: u64,
    padding: usize,
) -> anyhow::Result<Report> {
    let pid = server_pid(common)?;
    let mut report = Report::new(
        "mailbox",
        json!({ "uids": uids, "messages": messages, "padding": padding }),
    );
    let mut control = admin::connect(&common.socket).await?;
    let before = sys::sample(pid)?;
    let waiting_before = admin::stats(&mut control).await?.mailbox.messages;
    let stream = TcpStream::connect(common.text).await.context("text port")?;
    let (mut read, mut write) = stream.into_split();
    let pad = "x".repeat(padding);
    let writer = async {
        let mut out = Vec::with_capacity(64 * 1024);
        for i in 0..messages {
            let uid = clients::uid(&common.uid_prefix, (i % uids as u64) as usize);
            out.extend_from_slice(
                format!("{{\"uid\":\"{uid}\",\"s\":{i},\"p\":\"{pad}\"}}\n").as_bytes(),
            );
            if out.len() > 32 * 1024 || i + 1 == messages {
                write.write_all(&out).await?;
                out.clear();
            }
        }
        anyhow::Ok(())
    };
    let reader = async {
        let (mut queued, mut other) = (0u64, 0u64);
        let mut input = Vec::with_capacity(64 * 1024);
        while queued + other < messages {
            if read.read_buf(&mut input).await? == 0 {
                bail!("text port closed after {} replies", queued + other);
            }
            let mut consumed = 0;
            while let Some(end) = input[consumed..].iter().position(|&b| b == b'\n') {
                if &input[consumed..consumed + end] == b"queued" {
                    queued += 1;
                } else {
                    other += 1;
                }
                consumed += end + 1;
            }
            input.drain(..consumed);
        }
        anyhow::Ok((queued, other))
    };
    let started = Instant::now();
    let (written, replies) =
        tokio::time::timeout(common.timeout, async { tokio::join!(writer, reader) })
            .await
            .context("timed out pushing")?;
    written?;
    let (queued, other) = replies?;
    let elapsed = started.elapsed();
    // Let the allocator settle before reading RSS.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = sys::sample(pid)?;
    let stats = admin::stats(&mut control).await?;
    let waiting = stats.mailbox.messages.saturating_sub(waiting_before);
    report.add("queued", queued as f64, "");
    report.add("not queued", other as f64, "");
    report.add("rate", messages as f64 / elapsed.as_secs_f64(), "msg/s");
    report.add("waiting", waiting as f64, "");
    report.add(
        "waiting payload",
        stats.mailbox.bytes as f64 / 1048576.0,
        "MiB",
    );
    report.add_rss(&before, &after);
    if waiting > 0 {
        report.add(
            "RSS per waiting message",
            after.rss_bytes.saturating_sub(before.rss_bytes) as f64 / waiting as f64,
            "bytes",
        );
    }
    Ok(report)
}

/// `broadcast`: time until the last client has each broadcast (or group
/// push, `group`: through the admin socket, or the text port with
/// `text_port`); server CPU per delivered message with --pid (and every
/// --also-pid); Redis's CPU, script time and bus messages per push with
/// --redis-socket.
pub async fn broadcast(
    common: &Common,
    clients: usize,
    broadcasts: usize,
    group_push: Option<GroupPush>,
) -> anyhow::Result<Report> {
    let group = group_push.is_some();
    let GroupPush { text_port, churn } = group_push.unwrap_or_default();
    let mut report = Report::new(
        "broadcast",
        json!({ "clients": clients, "broadcasts": broadcasts, "group": group,
                "text_port": text_port, "churn": churn, "nodes": 1 + common.also_ws.len() }),
    );
    let crowd = crowd(common, clients, 0, broadcasts).await?;
    let receipts = crowd.receipts.clone();
    let mut admin = admin::connect(&common.socket).await?;
    let group_name = pushd_proto::uid::Uid::parse("bench-group")?;
    let redis_sample = || {
        common
            .redis_socket
            .as_deref()
            .map(redis_info::sample)
            .transpose()
    };
    if group {
        // Every client's uid a member, a thousand per request.
        let cpu_before = common.servers_cpu()?;
        let redis_before = redis_sample()?;
        let uids: Vec<pushd_proto::uid::Uid> = (0..clients)
            .map(|i| pushd_proto::uid::Uid::parse(&clients::uid(&common.uid_prefix, i)))
            .collect::<Result<_, _>>()?;
        let added = Instant::now();
        for chunk in uids.chunks(1000) {
            let request = Request::GroupAdd {
                group: group_name.clone(),
                uids: chunk.to_vec(),
                ttl_ms: None,
            };
            admin.request(request).await?;
        }
        let took = added.elapsed().as_secs_f64();
        report.add(
            "memberships added per second (admin socket)",
            clients as f64 / took,
            "/s",
        );
        if let (Some(cpu), Some(before)) = (common.servers_cpu()?, cpu_before) {
            let per_change = (cpu - before).as_secs_f64() * 1e6 / clients as f64;
            report.add("server CPU per membership added", per_change, "µs");
        }
        if let (Some(after), Some(before)) = (redis_sample()?, redis_before) {
            let per_change = (after.cpu - before.cpu).as_secs_f64() * 1e6 / clients as f64;
            report.add("Redis CPU per membership added", per_change, "µs");
        }
    }
    let mut text = match text_port {
        true => Some(tokio::io::BufReader::new(
            TcpStream::connect(common.text).await?,
        )),
        false => None,
    };
    let mut last_delivery = histogram();
    let churning =
        (churn > 0).then(|| tokio::spawn(churn_memberships(common.socket.clone(), churn)));
    let cpu_before = common.servers_cpu()?;
    let redis_before = redis_sample()?;
    let started = Instant::now();
    for b in 0..broadcasts {
        let now = receipts.now_ns();
        if let Some(text) = &mut text {
            let line = format!("{{\"group\":\"bench-group\",\"b\":{b},\"t\":{now}}}\n");
            text.get_mut().write_all(line.as_bytes()).await?;
            let mut reply = String::new();
            tokio::io::AsyncBufReadExt::read_line(text, &mut reply).await?;
            anyhow::ensure!(reply == "ok\n", "group push {b} answered {reply:?}");
        } else {
            let message = format!("{{\"b\":{b},\"t\":{now}}}");
            let request = match group {
                true => Request::SendGroup {
                    group: group_name.clone(),
                    message,
                    transient: false,
                },
                false => Request::Broadcast { message },
            };
            admin.request(request).await?;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let slowest = loop {
            let (count, slowest) = receipts.broadcast(b);
            if count >= clients as u64 {
                break slowest;
            }
            if Instant::now() > deadline {
                bail!("broadcast {b} reached {count} of {clients} clients in 10 s");
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        };
        let _ = last_delivery.record(slowest);
    }
    let elapsed = started.elapsed().as_secs_f64();
    report.add(
        "delivered rate",
        (clients * broadcasts) as f64 / elapsed,
        "msg/s",
    );
    if let Some(churning) = churning {
        churning.abort();
        let changes = match churning.await {
            Err(join) if join.is_cancelled() => CHURNED.load(Ordering::Relaxed),
            Err(join) => bail!("membership churn: {join}"),
            Ok(Err(err)) => bail!("membership churn: {err}"),
            Ok(Ok(())) => CHURNED.load(Ordering::Relaxed),
        };
        report.add("membership changes during the pushes", changes as f64, "");
        report.add(
            "membership changes per second",
            changes as f64 / elapsed,
            "/s",
        );
    }
    if let (Some(cpu), Some(before)) = (common.servers_cpu()?, cpu_before) {
        let per_message = (cpu - before).as_secs_f64() * 1e6 / (clients * broadcasts) as f64;
        report.add("server CPU per delivered message", per_message, "µs");
    }
    if let (Some(after), Some(before)) = (redis_sample()?, redis_before) {
        let pushes = broadcasts as f64;
        let cpu = (after.cpu - before.cpu).as_secs_f64() * 1e6 / pushes;
        report.add("Redis CPU per push", cpu, "µs");
        let scripts = (after.script_us - before.script_us) as f64 / pushes;
        report.add("Redis script time per push", scripts, "µs");
        let published = (after.publishes - before.publishes) as f64 / pushes;
        report.add("bus messages per push", published, "");
    }
    report.add_latencies("last delivery", &last_delivery);
    drop(crowd);
    Ok(report)
}

/// How `broadcast` pushes to a group instead.
#[derive(Debug, Default, Clone, Copy)]
pub struct GroupPush {
    /// Through the text port, not the admin socket.
    pub text_port: bool,
    /// Other memberships added and removed per second meanwhile.
    pub churn: u64,
}

/// Membership changes made by [`churn_memberships`] (one run per process).
static CHURNED: AtomicU64 = AtomicU64::new(0);

/// Adds and removes memberships of offline uids `~churn-N` (no client's) in `bench-group`,
/// `per_second` changes a second in requests of 100, until aborted.
async fn churn_memberships(socket: std::path::PathBuf, per_second: u64) -> anyhow::Result<()> {
    const PER_REQUEST: u64 = 100;
    let mut admin = admin::connect(&socket).await?;
    let group = pushd_proto::uid::Uid::parse("bench-group")?;
    let every = Duration::from_secs_f64(PER_REQUEST as f64 / per_second as f64);
    let mut ticks = tokio::time::interval(every);
    for round in 0u64.. {
        ticks.tick().await;
        let uids = (0..PER_REQUEST)
            .map(|i| {
                pushd_proto::uid::Uid::parse(&format!("~churn-{}", (round / 2) * PER_REQUEST + i))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let request = match round % 2 {
            0 => Request::GroupAdd {
                group: group.clone(),
                uids,
                ttl_ms: None,
            },
            _ => Request::GroupRemove {
                group: group.clone(),
                uids,
            },
        };
        admin.request(request).await?;
        CHURNED.fetch_add(PER_REQUEST, Ordering::Relaxed);
    }
    Ok(())
}

/// `fanout`: `pushes` pushes to each of `clients` clients through one text
/// connection (64 lines in flight), as one group line per push (`group`: the
/// clients' uids are one group's members) or as one uid line per client and
/// push: server CPU per delivered message and the delivered rate (with `--pid`).
pub async fn fanout(
    common: &Common,
    clients: usize,
    pushes: usize,
    group: bool,
) -> anyhow::Result<Report> {
    let mut report = Report::new(
        "fanout",
        json!({ "clients": clients, "pushes": pushes, "group": group }),
    );
    let crowd = crowd(common, clients, 0, 0).await?;
    let receipts = crowd.receipts.clone();
    if group {
        let mut admin = admin::connect(&common.socket).await?;
        let uids = (0..clients)
            .map(|i| pushd_proto::uid::Uid::parse(&clients::uid(&common.uid_prefix, i)))
            .collect::<Result<_, _>>()?;
        let group = pushd_proto::uid::Uid::parse("fanout")?;
        admin
            .request(Request::GroupAdd {
                group,
                uids,
                ttl_ms: None,
            })
            .await?;
    }
    let lines: Vec<String> = (0..pushes)
        .flat_map(|p| {
            let prefix = common.uid_prefix.clone();
            let per_push: Vec<String> = match group {
                true => vec![format!("{{\"group\":\"fanout\",\"p\":{p},\"t\":0}}")],
                false => (0..clients)
                    .map(|i| {
                        format!(
                            "{{\"uid\":\"{}\",\"p\":{p},\"t\":0}}",
                            clients::uid(&prefix, i)
                        )
                    })
                    .collect(),
            };
            per_push
        })
        .collect();
    let expected = (clients * pushes) as u64;
    let before = common.pid.map(sys::sample).transpose()?;
    let started = Instant::now();
    let mut text = TcpStream::connect(common.text).await?;
    let mut replies = vec![0u8; 64 * 8];
    for batch in lines.chunks(64) {
        let mut out = batch.join("\n");
        out.push('\n');
        text.write_all(out.as_bytes()).await?;
        // Every line is answered with one short line: read until as many arrived.
        let mut answered = 0;
        while answered < batch.len() {
            let n = text.read(&mut replies).await?;
            if n == 0 {
                bail!("the text port closed");
            }
            answered += replies[..n].iter().filter(|b| **b == b'\n').count();
        }
    }
    let deadline = Instant::now() + common.timeout;
    while receipts.received.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let received = receipts.received.load(Ordering::Relaxed);
    report.add("delivered", received as f64, "");
    report.add("delivered rate", received as f64 / elapsed, "msg/s");
    if let (Some(pid), Some(before)) = (common.pid, before) {
        let cpu = (sys::sample(pid)?.cpu - before.cpu).as_secs_f64() * 1e6;
        report.add(
            "server CPU per delivered message",
            cpu / received.max(1) as f64,
            "µs",
        );
    }
    drop(crowd);
    Ok(report)
}

/// `memberships`: `memberships` offline uids added to `groups` groups through
/// the admin socket (a thousand per request), then removed: changes per
/// second, server CPU per change and RSS per membership (with `--pid`).
pub async fn memberships(
    common: &Common,
    memberships: usize,
    groups: usize,
    http: Option<std::net::SocketAddr>,
) -> anyhow::Result<Report> {
    let mut report = Report::new(
        "memberships",
        json!({ "memberships": memberships, "groups": groups,
                "via": if http.is_some() { "http" } else { "admin" } }),
    );
    let mut changer = match http {
        Some(addr) => Changer::http(addr).await?,
        None => Changer::Admin(admin::connect(&common.socket).await?),
    };
    let per_group = memberships.div_ceil(groups.max(1));
    let batches: Vec<(pushd_proto::uid::Uid, Vec<pushd_proto::uid::Uid>)> = (0..memberships)
        .collect::<Vec<_>>()
        .chunks(1000)
        .map(|chunk| {
            let group = pushd_proto::uid::Uid::parse(&format!("g{}", chunk[0] / per_group))?;
            let uids = (chunk.iter())
                .map(|i| pushd_proto::uid::Uid::parse(&clients::uid(&common.uid_prefix, *i)))
                .collect::<Result<_, _>>()?;
            anyhow::Ok((group, uids))
        })
        .collect::<anyhow::Result<_>>()?;
    let before = common.pid.map(sys::sample).transpose()?;
    let started = Instant::now();
    for (group, uids) in &batches {
        changer.change(group, uids, true).await?;
    }
    let took = started.elapsed().as_secs_f64();
    report.add(
        "memberships added per second",
        memberships as f64 / took,
        "/s",
    );
    let added = common.pid.map(sys::sample).transpose()?;
    if let (Some(before), Some(added)) = (before, added) {
        let cpu = (added.cpu - before.cpu).as_secs_f64() * 1e6 / memberships as f64;
        report.add("server CPU per membership added", cpu, "µs");
        let rss = added.rss_bytes.saturating_sub(before.rss_bytes) as f64 / memberships as f64;
        report.add("server RSS per membership", rss, "bytes");
    }
    let started = Instant::now();
    for (group, uids) in &batches {
        changer.change(group, uids, false).await?;
    }
    let took = started.elapsed().as_secs_f64();
    report.add(
        "memberships removed per second",
        memberships as f64 / took,
        "/s",
    );
    if let (Some(pid), Some(added)) = (common.pid, added) {
        let cpu = (sys::sample(pid)?.cpu - added.cpu).as_secs_f64() * 1e6 / memberships as f64;
        report.add("server CPU per membership removed", cpu, "µs");
    }
    Ok(report)
}

/// Where `memberships` sends its changes.
enum Changer {
    Admin(pushd_ctl::client::Client),
    Http {
        addr: std::net::SocketAddr,
        sender: hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
    },
}

impl Changer {
    async fn http(addr: std::net::SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr).await.context("HTTP API")?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(Changer::Http { addr, sender })
    }

    /// Adds `uids` to `group` (`add`), or removes them.
    async fn change(
        &mut self,
        group: &pushd_proto::uid::Uid,
        uids: &[pushd_proto::uid::Uid],
        add: bool,
    ) -> anyhow::Result<()> {
        match self {
            Changer::Admin(admin) => {
                let request = match add {
                    true => Request::GroupAdd {
                        group: group.clone(),
                        uids: uids.to_vec(),
                        ttl_ms: None,
                    },
                    false => Request::GroupRemove {
                        group: group.clone(),
                        uids: uids.to_vec(),
                    },
                };
                admin.request(request).await?;
            }
            Changer::Http { addr, sender } => {
                use http_body_util::BodyExt;
                let key = if add { "add" } else { "remove" };
                let body = serde_json::to_vec(&json!({ key: uids }))?;
                let request = hyper::Request::post(format!("/v1/groups/{group}/members"))
                    .header("host", addr.to_string())
                    .header("content-type", "application/json")
                    .body(http_body_util::Full::new(bytes::Bytes::from(body)))?;
                sender.ready().await?;
                let response = sender.send_request(request).await?;
                let status = response.status();
                let body = response.into_body().collect().await?.to_bytes();
                anyhow::ensure!(
                    status == 200,
                    "the bulk endpoint answered {status}: {body:?}"
                );
            }
        }
        Ok(())
    }
}

/// `admin`: `list` and `kick` latency with `clients` online, in-process
/// (the daemon's cost) and through the real pushctl binary (what users see).
pub async fn admin(
    common: &Common,
    clients: usize,
    repeat: usize,
    pushctl: &Path,
) -> anyhow::Result<Report> {
    let mut report = Report::new("admin", json!({ "clients": clients, "repeat": repeat }));
    let _crowd = crowd(common, clients, 0, 0).await?;
    let mut admin = admin::connect(&common.socket).await?;
    let (mut list, mut list_ctl, mut kick, mut kick_ctl) =
        (histogram(), histogram(), histogram(), histogram());
    let mut next_uid = 0;
    for _ in 0..repeat {
        let started = Instant::now();
        admin.request(Request::List).await?;
        let _ = list.record(started.elapsed().as_nanos() as u64);
        let _ = list_ctl.record(
            run_pushctl(common, pushctl, &["--json", "list"])
                .await?
                .as_nanos() as u64,
        );
        let uid = clients::uid(&common.uid_prefix, next_uid);
        let started = Instant::now();
        admin
            .request(Request::Kick {
                uids: vec![pushd_proto::uid::Uid::parse(&uid)?],
                reason: None,
                ban_ms: None,
            })
            .await?;
        let _ = kick.record(started.elapsed().as_nanos() as u64);
        let uid = clients::uid(&common.uid_prefix, next_uid + 1);
        let _ = kick_ctl.record(
            run_pushctl(common, pushctl, &["kick", &uid])
                .await?
                .as_nanos() as u64,
        );
        next_uid += 2;
    }
    report.add_latencies("list (admin round trip)", &list);
    report.add_latencies("pushctl --json list (process)", &list_ctl);
    report.add_latencies("kick (admin round trip)", &kick);
    report.add_latencies("pushctl kick (process)", &kick_ctl);
    Ok(report)
}

/// Runs pushctl with stdout discarded and returns its wall time.
async fn run_pushctl(common: &Common, pushctl: &Path, args: &[&str]) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let status = tokio::process::Command::new(pushctl)
        .arg("--socket")
        .arg(&common.socket)
        .args(args)
        .stdout(std::process::Stdio::null())
        .status();
    let status = tokio::time::timeout(Duration::from_secs(30), status)
        .await
        .context("pushctl hung")??;
    if !status.success() {
        bail!("pushctl {args:?} failed: {status}");
    }
    Ok(started.elapsed())
}
