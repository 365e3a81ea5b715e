//! The client address that a trusted HTTP proxy reports in `Forwarded`
//! (RFC 7239), `X-Forwarded-For` or `X-Real-IP`.
//!
//! Each proxy on the way appends the address it received the request from,
//! so the list's left end is whatever the client chose to write and only
//! its right end is known to be true. The client is the rightmost address
//! that is not itself one of the trusted proxies; when every address is
//! trusted, the leftmost. Walking stops at an entry that is not an address
//! (`unknown`, an obfuscated `_name`, garbage): nothing left of it can be
//! believed, so the answer is the last trusted address passed, if any.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// The forwarding headers of one request, each header's lines in order.
#[derive(Debug, Default, Clone, Copy)]
pub struct ForwardingHeaders<'a> {
    /// `Forwarded` lines.
    pub forwarded: &'a [&'a str],
    /// `X-Forwarded-For` lines.
    pub x_forwarded_for: &'a [&'a str],
    /// `X-Real-IP` lines (one is expected; the last counts).
    pub x_real_ip: &'a [&'a str],
}

/// The client address the headers give, trying `Forwarded`, then
/// `X-Forwarded-For`, then `X-Real-IP`; a header that is absent or yields no
/// address gives way to the next. The port is 0 when the header has none.
/// `is_trusted` says whether an address is one of the trusted proxies.
pub fn client_address(
    headers: &ForwardingHeaders<'_>,
    is_trusted: impl Fn(IpAddr) -> bool,
) -> Option<SocketAddr> {
    let forwarded = headers
        .forwarded
        .iter()
        .flat_map(|line| line.split(','))
        .map(forwarded_for);
    let x_forwarded_for = headers
        .x_forwarded_for
        .iter()
        .flat_map(|line| line.split(','))
        .map(parse_node);
    rightmost_untrusted(forwarded, &is_trusted)
        .or_else(|| rightmost_untrusted(x_forwarded_for, &is_trusted))
        .or_else(|| headers.x_real_ip.last().and_then(|line| parse_node(line)))
}

/// The rightmost untrusted address of a list (see the module's comment).
fn rightmost_untrusted(
    entries: impl DoubleEndedIterator<Item = Option<SocketAddr>>,
    is_trusted: impl Fn(IpAddr) -> bool,
) -> Option<SocketAddr> {
    let mut last_trusted = None;
    for entry in entries.rev() {
        match entry {
            Some(addr) if is_trusted(addr.ip()) => last_trusted = Some(addr),
            Some(addr) => return Some(addr),
            None => break,
        }
    }
    last_trusted
}

/// The `for=` node of one `Forwarded` element (`for=192.0.2.60;proto=http`).
fn forwarded_for(element: &str) -> Option<SocketAddr> {
    element.split(';').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("for")
            .then(|| parse_node(value))?
    })
}

/// An address as proxies write it: `192.0.2.7`, `192.0.2.7:4711`,
/// `2001:db8::1`, `[2001:db8::1]:4711`, optionally in double quotes.
/// IPv4-mapped IPv6 addresses come out as IPv4.
fn parse_node(text: &str) -> Option<SocketAddr> {
    let text = text.trim();
    let text = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    let (ip, port) = if let Some(rest) = text.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        let port = match after {
            "" => 0,
            _ => after.strip_prefix(':')?.parse().ok()?,
        };
        (IpAddr::V6(ip.parse::<Ipv6Addr>().ok()?), port)
    } else if let Ok(ip) = text.parse::<IpAddr>() {
        (ip, 0)
    } else {
        let (ip, port) = text.rsplit_once(':')?;
        (IpAddr::V4(ip.parse().ok()?), port.parse().ok()?)
    };
    Some(SocketAddr::new(ip.to_canonical(), port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// 10.0.0.0/8 plays the trusted proxies.
    fn trusted(ip: IpAddr) -> bool {
        matches!(ip, IpAddr::V4(v4) if v4.octets()[0] == 10)
    }

    fn client(forwarded: &[&str], xff: &[&str], real_ip: &[&str]) -> Option<String> {
        let headers = ForwardingHeaders {
            forwarded,
            x_forwarded_for: xff,
            x_real_ip: real_ip,
        };
        client_address(&headers, trusted).map(|addr| addr.to_string())
    }

    #[test]
    fn the_rightmost_untrusted_address_is_the_client() {
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(client(&[], &["192.0.2.7"], &[]), some("192.0.2.7:0"));
        // The client wrote 6.6.6.6 itself; the proxy appended what it saw.
        assert_eq!(
            client(&[], &["6.6.6.6, 192.0.2.7, 10.0.0.2"], &[]),
            some("192.0.2.7:0")
        );
        assert_eq!(
            client(&[], &["6.6.6.6", "192.0.2.7 ,10.0.0.2"], &[]),
            some("192.0.2.7:0"),
            "several lines are one list"
        );
        assert_eq!(
            client(&[], &["10.0.0.3, 10.0.0.2"], &[]),
            some("10.0.0.3:0"),
            "all trusted: the leftmost"
        );
        assert_eq!(
            client(&[], &["192.0.2.7:4711", "[2001:db8::1]:80"], &[]),
            some("[2001:db8::1]:80")
        );
        assert_eq!(client(&[], &["::ffff:192.0.2.7"], &[]), some("192.0.2.7:0"));
    }

    #[test]
    fn forwarded_comes_first_then_x_forwarded_for_then_x_real_ip() {
        let some = |s: &str| Some(s.to_owned());
        let forwarded = ["for=6.6.6.6, for=\"[2001:db8::1]:4711\";proto=https;by=10.0.0.1"];
        assert_eq!(
            client(&forwarded, &["192.0.2.7"], &["192.0.2.8"]),
            some("[2001:db8::1]:4711")
        );
        assert_eq!(
            client(&["For=192.0.2.60;proto=http"], &[], &[]),
            some("192.0.2.60:0")
        );
        assert_eq!(
            client(&[], &["192.0.2.7"], &["192.0.2.8"]),
            some("192.0.2.7:0")
        );
        assert_eq!(client(&[], &[], &["192.0.2.8"]), some("192.0.2.8:0"));
        assert_eq!(
            client(&["for=unknown"], &["192.0.2.7"], &[]),
            some("192.0.2.7:0"),
            "a header with no address gives way"
        );
        assert_eq!(client(&[], &[], &[]), None);
    }

    #[test]
    fn nothing_left_of_garbage_is_believed() {
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(
            client(&[], &["6.6.6.6, garbage, 10.0.0.2"], &[]),
            some("10.0.0.2:0")
        );
        assert_eq!(client(&[], &["6.6.6.6, _hidden"], &[]), None);
        assert_eq!(
            client(&["for=_hidden, for=10.0.0.9"], &[], &[]),
            some("10.0.0.9:0")
        );
        assert_eq!(client(&[], &["1.2.3.4:99999"], &[]), None);
        assert_eq!(client(&[], &["[::1"], &[]), None);
    }

    proptest! {
        /// Whatever a client puts left of the proxy's entry, the proxy's
        /// entry wins.
        #[test]
        fn a_client_cannot_push_its_choice_past_the_proxy(
            spoofed in "[ -~]{0,60}",
            real in any::<[u8; 4]>(),
        ) {
            let real = std::net::Ipv4Addr::from(real);
            prop_assume!(real.octets()[0] != 10);
            let line = format!("{spoofed}, {real}");
            let expected = SocketAddr::new(real.into(), 0).to_string();
            prop_assert_eq!(client(&[], &[&line], &[]), Some(expected));
        }
    }
}
