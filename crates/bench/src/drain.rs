//! `drain`: how a drained node's clients come back. N clients bound on `--ws`
//! (node A); then `pushctl drain --over DUR` on A (through `--socket`); each
//! client, at its close, reconnects at once to `--to` (node B) and binds the
//! same uid, as a page behind a load balancer would. Reports the closes by
//! code, the reconnects per second B sees (the peak against the mean over the
//! window: a storm shows as a peak far above it) and how long the drain took.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;

use crate::Common;
use crate::clients::{handshake, open_plain, tcp_connect};
use crate::report::Report;

/// What one client saw: its close code, and when it was bound again on B.
struct Back {
    code: Option<u16>,
    rebound: Option<Instant>,
}

/// Runs the scenario; see the module's comment.
pub async fn drain(
    common: &Common,
    clients: usize,
    over: Duration,
    to: SocketAddr,
) -> anyhow::Result<Report> {
    let done = Arc::new(Notify::new());
    let backs_told = open_plain(
        common.ws,
        &common.uid_prefix,
        clients,
        common.concurrency,
        common.timeout,
        |i, uid, ws| {
            let (told, back) = tokio::sync::oneshot::channel();
            tokio::spawn(come_back(ws, uid, i, to, told, done.clone()));
            back
        },
    )
    .await?;
    // Let pushd bind the last ones.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let started = Instant::now();
    let mut admin = pushd_ctl::client::Client::connect(&common.socket).await?;
    let request = pushd_proto::admin::Request::Drain {
        over_ms: Some(over.as_millis() as u64),
    };
    let answer = admin
        .request_within(request, over + Duration::from_secs(60))
        .await?;
    let drain_time = started.elapsed();
    let closed = match answer {
        pushd_proto::admin::Response::Drained { closed, .. } => closed,
        other => bail!("unexpected answer to drain: {}", other.kind()),
    };
    // Every client back on B, or the limit.
    let mut backs = Vec::with_capacity(backs_told.len());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for back in backs_told {
        match tokio::time::timeout_at(deadline, back).await {
            Ok(Ok(back)) => backs.push(back),
            _ => backs.push(Back {
                code: None,
                rebound: None,
            }),
        }
    }
    done.notify_waiters();

    let with_1012 = backs.iter().filter(|b| b.code == Some(1012)).count();
    let mut per_second = vec![0u64; over.as_secs().max(1) as usize + 5];
    let mut last = Duration::ZERO;
    let mut rebound = 0u64;
    for at in backs.iter().filter_map(|b| b.rebound) {
        let since = at.saturating_duration_since(started);
        last = last.max(since);
        let second = (since.as_secs() as usize).min(per_second.len() - 1);
        per_second[second] += 1;
        rebound += 1;
    }
    let mean = rebound as f64 / over.as_secs_f64().max(1.0);
    let peak = per_second.iter().copied().max().unwrap_or(0);
    let mut report = Report::new(
        "drain",
        json!({ "clients": clients, "over_s": over.as_secs_f64(), "to": to.to_string() }),
    );
    report.add("closed by the drain (pushd)", closed as f64, "");
    report.add("closes with 1012 (clients)", with_1012 as f64, "");
    report.add("other closes", (backs.len() - with_1012) as f64, "");
    report.add("bound again on B", rebound as f64, "");
    report.add("drain time (pushctl)", drain_time.as_secs_f64(), "s");
    report.add("last rebind on B", last.as_secs_f64(), "s");
    report.add("reconnects/s on B, mean over the window", mean, "/s");
    report.add("reconnects/s on B, busiest second", peak as f64, "/s");
    report.add("busiest second / mean", peak as f64 / mean.max(1.0), "");
    Ok(report)
}

/// One client: reads until its connection to A ends, then connects to `to`,
/// binds `uid` again, tells how that went, and stays until `done`.
async fn come_back<S>(
    mut ws: tokio_tungstenite::WebSocketStream<S>,
    uid: String,
    i: usize,
    to: SocketAddr,
    told: tokio::sync::oneshot::Sender<Back>,
    done: Arc<Notify>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut code = None;
    while let Some(Ok(frame)) = ws.next().await {
        if let Message::Close(frame) = frame {
            code = frame.map(|f| u16::from(f.code));
        }
    }
    drop(ws);
    // Registered before anything is told: `done` comes only after every client told.
    let waiting = done.notified();
    tokio::pin!(waiting);
    waiting.as_mut().enable();
    let again = async {
        let tcp = tcp_connect(to, i).await.ok()?;
        handshake(format!("ws://{to}/"), tcp, &uid, i).await.ok()
    };
    let Some(mut ws) = again.await else {
        let _ = told.send(Back {
            code,
            rebound: None,
        });
        return;
    };
    let _ = told.send(Back {
        code,
        rebound: Some(Instant::now()),
    });
    tokio::select! {
        () = waiting => {}
        _ = async { while let Some(Ok(_)) = ws.next().await {} } => {}
    }
}
