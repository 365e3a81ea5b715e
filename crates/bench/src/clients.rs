//! Opening many bound WebSocket clients, spread over loopback source addresses.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;
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
async fn tcp_connect(target: SocketAddr, i: usize) -> std::io::Result<TcpStream> {
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

/// Opens `count` clients with at most `concurrency` handshakes in flight,
/// binds client `i` to `uid(prefix, i)`, and starts a reader task for each
/// that records text frames into `receipts`. Fails if it takes longer than `limit`.
pub async fn open(
    target: SocketAddr,
    prefix: &str,
    count: usize,
    concurrency: usize,
    receipts: Arc<Receipts>,
    limit: Duration,
) -> anyhow::Result<(Vec<JoinHandle<()>>, Duration)> {
    let started = Instant::now();
    let url = format!("ws://{target}/");
    let opened = futures_util::stream::iter(0..count)
        .map(|i| {
            let url = url.clone();
            let uid = uid(prefix, i);
            async move {
                let tcp = tcp_connect(target, i)
                    .await
                    .with_context(|| format!("client {i}: connect"))?;
                let (mut ws, _) =
                    tokio_tungstenite::client_async_with_config(url, tcp, Some(client_config()))
                        .await
                        .with_context(|| format!("client {i}: handshake"))?;
                ws.send(Message::text(uid)).await?;
                anyhow::Ok((i, ws))
            }
        })
        .buffer_unordered(concurrency.max(1));
    let collected = tokio::time::timeout(limit, opened.collect::<Vec<_>>()).await;
    let Ok(results) = collected else {
        bail!("opening {count} clients took longer than {limit:?}")
    };
    let elapsed = started.elapsed();
    let mut readers = Vec::with_capacity(count);
    for result in results {
        let (i, ws) = result?;
        readers.push(tokio::spawn(read_frames(ws, i, receipts.clone())));
    }
    Ok((readers, elapsed))
}

/// Reads until the connection ends; tungstenite answers pings by itself.
async fn read_frames(mut ws: WebSocketStream<TcpStream>, client: usize, receipts: Arc<Receipts>) {
    while let Some(Ok(frame)) = ws.next().await {
        if let Message::Text(text) = frame {
            receipts.record(&text, client);
        }
    }
}
