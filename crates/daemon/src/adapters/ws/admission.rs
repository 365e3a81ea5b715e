//! Who may open a WebSocket: connection slots, per-IP counts, origins.
//!
//! Checked in the order a refusal is cheapest. As soon as a connection is
//! accepted, before any byte of it is read: a slot in the total, and for a
//! client that connects directly, its place in its address's count. Such a
//! refusal costs no TLS and no handshake: on a plain listener the HTTP status
//! is written at once, without reading the request, and the socket closed
//! (so one address cannot hold slots with silent sockets, and the descriptors
//! kept for the other listeners stay free). During the handshake: the count
//! of a client behind a trusted proxy (its address known only from the
//! proxy), then the `Origin` header, answered with an HTTP status:
//!
//! | refusal | HTTP status | counter |
//! |---|---|---|
//! | over `--max-connections` or the open-file cap | 503 | `capacity_refused` |
//! | over `--max-connections-per-ip` | 429 | `per_ip_refused` |
//! | `Origin` not in `--allow-origin` | 403 | `origin_refused` |
//! | the node drains (`pushctl drain`, `--drain`) | 503, `Retry-After: 2` | `drain_refused` |

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request};
use tokio_tungstenite::tungstenite::http::{StatusCode, header};

use crate::core::counters::{Counter, Counters};

/// Open connections per IP address, shared with the tickets that decrement them.
type IpCounts = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// Admission state shared by every connection.
#[derive(Debug)]
pub(crate) struct Admission {
    slots: Arc<Semaphore>,
    /// The number of slots: `--max-connections` or the open-file cap.
    pub(crate) max_connections: usize,
    per_ip_limit: Option<usize>,
    per_ip: IpCounts,
    allow_origin: Vec<String>,
}

/// What an admitted connection holds until it ends: its slot and its place
/// in the per-IP count.
#[derive(Debug)]
pub(crate) struct Ticket {
    /// `None` only for a connection handed over past today's limit.
    _slot: Option<OwnedSemaphorePermit>,
    /// Boxed: only with `--max-connections-per-ip`, and every connection
    /// holds its ticket.
    ip: Option<Box<(IpAddr, IpCounts)>>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some((ip, per_ip)) = self.ip.as_deref() {
            let mut counts = per_ip.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = counts.get_mut(ip) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(ip);
                }
            }
        }
    }
}

/// Why a connection was turned away before or during its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No connection slot left (HTTP 503).
    Capacity,
    /// Too many connections from this IP (HTTP 429).
    PerIp,
    /// `Origin` not allowed (HTTP 403).
    Origin,
    /// The node drains before a deploy (HTTP 503): another node, or this one
    /// restarted, takes the client.
    Draining,
}

impl Refusal {
    /// The whole HTTP answer as bytes, for a connection refused before its
    /// request was read.
    pub(crate) fn raw_response(self) -> &'static [u8] {
        match self {
            Refusal::Capacity => {
                b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 5\r\n\
                  Content-Type: text/plain\r\nContent-Length: 33\r\n\r\n\
                  pushd is at its connection limit\n"
            }
            Refusal::PerIp => {
                b"HTTP/1.1 429 Too Many Requests\r\nConnection: close\r\nRetry-After: 5\r\n\
                  Content-Type: text/plain\r\nContent-Length: 39\r\n\r\n\
                  too many connections from this address\n"
            }
            Refusal::Origin => {
                b"HTTP/1.1 403 Forbidden\r\nConnection: close\r\n\
                  Content-Type: text/plain\r\nContent-Length: 19\r\n\r\n\
                  origin not allowed\n"
            }
            Refusal::Draining => {
                b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 2\r\n\
                  Content-Type: text/plain\r\nContent-Length: 18\r\n\r\n\
                  pushd is draining\n"
            }
        }
    }

    /// The HTTP answer to the handshake.
    pub(crate) fn response(self) -> ErrorResponse {
        let (status, body) = match self {
            Refusal::Capacity => (
                StatusCode::SERVICE_UNAVAILABLE,
                "pushd is at its connection limit",
            ),
            Refusal::PerIp => (
                StatusCode::TOO_MANY_REQUESTS,
                "too many connections from this address",
            ),
            Refusal::Origin => (StatusCode::FORBIDDEN, "origin not allowed"),
            Refusal::Draining => (StatusCode::SERVICE_UNAVAILABLE, "pushd is draining"),
        };
        let mut response = ErrorResponse::new(Some(body.to_owned()));
        *response.status_mut() = status;
        response
    }

    /// The counter this refusal bumps.
    pub(crate) fn counter(self) -> Counter {
        match self {
            Refusal::Capacity => Counter::CapacityRefused,
            Refusal::PerIp => Counter::PerIpRefused,
            Refusal::Origin => Counter::OriginRefused,
            Refusal::Draining => Counter::DrainRefused,
        }
    }
}

impl Admission {
    /// `max_connections` slots, at most `per_ip_limit` per address, and the
    /// allowed origins (lowercased; empty allows all).
    pub(crate) fn new(
        max_connections: usize,
        per_ip_limit: Option<usize>,
        allow_origin: Vec<String>,
    ) -> Self {
        Admission {
            slots: Arc::new(Semaphore::new(max_connections)),
            max_connections,
            per_ip_limit,
            per_ip: Arc::default(),
            allow_origin,
        }
    }

    /// At accept: takes a connection slot and, for a client that connects
    /// directly (`ip`; `None` for a trusted proxy, whose clients are counted
    /// at their handshake), its place in its address's count. Counts the
    /// refusal it returns.
    pub(crate) fn admit(&self, ip: Option<IpAddr>, counters: &Counters) -> Result<Ticket, Refusal> {
        let admitted = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::Capacity)
            .and_then(|slot| {
                let mut ticket = Ticket {
                    _slot: Some(slot),
                    ip: None,
                };
                match ip {
                    Some(ip) => self.count_ip(&mut ticket, ip).map(|()| ticket),
                    None => Ok(ticket),
                }
            });
        if let Err(refusal) = admitted {
            counters.bump(refusal.counter());
        }
        admitted
    }

    /// A connection handed over by the previous process (a live upgrade):
    /// counted like any other, never refused, since it is open already.
    pub(crate) fn admit_handed_over(&self, ip: IpAddr) -> Ticket {
        let mut ticket = Ticket {
            _slot: self.slots.clone().try_acquire_owned().ok(),
            ip: None,
        };
        if self.per_ip_limit.is_some() {
            let mut counts = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            *counts.entry(ip).or_default() += 1;
            drop(counts);
            ticket.ip = Some(Box::new((ip, self.per_ip.clone())));
        }
        ticket
    }

    /// Counts `ticket` as a connection from `ip`, or says it is one too many.
    fn count_ip(&self, ticket: &mut Ticket, ip: IpAddr) -> Result<(), Refusal> {
        let Some(limit) = self.per_ip_limit else {
            return Ok(());
        };
        let mut counts = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(ip).or_default();
        if *count >= limit {
            return Err(Refusal::PerIp);
        }
        *count += 1;
        drop(counts);
        ticket.ip = Some(Box::new((ip, self.per_ip.clone())));
        Ok(())
    }

    /// Checks the handshake's `Origin` header against `--allow-origin`.
    fn check_origin(&self, request: &Request) -> Result<(), Refusal> {
        if self.allow_origin.is_empty() {
            return Ok(());
        }
        let origin = request
            .headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok());
        match origin {
            Some(origin)
                if self
                    .allow_origin
                    .iter()
                    .any(|allowed| allowed.eq_ignore_ascii_case(origin)) =>
            {
                Ok(())
            }
            _ => Err(Refusal::Origin),
        }
    }

    /// The handshake callback's verdict: the count of connections from the
    /// client's address `ip`, unless `ticket` was counted at accept (a client
    /// that connected directly), then the origin. Counts the refusal it
    /// returns; the caller answers it with [`Refusal::response`].
    pub(crate) fn verdict(
        &self,
        ticket: &mut Ticket,
        ip: IpAddr,
        request: &Request,
        counters: &Counters,
    ) -> Result<(), Refusal> {
        let counted = match ticket.ip {
            Some(_) => Ok(()),
            None => self.count_ip(ticket, ip),
        };
        let refusal = counted.and_then(|()| self.check_origin(request)).err();
        match refusal {
            Some(refusal) => {
                counters.bump(refusal.counter());
                Err(refusal)
            }
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(origin: Option<&str>) -> Request {
        let mut builder = Request::builder().uri("/");
        if let Some(origin) = origin {
            builder = builder.header("Origin", origin);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn slots_run_out_and_come_back() {
        let admission = Admission::new(2, None, vec![]);
        let counters = Counters::default();
        let a = admission.admit(None, &counters).unwrap();
        let _b = admission.admit(None, &counters).unwrap();
        let refused = admission.admit(None, &counters).unwrap_err();
        assert_eq!(refused, Refusal::Capacity);
        assert_eq!(counters.get(Counter::CapacityRefused), 1);
        drop(a);
        assert!(admission.admit(None, &counters).is_ok());
    }

    #[test]
    fn per_ip_limit_counts_each_address() {
        let admission = Admission::new(10, Some(1), vec![]);
        let counters = Counters::default();
        let one: IpAddr = "10.0.0.1".parse().unwrap();
        let two: IpAddr = "10.0.0.2".parse().unwrap();
        let admit = |ip| admission.admit(Some(ip), &counters);
        let first = admit(one).unwrap();
        assert_eq!(admit(one).unwrap_err(), Refusal::PerIp);
        let other = admit(two).unwrap();
        drop(first);
        let again = admit(one).unwrap();
        assert_eq!(admission.per_ip.lock().unwrap().len(), 2);
        drop(again);
        drop(other);
        assert!(
            admission.per_ip.lock().unwrap().is_empty(),
            "counts go away with their tickets"
        );
    }

    #[test]
    fn origins_match_exactly_ignoring_case() {
        let admission = Admission::new(10, None, vec!["https://app.example.com".into()]);
        assert!(
            admission
                .check_origin(&request(Some("https://APP.example.com")))
                .is_ok()
        );
        assert_eq!(
            admission.check_origin(&request(Some("https://evil.example"))),
            Err(Refusal::Origin)
        );
        assert_eq!(admission.check_origin(&request(None)), Err(Refusal::Origin));
        let open = Admission::new(10, None, vec![]);
        assert!(open.check_origin(&request(None)).is_ok());
    }

    #[test]
    fn a_refusal_written_at_once_is_a_whole_http_answer() {
        for refusal in [Refusal::Capacity, Refusal::PerIp, Refusal::Origin] {
            let raw = std::str::from_utf8(refusal.raw_response()).unwrap();
            let (head, body) = raw.split_once("\r\n\r\n").unwrap();
            let status = refusal.response().status().as_u16();
            assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{head}");
            let length = head
                .lines()
                .find_map(|line| line.strip_prefix("Content-Length: "))
                .unwrap();
            assert_eq!(length.parse::<usize>().unwrap(), body.len(), "{raw}");
            assert!(head.contains("Connection: close"));
        }
    }
}
