//! Who the client is, when a proxy stands in front of pushd.
//!
//! A TCP peer is believed about someone else's address only when it is in
//! `--trusted-proxy`: then its PROXY header (with `--proxy-protocol`) and its
//! `Forwarded` / `X-Forwarded-For` / `X-Real-IP` headers name the client.
//! Everyone else is taken as the client itself, whatever it writes. The
//! parsing lives in `pushd_proto` (`proxy_header`, `forwarded`), beside
//! the other parsers of untrusted input, with its property tests.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use pushd_proto::forwarded::{ForwardingHeaders, client_address};
use pushd_proto::proxy_header::{self, Parsed, ProxyHeaderError};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::server::Request;

/// The trusted proxies and whether they send PROXY headers.
#[derive(Debug, Clone, Default)]
pub(crate) struct Edge {
    trusted: Vec<IpNet>,
    proxy_protocol: bool,
}

/// Whom a connection speaks for, once its PROXY header (if any) is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Proxied {
    /// The client, or the peer that connected.
    pub(super) peer: SocketAddr,
    /// Whether forwarding headers from `peer` may name the client (see
    /// [`Edge::client`]); never for a PROXY `LOCAL` connection.
    pub(super) headers_name_the_client: bool,
}

/// Why a connection was dropped before its handshake.
#[derive(Debug, thiserror::Error)]
pub(super) enum EdgeError {
    /// `--proxy-protocol`, and the peer is not a trusted proxy.
    #[error("PROXY header from {0}, which is not a --trusted-proxy")]
    Untrusted(IpAddr),
    /// No header, a malformed one, or one too long.
    #[error(transparent)]
    Header(#[from] ProxyHeaderError),
    /// The connection failed or ended within the header.
    #[error("reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
}

impl Edge {
    /// `trusted` ranges; `proxy_protocol` when every connection starts with a
    /// PROXY header.
    pub(crate) fn new(trusted: Vec<IpNet>, proxy_protocol: bool) -> Self {
        Edge {
            trusted,
            proxy_protocol,
        }
    }

    /// Whether `ip` is a trusted proxy.
    pub(super) fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted.iter().any(|range| range.contains(&ip))
    }

    /// The peer the connection speaks for: with `--proxy-protocol`, the
    /// source in the PROXY header, which is read off the stream (exactly the
    /// header, nothing after it); otherwise the TCP peer.
    pub(super) async fn proxied_peer(
        &self,
        stream: &mut TcpStream,
        peer: SocketAddr,
    ) -> Result<Proxied, EdgeError> {
        let direct = Proxied {
            peer,
            headers_name_the_client: true,
        };
        if !self.proxy_protocol {
            return Ok(direct);
        }
        if !self.trusts(peer.ip()) {
            return Err(EdgeError::Untrusted(peer.ip()));
        }
        Ok(match read_proxy_header(stream).await? {
            Some(source) => Proxied {
                peer: source,
                ..direct
            },
            // `LOCAL`: the proxy's own connection (a health check). It speaks
            // for nobody, so no header it carries names a client.
            None => Proxied {
                headers_name_the_client: false,
                ..direct
            },
        })
    }

    /// The client's address for a handshake from `peer`: from the forwarding
    /// headers when `peer` is a trusted proxy and they name one, else `peer`.
    pub(super) fn client(&self, peer: SocketAddr, request: &Request) -> SocketAddr {
        if !self.trusts(peer.ip()) {
            return peer;
        }
        let lines = |name: &str| -> Vec<&str> {
            let values = request.headers().get_all(name).iter();
            values.filter_map(|value| value.to_str().ok()).collect()
        };
        let (forwarded, x_forwarded_for, x_real_ip) = (
            lines("forwarded"),
            lines("x-forwarded-for"),
            lines("x-real-ip"),
        );
        let headers = ForwardingHeaders {
            forwarded: &forwarded,
            x_forwarded_for: &x_forwarded_for,
            x_real_ip: &x_real_ip,
        };
        client_address(&headers, |ip| self.trusts(ip)).unwrap_or(peer)
    }
}

/// Reads a PROXY header off `stream` and returns its source (`None` for one
/// that carries none). Bytes are peeked first and only the header's own are
/// consumed, so the TLS or HTTP handshake after it stays in the socket.
async fn read_proxy_header(stream: &mut TcpStream) -> Result<Option<SocketAddr>, EdgeError> {
    let mut buf = vec![0; 256];
    let mut consumed = 0;
    loop {
        let peeked = stream.peek(&mut buf[consumed..]).await?;
        if peeked == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
        match proxy_header::parse(&buf[..consumed + peeked])? {
            Parsed::Header { len, source } => {
                stream.read_exact(&mut buf[consumed..len]).await?;
                return Ok(source);
            }
            // Every byte so far is the header's: take them, wait for more.
            Parsed::Incomplete { at_least } => {
                stream
                    .read_exact(&mut buf[consumed..consumed + peeked])
                    .await?;
                consumed += peeked;
                let wanted = at_least.max(consumed + 64);
                if buf.len() < wanted {
                    buf.resize(wanted, 0);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge() -> Edge {
        Edge::new(vec!["10.0.0.0/8".parse().unwrap()], false)
    }

    fn request(headers: &[(&str, &str)]) -> Request {
        let mut builder = Request::builder().uri("/");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn only_trusted_peers_are_believed() {
        let spoof = request(&[("X-Forwarded-For", "192.0.2.7")]);
        let direct: SocketAddr = "198.51.100.1:5000".parse().unwrap();
        assert_eq!(edge().client(direct, &spoof), direct);
        let proxy: SocketAddr = "10.0.0.2:5000".parse().unwrap();
        assert_eq!(edge().client(proxy, &spoof), "192.0.2.7:0".parse().unwrap());
        assert_eq!(edge().client(proxy, &request(&[])), proxy);
        let mapped: SocketAddr = "[::ffff:10.0.0.2]:5000".parse().unwrap();
        assert_eq!(
            edge().client(mapped, &spoof),
            "192.0.2.7:0".parse().unwrap(),
            "an IPv4-mapped peer is its IPv4 address"
        );
    }

    /// A header that arrives a few bytes at a time is read exactly: the
    /// bytes after it are still in the socket.
    #[tokio::test]
    async fn a_header_in_pieces_is_read_exactly() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let writer = tokio::spawn(async move {
            let mut client = TcpStream::connect(addr).await.unwrap();
            let _ = client.set_nodelay(true);
            for piece in [
                &b"PROXY TC"[..],
                b"P4 192.0.2.7 1",
                b"0.0.0.1 4711 1234\r",
                b"\nGET",
            ] {
                client.write_all(piece).await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            client
        });
        let (mut stream, _) = listener.accept().await.unwrap();
        let source = read_proxy_header(&mut stream).await.unwrap();
        assert_eq!(source, Some("192.0.2.7:4711".parse().unwrap()));
        let _client = writer.await.unwrap();
        let mut rest = [0; 3];
        stream.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"GET");
    }
}
