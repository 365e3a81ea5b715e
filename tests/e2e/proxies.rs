//! A real nginx in front of pushd, running the configurations shipped in
//! `contrib/nginx/` (only the ports changed): once as an HTTP proxy with
//! `X-Forwarded-For`, once as a stream proxy with `proxy_protocol on` and TLS
//! passed through to pushd. Clients from 127.0.0.5 and 127.0.0.6 play two
//! machines; pushd must see each as itself, and count them apart.
//!
//! And `contrib/haproxy/pushd.cfg` likewise, with PROXY protocol v2.
//!
//! Needs Debian's `nginx`, `libnginx-mod-stream` and `haproxy` (`.ci/run` installs them).
//! Without them these tests say so and pass, unless `PUSHD_REQUIRE_NGINX=1`.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Stdio;

use futures_util::{SinkExt, StreamExt};
use tokio::process::{Child, Command};
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::edge::{TestCa, peers};
use crate::harness::{Pushd, STEP, WsClient, eventually, within};

const NGINX: &str = "/usr/sbin/nginx";
const STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

pub(crate) fn nginx_available() -> bool {
    let present = Path::new(NGINX).exists() && Path::new(STREAM_MODULE).exists();
    if !present {
        assert!(
            std::env::var_os("PUSHD_REQUIRE_NGINX").is_none(),
            "PUSHD_REQUIRE_NGINX is set but {NGINX} or {STREAM_MODULE} is missing \
             (apt-get install nginx libnginx-mod-stream)"
        );
        eprintln!("skipped: {NGINX} or its stream module is missing");
    }
    present
}

/// A free loopback port (bound, read, released: nginx binds it next).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// nginx in the foreground with its own prefix and logs, killed when dropped.
pub(crate) struct Nginx {
    child: Child,
    /// Where clients connect.
    pub(crate) addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

impl Nginx {
    /// Runs `contrib/nginx/FILE` in the `http` or `stream` block, in front of `pushd`.
    async fn start(block: &str, file: &str, pushd: SocketAddr) -> Nginx {
        let shipped = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("contrib/nginx")
                .join(file),
        )
        .unwrap();
        // Only the addresses change: the upstream is the test's pushd, the
        // listener a free port.
        let site = shipped
            .replace("server 127.0.0.1:1234;", &format!("server {pushd};"))
            .replace("listen 80;", "listen LISTEN;")
            .replace("listen 443;", "listen LISTEN;");
        assert_ne!(site, shipped, "contrib/nginx/{file} changed shape");
        Self::with_site(block, &site).await
    }

    /// Runs `site` (whose `LISTEN` becomes a free loopback address) in the
    /// `http` or `stream` block.
    pub(crate) async fn with_site(block: &str, site: &str) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let site = site.replace("LISTEN", &format!("127.0.0.1:{port}"));
        std::fs::write(dir.path().join("site.conf"), site).unwrap();
        let d = dir.path().display();
        let temp_paths = if block == "http" {
            ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
                .map(|t| format!("{t}_temp_path {d}/{t};"))
                .join(" ")
        } else {
            String::new()
        };
        let conf = format!(
            "load_module {STREAM_MODULE};\n\
             worker_processes 1;\n\
             pid {d}/nginx.pid;\n\
             error_log {d}/error.log info;\n\
             events {{ worker_connections 256; }}\n\
             {block} {{\n  {access}\n  {temp_paths}\n  include {d}/site.conf;\n}}\n",
            access = if block == "http" {
                "access_log off;"
            } else {
                ""
            },
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start nginx");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let nginx = Nginx {
            child,
            addr,
            _dir: dir,
        };
        eventually(STEP, "nginx to listen", || async {
            tokio::net::TcpStream::connect(addr).await.is_ok()
        })
        .await;
        nginx
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn http_status(attempt: Result<WsClient, WsError>) -> u16 {
    match attempt {
        Err(WsError::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("expected an HTTP refusal, got a connection"),
    }
}

#[tokio::test]
async fn behind_nginx_as_an_http_proxy_each_client_is_itself() {
    if !nginx_available() {
        return;
    }
    let pushd = Pushd::start(&[
        "--trusted-proxy",
        "127.0.0.1",
        "--max-connections-per-ip",
        "1",
    ])
    .await;
    let nginx = Nginx::start("http", "pushd-site.conf", pushd.ws).await;

    // 127.0.0.5 also tries to pass itself off as someone else.
    let spoof = [
        ("X-Forwarded-For", "203.0.113.9"),
        ("Forwarded", "for=203.0.113.9"),
    ];
    let mut five = WsClient::connect_from(ip("127.0.0.5"), nginx.addr, b"", &spoof)
        .await
        .unwrap();
    five.send_text("five").await;
    let mut six = WsClient::connect_from(ip("127.0.0.6"), nginx.addr, b"", &[])
        .await
        .unwrap();
    six.send_text("six").await;
    pushd.wait_connections("five", 1).await;
    pushd.wait_connections("six", 1).await;
    assert_eq!(
        peers(&pushd).await,
        [
            ("five".to_owned(), "127.0.0.5:0".to_owned()),
            ("six".to_owned(), "127.0.0.6:0".to_owned())
        ]
    );

    // One connection per address: 127.0.0.5's second is refused, through nginx.
    let again = WsClient::connect_from(ip("127.0.0.5"), nginx.addr, b"", &[]).await;
    assert_eq!(http_status(again), 429);
    assert_eq!(pushd.stats().await["counters"]["per_ip_refused"], 1);

    // A client that reaches pushd directly cannot borrow the proxy's trust.
    let mut direct = WsClient::connect_from(ip("127.0.0.7"), pushd.ws, b"", &spoof)
        .await
        .unwrap();
    direct.send_text("direct").await;
    pushd.wait_connections("direct", 1).await;
    let direct_peer = peers(&pushd).await.remove(0);
    assert!(direct_peer.1.starts_with("127.0.0.7:"), "{direct_peer:?}");

    assert_eq!(pushd.ctl(&["send", "six", "through nginx"]).await.status, 0);
    assert_eq!(six.recv_text().await, "through nginx");
}

#[tokio::test]
async fn behind_nginx_as_a_stream_proxy_with_proxy_protocol_and_tls_each_client_is_itself() {
    if !nginx_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    ca.issue(dir.path(), "pushd");
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let pushd = Pushd::start(&[
        "--trusted-proxy",
        "127.0.0.1",
        "--proxy-protocol",
        "--max-connections-per-ip",
        "1",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ])
    .await;
    let nginx = Nginx::start("stream", "pushd-stream.conf", pushd.ws).await;

    let connect = |source: &'static str| {
        let ca = &ca;
        let addr = nginx.addr;
        async move {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(SocketAddr::new(ip(source), 0)).unwrap();
            let tcp = within(STEP, "TCP connect", socket.connect(addr))
                .await
                .unwrap();
            let name = ServerName::try_from("localhost").unwrap();
            let tls = within(STEP, "TLS through nginx", ca.connector().connect(name, tcp))
                .await
                .expect("pushd's certificate, passed through nginx");
            let url = format!("wss://localhost:{}/", addr.port());
            within(STEP, "handshake", tokio_tungstenite::client_async(url, tls))
                .await
                .map(|(ws, _)| ws)
        }
    };
    let mut five = connect("127.0.0.5").await.unwrap();
    five.send(Message::text("five")).await.unwrap();
    let mut six = connect("127.0.0.6").await.unwrap();
    six.send(Message::text("six")).await.unwrap();
    pushd.wait_connections("five", 1).await;
    pushd.wait_connections("six", 1).await;
    let peers = peers(&pushd).await;
    assert_eq!(peers.len(), 2);
    assert!(peers[0].1.starts_with("127.0.0.5:"), "{peers:?}");
    assert!(peers[1].1.starts_with("127.0.0.6:"), "{peers:?}");
    assert_ne!(
        peers[0].1, "127.0.0.5:0",
        "the PROXY header carries the port"
    );

    match connect("127.0.0.5").await {
        Err(WsError::Http(response)) => assert_eq!(response.status(), 429),
        other => panic!("expected HTTP 429, got {:?}", other.map(|_| ())),
    }
    // Straight to pushd, without nginx's header: dropped and counted.
    let direct = WsClient::connect_from(ip("127.0.0.1"), pushd.ws, b"", &[]).await;
    assert!(direct.is_err());
    let stats = pushd.stats().await;
    assert_eq!(stats["counters"]["proxy_headers_refused"], 1, "{stats}");
    assert_eq!(stats["counters"]["per_ip_refused"], 1, "{stats}");

    assert_eq!(pushd.ctl(&["send", "six", "through nginx"]).await.status, 0);
    let text = within(STEP, "the push", async {
        loop {
            match six.next().await {
                Some(Ok(Message::Text(text))) => return text.to_string(),
                Some(Ok(_)) => continue,
                other => panic!("{other:?}"),
            }
        }
    })
    .await;
    assert_eq!(text, "through nginx");
}

/// `contrib/haproxy/pushd.cfg` (PROXY v2) in front of pushd, the same way.
#[tokio::test]
async fn behind_haproxy_with_proxy_protocol_v2_each_client_is_itself() {
    const HAPROXY: &str = "/usr/sbin/haproxy";
    if !Path::new(HAPROXY).exists() {
        assert!(
            std::env::var_os("PUSHD_REQUIRE_NGINX").is_none(),
            "PUSHD_REQUIRE_NGINX is set but {HAPROXY} is missing (apt-get install haproxy)"
        );
        eprintln!("skipped: {HAPROXY} is missing");
        return;
    }
    let pushd = Pushd::start(&["--trusted-proxy", "127.0.0.1", "--proxy-protocol"]).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/haproxy/pushd.cfg"),
    )
    .unwrap();
    let cfg = shipped
        .replace("127.0.0.1:1234", &pushd.ws.to_string())
        .replace("bind :443", &format!("bind 127.0.0.1:{port}"));
    assert_ne!(cfg, shipped, "contrib/haproxy/pushd.cfg changed shape");
    let path = dir.path().join("haproxy.cfg");
    std::fs::write(&path, cfg).unwrap();
    let _haproxy = Command::new(HAPROXY)
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start haproxy");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    eventually(STEP, "haproxy to listen", || async {
        tokio::net::TcpStream::connect(addr).await.is_ok()
    })
    .await;
    let mut five = WsClient::connect_from(ip("127.0.0.5"), addr, b"", &[])
        .await
        .unwrap();
    five.send_text("five").await;
    pushd.wait_connections("five", 1).await;
    let peers = peers(&pushd).await;
    assert!(peers[0].1.starts_with("127.0.0.5:"), "{peers:?}");
    assert_eq!(
        pushd.ctl(&["send", "five", "through haproxy"]).await.status,
        0
    );
    assert_eq!(five.recv_text().await, "through haproxy");
}
