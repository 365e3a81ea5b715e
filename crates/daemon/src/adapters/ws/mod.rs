//! WebSocket adapter: accepts clients and runs one task per connection.
//!
//! This file is a connection's story from accept to the end of its close:
//! admission (`admission`), the handshake, the session (`session`: bind,
//! heartbeat, pings, socket I/O in `io`) and the close (`close`). Each
//! connection is a single task; its shared half lives in the registry
//! (`ConnHandle`), so pushes and kicks reach it without a channel.

mod admission;
pub(crate) mod close;
mod io;
mod session;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pushd_proto::token::Verifier;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::http::header::SEC_WEBSOCKET_PROTOCOL;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

pub(crate) use admission::Admission;
use admission::Refusal;
use session::Session;

use crate::core::conn::CloseRequest;
use crate::core::counters::Counter;
use crate::logging::Throttled;
use crate::node::Node;

/// Per-connection settings, resolved from the options.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// Idle time after which a connection is closed (4001).
    pub(crate) heartbeat: Option<Duration>,
    /// Interval between server pings.
    pub(crate) ping_interval: Option<Duration>,
    /// Longest a connection may stay unbound.
    pub(crate) bind_timeout: Option<Duration>,
    /// Longest a handshake may take.
    pub(crate) handshake_timeout: Duration,
    /// Largest inbound message.
    pub(crate) max_message_size: usize,
    /// Deadlines are rounded up to a multiple of this, so timers coincide.
    pub(crate) timer_grain: Duration,
}

/// What every WebSocket connection shares.
#[derive(Debug)]
pub(crate) struct WsServer {
    pub(crate) node: Arc<Node>,
    pub(crate) admission: Admission,
    /// With `--auth token`, checks the tokens clients present.
    pub(crate) auth: Option<Verifier>,
    pub(crate) settings: Settings,
    /// "At the connection limit" warning, throttled.
    at_capacity: Mutex<Throttled>,
}

impl WsServer {
    pub(crate) fn new(
        node: Arc<Node>,
        admission: Admission,
        auth: Option<Verifier>,
        settings: Settings,
    ) -> Self {
        WsServer {
            node,
            admission,
            auth,
            settings,
            at_capacity: Mutex::new(Throttled::new(
                "WebSocket",
                "new connections are refused until it recovers",
            )),
        }
    }
}

/// Accepts WebSocket clients until shutdown.
pub(crate) async fn serve(
    listener: TcpListener,
    server: Arc<WsServer>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let counters = &server.node.counters;
    super::accept::serve(
        listener,
        "WebSocket",
        counters,
        &server,
        &shutdown,
        &tracker,
        connection,
    )
    .await;
}

/// One client, from handshake to the end of its close.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    server: Arc<WsServer>,
    shutdown: CancellationToken,
) {
    let admitted = server.admission.admit(peer.ip());
    if let Err(Refusal::Capacity) = admitted {
        let limit = server.admission.max_connections;
        let mut warning = server.at_capacity.lock().unwrap_or_else(|p| p.into_inner());
        warning.warn(&format_args!(
            "at the limit of {limit} WebSocket connections"
        ));
    }
    // Pushes are small and latency-bound; Nagle would hold them back.
    let _ = stream.set_nodelay(true);
    let config = io::ws_config(server.settings.max_message_size);
    let counters = &*server.node.counters;
    // With --auth token, a token may come in the URL instead of the first message.
    let mut url_token = None;
    // A pushd.v2 client says where it was with `?since=`.
    let (mut v2, mut since) = (false, None);
    // A refused connection still gets its handshake, answered with an HTTP
    // status (see `admission`), so the client learns why.
    #[allow(clippy::result_large_err)] // the callback's signature is tungstenite's
    let verdict = |request: &Request, mut response: Response| {
        let query = request.uri().query();
        url_token = query_param(query, "token");
        since = query_param(query, "since");
        v2 = offers_v2(request);
        if v2 {
            let selected = HeaderValue::from_static(SUBPROTOCOL);
            response
                .headers_mut()
                .insert(SEC_WEBSOCKET_PROTOCOL, selected);
        }
        let verdict = server.admission.verdict(&admitted, request, counters);
        verdict.map(|()| response).map_err(Refusal::response)
    };
    let handshake = tokio_tungstenite::accept_hdr_async_with_config(stream, verdict, Some(config));
    // Boxed: the handshake's state is large and short-lived; inline, it would
    // size this task's future (and so every idle connection) for its whole life.
    let handshake = Box::pin(async {
        tokio::select! {
            _ = shutdown.cancelled() => None,
            ws = timeout(server.settings.handshake_timeout, handshake) => Some(ws),
        }
    });
    let ws = match handshake.await {
        None => return,
        Some(Ok(Ok(ws))) => ws,
        // Refused by `verdict`, already counted.
        Some(Ok(Err(WsError::Http(_)))) => return,
        Some(Ok(Err(err))) => {
            counters.bump(Counter::HandshakesFailed);
            debug!(%peer, %err, "handshake failed");
            return;
        }
        Some(Err(_)) => {
            counters.bump(Counter::HandshakesFailed);
            debug!(%peer, "handshake timed out");
            return;
        }
    };
    // The verdict passed, so admission did too; the ticket lives as long as
    // the connection.
    let Ok(_ticket) = admitted else { return };
    let handle = server.node.registry.open(peer, v2);
    let since = since
        .filter(|_| v2)
        .map(|text| server.node.registry.since(&text));
    // Shutdown asks every registered connection to close; one that registered
    // after that walk finds the token already cancelled here.
    if shutdown.is_cancelled() {
        handle.request_close(CloseRequest::Shutdown);
    }
    let mut session = Session {
        ws,
        handle,
        server,
        uid: None,
        since,
        write: Default::default(),
    };
    // Values with drop glue stay in this task's future until they are
    // dropped; nothing below needs the token, so it goes now.
    drop(shutdown);
    let bound_by_url = match url_token.filter(|_| session.server.auth.is_some()) {
        Some(token) => session.bind(&token),
        None => Ok(()),
    };
    let end = match bound_by_url {
        Ok(()) => session.run().await,
        Err(end) => end,
    };
    let (peer, uid) = (session.handle.peer, session.uid.as_deref().unwrap_or(""));
    debug!(%peer, uid, ?end, "connection closed");
    // Unbind first, so pushes stop targeting a connection that is closing.
    session.server.node.registry.close(session.handle.id);
    // Boxed for the same reason as the handshake.
    Box::pin(end.finish(&mut session.ws)).await;
}

/// The subprotocol of clients that keep their place: `ID PAYLOAD` frames, `?since=ID`.
const SUBPROTOCOL: &str = "pushd.v2";

/// Whether the handshake offers [`SUBPROTOCOL`] among its `Sec-WebSocket-Protocol`s.
fn offers_v2(request: &Request) -> bool {
    let offered = request.headers().get_all(SEC_WEBSOCKET_PROTOCOL).iter();
    offered
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|protocol| protocol.trim() == SUBPROTOCOL)
}

/// The value of parameter `name` in a URL query, percent-decoded; a value that
/// does not decode to UTF-8 is kept as it came (it will not match anything).
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    let raw = query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then_some(value)
    })?;
    Some(percent_decode(raw).unwrap_or_else(|| raw.to_owned()))
}

/// `%XX` escapes and `+` decoded; `None` when that is not UTF-8 or an escape is cut.
fn percent_decode(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        rest = tail;
        match first {
            b'%' => {
                let hex = std::str::from_utf8(rest.get(..2)?).ok()?;
                bytes.push(u8::from_str_radix(hex, 16).ok()?);
                rest = &rest[2..];
            }
            b'+' => bytes.push(b' '),
            other => bytes.push(other),
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_found_and_decoded() {
        let query = Some("token=a.b.c&since=17330-42&x=%E2%82%AC+%2B");
        assert_eq!(query_param(query, "token").as_deref(), Some("a.b.c"));
        assert_eq!(query_param(query, "since").as_deref(), Some("17330-42"));
        assert_eq!(query_param(query, "x").as_deref(), Some("€ +"));
        assert_eq!(query_param(query, "y"), None);
        assert_eq!(
            query_param(Some("since=%zz"), "since").as_deref(),
            Some("%zz")
        );
        assert_eq!(
            query_param(Some("since=%4"), "since").as_deref(),
            Some("%4")
        );
        assert_eq!(query_param(None, "since"), None);
    }

    #[test]
    fn v2_is_selected_only_when_offered() {
        let offer = |protocols: &[&str]| {
            let mut builder = Request::builder().uri("/");
            for p in protocols {
                builder = builder.header("Sec-WebSocket-Protocol", *p);
            }
            offers_v2(&builder.body(()).unwrap())
        };
        assert!(offer(&["pushd.v2"]));
        assert!(offer(&["chat, pushd.v2"]));
        assert!(offer(&["chat", "pushd.v2"]));
        assert!(!offer(&["pushd.v3"]));
        assert!(!offer(&[]));
    }
}
