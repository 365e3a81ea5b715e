//! Who may use the HTTP API. With `--http-token-file`, whoever presents the
//! bearer token. Without one, loopback clients only, and only as themselves:
//! a request whose `Host` is not a loopback name or address (a DNS-rebound
//! page) or whose `Origin` is another site's (a cross-site form or fetch from
//! a page open in a browser on the same machine) is refused, since the
//! browser, not its user, would be the one asking.

use std::net::{IpAddr, SocketAddr};

use hyper::StatusCode;
use hyper::header::{self, HeaderMap};

use super::Refusal;

/// Whether the request with `headers` from `peer` may use the API.
pub(super) fn authorize(
    token: Option<&str>,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> Result<(), Refusal> {
    let Some(token) = token else {
        return loopback_only(headers, peer);
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "));
    match presented {
        Some(presented) if constant_time_eq(presented, token.as_bytes()) => Ok(()),
        _ => Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token",
        )),
    }
}

/// Without a token: a loopback peer, naming a loopback host, from no other origin.
fn loopback_only(headers: &HeaderMap, peer: SocketAddr) -> Result<(), Refusal> {
    let refuse = |why: &str| Err(Refusal::new(StatusCode::FORBIDDEN, why));
    if !peer.ip().is_loopback() {
        return refuse(
            "the HTTP API serves loopback clients only, unless pushd has --http-token-file",
        );
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let Some(host) = host.filter(|host| is_loopback_host(host)) else {
        return refuse("without --http-token-file, the Host must be a loopback name or address");
    };
    let origin = headers
        .get(header::ORIGIN)
        .map(|v| v.to_str().unwrap_or(""));
    if let Some(origin) = origin {
        let own = origin
            .strip_prefix("http://")
            .is_some_and(|rest| rest.eq_ignore_ascii_case(host));
        if !own {
            return refuse("without --http-token-file, requests from another origin are refused");
        }
    }
    Ok(())
}

/// `localhost` (or a name under it), or a loopback address, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        // `[::1]:port`
        Some(bracketed) => bracketed.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                name
            } else {
                host
            }
        }),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Compares a presented token with the real one in time that does not depend
/// on where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(token: Option<&str>, headers: &[(&str, &str)], peer: &str) -> u16 {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        match authorize(token, &map, peer.parse().unwrap()) {
            Ok(()) => 200,
            Err(refusal) => refusal.status.as_u16(),
        }
    }

    #[test]
    fn without_a_token_only_loopback_is_served_and_with_one_only_its_bearer() {
        let host = ("Host", "127.0.0.1:8080");
        assert_eq!(status(None, &[host], "127.0.0.9:1"), 200);
        assert_eq!(status(None, &[("Host", "[::1]:80")], "[::1]:1"), 200);
        assert_eq!(
            status(None, &[host, ("Authorization", "Bearer x")], "192.0.2.1:1"),
            403
        );
        let token = Some("0123456789abcdef");
        let bearer = |value| ("Authorization", value);
        assert_eq!(
            status(token, &[bearer("Bearer 0123456789abcdef")], "192.0.2.1:1"),
            200
        );
        assert_eq!(
            status(token, &[bearer("Bearer 0123456789abcdeF")], "127.0.0.1:1"),
            401
        );
        assert_eq!(
            status(token, &[bearer("0123456789abcdef")], "127.0.0.1:1"),
            401
        );
        assert_eq!(status(token, &[], "127.0.0.1:1"), 401);
    }

    #[test]
    fn without_a_token_a_browser_on_the_machine_cannot_drive_the_api() {
        let peer = "127.0.0.1:5000";
        // DNS rebinding: a page of evil.example whose name now points at 127.0.0.1.
        assert_eq!(status(None, &[("Host", "evil.example:8080")], peer), 403);
        assert_eq!(status(None, &[], peer), 403, "no Host at all");
        // A cross-site form or fetch: Origin names the other site.
        let cross = [
            ("Host", "127.0.0.1:8080"),
            ("Origin", "http://evil.example"),
        ];
        assert_eq!(status(None, &cross, peer), 403);
        assert_eq!(
            status(
                None,
                &[("Host", "127.0.0.1:8080"), ("Origin", "null")],
                peer
            ),
            403
        );
        // The API's own origin, and every loopback spelling, are fine.
        let own = [
            ("Host", "localhost:8080"),
            ("Origin", "http://localhost:8080"),
        ];
        assert_eq!(status(None, &own, peer), 200);
        for host in [
            "localhost",
            "LOCALHOST.",
            "app.localhost:1",
            "127.1.2.3",
            "[::1]",
        ] {
            assert_eq!(status(None, &[("Host", host)], peer), 200, "{host}");
        }
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret!"));
    }
}
