//! `promise`: pushd's promise checked under faults. pushbench starts pushd
//! itself (one node, or several in cluster mode with a redis-server of its
//! own), pages of many uids navigate from node to node (`pushd.v2` pages
//! resume with `?since=`, raw pages do not), numbered pushes flow through
//! every node's text port and HTTP API (`POST /v1/push`) in turn, and faults
//! come at intervals: a node stopped with SIGTERM or SIGKILL and started
//! again on the same addresses; in cluster mode also Redis paused for writes,
//! Redis restarted empty, and every subscriber connection killed. At the end
//! every push is accounted for:
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

mod account;
mod servers;
mod traffic;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use serde_json::json;

use crate::report::Report;
use account::{Books, Tally, account};
pub use servers::Fault;
use servers::{Node, Redis, Servers};
pub use traffic::sequence;

/// Parameters of `promise`.
#[derive(Debug, Clone)]
pub struct PromiseParams {
    /// The pushd binary to start.
    pub pushd: PathBuf,
    /// pushd nodes: 1 for a single node; more for cluster mode, through a
    /// redis-server the checker starts.
    pub nodes: usize,
    /// The redis-server binary (cluster mode).
    pub redis_server: PathBuf,
    /// Uids, one page at a time each.
    pub uids: usize,
    /// Every this many uids, one has raw pages; the others speak `pushd.v2`.
    pub raw_every: usize,
    /// How long the run pushes.
    pub duration: Duration,
    /// Pushes per second, in all.
    pub rate: f64,
    /// A fault this often; zero for none.
    pub fault_every: Duration,
    /// The faults, injected in turn.
    pub faults: Vec<Fault>,
    /// How long a page stays before it leaves.
    pub stay: Duration,
    /// pushd's `--mailbox-ttl`; every seventh visit of a page is followed by
    /// an absence twice as long, so that what waited for it expires.
    pub mailbox_ttl: Duration,
}

/// Injects the faults in turn every `every` until `done`; returns how many.
async fn faults(
    servers: &mut Servers,
    p: &PromiseParams,
    done: &AtomicBool,
) -> anyhow::Result<u64> {
    let mut injected = 0u64;
    if p.fault_every.is_zero() || p.faults.is_empty() {
        return Ok(0);
    }
    while !done.load(Ordering::Relaxed) {
        tokio::time::sleep(p.fault_every).await;
        if done.load(Ordering::Relaxed) {
            break;
        }
        let fault = p.faults[injected as usize % p.faults.len()];
        if std::env::var_os("PUSHBENCH_PROMISE_DEBUG").is_some() {
            eprintln!(
                "fault {injected}: {fault:?} at {:?}",
                std::time::Instant::now()
            );
        }
        // Each kind of fault goes round the nodes on its own count.
        servers
            .inject(fault, injected / p.faults.len() as u64)
            .await?;
        injected += 1;
    }
    Ok(injected)
}

/// Starts the run's servers: Redis in cluster mode, then the nodes.
async fn start(
    p: &PromiseParams,
    dir: &std::path::Path,
) -> anyhow::Result<(Servers, Vec<servers::Addresses>)> {
    if p.nodes == 0 {
        anyhow::bail!("at least one node");
    }
    if p.nodes == 1
        && let Some(fault) = p.faults.iter().find(|f| f.needs_redis())
    {
        anyhow::bail!("the fault {fault:?} needs cluster mode (--nodes 2 or more)");
    }
    let redis = match p.nodes {
        1 => None,
        _ => Some(Redis::start(&p.redis_server, dir).await?),
    };
    let mut extra = vec![
        "--mailbox-ttl".to_owned(),
        format!("{}ms", p.mailbox_ttl.as_millis()),
    ];
    if let Some(redis) = &redis {
        extra.extend(["--cluster".to_owned(), redis.url()]);
    }
    let (mut nodes, mut addresses) = (Vec::new(), Vec::new());
    for k in 0..p.nodes {
        let mut args = extra.clone();
        if redis.is_some() {
            args.extend(["--node-name".to_owned(), format!("n{k}")]);
        }
        let (node, at) = Node::start(&p.pushd, dir, &format!("n{k}"), &args).await?;
        nodes.push(node);
        addresses.push(at);
    }
    if redis.is_some() {
        // Every node in the cluster before the first push: a push through one
        // that has not joined yet answers fail, which proves nothing.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok((Servers { nodes, redis }, addresses))
}

/// `promise`: the accounting of every push under faults.
pub async fn promise(p: PromiseParams) -> anyhow::Result<(Report, bool)> {
    // One directory per run: runs in one process (the tests) must not share sockets.
    static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("pushbench-promise-{}-{run}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (mut servers, addresses) = start(&p, &dir).await?;
    let ws: Arc<Vec<String>> = Arc::new(addresses.iter().map(|a| a.ws.clone()).collect());
    let books: Books = Arc::new((0..p.uids).map(|_| Mutex::default()).collect());
    let done = Arc::new(AtomicBool::new(false));
    let raw = |i: usize| p.raw_every > 0 && i.is_multiple_of(p.raw_every);
    let visitors: Vec<_> = (0..p.uids)
        .map(|i| {
            let (ws, books, done) = (ws.clone(), books.clone(), done.clone());
            let times = (p.stay, 2 * p.mailbox_ttl);
            tokio::spawn(traffic::pages(ws, i, !raw(i), times, books, done))
        })
        .collect();
    let pushing = async {
        let pushes = traffic::pusher(&addresses, &p, &books).await;
        done.store(true, Ordering::Relaxed);
        pushes
    };
    let (pushes, faults) = tokio::join!(pushing, faults(&mut servers, &p, &done));
    let faults = faults?;
    for visitor in visitors {
        tokio::time::timeout(Duration::from_secs(60), visitor)
            .await
            .context("a page did not finish")??;
    }
    drop(servers);
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
            "nodes": p.nodes,
            "faults": p.faults.iter().map(|f| format!("{f:?}")).collect::<Vec<_>>(),
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
