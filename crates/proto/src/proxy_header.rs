//! The PROXY protocol header (HAProxy's specification, versions 1 and 2), as
//! sent by HAProxy, nginx's `proxy_protocol on` and cloud load balancers in
//! front of a TCP connection to say who the client is.
//!
//! [`parse`] looks at the bytes received so far and says either how many more
//! it needs or how long the header is, so the caller can consume exactly the
//! header and leave the bytes after it (a TLS or HTTP handshake) unread. It
//! never allocates and never reads past the header.
//!
//! Written here rather than taken from a crate: the daemon needs the exact
//! length of a possibly incomplete header before it reads a byte, which is
//! this one function; it has property tests below and a fuzz target
//! (`fuzz/fuzz_targets/proxy_header.rs`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use thiserror::Error;

/// Longest version 1 header, CRLF included (the specification's figure).
pub const V1_MAX_LEN: usize = 107;

/// Longest version 2 header accepted: the 16 fixed bytes and up to this many
/// bytes of addresses and TLVs (load balancers add a few TLVs; 64 KiB, the
/// format's own bound, would let one connection hold that much).
pub const V2_MAX_LEN: usize = 16 + 2048;

/// The 12 bytes a version 2 header starts with.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

const V1_PREFIX: &[u8] = b"PROXY ";

/// What the bytes received so far amount to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// Not a whole header yet: at least this many bytes in all are needed,
    /// and every byte received so far belongs to the header.
    Incomplete {
        /// Total bytes needed before asking again.
        at_least: usize,
    },
    /// A whole header of `len` bytes.
    Header {
        /// The header's length; the connection's own bytes start after it.
        len: usize,
        /// The client's address; `None` for a header that carries none
        /// (v1 `UNKNOWN`, v2 `LOCAL` such as a proxy's health check, or an
        /// address family other than IPv4 and IPv6).
        source: Option<SocketAddr>,
    },
}

/// Why the bytes are not a PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ProxyHeaderError {
    /// Neither signature: the peer did not send a PROXY header.
    #[error("no PROXY protocol header")]
    Missing,
    /// A v1 line without CRLF within 107 bytes, or a v2 header over the bound.
    #[error("PROXY protocol header too long")]
    TooLong,
    /// The signature is there but what follows is not a valid header.
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(&'static str),
}

/// Parses the start of a connection as a PROXY header (v1 or v2).
pub fn parse(bytes: &[u8]) -> Result<Parsed, ProxyHeaderError> {
    if bytes.is_empty() {
        Ok(Parsed::Incomplete { at_least: 1 })
    } else if starts_like(bytes, &V2_SIGNATURE) {
        parse_v2(bytes)
    } else if starts_like(bytes, V1_PREFIX) {
        parse_v1(bytes)
    } else {
        Err(ProxyHeaderError::Missing)
    }
}

/// Whether `bytes` agrees with `signature` as far as either goes.
fn starts_like(bytes: &[u8], signature: &[u8]) -> bool {
    let n = bytes.len().min(signature.len());
    bytes[..n] == signature[..n]
}

fn parse_v1(bytes: &[u8]) -> Result<Parsed, ProxyHeaderError> {
    use ProxyHeaderError::{Malformed, TooLong};
    let window = &bytes[..bytes.len().min(V1_MAX_LEN)];
    let Some(cr) = window.windows(2).position(|pair| pair == b"\r\n") else {
        return if window.len() == V1_MAX_LEN {
            Err(TooLong)
        } else {
            Ok(Parsed::Incomplete {
                at_least: bytes.len() + 1,
            })
        };
    };
    let len = cr + 2;
    let line =
        std::str::from_utf8(&bytes[V1_PREFIX.len()..cr]).map_err(|_| Malformed("not ASCII"))?;
    let mut fields = line.split(' ');
    let family = fields.next().unwrap_or_default();
    if family == "UNKNOWN" {
        // The specification lets the rest of an UNKNOWN line be anything.
        return Ok(Parsed::Header { len, source: None });
    }
    let (Some(src), Some(_dst), Some(src_port), Some(dst_port), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(Malformed("v1 wants 4 fields after the family"));
    };
    let ip: IpAddr = match family {
        "TCP4" => src
            .parse::<Ipv4Addr>()
            .map_err(|_| Malformed("bad TCP4 source address"))?
            .into(),
        "TCP6" => src
            .parse::<Ipv6Addr>()
            .map_err(|_| Malformed("bad TCP6 source address"))?
            .into(),
        _ => return Err(Malformed("v1 family is not TCP4, TCP6 or UNKNOWN")),
    };
    let port = parse_port(src_port)?;
    parse_port(dst_port)?;
    Ok(Parsed::Header {
        len,
        source: Some(SocketAddr::new(ip, port)),
    })
}

/// A v1 port: 0 to 65535 in decimal digits only (no sign, no spaces).
fn parse_port(text: &str) -> Result<u16, ProxyHeaderError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ProxyHeaderError::Malformed("bad v1 port"));
    }
    text.parse()
        .map_err(|_| ProxyHeaderError::Malformed("bad v1 port"))
}

fn parse_v2(bytes: &[u8]) -> Result<Parsed, ProxyHeaderError> {
    use ProxyHeaderError::{Malformed, TooLong};
    let Some(fixed) = bytes.get(..16) else {
        return Ok(Parsed::Incomplete { at_least: 16 });
    };
    let (version_command, family_protocol) = (fixed[12], fixed[13]);
    let body_len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    let len = 16 + body_len;
    if version_command >> 4 != 2 {
        return Err(Malformed("v2 version nibble is not 2"));
    }
    if len > V2_MAX_LEN {
        return Err(TooLong);
    }
    let Some(body) = bytes.get(16..len) else {
        return Ok(Parsed::Incomplete { at_least: len });
    };
    match version_command & 0x0f {
        // LOCAL: the proxy speaking for itself; the addresses are to be ignored.
        0 => return Ok(Parsed::Header { len, source: None }),
        1 => {}
        _ => return Err(Malformed("v2 command is neither LOCAL nor PROXY")),
    }
    // Transport: UNSPEC or STREAM; a datagram has no business on this listener.
    if !matches!(family_protocol & 0x0f, 0 | 1) {
        return Err(Malformed("v2 transport is not a stream"));
    }
    let source = match family_protocol >> 4 {
        0 | 3 => None, // UNSPEC, UNIX: no IP address to give
        1 => {
            let a = body
                .get(..12)
                .ok_or(Malformed("v2 IPv4 addresses cut short"))?;
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            Some(SocketAddr::new(ip.into(), u16::from_be_bytes([a[8], a[9]])))
        }
        2 => {
            let a = body
                .get(..36)
                .ok_or(Malformed("v2 IPv6 addresses cut short"))?;
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&a[..16]);
            let ip = Ipv6Addr::from(octets);
            Some(SocketAddr::new(
                ip.into(),
                u16::from_be_bytes([a[32], a[33]]),
            ))
        }
        _ => return Err(Malformed("v2 address family unknown")),
    };
    Ok(Parsed::Header { len, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut header = V2_SIGNATURE.to_vec();
        header.push(0x20 | command);
        header.push(family);
        header.extend_from_slice(&(body.len() as u16).to_be_bytes());
        header.extend_from_slice(body);
        header
    }

    fn v2_inet(src: [u8; 4], port: u16) -> Vec<u8> {
        let mut body = src.to_vec();
        body.extend_from_slice(&[127, 0, 0, 1]);
        body.extend_from_slice(&port.to_be_bytes());
        body.extend_from_slice(&443u16.to_be_bytes());
        v2(1, 0x11, &body)
    }

    fn source(text: &str) -> Option<SocketAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn v1_headers_give_the_source_and_their_length() {
        let line = b"PROXY TCP4 192.0.2.7 127.0.0.1 51234 1234\r\nGET / HTTP/1.1\r\n";
        assert_eq!(
            parse(line),
            Ok(Parsed::Header {
                len: 43,
                source: source("192.0.2.7:51234")
            })
        );
        let line = b"PROXY TCP6 2001:db8::1 ::1 4711 443\r\n";
        assert_eq!(
            parse(line),
            Ok(Parsed::Header {
                len: line.len(),
                source: source("[2001:db8::1]:4711")
            })
        );
        let line = b"PROXY UNKNOWN whatever\r\n";
        assert_eq!(
            parse(line),
            Ok(Parsed::Header {
                len: line.len(),
                source: None
            })
        );
    }

    #[test]
    fn v1_errors() {
        use ProxyHeaderError::*;
        let bad = |line: &[u8]| parse(line).unwrap_err();
        assert_eq!(bad(b"GET / HTTP/1.1\r\n"), Missing);
        assert_eq!(bad(b"\x16\x03\x01\x02\x00"), Missing, "a TLS ClientHello");
        assert!(matches!(
            bad(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"),
            Malformed(_)
        ));
        assert!(matches!(bad(b"PROXY TCP4 ::1 ::1 1 2\r\n"), Malformed(_)));
        assert!(matches!(
            bad(b"PROXY TCP6 1.2.3.4 1.2.3.4 1 2\r\n"),
            Malformed(_)
        ));
        assert!(matches!(
            bad(b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"),
            Malformed(_)
        ));
        assert!(matches!(
            bad(b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n"),
            Malformed(_)
        ));
        assert!(matches!(
            bad(b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n"),
            Malformed(_)
        ));
        let long = [b"PROXY ".as_slice(), &[b'x'; 120]].concat();
        assert_eq!(bad(&long), TooLong);
    }

    #[test]
    fn v2_headers_give_the_source_and_their_length() {
        let header = v2_inet([192, 0, 2, 7], 51234);
        let mut bytes = header.clone();
        bytes.extend_from_slice(b"\x16\x03\x01");
        assert_eq!(
            parse(&bytes),
            Ok(Parsed::Header {
                len: header.len(),
                source: source("192.0.2.7:51234")
            })
        );
        let mut body = Ipv6Addr::LOCALHOST.octets().to_vec();
        body.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        body.extend_from_slice(&[0x12, 0x67, 0x01, 0xbb]);
        body.extend_from_slice(&[0x04, 0x00, 0x01, 0x00]); // a TLV after the addresses
        assert_eq!(
            parse(&v2(1, 0x21, &body)),
            Ok(Parsed::Header {
                len: 16 + 40,
                source: source("[::1]:4711")
            })
        );
        assert_eq!(
            parse(&v2(0, 0x00, &[])),
            Ok(Parsed::Header {
                len: 16,
                source: None
            }),
            "LOCAL"
        );
    }

    #[test]
    fn v2_errors() {
        use ProxyHeaderError::*;
        let mut wrong_version = v2_inet([1, 2, 3, 4], 1);
        wrong_version[12] = 0x11;
        assert!(matches!(parse(&wrong_version), Err(Malformed(_))));
        assert!(matches!(parse(&v2(1, 0x11, &[1, 2, 3])), Err(Malformed(_))));
        assert!(
            matches!(parse(&v2(1, 0x12, &[0; 12])), Err(Malformed(_))),
            "UDP"
        );
        assert!(matches!(parse(&v2(2, 0x11, &[0; 12])), Err(Malformed(_))));
        assert_eq!(parse(&v2(1, 0x11, &[0; 3000])), Err(TooLong));
    }

    #[test]
    fn incomplete_headers_ask_for_more() {
        let header = v2_inet([10, 0, 0, 1], 80);
        assert_eq!(parse(&header[..5]), Ok(Parsed::Incomplete { at_least: 16 }));
        assert_eq!(
            parse(&header[..20]),
            Ok(Parsed::Incomplete { at_least: 28 })
        );
        assert_eq!(parse(b"PRO"), Ok(Parsed::Incomplete { at_least: 4 }));
        assert_eq!(
            parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r"),
            Ok(Parsed::Incomplete { at_least: 32 })
        );
        assert_eq!(parse(b""), Ok(Parsed::Incomplete { at_least: 1 }));
    }

    proptest! {
        /// Any header, cut anywhere, asks for more without claiming a byte
        /// past the cut; whole, it parses to its source and exact length
        /// whatever follows it.
        #[test]
        fn any_cut_of_a_header_is_incomplete_and_never_over_reads(
            v1 in any::<bool>(),
            ip in any::<[u8; 4]>(),
            port in any::<u16>(),
            tail in proptest::collection::vec(any::<u8>(), 0..64),
            cut in any::<prop::sample::Index>(),
        ) {
            let header = if v1 {
                let ip = Ipv4Addr::from(ip);
                format!("PROXY TCP4 {ip} 127.0.0.1 {port} 1234\r\n").into_bytes()
            } else {
                v2_inet(ip, port)
            };
            let at = cut.index(header.len());
            match parse(&header[..at]) {
                Ok(Parsed::Incomplete { at_least }) => {
                    prop_assert!(at_least > at && at_least <= header.len());
                }
                other => prop_assert!(false, "{other:?} at {at}"),
            }
            let mut bytes = header.clone();
            bytes.extend_from_slice(&tail);
            let expected = SocketAddr::new(Ipv4Addr::from(ip).into(), port);
            prop_assert_eq!(
                parse(&bytes),
                Ok(Parsed::Header { len: header.len(), source: Some(expected) })
            );
        }

        /// Arbitrary bytes never panic, and a header's claimed length fits.
        #[test]
        fn arbitrary_bytes_are_answered(
            start in 0..3usize,
            rest in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let start: &[u8] = [&b""[..], V1_PREFIX, &V2_SIGNATURE][start];
            let bytes = [start, &rest].concat();
            if let Ok(Parsed::Header { len, .. }) = parse(&bytes) {
                prop_assert!(len <= bytes.len());
            }
        }
    }
}
