//! README "TLS" and "Behind a proxy": TLS with a test CA and rotation, the client address
//! from trusted proxies (headers, PROXY protocol), hostile input at the edge.
//! The same behind a real nginx is in `proxies.rs`.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{Pushd, STEP, WsClient, eventually, within};

/// A certificate authority made for one test, and server certificates it signs.
pub struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// The CA certificate, for clients' root stores.
    pub der: CertificateDer<'static>,
}

impl TestCa {
    pub fn new() -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "pushd test CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            der: cert.der().clone(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A server certificate for `localhost` and 127.0.0.1 named `name`,
    /// written to `dir` as `cert.pem` and `key.pem` (replacing what was
    /// there); returns its DER, to recognise it in a handshake.
    pub fn issue(&self, dir: &Path, name: &str) -> CertificateDer<'static> {
        use rcgen::{CertificateParams, DnType, KeyPair, SanType};
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        // Written aside and renamed, as certificate tools do, so that pushd
        // never reads half a file.
        for (file, pem) in [("cert.pem", cert.pem()), ("key.pem", key.serialize_pem())] {
            let partial = dir.join(format!("{file}.new"));
            std::fs::write(&partial, pem).unwrap();
            std::fs::rename(&partial, dir.join(file)).unwrap();
        }
        cert.der().clone()
    }

    /// A TLS connector that trusts only this CA.
    pub fn connector(&self) -> TlsConnector {
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        TlsConnector::from(Arc::new(config))
    }
}

type Wss = WebSocketStream<TlsStream<TcpStream>>;

/// A `wss://` client that verified pushd's certificate against `ca`; also
/// returns the certificate pushd presented.
async fn wss_connect(ca: &TestCa, addr: SocketAddr) -> (Wss, CertificateDer<'static>) {
    let tcp = within(STEP, "TCP connect", TcpStream::connect(addr))
        .await
        .unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let tls = within(STEP, "TLS handshake", ca.connector().connect(name, tcp))
        .await
        .expect("the certificate verifies against the test CA");
    let presented = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let url = format!("wss://localhost:{}/", addr.port());
    let (ws, _) = within(
        STEP,
        "WebSocket handshake",
        tokio_tungstenite::client_async(url, tls),
    )
    .await
    .unwrap();
    (ws, presented)
}

async fn next_text(ws: &mut Wss) -> String {
    within(STEP, "a text frame", async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => return text.to_string(),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    })
    .await
}

fn tls_args(dir: &Path) -> Vec<String> {
    let path = |file: &str| dir.join(file).to_str().unwrap().to_owned();
    vec![
        "--tls-cert".into(),
        path("cert.pem"),
        "--tls-key".into(),
        path("key.pem"),
    ]
}

async fn start(args: &[String]) -> Pushd {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Pushd::start(&args).await
}

#[tokio::test]
async fn wss_clients_verify_the_certificate_and_a_reload_rotates_it_without_closing_anyone() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let first = ca.issue(dir.path(), "first");
    let pushd = start(&tls_args(dir.path())).await;

    let (mut old, presented) = wss_connect(&ca, pushd.ws).await;
    assert_eq!(presented, first);
    old.send(Message::text("old")).await.unwrap();
    pushd.wait_connections("old", 1).await;

    let second = ca.issue(dir.path(), "second");
    let reload = pushd.ctl(&["reload"]).await;
    assert_eq!(reload.status, 0, "{reload:?}");
    assert_eq!(reload.stdout.trim(), "reloaded: TLS certificate");
    let (_new, presented) = wss_connect(&ca, pushd.ws).await;
    assert_eq!(presented, second, "new handshakes see the new certificate");
    assert_eq!(pushd.ctl(&["send", "old", "still here"]).await.status, 0);
    assert_eq!(
        next_text(&mut old).await,
        "still here",
        "the old client stays"
    );

    // A certificate that does not load keeps the one in use, and says why.
    std::fs::write(dir.path().join("cert.pem"), "not a certificate\n").unwrap();
    let reload = pushd.ctl(&["reload"]).await;
    assert_eq!(reload.status, 2, "{reload:?}");
    assert!(
        reload.stderr.contains("cert.pem") && reload.stderr.contains("previous TLS certificate"),
        "{}",
        reload.stderr
    );
    let (_client, presented) = wss_connect(&ca, pushd.ws).await;
    assert_eq!(presented, second);
    let stats = pushd.stats().await;
    assert_eq!(stats["counters"]["reload_failures"], 1, "{stats}");

    // SIGHUP does the same as pushctl reload (and does not end pushd).
    let third = ca.issue(dir.path(), "third");
    pushd.signal(libc::SIGHUP);
    eventually(STEP, "the SIGHUP reload", || async {
        wss_connect(&ca, pushd.ws).await.1 == third
    })
    .await;
    assert_eq!(pushd.ctl(&["send", "old", "after SIGHUP"]).await.status, 0);
    assert_eq!(next_text(&mut old).await, "after SIGHUP");
    assert!(
        pushd
            .log
            .lock()
            .unwrap()
            .contains("TLS certificate reloaded")
    );
}

#[tokio::test]
async fn a_key_that_does_not_match_the_certificate_stops_pushd_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    ca.issue(dir.path(), "one");
    let other = tempfile::tempdir().unwrap();
    ca.issue(other.path(), "two");
    std::fs::copy(other.path().join("key.pem"), dir.path().join("key.pem")).unwrap();
    let args = tls_args(dir.path());
    let socket = dir.path().join("s");
    let args_ref: Vec<&str> = args.iter().map(String::as_str).collect();
    let err = Pushd::try_start_at(&socket, &args_ref).await.err().unwrap();
    assert!(err.contains("does not go with the certificate"), "{err}");
}

#[tokio::test]
async fn a_plaintext_client_or_a_silent_one_on_the_tls_port_never_becomes_a_connection() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    ca.issue(dir.path(), "pushd");
    let mut args = tls_args(dir.path());
    args.extend(["--handshake-timeout".into(), "300ms".into()]);
    let pushd = start(&args).await;

    let plain = WsClient::connect_from("127.0.0.1".parse().unwrap(), pushd.ws, b"", &[]).await;
    assert!(plain.is_err(), "a ws:// handshake on the TLS port fails");
    // The TLS handshake counts under --handshake-timeout.
    let mut silent = TcpStream::connect(pushd.ws).await.unwrap();
    let mut byte = [0; 1];
    let read = within(
        STEP,
        "pushd to drop the silent client",
        silent.read(&mut byte),
    )
    .await;
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");

    let stats = pushd.stats().await;
    assert_eq!(stats["counters"]["tls_handshakes_failed"], 2, "{stats}");
    assert_eq!(stats["counters"]["connections_opened"], 0, "{stats}");
    let (mut ws, _) = wss_connect(&ca, pushd.ws).await;
    ws.send(Message::text("42")).await.unwrap();
    pushd.wait_connections("42", 1).await;
}

/// Every connection's peer as `list` shows it, uid → peer.
pub async fn peers(pushd: &Pushd) -> Vec<(String, String)> {
    let list = pushd.ctl(&["--json", "list"]).await.json();
    let mut peers = Vec::new();
    for uid in list.as_array().unwrap() {
        for conn in uid["connections"].as_array().unwrap() {
            let peer = conn["peer"].as_str().unwrap().to_owned();
            peers.push((uid["uid"].as_str().unwrap().to_owned(), peer));
        }
    }
    peers.sort();
    peers
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[tokio::test]
async fn forwarding_headers_are_believed_from_trusted_proxies_only() {
    let pushd = Pushd::start(&["--trusted-proxy", "127.0.0.2/32,127.0.0.3"]).await;
    let spoof = [("X-Forwarded-For", "192.0.2.66")];
    let mut direct = WsClient::connect_from(ip("127.0.0.7"), pushd.ws, b"", &spoof)
        .await
        .unwrap();
    direct.send_text("direct").await;
    let through = [("X-Forwarded-For", "192.0.2.66, 192.0.2.7, 127.0.0.3")];
    let mut proxied = WsClient::connect_from(ip("127.0.0.2"), pushd.ws, b"", &through)
        .await
        .unwrap();
    proxied.send_text("proxied").await;
    let forwarded = [
        ("Forwarded", "for=\"[2001:db8::7]:4711\";proto=https"),
        ("X-Forwarded-For", "192.0.2.66"),
    ];
    let mut rfc = WsClient::connect_from(ip("127.0.0.3"), pushd.ws, b"", &forwarded)
        .await
        .unwrap();
    rfc.send_text("rfc7239").await;
    pushd.wait_connections("rfc7239", 1).await;
    pushd.wait_connections("proxied", 1).await;
    pushd.wait_connections("direct", 1).await;

    let peers = peers(&pushd).await;
    assert_eq!(peers[1], ("proxied".into(), "192.0.2.7:0".into()));
    assert_eq!(peers[2], ("rfc7239".into(), "[2001:db8::7]:4711".into()));
    assert_eq!(peers[0].0, "direct");
    assert!(peers[0].1.starts_with("127.0.0.7:"), "{peers:?}");
}

/// A PROXY v1 line for a client at `source`.
fn proxy_v1(source: &str, port: u16) -> Vec<u8> {
    format!("PROXY TCP4 {source} 127.0.0.1 {port} 443\r\n").into_bytes()
}

/// A PROXY v2 header for a client at `source`.
fn proxy_v2(source: [u8; 4], port: u16) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    header.extend_from_slice(&source);
    header.extend_from_slice(&[127, 0, 0, 1]);
    header.extend_from_slice(&port.to_be_bytes());
    header.extend_from_slice(&443u16.to_be_bytes());
    header
}

#[tokio::test]
async fn proxy_protocol_headers_name_the_client_and_bad_ones_are_dropped_and_counted() {
    let pushd = Pushd::start(&[
        "--proxy-protocol",
        "--trusted-proxy",
        "127.0.0.2",
        "--handshake-timeout",
        "2s",
    ])
    .await;
    let lb = ip("127.0.0.2");
    let mut v1 = WsClient::connect_from(lb, pushd.ws, &proxy_v1("192.0.2.5", 5005), &[])
        .await
        .unwrap();
    v1.send_text("v1").await;
    let mut v2 = WsClient::connect_from(lb, pushd.ws, &proxy_v2([192, 0, 2, 6], 5006), &[])
        .await
        .unwrap();
    v2.send_text("v2").await;
    pushd.wait_connections("v1", 1).await;
    pushd.wait_connections("v2", 1).await;
    assert_eq!(
        peers(&pushd).await,
        [
            ("v1".to_owned(), "192.0.2.5:5005".to_owned()),
            ("v2".to_owned(), "192.0.2.6:5006".to_owned())
        ]
    );

    // A missing header, a malformed one, and a good one from an untrusted peer.
    let attempts: [(IpAddr, Vec<u8>); 3] = [
        (lb, Vec::new()),
        (lb, b"PROXY TCP4 999.1.1.1 127.0.0.1 1 2\r\n".to_vec()),
        (ip("127.0.0.9"), proxy_v1("192.0.2.8", 5008)),
    ];
    for (source, prefix) in attempts {
        let attempt = WsClient::connect_from(source, pushd.ws, &prefix, &[]).await;
        assert!(attempt.is_err(), "{prefix:?} from {source}");
    }
    let stats = pushd.stats().await;
    assert_eq!(stats["counters"]["proxy_headers_refused"], 3, "{stats}");
    assert_eq!(stats["connections"], 2, "{stats}");
    assert_eq!(
        pushd
            .ctl(&["send", "v2", "through the balancer"])
            .await
            .status,
        0
    );
    assert_eq!(v2.recv_text().await, "through the balancer");
}

#[tokio::test]
async fn the_per_ip_limit_counts_the_clients_behind_a_trusted_proxy_apart() {
    let pushd = Pushd::start(&[
        "--trusted-proxy",
        "127.0.0.2",
        "--max-connections-per-ip",
        "1",
    ])
    .await;
    let proxy = ip("127.0.0.2");
    let five = [("X-Forwarded-For", "127.0.0.5")];
    let six = [("X-Forwarded-For", "127.0.0.6")];
    let _a = WsClient::connect_from(proxy, pushd.ws, b"", &five)
        .await
        .unwrap();
    let _b = WsClient::connect_from(proxy, pushd.ws, b"", &six)
        .await
        .unwrap();
    let again = WsClient::connect_from(proxy, pushd.ws, b"", &five).await;
    let status = match again {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status(),
        Err(other) => panic!("expected HTTP 429, got {other}"),
        Ok(_) => panic!("expected HTTP 429, got a connection"),
    };
    assert_eq!(status, 429);
    let stats = pushd.stats().await;
    assert_eq!(stats["counters"]["per_ip_refused"], 1, "{stats}");
}

/// A PROXY `LOCAL` connection is the proxy's own: it speaks for nobody, so a
/// forwarding header it carries names no client. (Issue 22: the proxy stayed
/// the peer and then the client's own `X-Forwarded-For` was believed.)
#[tokio::test]
async fn a_proxy_local_connection_is_the_proxy_whatever_its_headers_say() {
    let pushd = Pushd::start(&["--proxy-protocol", "--trusted-proxy", "127.0.0.2"]).await;
    let local = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00".to_vec();
    let spoof = [("X-Forwarded-For", "192.0.2.66")];
    let mut client = WsClient::connect_from(ip("127.0.0.2"), pushd.ws, &local, &spoof)
        .await
        .unwrap();
    client.send_text("local").await;
    pushd.wait_connections("local", 1).await;
    let peers = peers(&pushd).await;
    assert_eq!(peers[0].0, "local");
    assert!(peers[0].1.starts_with("127.0.0.2:"), "{peers:?}");
}

/// SPEC "Live upgrade": TLS connections cannot be handed over (their state
/// is rustls's), so each is closed with 1012, after what it was sent, and its
/// client comes back to the new process, which re-read the certificate.
#[tokio::test]
async fn an_upgrade_closes_wss_clients_with_1012_and_the_new_process_takes_them_back() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    ca.issue(dir.path(), "first");
    let mut pushd = start(&tls_args(dir.path())).await;
    let (mut ws, _) = wss_connect(&ca, pushd.ws).await;
    ws.send(Message::text("t")).await.unwrap();
    pushd.wait_connections("t", 1).await;
    let upgraded = pushd.ctl(&["upgrade"]).await;
    assert_eq!(upgraded.status, 0, "{upgraded:?}");
    let new_pid = crate::upgrade::new_pid(&upgraded.stdout);
    let _new = crate::upgrade::NewProcess(new_pid);
    let close = within(STEP, "the close", async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    })
    .await
    .expect("a close frame with a code");
    assert_eq!(u16::from(close.code), 1012);
    assert_eq!(close.reason.as_str(), "service restart");
    assert_eq!(pushd.wait(STEP).await, Some(0));
    let (mut again, _) = wss_connect(&ca, pushd.ws).await;
    again.send(Message::text("t")).await.unwrap();
    pushd.wait_connections("t", 1).await;
    assert_eq!(pushd.ctl(&["send", "t", "back"]).await.status, 0);
    assert_eq!(next_text(&mut again).await, "back");
}
