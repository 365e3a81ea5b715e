//! SPEC "Several nodes on more than one Redis server": three pushd nodes on
//! `redis+sentinel://`, a real master, a real replica and three real
//! sentinels (`redis-server --sentinel`, what Debian's `redis-sentinel`
//! runs). The master is SIGKILLed under a stream of pushes: no client is
//! disconnected, no push answered `ok` is lost, pushes are `ok` again within
//! seconds and presence is whole; then a failover back.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::process::Child;

use crate::cluster_harness::{redis_available, redis_cli, spawn_redis_server, wait_for_nodes};
use crate::harness::{Pushd, STEP, WsClient, eventually};

/// A free loopback TCP port (bound, then let go).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One redis-server (or sentinel) on a TCP port, killed when dropped.
struct Server {
    child: Option<Child>,
    port: u16,
    args: Vec<String>,
}

impl Server {
    async fn start(port: u16, args: Vec<String>) -> Server {
        let mut server = Server {
            child: None,
            port,
            args,
        };
        server.spawn().await;
        server
    }

    async fn spawn(&mut self) {
        self.child = Some(spawn_redis_server(&self.args));
        let port = self.port;
        eventually(STEP, "a Redis to answer PING", || async move {
            cli(port, &["PING"]).await.as_deref() == Some("PONG")
        })
        .await;
    }

    async fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().await.expect("kill");
    }
}

async fn cli(port: u16, args: &[&str]) -> Option<String> {
    redis_cli(&["-p", &port.to_string()], args).await
}

/// A master, a replica and three sentinels watching them as `pushd`.
struct Sentinels {
    redis: Vec<Server>,
    _sentinels: Vec<Server>,
    ports: Vec<u16>,
    _dir: tempfile::TempDir,
}

fn redis_args(dir: &Path, port: u16, replica_of: Option<u16>) -> Vec<String> {
    let mut args = vec![
        "--port".to_owned(),
        port.to_string(),
        "--bind".to_owned(),
        "127.0.0.1".to_owned(),
        "--save".to_owned(),
        String::new(),
        "--appendonly".to_owned(),
        "no".to_owned(),
        "--dir".to_owned(),
        dir.display().to_string(),
        "--dbfilename".to_owned(),
        format!("dump-{port}.rdb"),
    ];
    if let Some(master) = replica_of {
        args.extend([
            "--replicaof".to_owned(),
            "127.0.0.1".to_owned(),
            master.to_string(),
        ]);
    }
    args
}

impl Sentinels {
    async fn start() -> Sentinels {
        let dir = tempfile::tempdir().unwrap();
        let (master, replica) = (free_port(), free_port());
        let redis = vec![
            Server::start(master, redis_args(dir.path(), master, None)).await,
            Server::start(replica, redis_args(dir.path(), replica, Some(master))).await,
        ];
        let mut sentinels = Vec::new();
        let mut ports = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let conf: PathBuf = dir.path().join(format!("sentinel-{port}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {}\n\
                     sentinel monitor pushd 127.0.0.1 {master} 2\n\
                     sentinel down-after-milliseconds pushd 1000\n\
                     sentinel failover-timeout pushd 4000\n\
                     sentinel parallel-syncs pushd 1\n",
                    dir.path().display()
                ),
            )
            .unwrap();
            let args = vec![conf.display().to_string(), "--sentinel".to_owned()];
            sentinels.push(Server::start(port, args).await);
            ports.push(port);
        }
        let set = Sentinels {
            redis,
            _sentinels: sentinels,
            ports,
            _dir: dir,
        };
        // Every sentinel knows the replica (a failover needs one to promote).
        for port in set.ports.clone() {
            eventually(
                Duration::from_secs(20),
                "the sentinels to see the replica",
                || async move {
                    cli(port, &["SENTINEL", "REPLICAS", "pushd"])
                        .await
                        .is_some_and(|out| out.contains(&replica.to_string()))
                },
            )
            .await;
        }
        set
    }

    fn url(&self) -> String {
        let sentinels: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+sentinel://{}/pushd", sentinels.join(","))
    }

    /// The master's port, as the sentinels say.
    async fn master(&self) -> u16 {
        let out = cli(
            self.ports[0],
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "pushd"],
        )
        .await
        .expect("a sentinel's answer");
        out.lines().nth(1).expect("a port").trim().parse().unwrap()
    }

    fn server(&mut self, port: u16) -> &mut Server {
        self.redis
            .iter_mut()
            .find(|s| s.port == port)
            .expect("one of ours")
    }
}

/// Pushes to `uid` through `backend` every 10 ms for `span`, or until
/// `until` holds after a failure; each push's number and reply.
async fn push_stream(
    backend: &mut crate::harness::TextClient,
    uid: &str,
    first: u64,
    span: Duration,
) -> Vec<(u64, String)> {
    let mut replies = Vec::new();
    let started = Instant::now();
    let mut n = first;
    while started.elapsed() < span {
        let reply = backend
            .request(&format!(r#"{{"uid":"{uid}","n":{n}}}"#))
            .await;
        replies.push((n, reply));
        n += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    replies
}

/// Every push number `client` got, until it is quiet for a while.
async fn received(client: &mut WsClient) -> Vec<u64> {
    let mut got = Vec::new();
    while let Some(text) = client.recv_text_within(Duration::from_millis(1500)).await {
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        got.push(value["n"].as_u64().unwrap());
    }
    got
}

/// One failover under pushes from a to c's client: what the pushes saw.
struct Failover {
    /// Seconds from the kill to the first `ok` after it.
    ok_again_s: f64,
    failed: usize,
    ok: usize,
}

async fn fail_over(
    set: &mut Sentinels,
    backend: &mut crate::harness::TextClient,
    client: &mut WsClient,
    first: u64,
) -> Failover {
    let before = push_stream(backend, "on-c", first, Duration::from_millis(500)).await;
    let master = set.master().await;
    set.server(master).kill().await;
    let killed = Instant::now();
    let mut replies = before;
    let mut ok_again = None;
    let mut n = replies.last().map_or(first, |(n, _)| n + 1);
    // Until pushes are ok again and stay so for a while.
    while killed.elapsed() < Duration::from_secs(40) {
        let batch = push_stream(backend, "on-c", n, Duration::from_millis(200)).await;
        n += batch.len() as u64;
        let all_ok = batch.iter().all(|(_, reply)| reply == "ok");
        if batch.iter().any(|(_, reply)| reply == "ok") && ok_again.is_none() {
            ok_again = Some(killed.elapsed());
        }
        replies.extend(batch);
        if all_ok && ok_again.is_some_and(|at| killed.elapsed() > at + Duration::from_secs(2)) {
            break;
        }
    }
    let ok_again = ok_again.expect("pushes ok again after the failover");
    let got = received(client).await;
    let got: std::collections::HashSet<u64> = got.into_iter().collect();
    let lost: Vec<u64> = replies
        .iter()
        .filter(|(n, reply)| reply == "ok" && !got.contains(n))
        .map(|(n, _)| *n)
        .collect();
    assert!(lost.is_empty(), "answered ok, never delivered: {lost:?}");
    for (_, reply) in &replies {
        assert!(reply == "ok" || reply == "fail", "{reply}");
    }
    assert_ne!(
        set.master().await,
        master,
        "the sentinels chose another master"
    );
    Failover {
        ok_again_s: ok_again.as_secs_f64(),
        failed: replies.iter().filter(|(_, r)| r == "fail").count(),
        ok: replies.iter().filter(|(_, r)| r == "ok").count(),
    }
}

#[tokio::test]
async fn a_failover_disconnects_no_client_loses_no_ok_and_is_followed_there_and_back() {
    if !redis_available() {
        return;
    }
    let mut set = Sentinels::start().await;
    let url = set.url();
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    for name in ["a", "b", "c"] {
        let socket = dir.path().join(format!("{name}.sock"));
        let args = [
            "--cluster",
            &url,
            "--node-name",
            name,
            "--cluster-lease",
            "1s",
            "--cluster-timeout",
            "1s",
        ];
        nodes.push(Pushd::start_at(&socket, &args).await);
    }
    for node in &nodes {
        wait_for_nodes(node, 3).await;
    }
    let [a, b, c] = &nodes[..] else {
        unreachable!()
    };
    let master = set.master().await;
    let stats = c.stats().await;
    assert!(
        stats["cluster"]["redis"]
            .as_str()
            .unwrap()
            .contains(&format!("master 127.0.0.1:{master}")),
        "stats name the master: {}",
        stats["cluster"]
    );
    let mut on_a = a.bound_client("on-a").await;
    let _on_b = b.bound_client("on-b").await;
    let mut on_c = c.bound_client("on-c").await;
    let mut backend = a.text_client().await;

    let there = fail_over(&mut set, &mut backend, &mut on_c, 0).await;
    eprintln!(
        "failover: ok again {:.1} s after the kill; {} fail, {} ok meanwhile",
        there.ok_again_s, there.failed, there.ok
    );
    // Presence whole on the new master: every node sees every uid.
    for node in &nodes {
        for uid in ["on-a", "on-b", "on-c"] {
            eventually(STEP, &format!("{uid} online"), || async {
                node.is_online(uid).await
            })
            .await;
        }
    }
    let new_master = set.master().await;
    eventually(STEP, "stats to name the new master", || async {
        let stats = a.stats().await;
        stats["cluster"]["redis"]
            .as_str()
            .is_some_and(|r| r.contains(&format!("master 127.0.0.1:{new_master}")))
    })
    .await;
    // No client was disconnected: each still gets pushes.
    assert_eq!(backend.request(r#"{"uid":"on-a","n":1000000}"#).await, "ok");
    assert_eq!(on_a.recv_text().await, r#"{"uid":"on-a","n":1000000}"#);

    // The old master comes back (a replica now), and the new one dies: back again.
    set.server(master).spawn().await;
    eventually(
        Duration::from_secs(30),
        "the old master to replicate the new",
        || async {
            cli(master, &["INFO", "replication"])
                .await
                .is_some_and(|info| {
                    info.contains("role:slave") && info.contains("master_link_status:up")
                })
        },
    )
    .await;
    let back = fail_over(&mut set, &mut backend, &mut on_c, 100_000).await;
    eprintln!(
        "failover back: ok again {:.1} s after the kill; {} fail, {} ok meanwhile",
        back.ok_again_s, back.failed, back.ok
    );
    assert_eq!(set.master().await, master);
    for uid in ["on-a", "on-b", "on-c"] {
        eventually(STEP, &format!("{uid} online"), || async {
            b.is_online(uid).await
        })
        .await;
    }
}
