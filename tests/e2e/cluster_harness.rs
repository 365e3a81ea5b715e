//! A real `redis-server` on a Unix socket in a temp dir (persistence off unless a
//! test asks for a snapshot) and real pushd nodes in cluster mode around it.
//!
//! Needs Debian's `redis-server` (`.ci/run` installs it). Without it the cluster tests
//! say so and pass, unless `PUSHD_REQUIRE_REDIS=1` (set by `.ci/run`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::harness::{Pushd, STEP, eventually, within};

const REDIS_SERVER: &str = "/usr/bin/redis-server";
pub const REDIS_CLI: &str = "/usr/bin/redis-cli";

/// Whether redis-server is here; panics when it must be and is not.
pub fn redis_available() -> bool {
    let present = Path::new(REDIS_SERVER).exists() && Path::new(REDIS_CLI).exists();
    if !present {
        assert!(
            std::env::var_os("PUSHD_REQUIRE_REDIS").is_none(),
            "PUSHD_REQUIRE_REDIS is set but {REDIS_SERVER} is missing (apt-get install redis-server)"
        );
        eprintln!("skipped: {REDIS_SERVER} is missing");
    }
    present
}

/// redis-cli reaching a Redis by `at` (`-s SOCKET`, `-p PORT`) with `args`:
/// its trimmed output, `None` when it failed.
pub async fn redis_cli(at: &[&str], args: &[&str]) -> Option<String> {
    let output = Command::new(REDIS_CLI)
        .args(at)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// A redis-server child with `args`, its output dropped, killed when dropped.
pub fn spawn_redis_server<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Child {
    Command::new(REDIS_SERVER)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn redis-server")
}

/// A redis-server child, killed when dropped.
pub struct Redis {
    child: Option<Child>,
    dir: PathBuf,
    /// Its Unix socket.
    pub socket: PathBuf,
}

impl Redis {
    /// Starts redis-server in `dir` (which the caller keeps), listening only on a Unix socket.
    pub async fn start(dir: &Path) -> Redis {
        let mut redis = Redis {
            child: None,
            dir: dir.to_owned(),
            socket: dir.join("redis.sock"),
        };
        redis.spawn().await;
        redis
    }

    async fn spawn(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
        let mut args: Vec<std::ffi::OsString> = vec!["--port".into(), "0".into()];
        args.extend(["--unixsocket".into(), self.socket.clone().into_os_string()]);
        for arg in [
            "--unixsocketperm",
            "700",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
        ] {
            args.push(arg.into());
        }
        args.push(self.dir.clone().into_os_string());
        let child = spawn_redis_server(&args);
        self.child = Some(child);
        eventually(STEP, "redis-server to answer PING", || async {
            self.try_cli(&["PING"]).await.as_deref() == Some("PONG")
        })
        .await;
    }

    /// The URL pushd takes.
    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.socket.display())
    }

    async fn try_cli(&self, args: &[&str]) -> Option<String> {
        let socket = self.socket.display().to_string();
        redis_cli(&["-s", &socket], args).await
    }

    /// Runs one redis-cli command and returns its output.
    pub async fn cli(&self, args: &[&str]) -> String {
        within(STEP, "redis-cli", self.try_cli(args))
            .await
            .unwrap_or_else(|| panic!("redis-cli {args:?} failed"))
    }

    /// Cuts the subscriber connection that subscribed last (of a fresh
    /// cluster's nodes, the one started last), as a network blip would.
    pub async fn kill_newest_subscriber(&self) {
        let clients = self.cli(&["CLIENT", "LIST"]).await;
        let subscriber = clients
            .lines()
            // Each node names its subscriber connection `PREFIX:sub:ID`.
            .filter(|line| line.contains(":sub:"))
            .filter_map(|line| {
                line.strip_prefix("id=")?
                    .split(' ')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .max()
            .expect("a subscriber");
        self.cli(&["CLIENT", "KILL", "ID", &subscriber.to_string()])
            .await;
    }

    /// Sends `signal` to redis-server (SIGSTOP, SIGCONT: a pause that its
    /// clock, and so every lease, goes on through).
    #[allow(unsafe_code)]
    pub fn signal(&self, signal: i32) {
        let pid = self.child.as_ref().and_then(Child::id).expect("running");
        // SAFETY: kill(2) on our own child pid has no memory-safety preconditions.
        assert_eq!(
            unsafe { libc::kill(pid as i32, signal) },
            0,
            "kill({signal})"
        );
    }

    /// SIGKILLs redis-server and waits for it to be gone.
    pub async fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().await.expect("kill redis-server");
    }

    /// Starts redis-server again on the same socket and dir: a `dump.rdb` there
    /// (from `SAVE`) is loaded even with saving off, which is how a test brings
    /// back an old snapshot.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "kill it first");
        self.spawn().await;
    }
}

/// Options for test nodes: short leases and timeouts so faults show quickly.
pub struct NodeOptions {
    /// `--cluster-lease`.
    pub lease: &'static str,
    /// `--cluster-timeout`.
    pub timeout: &'static str,
    /// Any other options.
    pub extra: &'static [&'static str],
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            lease: "1s",
            timeout: "1s",
            extra: &[],
        }
    }
}

/// Starts one pushd node named `name` against `redis`, with its socket in `dir`.
pub async fn start_node(redis: &Redis, dir: &Path, name: &str, options: &NodeOptions) -> Pushd {
    let socket = dir.join(format!("{name}.sock"));
    let url = redis.url();
    let mut args = vec![
        "--cluster",
        &url,
        "--node-name",
        name,
        "--cluster-lease",
        options.lease,
        "--cluster-timeout",
        options.timeout,
    ];
    args.extend(options.extra);
    Pushd::start_at(&socket, &args).await
}

/// Waits until `node` sees `n` live nodes (itself included) and reaches Redis.
/// A Redis and two nodes of defaults, `a` and `b`, that see each other.
pub async fn two_nodes(dir: &Path) -> (Redis, Pushd, Pushd) {
    let redis = Redis::start(dir).await;
    let options = NodeOptions::default();
    let a = start_node(&redis, dir, "a", &options).await;
    let b = start_node(&redis, dir, "b", &options).await;
    wait_for_nodes(&a, 2).await;
    (redis, a, b)
}

pub async fn wait_for_nodes(node: &Pushd, n: usize) {
    eventually(STEP, &format!("a cluster of {n} nodes"), || async {
        let out = node.ctl(&["--json", "stats"]).await;
        if out.status != 0 {
            return false;
        }
        let cluster = &out.json()["cluster"];
        cluster["redis_up"] == true && cluster["nodes"].as_array().map(Vec::len) == Some(n)
    })
    .await;
}

/// Redis plus three nodes `a`, `b`, `c` that see each other.
pub struct Three {
    /// The nodes, a, b, c.
    pub nodes: Vec<Pushd>,
    /// Their Redis.
    pub redis: Redis,
    /// Temp dir holding every socket, removed when dropped.
    _dir: tempfile::TempDir,
}

impl Three {
    /// [`Three::start`], or `None` (the test skips) without redis-server.
    pub async fn start_if_available(options: NodeOptions) -> Option<Three> {
        if redis_available() {
            Some(Self::start(options).await)
        } else {
            None
        }
    }

    /// Starts Redis and three nodes and waits until each sees all three.
    pub async fn start(options: NodeOptions) -> Three {
        let dir = tempfile::tempdir().unwrap();
        let redis = Redis::start(dir.path()).await;
        let mut nodes = Vec::new();
        for name in ["a", "b", "c"] {
            nodes.push(start_node(&redis, dir.path(), name, &options).await);
        }
        for node in &nodes {
            wait_for_nodes(node, 3).await;
        }
        Three {
            nodes,
            redis,
            _dir: dir,
        }
    }
}

/// Sleeps `ms` milliseconds (for the few waits that must let time pass).
pub async fn pause_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// A TCP proxy in front of a Redis's Unix socket that can wedge subscriptions: after
/// [`WedgeProxy::wedge_subscribers`], the connections that had sent `SUBSCRIBE` stay open but
/// pass nothing more from Redis to the node, as a silently broken path would.
pub struct WedgeProxy {
    /// Where nodes connect (`redis://ADDR`).
    pub addr: std::net::SocketAddr,
    wedged: std::sync::Arc<std::sync::Mutex<Vec<std::sync::Arc<std::sync::atomic::AtomicU8>>>>,
}

/// A proxied connection's state: 0 plain, 1 a subscriber, 2 a wedged subscriber.
const SUBSCRIBER: u8 = 1;
const WEDGED: u8 = 2;

impl WedgeProxy {
    pub async fn start(redis: &Redis) -> WedgeProxy {
        use std::sync::atomic::{AtomicU8, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let socket = redis.socket.clone();
        let states = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let all = states.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::UnixStream::connect(&socket).await else {
                    continue;
                };
                let state = std::sync::Arc::new(AtomicU8::new(0));
                all.lock().unwrap().push(state.clone());
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let up = state.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0; 16 * 1024];
                    while let Ok(n @ 1..) = client_read.read(&mut buf).await {
                        // The command itself, as RESP: `$9\r\nSUBSCRIBE\r\n`.
                        if buf[..n].windows(15).any(|w| w == b"$9\r\nSUBSCRIBE\r\n") {
                            let _ = up.compare_exchange(
                                0,
                                SUBSCRIBER,
                                Ordering::SeqCst,
                                Ordering::SeqCst,
                            );
                        }
                        if server_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
                tokio::spawn(async move {
                    let mut buf = vec![0; 16 * 1024];
                    while let Ok(n @ 1..) = server_read.read(&mut buf).await {
                        if state.load(Ordering::SeqCst) == WEDGED {
                            continue;
                        }
                        if client_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        WedgeProxy {
            addr,
            wedged: states,
        }
    }

    /// From now on the subscriptions made so far hear nothing; the connections stay open.
    pub fn wedge_subscribers(&self) {
        use std::sync::atomic::Ordering;
        for state in self.wedged.lock().unwrap().iter() {
            let _ = state.compare_exchange(SUBSCRIBER, WEDGED, Ordering::SeqCst, Ordering::SeqCst);
        }
    }
}
