//! WebSocket adapter: accepts clients and runs one task per connection.
//!
//! This file is a connection's story from accept to the end of its close:
//! admission (`admission`), the handshake, the session (`session`: bind,
//! heartbeat, pings, socket I/O in `io`) and the close (`close`). Each
//! connection is a single task; its shared half lives in the registry
//! (`ConnHandle`), so pushes and kicks reach it without a channel.

mod admission;
pub(crate) mod close;
mod deadlines;
mod edge;
mod frame;
mod handover;
mod handshake;
mod io;
mod session;
mod sse;
mod stream;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, timeout_at};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::http::header::SEC_WEBSOCKET_PROTOCOL;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

pub(crate) use admission::Admission;
use admission::{Refusal, Ticket};
use close::End;
use deadlines::Deadlines;
pub(crate) use edge::Edge;
pub(crate) use handover::{Frozen, HandOver, adopt};
use io::Ws;
use session::Session;
use stream::ClientStream;

use super::url;
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
    /// `--upstream`: pages' messages become events, within this rate.
    pub(crate) upstream: Option<crate::core::upstream::UpstreamLimit>,
}

/// What every WebSocket connection shares.
#[derive(Debug)]
pub(crate) struct WsServer {
    pub(crate) node: Arc<Node>,
    pub(crate) admission: Admission,
    /// Which peers are believed about the client's address.
    pub(crate) edge: Edge,
    pub(crate) settings: Settings,
    /// Every connection's next wake-up.
    deadlines: Deadlines,
    /// "At the connection limit" warning, throttled.
    at_capacity: Mutex<Throttled>,
    /// A live upgrade's hold on the sessions.
    pub(crate) handover: HandOver,
}

impl WsServer {
    pub(crate) fn new(
        node: Arc<Node>,
        admission: Admission,
        edge: Edge,
        settings: Settings,
    ) -> Self {
        WsServer {
            node,
            admission,
            edge,
            settings,
            deadlines: Deadlines::default(),
            at_capacity: Mutex::new(Throttled::new(
                "WebSocket",
                "new connections are refused until it recovers",
            )),
            handover: HandOver::default(),
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
    tracker.spawn({
        let (server, shutdown) = (server.clone(), shutdown.clone());
        async move {
            let registry = server.node.registry.clone();
            server.deadlines.run(&registry, shutdown).await
        }
    });
    let counters = &server.node.counters;
    super::accept::serve(
        listener,
        "WebSocket",
        counters,
        None,
        &server,
        &shutdown,
        &tracker,
        connection,
    )
    .await;
}

/// One client, from accept to the end of its close.
///
/// A plain function returning its future, not an `async fn`, because that
/// future's size is what every idle connection costs: an `async fn` would
/// keep its arguments (the stream, the address) in it for its whole life.
/// The way in and the way out are boxed for the same reason: their state is
/// large and short-lived. What stays is the [`Session`].
fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    server: Arc<WsServer>,
    shutdown: CancellationToken,
) -> impl Future<Output = ()> + Send {
    let opening = Box::pin(opening(stream, peer, server, shutdown));
    async move {
        // What `opening` returned must not live on beside the session's
        // state: in a block of its own, matched twice so that no await
        // happens while it is the scrutinee (either way this future grew to
        // 208 bytes, past the 144 below).
        let session = {
            let page = match opening.await {
                Some(Opened::Session(session)) => Ok(session),
                Some(Opened::Page(page)) => Err(Some(page)),
                None => Err(None),
            };
            match page {
                Ok(session) => session,
                Err(page) => {
                    if let Some(page) = page {
                        // Boxed on its own: the way in is freed while a page listens.
                        Box::pin(sse::serve(*page)).await;
                    }
                    return;
                }
            }
        };
        serve_session(session).await;
    }
}

/// What came in: a WebSocket's session, or a page's event stream.
enum Opened {
    Session(Session),
    Page(Box<sse::Page>),
}

/// A session until it is over. Its way out is boxed, as its way in: it is
/// large and rare, and the session's own poll is what every idle connection
/// holds.
/// (Not an `async fn`: measured, that made the connection future 208 bytes,
/// past the 144 that fit a 256-byte task cell; see `size` below.)
#[allow(clippy::manual_async_fn)]
fn serve_session(mut session: Session) -> impl Future<Output = ()> + Send {
    async move {
        loop {
            let end = (&mut session).await;
            if Box::pin(session.finish(end)).await {
                return;
            }
        }
    }
}

impl Session {
    /// After `end`: closes the connection, and `true`; or, when a live
    /// upgrade stopped it, hands it over. A plain connection then goes on here
    /// (`false`: the upgrade did not happen) or in the new process (see
    /// `handover`); a TLS one, whose state cannot travel, is closed with 1012.
    async fn finish(&mut self, end: End) -> bool {
        let end = match end {
            End::HandOver if self.conn.ws.is_tls() => {
                End::Close(close::code::SERVICE_RESTART, "service restart".into())
            }
            End::HandOver => return self.conn.hand_over().await,
            end => end,
        };
        self.conn.close(end).await;
        true
    }
}

/// Admission, the way in ([`open`]) and registration: the connection's
/// session, which holds its admission ticket. `None` when it ended there
/// (a token in the URL that did not bind is closed here).
async fn opening(
    stream: TcpStream,
    peer: SocketAddr,
    server: Arc<WsServer>,
    shutdown: CancellationToken,
) -> Option<Opened> {
    let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
    // A trusted proxy's clients are counted by address at their handshake.
    let direct = (!server.edge.trusts(peer.ip())).then_some(peer.ip());
    let counters = &server.node.counters;
    if server.node.drain.is_draining() {
        counters.bump(Refusal::Draining.counter());
        refuse_at_once(
            &stream,
            Refusal::Draining,
            server.node.secrets.tls().is_none(),
        );
        return None;
    }
    let mut ticket = match server.admission.admit(direct, counters) {
        Ok(ticket) => ticket,
        Err(refusal) => {
            if refusal == Refusal::Capacity {
                let limit = server.admission.max_connections;
                let mut warning = server.at_capacity.lock().unwrap_or_else(|p| p.into_inner());
                warning.warn(&format_args!(
                    "at the limit of {limit} WebSocket connections"
                ));
            }
            refuse_at_once(&stream, refusal, server.node.secrets.tls().is_none());
            return None;
        }
    };
    // Pushes are small and latency-bound; Nagle would hold them back.
    let _ = stream.set_nodelay(true);
    let (stream, facts, event_stream) = tokio::select! {
        _ = shutdown.cancelled() => None,
        opened = open(stream, peer, &server, &mut ticket) => opened,
    }?;
    if let Some(request) = event_stream {
        let page = sse::Page {
            stream,
            client: facts.client,
            request,
            server,
            ticket,
            shutdown,
        };
        return Some(Opened::Page(Box::new(page)));
    }
    let Facts {
        client,
        v2,
        since,
        url_token,
    } = facts;
    // The ticket lives as long as the connection.
    let handle = server.node.registry.open(client, v2);
    let since = since
        .filter(|_| v2)
        .map(|text| server.node.registry.since(&text));
    // Shutdown asks every registered connection to close; one that registered
    // after that walk finds the token already cancelled here.
    if shutdown.is_cancelled() {
        handle.request_close(CloseRequest::Shutdown);
    }
    let ws = Ws::new(stream, &handle);
    let mut session = Session::new(ws, handle, server, since, ticket);
    let conn = &mut session.conn;
    if let Some(token) = url_token.filter(|_| conn.server.node.secrets.has_auth())
        && let Err(end) = conn.bind(&token)
    {
        conn.close(end).await;
        return None;
    }
    Some(Opened::Session(session))
}

/// Refuses a connection as soon as it is accepted: on a plain listener the
/// HTTP status is written without reading the request (what of it already
/// arrived is read away first, so that the close is a FIN and the client
/// reads the status rather than a reset); behind TLS it is only closed.
fn refuse_at_once(stream: &TcpStream, refusal: Refusal, plain: bool) {
    if plain {
        let mut request = [0; 4096];
        let _ = stream.try_read(&mut request);
        let _ = stream.try_write(refusal.raw_response());
    }
}

/// What the handshake told about the client.
struct Facts {
    /// Its address, as the trusted proxies in front of pushd report it.
    client: SocketAddr,
    /// Whether it speaks [`SUBPROTOCOL`].
    v2: bool,
    /// Its `?since=`.
    since: Option<String>,
    /// With `--auth token`, a token may come in the URL instead of the first message.
    url_token: Option<String>,
}

/// The way in, every step within one `--handshake-timeout`: the PROXY
/// header (`--proxy-protocol`), TLS (`--tls-cert`), the WebSocket handshake
/// with its admission verdict. `None` when the connection ends there, each
/// way counted. A page's event stream comes out admitted but unanswered,
/// with its request.
async fn open(
    mut stream: TcpStream,
    peer: SocketAddr,
    server: &WsServer,
    ticket: &mut Ticket,
) -> Option<(ClientStream, Facts, Option<Box<Request>>)> {
    let deadline = Instant::now() + server.settings.handshake_timeout;
    let counters = &*server.node.counters;
    // A step that fails or runs out of time ends the connection, counted.
    let failed = |counter: Counter, step: &str, err: &dyn std::fmt::Display| {
        counters.bump(counter);
        debug!(%peer, %err, "connection dropped: {step}");
        None
    };
    let proxied = timeout_at(deadline, server.edge.proxied_peer(&mut stream, peer)).await;
    let proxied = match flatten(proxied) {
        Ok(proxied) => proxied,
        Err(err) => return failed(Counter::ProxyHeadersRefused, "PROXY header", &err),
    };
    let peer = proxied.peer;
    let mut stream = match server.node.secrets.tls() {
        None => ClientStream::Plain(stream),
        Some(tls) => {
            match flatten(timeout_at(deadline, TlsAcceptor::from(tls).accept(stream)).await) {
                Ok(tls) => ClientStream::Tls(Box::new(tls)),
                Err(err) => return failed(Counter::TlsHandshakesFailed, "TLS handshake", &err),
            }
        }
    };
    let mut facts = Facts {
        client: peer,
        v2: false,
        since: None,
        url_token: None,
    };
    // A refused connection still gets its handshake, answered with an HTTP
    // status (see `admission`), so the client learns why.
    #[allow(clippy::result_large_err)] // the callback's signature is tungstenite's
    let verdict = |request: &Request, mut response: Response| {
        facts.client = if proxied.headers_name_the_client {
            server.edge.client(peer, request)
        } else {
            peer
        };
        let query = request.uri().query();
        facts.url_token = query_param(query, "token");
        facts.since = query_param(query, "since");
        facts.v2 = offers_v2(request);
        if facts.v2 {
            let selected = HeaderValue::from_static(SUBPROTOCOL);
            response
                .headers_mut()
                .insert(SEC_WEBSOCKET_PROTOCOL, selected);
        }
        let verdict = server
            .admission
            .verdict(ticket, facts.client.ip(), request, counters);
        verdict.map(|()| response).map_err(Refusal::response)
    };
    let handshake = handshake::accept(&mut stream, verdict);
    match timeout_at(deadline, handshake).await {
        Ok(Ok(handshake::Opened::WebSocket)) => Some((stream, facts, None)),
        Ok(Ok(handshake::Opened::EventStream(request))) => {
            let client = match proxied.headers_name_the_client {
                true => server.edge.client(peer, &request),
                false => peer,
            };
            let facts = Facts {
                client,
                v2: true,
                since: None,
                url_token: None,
            };
            match server
                .admission
                .verdict(ticket, client.ip(), &request, counters)
            {
                Ok(()) => Some((stream, facts, Some(request))),
                Err(refusal) => {
                    use tokio::io::AsyncWriteExt;
                    let answer = stream.write_all(refusal.raw_response());
                    let _ = timeout_at(deadline, answer).await;
                    None
                }
            }
        }
        // Refused by `verdict`, already counted.
        Ok(Err(handshake::Failure::Refused)) => None,
        Ok(Err(handshake::Failure::Broken(err))) => {
            counters.bump(Counter::HandshakesFailed);
            debug!(%peer, %err, "handshake failed");
            None
        }
        Err(_) => {
            counters.bump(Counter::HandshakesFailed);
            debug!(%peer, "handshake timed out");
            None
        }
    }
}

/// A step's outcome within the handshake deadline, its error or the timeout as text.
fn flatten<T, E: std::fmt::Display>(
    outcome: Result<Result<T, E>, tokio::time::error::Elapsed>,
) -> Result<T, String> {
    match outcome {
        Ok(result) => result.map_err(|err| err.to_string()),
        Err(_) => Err("timed out".to_owned()),
    }
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
    let raw = url::raw_param(query, name)?;
    Some(url::decode(raw, true).unwrap_or_else(|| raw.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parsing and decoding are `url`'s (and tested there); what is this
    /// adapter's own is that a value that does not decode is kept as it came.
    #[test]
    fn an_undecodable_parameter_is_kept_as_it_came() {
        assert_eq!(
            query_param(Some("since=%E2%82%AC"), "since").as_deref(),
            Some("€")
        );
        for raw in ["%zz", "%4"] {
            let query = format!("since={raw}");
            assert_eq!(query_param(Some(&query), "since").as_deref(), Some(raw));
        }
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

#[cfg(test)]
mod size {
    use super::*;

    fn future_size<F, Fut>(_: F) -> usize
    where
        F: Fn(TcpStream, SocketAddr, Arc<WsServer>, CancellationToken) -> Fut,
    {
        std::mem::size_of::<Fut>()
    }

    /// Every idle connection holds its task: tokio's task cell is the future
    /// plus about 112 bytes, rounded up to 128 (its alignment). At 144 bytes
    /// or less the cell is 256 bytes; a field that pushes the future past it
    /// costs every connection 128 bytes (docs/PERFORMANCE.md, "Where the
    /// bytes go").
    #[test]
    fn a_connection_task_fits_in_256_bytes() {
        let size = future_size(connection);
        assert!(size <= 144, "the connection future grew to {size} bytes");
    }
}
