//! Who may open a WebSocket: connection slots, per-IP counts, origins.
//!
//! Checked in the order a refusal is cheapest: before the handshake, pushd
//! decides whether the connection fits in the total; during the handshake,
//! once the client's address is known (a trusted proxy may report it in a
//! header), the count per IP and then the `Origin` header; the answer to a refused handshake is an
//! HTTP status, so browsers and proxies see why:
//!
//! | refusal | HTTP status | counter |
//! |---|---|---|
//! | over `--max-connections` or the open-file cap | 503 | `capacity_refused` |
//! | over `--max-connections-per-ip` | 429 | `per_ip_refused` |
//! | `Origin` not in `--allow-origin` | 403 | `origin_refused` |

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
    _slot: OwnedSemaphorePermit,
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
}

impl Refusal {
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
        };
        let mut response = ErrorResponse::new(Some(body.to_owned()));
        *response.status_mut() = status;
        response
    }

    /// The counter this refusal bumps.
    fn counter(self) -> Counter {
        match self {
            Refusal::Capacity => Counter::CapacityRefused,
            Refusal::PerIp => Counter::PerIpRefused,
            Refusal::Origin => Counter::OriginRefused,
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

    /// Takes a connection slot, or says why not.
    pub(crate) fn admit(&self) -> Result<Ticket, Refusal> {
        let slot = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::Capacity)?;
        Ok(Ticket {
            _slot: slot,
            ip: None,
        })
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

    /// The handshake callback's verdict: the slot taken before the
    /// handshake, the count of connections from the client's address `ip`
    /// (known only now when a proxy reports it in a header), then the
    /// origin. Counts the refusal it returns; the caller answers it with
    /// [`Refusal::response`].
    pub(crate) fn verdict(
        &self,
        admitted: &mut Result<Ticket, Refusal>,
        ip: IpAddr,
        request: &Request,
        counters: &Counters,
    ) -> Result<(), Refusal> {
        let refusal = match admitted {
            Err(refusal) => Some(*refusal),
            Ok(ticket) => self
                .count_ip(ticket, ip)
                .and_then(|()| self.check_origin(request))
                .err(),
        };
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
        let a = admission.admit().unwrap();
        let _b = admission.admit().unwrap();
        assert_eq!(admission.admit().unwrap_err(), Refusal::Capacity);
        drop(a);
        assert!(admission.admit().is_ok());
    }

    #[test]
    fn per_ip_limit_counts_each_address() {
        let admission = Admission::new(10, Some(1), vec![]);
        let one: IpAddr = "10.0.0.1".parse().unwrap();
        let two: IpAddr = "10.0.0.2".parse().unwrap();
        let admit = |ip| {
            let mut ticket = admission.admit().unwrap();
            admission.count_ip(&mut ticket, ip).map(|()| ticket)
        };
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
}
