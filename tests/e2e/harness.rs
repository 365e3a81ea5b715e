//! A tiny harness around the real binaries: start `pushd` on free ports with
//! a socket in a temp dir, run `pushctl` against it, and connect real
//! WebSocket and text-port clients. Every wait is bounded. The polls a test
//! waits on (online, stats, list) ask the admin socket in-process, with
//! pushctl's own client, instead of starting a `pushctl` process per poll.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use pushd_ctl::client::Client;
use pushd_proto::admin::{Request, Response};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The longest any single step of a test may wait.
pub const STEP: Duration = Duration::from_secs(10);

/// Awaits `future`, failing the test if it takes longer than `limit`.
pub async fn within<T>(limit: Duration, what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// Polls `check` every 20 ms until it returns true, for at most `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    within(limit, what, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// The options every test pushd gets: free loopback ports and `socket`.
pub fn loopback_args(socket: &Path) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = [
        "--ws-listen",
        "127.0.0.1:0",
        "--text-listen",
        "127.0.0.1:0",
        "--socket",
    ]
    .map(Into::into)
    .into();
    args.push(socket.into());
    args
}

/// A running `pushd` child process, killed when dropped.
pub struct Pushd {
    child: Child,
    /// Where WebSocket clients connect.
    pub ws: SocketAddr,
    /// Where backends connect.
    pub text: SocketAddr,
    /// The admin socket.
    pub socket: PathBuf,
    /// Everything pushd wrote to stderr so far.
    pub log: Arc<Mutex<String>>,
    _dir: Option<tempfile::TempDir>,
}

/// What one `pushctl` run produced.
#[derive(Debug)]
pub struct Ctl {
    /// Exit status.
    pub status: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Ctl {
    /// Parses stdout as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

impl Pushd {
    /// Starts pushd on loopback port 0 with a fresh socket path and `extra` options.
    pub async fn start(extra: &[&str]) -> Pushd {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("pushd.sock");
        let mut pushd = Self::start_at(&socket, extra).await;
        pushd._dir = Some(dir);
        pushd
    }

    /// Starts pushd with the admin socket at `socket` (the caller owns its directory).
    pub async fn start_at(socket: &Path, extra: &[&str]) -> Pushd {
        Self::try_start_at(socket, extra)
            .await
            .unwrap_or_else(|log| panic!("pushd did not start:\n{log}"))
    }

    /// Like [`Pushd::start_at`], but returns pushd's stderr if it exits instead of starting.
    pub async fn try_start_at(socket: &Path, extra: &[&str]) -> Result<Pushd, String> {
        let mut command = Command::new(env!("CARGO_BIN_EXE_pushd"));
        for option in ["--ws-listen", "--text-listen"] {
            if !extra.contains(&option) {
                command.args([option, "127.0.0.1:0"]);
            }
        }
        command.arg("--socket").arg(socket).args(extra);
        Self::spawn(command, socket).await
    }

    /// Spawns a prepared pushd command and waits for its "listening" line.
    /// Unless the command names one, its state file is beside its socket
    /// (`SOCKET.state`): the test's own, kept across a restart on that socket.
    pub async fn spawn(mut command: Command, socket: &Path) -> Result<Pushd, String> {
        let std = command.as_std();
        let named = std.get_args().any(|arg| arg == "--state-file")
            || std.get_envs().any(|(key, _)| key == "PUSHD_STATE_FILE");
        if !named {
            command.env("PUSHD_STATE_FILE", socket.with_extension("state"));
        }
        command
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("spawn pushd");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let log = Arc::new(Mutex::new(String::new()));
        let ready = within(STEP, "pushd's listening line", async {
            while let Ok(Some(line)) = lines.next_line().await {
                log.lock().unwrap().push_str(&line);
                log.lock().unwrap().push('\n');
                if line.contains(" listening ") {
                    return Some((field(&line, "ws="), field(&line, "text=")));
                }
            }
            None
        })
        .await;
        let Some((ws, text)) = ready else {
            return Err(log.lock().unwrap().clone());
        };
        let sink = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().unwrap().push_str(&line);
                sink.lock().unwrap().push('\n');
            }
        });
        Ok(Pushd {
            child,
            ws,
            text,
            socket: socket.to_owned(),
            log,
            _dir: None,
        })
    }

    /// The address of another listener in the "listening" line (`http=`,
    /// `metrics=`).
    pub fn listener(&self, key: &str) -> SocketAddr {
        let log = self.log.lock().unwrap();
        let line = log
            .lines()
            .find(|l| l.contains(" listening "))
            .expect("listening line");
        field(line, &format!("{key}="))
    }

    /// The child's pid.
    pub fn pid(&self) -> i32 {
        self.child.id().expect("running") as i32
    }

    /// Sends a signal to pushd.
    #[allow(unsafe_code)]
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child pid has no memory-safety preconditions.
        assert_eq!(
            unsafe { libc::kill(self.pid(), signal) },
            0,
            "kill({signal})"
        );
    }

    /// Waits (bounded) for pushd to exit and returns its exit code.
    pub async fn wait(&mut self, limit: Duration) -> Option<i32> {
        within(limit, "pushd to exit", self.child.wait())
            .await
            .expect("wait")
            .code()
    }

    /// Runs `pushctl --socket <ours> ARGS`.
    pub async fn ctl(&self, args: &[&str]) -> Ctl {
        let mut command = Command::new(env!("CARGO_BIN_EXE_pushctl"));
        command.arg("--socket").arg(&self.socket).args(args);
        run_ctl(command, None).await
    }

    /// Runs pushctl with `input` on its stdin.
    pub async fn ctl_stdin(&self, args: &[&str], input: &str) -> Ctl {
        let mut command = Command::new(env!("CARGO_BIN_EXE_pushctl"));
        command.arg("--socket").arg(&self.socket).args(args);
        run_ctl(command, Some(input)).await
    }

    /// Asks the admin socket one request, as pushctl does; panics on a refusal
    /// or an answer the cluster could not confirm.
    pub async fn ask(&self, request: Request) -> Response {
        within(STEP, "an admin reply", async {
            let mut client = Client::connect(&self.socket).await.expect("admin socket");
            let response = client.request(request).await.expect("admin reply");
            let incomplete = client.take_incomplete();
            assert!(incomplete.is_empty(), "unconfirmed: {incomplete:?}");
            response
        })
        .await
    }

    /// How many connections `uid` has (`pushctl online UID`).
    pub async fn connections(&self, uid: &str) -> u64 {
        let uid = pushd_proto::uid::Uid::parse(uid).expect("a valid uid");
        match self.ask(Request::Online { uid }).await {
            Response::Online { connections, .. } => connections,
            other => panic!("expected an online answer, got {other:?}"),
        }
    }

    /// Whether `uid` has a connection (`pushctl online UID` exits 0).
    pub async fn is_online(&self, uid: &str) -> bool {
        self.connections(uid).await > 0
    }

    /// Waits until `uid` has exactly `n` connections.
    pub async fn wait_connections(&self, uid: &str, n: u64) {
        eventually(STEP, &format!("{uid} to have {n} connections"), || async {
            self.connections(uid).await == n
        })
        .await;
    }

    /// Opens a WebSocket and binds it to `uid`, waiting until pushd shows it online.
    pub async fn bound_client(&self, uid: &str) -> WsClient {
        let before = self.connections(uid).await;
        let mut client = WsClient::connect(self.ws).await;
        client.send_text(uid).await;
        // At least one more: in cluster mode `before` may have missed a connection
        // bound on another node whose presence was still on its way to Redis.
        let uid = uid.trim();
        eventually(
            STEP,
            &format!("{uid} to have more than {before} connections"),
            || async { self.connections(uid).await > before },
        )
        .await;
        client
    }

    /// Waits until every connection of `uid` has been idle for at least
    /// `at_least`, as `pushctl list` reports it (idle times need real time to
    /// pass; this waits for pushd to say so, not for a guessed sleep).
    pub async fn wait_idle(&self, uid: &str, at_least: Duration) {
        let at_least_ms = at_least.as_millis() as u64;
        let what = format!("{uid} to be idle for {at_least:?}");
        eventually(STEP + at_least, &what, || async {
            let Response::List { uids } = self.ask(Request::List).await else {
                return false;
            };
            uids.iter()
                .filter(|row| row.uid == uid)
                .all(|row| row.connections.iter().all(|c| c.idle_ms >= at_least_ms))
        })
        .await;
    }

    /// Whether `pushctl list` shows nobody.
    pub async fn list_is_empty(&self) -> bool {
        matches!(self.ask(Request::List).await, Response::List { uids } if uids.is_empty())
    }

    /// What `pushctl --json stats` prints.
    pub async fn stats(&self) -> serde_json::Value {
        match self.ask(Request::Stats).await {
            Response::Stats(stats) => serde_json::to_value(&stats).expect("stats as JSON"),
            other => panic!("expected stats, got {other:?}"),
        }
    }

    /// Pushes a marker to `uid` and checks that it is the next data frame each of
    /// `clients` (connections of `uid`) receives: nothing else was pushed to them
    /// before. A negative check that waits on a frame, not on a clock.
    pub async fn fence(&self, uid: &str, clients: &mut [&mut WsClient]) {
        static FENCES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = FENCES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let marker = format!("fence {n}");
        let request = Request::Send {
            uid: pushd_proto::uid::Uid::parse(uid).expect("a valid uid"),
            message: marker.clone(),
            transient: true,
        };
        match self.ask(request).await {
            Response::Delivered { connections, .. } => {
                assert!(connections > 0, "{uid} is offline")
            }
            other => panic!("expected a delivery, got {other:?}"),
        }
        for client in clients {
            let frame = client.recv_text().await;
            // A pushd.v2 client gets `ID PAYLOAD`.
            let payload = frame.split_once(' ').map_or(&*frame, |(_, p)| p);
            assert!(
                frame == marker || payload == marker,
                "a frame came before the fence: {frame:?}"
            );
        }
    }

    /// Opens a text-port connection.
    pub async fn text_client(&self) -> TextClient {
        let stream = within(STEP, "text port connect", TcpStream::connect(self.text))
            .await
            .expect("connect");
        let (read, write) = stream.into_split();
        TextClient {
            read: BufReader::new(read),
            write,
        }
    }
}

/// The address after `key` (e.g. `ws=`) in a log line.
pub fn field(line: &str, key: &str) -> SocketAddr {
    let rest = &line[line
        .find(key)
        .unwrap_or_else(|| panic!("no {key} in {line}"))
        + key.len()..];
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

/// Runs a prepared pushctl command with a bounded wait.
pub async fn run_ctl(mut command: Command, input: Option<&str>) -> Ctl {
    command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("spawn pushctl");
    if let Some(input) = input {
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).await.unwrap();
    }
    let output = within(STEP, "pushctl", child.wait_with_output())
        .await
        .expect("pushctl output");
    Ctl {
        status: output.status.code().expect("pushctl exited by signal"),
        stdout: String::from_utf8(output.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("utf-8 stderr"),
    }
}

/// A WebSocket client (a real tungstenite client, as a browser would be).
pub struct WsClient {
    /// The underlying stream, for tests that need raw access.
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What a client observed when its connection ended.
#[derive(Debug, PartialEq, Eq)]
pub struct Closed {
    /// The close code, if a close frame came.
    pub code: Option<u16>,
    /// The close reason.
    pub reason: String,
}

impl WsClient {
    /// Connects to `ws://addr/`.
    pub async fn connect(addr: SocketAddr) -> WsClient {
        let url = format!("ws://{addr}/any/path");
        let (ws, _) = within(
            STEP,
            "WebSocket connect",
            tokio_tungstenite::connect_async(url),
        )
        .await
        .expect("handshake");
        WsClient { ws }
    }

    /// Connects to `ws://addr/` offering the `pushd.v2` subprotocol, with
    /// `?since=SINCE` when given; panics unless pushd selected it.
    pub async fn connect_v2(addr: SocketAddr, since: Option<&str>) -> WsClient {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let query = since.map(|s| format!("?since={s}")).unwrap_or_default();
        let mut request = format!("ws://{addr}/page{query}")
            .into_client_request()
            .expect("request");
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "pushd.v2".parse().expect("header"),
        );
        let (ws, response) = within(
            STEP,
            "WebSocket connect",
            tokio_tungstenite::connect_async(request),
        )
        .await
        .expect("handshake");
        let selected = response.headers().get("Sec-WebSocket-Protocol");
        assert_eq!(selected.and_then(|v| v.to_str().ok()), Some("pushd.v2"));
        WsClient { ws }
    }

    /// Connects to `ws://addr/` from the local address `source` (another
    /// 127.0.0.0/8 address plays another machine), writing `prefix` (a PROXY
    /// header, say) before the handshake and adding `headers` to it.
    pub async fn connect_from(
        source: std::net::IpAddr,
        addr: SocketAddr,
        prefix: &[u8],
        headers: &[(&str, &str)],
    ) -> Result<WsClient, tokio_tungstenite::tungstenite::Error> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::new(source, 0))
            .expect("bind the source address");
        let mut stream = within(STEP, "TCP connect", socket.connect(addr))
            .await
            .expect("connect");
        stream.write_all(prefix).await.expect("write the prefix");
        let mut request = format!("ws://{addr}/").into_client_request()?;
        for (name, value) in headers {
            let name =
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes())
                    .expect("header name");
            request
                .headers_mut()
                .append(name, value.parse().expect("header value"));
        }
        let handshake = tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream));
        let (ws, _) = within(STEP, "WebSocket handshake", handshake).await?;
        Ok(WsClient { ws })
    }

    /// Connects to `ws://addr/` with a receive buffer of a few KiB: a client
    /// that reads slowly, so what pushd sends it piles up in pushd.
    pub async fn connect_with_small_window(addr: SocketAddr) -> WsClient {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        let stream = within(STEP, "TCP connect", socket.connect(addr))
            .await
            .expect("connect");
        let handshake =
            tokio_tungstenite::client_async(format!("ws://{addr}/"), MaybeTlsStream::Plain(stream));
        let (ws, _) = within(STEP, "WebSocket handshake", handshake)
            .await
            .expect("handshake");
        WsClient { ws }
    }

    /// Sends one text frame.
    pub async fn send_text(&mut self, text: &str) {
        within(STEP, "WebSocket send", self.ws.send(Message::text(text)))
            .await
            .expect("send");
    }

    /// The next data frame (text), skipping pings and pongs.
    pub async fn recv_text(&mut self) -> String {
        within(STEP, "a text frame", async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Text(text))) => return text.to_string(),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    other => panic!("expected a text frame, got {other:?}"),
                }
            }
        })
        .await
    }

    /// The next text frame if one comes within `limit`; `None` after it, or
    /// when the connection ends.
    pub async fn recv_text_within(&mut self, limit: Duration) -> Option<String> {
        tokio::time::timeout(limit, async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Text(text))) => return Some(text.to_string()),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    _ => return None,
                }
            }
        })
        .await
        .ok()
        .flatten()
    }

    /// Sends a ping and waits for its pong: pushd has read every frame sent before it.
    pub async fn round_trip(&mut self) {
        within(
            STEP,
            "WebSocket send",
            self.ws.send(Message::Ping("rt".into())),
        )
        .await
        .expect("send ping");
        within(STEP, "the pong", async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Pong(payload))) if &payload[..] == b"rt" => return,
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    other => panic!("expected the pong, got {other:?}"),
                }
            }
        })
        .await
    }

    /// Reads until the server closes; returns the close frame's code and reason.
    pub async fn closed(&mut self, limit: Duration) -> Closed {
        within(limit, "the server to close the connection", async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Close(frame))) => {
                        let frame = frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                        // Drain until the stream ends (tungstenite answers the close).
                        while let Some(Ok(_)) = self.ws.next().await {}
                        return match frame {
                            Some((code, reason)) => Closed {
                                code: Some(code),
                                reason,
                            },
                            None => Closed {
                                code: None,
                                reason: String::new(),
                            },
                        };
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => {
                        return Closed {
                            code: None,
                            reason: String::new(),
                        };
                    }
                }
            }
        })
        .await
    }
}

/// A backend's text-port connection.
pub struct TextClient {
    read: BufReader<tokio::net::tcp::OwnedReadHalf>,
    /// The write half, for raw writes.
    pub write: tokio::net::tcp::OwnedWriteHalf,
}

impl TextClient {
    /// Writes raw bytes.
    pub async fn write(&mut self, bytes: &[u8]) {
        within(STEP, "text port write", self.write.write_all(bytes))
            .await
            .expect("write");
    }

    /// Reads one reply line (without its newline).
    pub async fn reply(&mut self) -> String {
        let mut line = String::new();
        within(STEP, "a text-port reply", self.read.read_line(&mut line))
            .await
            .expect("read");
        assert!(line.ends_with('\n'), "reply cut short: {line:?}");
        line.pop();
        line
    }

    /// Sends one line and returns its reply.
    pub async fn request(&mut self, line: &str) -> String {
        self.write(format!("{line}\n").as_bytes()).await;
        self.reply().await
    }

    /// The read half, for raw reads.
    pub fn read_half(&mut self) -> &mut BufReader<tokio::net::tcp::OwnedReadHalf> {
        &mut self.read
    }

    /// Reads whatever arrives until EOF (bounded).
    pub async fn read_to_end(&mut self) -> Vec<u8> {
        let mut rest = Vec::new();
        within(STEP, "text port EOF", self.read.read_to_end(&mut rest))
            .await
            .expect("read");
        rest
    }
}
