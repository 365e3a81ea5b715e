//! The servers the checker starts and hurts: pushd nodes (one, or several in
//! cluster mode) restarted on the same addresses, and in cluster mode a
//! redis-server of its own on a Unix socket, paused, restarted empty, or with
//! its subscribers cut off.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::process::{Child, Command};

/// One pushd node, started and restarted on the same addresses.
pub(super) struct Node {
    binary: PathBuf,
    args: Vec<String>,
    child: Child,
    /// Its admin socket.
    socket: PathBuf,
    /// After a live upgrade: the process that took over (not the checker's
    /// child: the old pushd started it).
    upgraded: Option<i32>,
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(pid) = self.upgraded {
            kill(pid, libc::SIGKILL);
        }
    }
}

/// Where a node listens.
#[derive(Debug, Clone)]
pub(super) struct Addresses {
    pub(super) ws: String,
    pub(super) text: String,
    pub(super) http: String,
}

impl Node {
    /// Starts pushd on free ports with its admin socket in `dir` and `extra`
    /// arguments; returns it with its addresses.
    pub(super) async fn start(
        binary: &Path,
        dir: &Path,
        name: &str,
        extra: &[String],
    ) -> anyhow::Result<(Node, Addresses)> {
        let socket = dir.join(format!("{name}.sock"));
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
        args.push("--socket".into());
        args.push(socket.display().to_string());
        args.extend(extra.iter().cloned());
        let (child, addresses) = spawn(binary, &args, &socket).await?;
        // Restarts come back on the same addresses.
        args[1] = addresses.ws.clone();
        args[3] = addresses.text.clone();
        args[5] = addresses.http.clone();
        let node = Node {
            binary: binary.to_owned(),
            args,
            child,
            socket,
            upgraded: None,
        };
        Ok((node, addresses))
    }

    /// A deploy's first step: `pushctl drain --over` `over`, through the admin socket.
    pub(super) async fn drain(&self, over: Duration) -> anyhow::Result<()> {
        let mut client = pushd_ctl::client::Client::connect(&self.socket).await?;
        let request = pushd_proto::admin::Request::Drain {
            over_ms: Some(over.as_millis() as u64),
        };
        client
            .request_within(request, over + Duration::from_secs(30))
            .await?;
        Ok(())
    }

    /// A live upgrade to the same binary (`pushctl upgrade --binary`); the
    /// old process is gone when it returns.
    pub(super) async fn upgrade(&mut self) -> anyhow::Result<()> {
        let mut client = pushd_ctl::client::Client::connect(&self.socket).await?;
        let request = pushd_proto::admin::Request::Upgrade {
            binary: Some(self.binary.to_string_lossy().into_owned()),
            drain_if_refused_ms: None,
        };
        let answer = client
            .request_within(request, Duration::from_secs(60))
            .await?;
        let pushd_proto::admin::Response::Upgraded(upgraded) = answer else {
            bail!("the upgrade did not happen: {answer:?}");
        };
        self.stopped().await?;
        self.upgraded = Some(upgraded.new_pid as i32);
        Ok(())
    }

    /// Stops the node with `signal` and starts it again.
    pub(super) async fn restart(&mut self, signal: i32) -> anyhow::Result<()> {
        match self.upgraded.take() {
            Some(pid) => {
                kill(pid, signal);
                // Not a child: its end shows as its /proc entry going away.
                let proc = PathBuf::from(format!("/proc/{pid}"));
                let until = tokio::time::Instant::now() + Duration::from_secs(15);
                while proc.exists() && tokio::time::Instant::now() < until {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                if proc.exists() {
                    bail!("pushd {pid} did not stop");
                }
            }
            None => {
                if let Some(pid) = self.child.id() {
                    kill(pid as i32, signal);
                }
                self.stopped().await?;
            }
        }
        let (child, _) = spawn(&self.binary, &self.args, &self.socket).await?;
        self.child = child;
        Ok(())
    }

    /// Waits (bounded) for the checker's child to exit.
    async fn stopped(&mut self) -> anyhow::Result<()> {
        tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .context("pushd did not stop")??;
        Ok(())
    }
}

fn kill(pid: i32, signal: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is a pushd
    // this checker started (or that one started, in an upgrade).
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid, signal);
    }
}

/// Spawns pushd with `args` and waits for its listening line: the child and
/// the addresses it reports.
/// Starts a node. A single node keeps what it holds across its restarts, as
/// deployed, in `SOCKET.state` (cluster mode ignores it: Redis holds all of
/// it; a build older than the state file ignores the variable).
async fn spawn(
    binary: &Path,
    args: &[String],
    socket: &Path,
) -> anyhow::Result<(Child, Addresses)> {
    let mut child = Command::new(binary)
        .args(args)
        .env("PUSHD_STATE_FILE", socket.with_extension("state"))
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
    let debug = std::env::var_os("PUSHBENCH_PROMISE_DEBUG").is_some();
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
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if debug {
                eprintln!("pushd: {line}");
            }
        }
    });
    let addresses = Addresses {
        ws: field(&listening, "ws=").context("no ws= in the start line")?,
        text: field(&listening, "text=").context("no text= in the start line")?,
        http: field(&listening, "http=").context("no http= in the start line")?,
    };
    Ok((child, addresses))
}

/// A redis-server of the checker's own, on a Unix socket, that keeps nothing
/// on disk: a restart starts it empty.
pub(super) struct Redis {
    binary: PathBuf,
    socket: PathBuf,
    child: Child,
}

impl Redis {
    /// Starts `binary` with its socket in `dir`.
    pub(super) async fn start(binary: &Path, dir: &Path) -> anyhow::Result<Redis> {
        let socket = dir.join("redis.sock");
        let child = Self::spawn(binary, &socket).await?;
        Ok(Redis {
            binary: binary.to_owned(),
            socket,
            child,
        })
    }

    async fn spawn(binary: &Path, socket: &Path) -> anyhow::Result<Child> {
        let _ = std::fs::remove_file(socket);
        let child = Command::new(binary)
            .args(["--port", "0", "--save", "", "--appendonly", "no"])
            .arg("--unixsocket")
            .arg(socket)
            .args(["--unixsocketperm", "700"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(reply) = command(socket, "PING").await
                && reply == "+PONG"
            {
                return Ok(child);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("redis-server did not answer on {}", socket.display());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// pushd's `--cluster` URL for it.
    pub(super) fn url(&self) -> String {
        format!("redis+unix://{}", self.socket.display())
    }

    /// Kills it and starts it again, empty.
    pub(super) async fn restart(&mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id() {
            kill(pid as i32, libc::SIGKILL);
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
        self.child = Self::spawn(&self.binary, &self.socket).await?;
        Ok(())
    }

    /// Sends one inline command; its reply's first line.
    pub(super) async fn command(&self, line: &str) -> anyhow::Result<String> {
        command(&self.socket, line).await
    }
}

/// One inline command to the Redis at `socket`; the first line of its reply.
async fn command(socket: &Path, line: &str) -> anyhow::Result<String> {
    let asked = async {
        let mut stream = BufReader::new(UnixStream::connect(socket).await?);
        stream
            .get_mut()
            .write_all(format!("{line}\r\n").as_bytes())
            .await?;
        let mut reply = String::new();
        stream.read_line(&mut reply).await?;
        anyhow::Ok(reply.trim_end().to_owned())
    };
    tokio::time::timeout(Duration::from_secs(5), asked)
        .await
        .context("Redis did not answer")?
}

/// A fault the checker injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGTERM a node, then start it again.
    Term,
    /// SIGKILL a node, then start it again.
    Kill,
    /// `CLIENT PAUSE` Redis for its writes (cluster mode), half a second or
    /// longer than the nodes' `--cluster-timeout`, in turn.
    Pause,
    /// Kill Redis and start it again empty (cluster mode).
    RedisRestart,
    /// `CLIENT KILL TYPE pubsub`: every node's subscriber connection cut (cluster mode).
    SubscriberKill,
    /// A deploy: `pushctl drain` over a second, then SIGTERM and start again.
    Drain,
    /// A live upgrade of a node to the same binary.
    Upgrade,
}

impl Fault {
    /// Every fault, by name.
    pub const ALL: [(&'static str, Fault); 7] = [
        ("term", Fault::Term),
        ("kill", Fault::Kill),
        ("drain", Fault::Drain),
        ("upgrade", Fault::Upgrade),
        ("pause", Fault::Pause),
        ("redis-restart", Fault::RedisRestart),
        ("subscriber-kill", Fault::SubscriberKill),
    ];

    /// The fault named `name`.
    pub fn parse(name: &str) -> Result<Fault, String> {
        (Self::ALL.iter())
            .find(|(known, _)| *known == name)
            .map(|(_, fault)| *fault)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|(n, _)| *n).collect();
                format!("unknown fault {name:?}; known: {}", names.join(", "))
            })
    }

    /// Whether it needs Redis (cluster mode).
    pub fn needs_redis(self) -> bool {
        matches!(
            self,
            Fault::Pause | Fault::RedisRestart | Fault::SubscriberKill
        )
    }
}

/// The servers of one run.
pub(super) struct Servers {
    pub(super) nodes: Vec<Node>,
    pub(super) redis: Option<Redis>,
}

impl Servers {
    /// Injects fault number `k` of kind `fault` (a node's faults go to each node in turn).
    pub(super) async fn inject(&mut self, fault: Fault, k: u64) -> anyhow::Result<()> {
        let node = (k as usize) % self.nodes.len();
        match (fault, &mut self.redis) {
            (Fault::Term, _) => self.nodes[node].restart(libc::SIGTERM).await,
            (Fault::Kill, _) => self.nodes[node].restart(libc::SIGKILL).await,
            (Fault::Drain, _) => {
                self.nodes[node].drain(Duration::from_secs(1)).await?;
                self.nodes[node].restart(libc::SIGTERM).await
            }
            (Fault::Upgrade, _) => self.nodes[node].upgrade().await,
            (Fault::Pause, Some(redis)) => {
                let ms = if k.is_multiple_of(2) { 500 } else { 2_500 };
                redis.command(&format!("CLIENT PAUSE {ms} WRITE")).await?;
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(())
            }
            (Fault::RedisRestart, Some(redis)) => redis.restart().await,
            (Fault::SubscriberKill, Some(redis)) => {
                redis.command("CLIENT KILL TYPE pubsub").await.map(drop)
            }
            (_, None) => bail!("{fault:?} needs cluster mode"),
        }
    }
}
