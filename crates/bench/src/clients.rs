//! Opening many bound WebSocket clients, spread over loopback source addresses.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::receipts::Receipts;

/// Source addresses used for loopback targets: 127.0.0.2 to 127.0.0.9. Each
/// has its own ephemeral port range, so a larger machine running several
/// benches never runs out of ports.
const SOURCE_ADDRESSES: u8 = 8;

/// Client-side tungstenite settings: small buffers, since one process holds
/// up to 19,000 of these.
fn client_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

/// Opens a TCP connection to `target`, from 127.0.0.(2 + i % 8) when the
/// target is IPv4 loopback.
pub(crate) async fn tcp_connect(target: SocketAddr, i: usize) -> std::io::Result<TcpStream> {
    match target.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => {
            let socket = TcpSocket::new_v4()?;
            let source = Ipv4Addr::new(127, 0, 0, 2 + (i % SOURCE_ADDRESSES as usize) as u8);
            socket.bind(SocketAddr::new(source.into(), 0))?;
            socket.connect(target).await
        }
        _ => TcpStream::connect(target).await,
    }
}

/// The uid of client number `i`.
pub fn uid(prefix: &str, i: usize) -> String {
    format!("{prefix}{i}")
}

/// A TLS connector that trusts the certificates in the PEM file `ca` (pushd's
/// own, when it is self-signed), for `wss://` runs.
pub fn tls_connector(ca: &std::path::Path) -> anyhow::Result<TlsConnector> {
    use tokio_rustls::rustls::pki_types::CertificateDer;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).with_context(|| format!("{}", ca.display()))? {
        roots.add(cert?)?;
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Opens `count` clients with at most `concurrency` handshakes in flight (over
/// TLS, checking the name `localhost`, with `tls`), binds client `i` to
/// `uid(prefix, i)`, and starts a reader task for each that records text frames
/// into `receipts`. Fails if it takes longer than `limit`.
#[allow(clippy::too_many_arguments)]
pub async fn open(
    targets: &[SocketAddr],
    prefix: &str,
    count: usize,
    concurrency: usize,
    receipts: Arc<Receipts>,
    limit: Duration,
    tls: Option<TlsConnector>,
    sse: bool,
) -> anyhow::Result<(Vec<JoinHandle<()>>, Duration)> {
    anyhow::ensure!(!(sse && tls.is_some()), "--sse is plain HTTP only");
    let started = Instant::now();
    let opened = futures_util::stream::iter(0..count)
        .map(|i| {
            let uid = uid(prefix, i);
            let (tls, receipts) = (tls.clone(), receipts.clone());
            let target = targets[i % targets.len()];
            async move {
                let tcp = tcp_connect(target, i)
                    .await
                    .with_context(|| format!("client {i}: connect"))?;
                let reader = match tls {
                    None if sse => {
                        let stream = event_stream(tcp, target, &uid, i).await?;
                        tokio::spawn(read_events(stream, i, receipts))
                    }
                    None => {
                        let url = format!("ws://{target}/");
                        let ws = handshake(url, tcp, &uid, i).await?;
                        tokio::spawn(read_frames(ws, i, receipts))
                    }
                    Some(tls) => {
                        let name = ServerName::try_from("localhost").expect("a valid name");
                        let tls = tls
                            .connect(name, tcp)
                            .await
                            .with_context(|| format!("client {i}: TLS"))?;
                        let url = format!("wss://localhost:{}/", target.port());
                        let ws = handshake(url, tls, &uid, i).await?;
                        tokio::spawn(read_frames(ws, i, receipts))
                    }
                };
                anyhow::Ok(reader)
            }
        })
        .buffer_unordered(concurrency.max(1));
    let collected = tokio::time::timeout(limit, opened.collect::<Vec<_>>()).await;
    let Ok(results) = collected else {
        bail!("opening {count} clients took longer than {limit:?}")
    };
    let elapsed = started.elapsed();
    let readers = results.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    Ok((readers, elapsed))
}

/// Opens `count` plain clients on `target`, client `i` bound to
/// `uid(prefix, i)`, at most `concurrency` handshakes in flight, all within
/// `limit`; `then` takes each (its number, its uid, its stream) and returns
/// what the caller keeps of it.
pub(crate) async fn open_plain<T>(
    target: SocketAddr,
    prefix: &str,
    count: usize,
    concurrency: usize,
    limit: Duration,
    then: impl Fn(usize, String, WebSocketStream<TcpStream>) -> T,
) -> anyhow::Result<Vec<T>> {
    let then = &then;
    let opened = futures_util::stream::iter(0..count)
        .map(|i| async move {
            let uid = uid(prefix, i);
            let tcp = tcp_connect(target, i)
                .await
                .with_context(|| format!("client {i}: connect"))?;
            let ws = handshake(format!("ws://{target}/"), tcp, &uid, i).await?;
            anyhow::Ok(then(i, uid, ws))
        })
        .buffer_unordered(concurrency.max(1))
        .collect::<Vec<_>>();
    let Ok(opened) = tokio::time::timeout(limit, opened).await else {
        bail!("opening {count} clients took longer than {limit:?}");
    };
    opened.into_iter().collect()
}

/// The WebSocket handshake over `stream`, then the uid as the first message.
pub(crate) async fn handshake<S>(
    url: String,
    stream: S,
    uid: &str,
    i: usize,
) -> anyhow::Result<WebSocketStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut ws, _) =
        tokio_tungstenite::client_async_with_config(url, stream, Some(client_config()))
            .await
            .with_context(|| format!("client {i}: handshake"))?;
    ws.send(Message::text(uid)).await?;
    Ok(ws)
}

/// A page's event stream (Server-Sent Events) for `uid`: the request, and
/// the response head read away.
async fn event_stream(
    mut tcp: TcpStream,
    target: SocketAddr,
    uid: &str,
    i: usize,
) -> anyhow::Result<tokio::io::BufReader<TcpStream>> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let request =
        format!("GET /?uid={uid} HTTP/1.1\r\nHost: {target}\r\nAccept: text/event-stream\r\n\r\n");
    tcp.write_all(request.as_bytes()).await?;
    // Small: thousands of idle clients each hold one.
    let mut reader = tokio::io::BufReader::with_capacity(1024, tcp);
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    anyhow::ensure!(
        line.starts_with("HTTP/1.1 200"),
        "client {i}: event stream: {line:?}"
    );
    while line != "\r\n" {
        line.clear();
        anyhow::ensure!(
            reader.read_line(&mut line).await? > 0,
            "client {i}: cut head"
        );
    }
    Ok(reader)
}

/// Reads events until the stream ends: each event's data lines are one push.
async fn read_events(
    mut reader: tokio::io::BufReader<TcpStream>,
    client: usize,
    receipts: Arc<Receipts>,
) {
    use tokio::io::AsyncBufReadExt;
    let mut line = String::new();
    let mut data = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let line = line.trim_end_matches('\n');
        if let Some(value) = line.strip_prefix("data: ") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(value);
        } else if line.is_empty() && !data.is_empty() {
            receipts.record(&data, client);
            data.clear();
        }
    }
}

/// Reads until the connection ends; tungstenite answers pings by itself.
async fn read_frames<S>(mut ws: WebSocketStream<S>, client: usize, receipts: Arc<Receipts>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    while let Some(Ok(frame)) = ws.next().await {
        if let Message::Text(text) = frame {
            receipts.record(&text, client);
        }
    }
}
