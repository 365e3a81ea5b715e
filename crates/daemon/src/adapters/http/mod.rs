//! HTTP adapter: the API for backends (`--http-listen`) and `/metrics`
//! (on that listener, or alone on `--metrics-listen`), served by hyper.
//!
//! This file is a request's story: its limits (head size and time, body size
//! and time), who may ask (a bearer token, or loopback only), the route, and
//! the answer. Each route becomes the admin request pushctl would send
//! (`requests::answer`), so the API is cluster-wide exactly as pushctl is,
//! or text-port lines (`/v1/push`, answered by `text::Lines`). The endpoints
//! and their answers are in docs/http-api.md, where every example is run by
//! a test.

mod metrics;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited, StreamBody};
use hyper::body::Frame;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use pushd_proto::admin::{self, ReplyLine, Request as AdminRequest, Response as AdminResponse};
use pushd_proto::uid::Uid;
use serde::Deserialize;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use super::text::Lines;
use crate::core::events::parse_kinds;
use crate::node::Node;

/// Largest request head (request line and headers) hyper buffers.
const MAX_HEAD: usize = 16 * 1024;

/// `/v1/push` bodies may hold this many lines of `--max-message-size` each.
pub(crate) const PUSH_BODY_LINES: usize = 16;

/// How long shutdown waits for requests in flight.
const DRAIN: Duration = Duration::from_secs(2);

/// What a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Routes {
    /// `--http-listen`: the API and `/metrics`, behind the API's access rule.
    Api,
    /// `--metrics-listen`: `/metrics` only, to whoever reaches the address.
    MetricsOnly,
}

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// An SSE comment sent on a quiet stream, so that proxies keep it open.
const SSE_KEEPALIVE: Duration = Duration::from_secs(15);

/// What every HTTP connection of one listener shares.
pub(crate) struct HttpServer {
    node: Arc<Node>,
    routes: Routes,
    metrics: prometheus_client::registry::Registry,
    /// Longest a request's head, and then its body, may take to arrive
    /// (slowloris): `--handshake-timeout`, as for WebSocket handshakes.
    request_timeout: Duration,
    /// Ends event streams at shutdown.
    shutdown: CancellationToken,
}

impl std::fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HttpServer({:?})", self.routes)
    }
}

impl HttpServer {
    pub(crate) fn new(
        node: Arc<Node>,
        routes: Routes,
        request_timeout: Duration,
        shutdown: CancellationToken,
    ) -> Self {
        let metrics = metrics::registry(&node);
        HttpServer {
            node,
            routes,
            metrics,
            request_timeout,
            shutdown,
        }
    }
}

/// Accepts HTTP clients until shutdown.
pub(crate) async fn serve(
    listener: TcpListener,
    server: Arc<HttpServer>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let counters = server.node.counters.clone();
    super::accept::serve(
        listener, "HTTP", &counters, &server, &shutdown, &tracker, connection,
    )
    .await;
}

/// One HTTP/1.1 connection (keep-alive), until the client leaves or shutdown.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    server: Arc<HttpServer>,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
    let service = service_fn(|request| {
        let server = server.clone();
        async move { Ok::<_, Infallible>(server.answer(request, peer).await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(server.request_timeout)
        .max_buf_size(MAX_HEAD)
        .serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            tokio::time::timeout(DRAIN, connection).await.unwrap_or(Ok(()))
        }
    };
    if let Err(err) = result {
        debug!(%peer, %err, "HTTP connection ended with an error");
    }
}

/// Where a request goes, once its path is known.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics,
    Send(String),
    Push,
    Broadcast,
    Kick(String),
    Online(String),
    List,
    Stats,
    Events,
}

impl Route {
    /// The route of `path` and the one method it takes.
    fn of(path: &str) -> Option<(Method, Route)> {
        if path == "/metrics" {
            return Some((Method::GET, Route::Metrics));
        }
        let rest = path.strip_prefix("/v1/")?;
        let (name, uid) = match rest.split_once('/') {
            Some((name, uid)) if !uid.is_empty() && !uid.contains('/') => (name, Some(uid)),
            Some(_) => return None,
            None => (rest, None),
        };
        let uid = || uid.map(str::to_owned);
        Some(match (name, uid()) {
            ("send", Some(uid)) => (Method::POST, Route::Send(uid)),
            ("kick", Some(uid)) => (Method::POST, Route::Kick(uid)),
            ("online", Some(uid)) => (Method::GET, Route::Online(uid)),
            ("push", None) => (Method::POST, Route::Push),
            ("broadcast", None) => (Method::POST, Route::Broadcast),
            ("list", None) => (Method::GET, Route::List),
            ("stats", None) => (Method::GET, Route::Stats),
            ("events", None) => (Method::GET, Route::Events),
            _ => return None,
        })
    }
}

/// An answer that ends the request early: a status, and why.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    why: String,
}

impl Refusal {
    fn new(status: StatusCode, why: impl Into<String>) -> Self {
        Refusal {
            status,
            why: why.into(),
        }
    }

    fn into_response(self) -> Response<Body> {
        let mut response = error(self.status, &self.why);
        if self.status == StatusCode::UNAUTHORIZED {
            let challenge = HeaderValue::from_static("Bearer");
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge);
        }
        response
    }
}

impl HttpServer {
    /// Answers one request; every failure is an HTTP status with a JSON reason.
    async fn answer(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let (allowed, route) = match Route::of(request.uri().path()) {
            Some((_, route)) if self.routes == Routes::MetricsOnly && route != Route::Metrics => {
                return error(StatusCode::NOT_FOUND, "this listener serves /metrics only");
            }
            Some(found) => found,
            None => {
                return error(
                    StatusCode::NOT_FOUND,
                    "no such endpoint (see docs/http-api.md)",
                );
            }
        };
        if self.routes == Routes::Api {
            let token = self.node.secrets.http_token();
            let presented = request.headers().get(header::AUTHORIZATION);
            if let Err(refusal) = authorize(token.as_deref().map(String::as_str), presented, peer) {
                return refusal.into_response();
            }
        }
        if request.method() != allowed {
            let mut response = error(StatusCode::METHOD_NOT_ALLOWED, "wrong method");
            let allow =
                HeaderValue::from_str(allowed.as_str()).expect("a method is a header value");
            response.headers_mut().insert(header::ALLOW, allow);
            return response;
        }
        let query = request.uri().query().map(str::to_owned);
        let transient = query_flag(query.as_deref(), "transient");
        let answered = match route {
            Route::Metrics => Ok(self.metrics()),
            Route::Send(uid) => self.send(&uid, request.into_body(), transient).await,
            Route::Push => self.push(request.into_body()).await,
            Route::Broadcast => self.broadcast(request.into_body()).await,
            Route::Kick(uid) => self.kick(&uid, request.into_body()).await,
            Route::Online(uid) => self.online(&uid).await,
            Route::List => self.list().await,
            Route::Stats => self.stats().await,
            Route::Events => self.events(query.as_deref()),
        };
        answered.unwrap_or_else(Refusal::into_response)
    }

    fn metrics(&self) -> Response<Body> {
        let mut response = Response::new(full(metrics::render(&self.metrics)));
        let content_type = HeaderValue::from_static(metrics::CONTENT_TYPE);
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, content_type);
        response
    }

    async fn send(
        &self,
        uid: &str,
        body: Incoming,
        transient: bool,
    ) -> Result<Response<Body>, Refusal> {
        let uid = path_uid(uid)?;
        let message = text_body(body, self.node.max_message_size, self.request_timeout).await?;
        let request = AdminRequest::Send {
            uid,
            message,
            transient,
        };
        let (result, incomplete) = self.ask(request).await?;
        let AdminResponse::Delivered {
            connections,
            queued,
        } = result
        else {
            return Err(unexpected(&result));
        };
        let status = if connections > 0 || queued {
            StatusCode::OK
        } else {
            StatusCode::NOT_FOUND
        };
        let answer = json!({ "delivered": connections, "queued": queued });
        Ok(json_response(status, answer, incomplete))
    }

    async fn push(&self, body: Incoming) -> Result<Response<Body>, Refusal> {
        let limit = self.node.max_message_size * PUSH_BODY_LINES;
        let body = read_body(body, limit, self.request_timeout).await?;
        let mut input = BytesMut::from(&body[..]);
        // The body's end ends its last line.
        if !input.is_empty() && !input.ends_with(b"\n") {
            input.extend_from_slice(b"\n");
        }
        let mut replies = Vec::new();
        Lines::new(&self.node)
            .answer(&self.node, &mut input, &mut replies)
            .await;
        let mut response = Response::new(full(replies));
        let plain = HeaderValue::from_static("text/plain; charset=utf-8");
        response.headers_mut().insert(header::CONTENT_TYPE, plain);
        Ok(response)
    }

    async fn broadcast(&self, body: Incoming) -> Result<Response<Body>, Refusal> {
        let message = text_body(body, self.node.max_message_size, self.request_timeout).await?;
        let (result, incomplete) = self.ask(AdminRequest::Broadcast { message }).await?;
        let AdminResponse::Delivered { connections, .. } = result else {
            return Err(unexpected(&result));
        };
        let answer = json!({ "delivered": connections });
        Ok(json_response(StatusCode::OK, answer, incomplete))
    }

    async fn kick(&self, uid: &str, body: Incoming) -> Result<Response<Body>, Refusal> {
        /// The optional body of `POST /v1/kick/{uid}`.
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct KickBody {
            reason: Option<String>,
            ban: Option<String>,
        }
        let uid = path_uid(uid)?;
        let body = read_body(body, 4096, self.request_timeout).await?;
        let KickBody { reason, ban } = if body.iter().all(u8::is_ascii_whitespace) {
            KickBody {
                reason: None,
                ban: None,
            }
        } else {
            serde_json::from_slice(&body).map_err(|err| {
                let why = format!("the body is not {{\"reason\": ..., \"ban\": ...}}: {err}");
                Refusal::new(StatusCode::BAD_REQUEST, why)
            })?
        };
        if reason
            .as_ref()
            .is_some_and(|r| r.len() > admin::MAX_CLOSE_REASON)
        {
            let why = format!("reason over {} bytes", admin::MAX_CLOSE_REASON);
            return Err(Refusal::new(StatusCode::BAD_REQUEST, why));
        }
        let ban_ms = match ban {
            Some(ban) => {
                let ban = humantime::parse_duration(&ban).map_err(|err| {
                    Refusal::new(StatusCode::BAD_REQUEST, format!("ban {ban:?}: {err}"))
                })?;
                Some(u64::try_from(ban.as_millis()).unwrap_or(u64::MAX))
            }
            None => None,
        };
        let request = AdminRequest::Kick {
            uids: vec![uid],
            reason,
            ban_ms,
        };
        let (result, incomplete) = self.ask(request).await?;
        let AdminResponse::Kicked { connections, .. } = result else {
            return Err(unexpected(&result));
        };
        let status = if connections > 0 {
            StatusCode::OK
        } else {
            StatusCode::NOT_FOUND
        };
        Ok(json_response(
            status,
            json!({ "kicked": connections }),
            incomplete,
        ))
    }

    async fn online(&self, uid: &str) -> Result<Response<Body>, Refusal> {
        let uid = path_uid(uid)?;
        let (result, incomplete) = self.ask(AdminRequest::Online { uid }).await?;
        let AdminResponse::Online { uid, connections } = result else {
            return Err(unexpected(&result));
        };
        let status = if connections > 0 {
            StatusCode::OK
        } else {
            StatusCode::NOT_FOUND
        };
        let answer = json!({ "uid": uid, "connections": connections });
        Ok(json_response(status, answer, incomplete))
    }

    async fn list(&self) -> Result<Response<Body>, Refusal> {
        let (result, incomplete) = self.ask(AdminRequest::List).await?;
        let AdminResponse::List { uids } = result else {
            return Err(unexpected(&result));
        };
        // The same array as `pushctl --json list`; being an array, it cannot
        // carry "incomplete", which goes in a header instead.
        let mut response = json_response(StatusCode::OK, &uids, Vec::new());
        if !incomplete.is_empty() {
            let header = serde_json::to_string(&incomplete).expect("strings serialize");
            if let Ok(value) = HeaderValue::from_str(&header) {
                response.headers_mut().insert("pushd-incomplete", value);
            }
        }
        Ok(response)
    }

    async fn stats(&self) -> Result<Response<Body>, Refusal> {
        let (result, incomplete) = self.ask(AdminRequest::Stats).await?;
        let AdminResponse::Stats(stats) = result else {
            return Err(unexpected(&result));
        };
        Ok(json_response(StatusCode::OK, &stats, incomplete))
    }

    /// `GET /v1/events[?type=online,offline]`: Server-Sent Events, one event per
    /// `data:` line, until the client leaves or pushd shuts down.
    fn events(&self, query: Option<&str>) -> Result<Response<Body>, Refusal> {
        let kinds = query_value(query, "type").unwrap_or_default();
        let kinds =
            parse_kinds(&kinds).map_err(|why| Refusal::new(StatusCode::BAD_REQUEST, why))?;
        let subscription = self
            .node
            .events
            .subscribe(kinds, self.node.counters.clone());
        let shutdown = self.shutdown.clone();
        let frames = futures_util::stream::unfold(
            (subscription, shutdown),
            |(mut subscription, shutdown)| async move {
                let frame = tokio::select! {
                    () = shutdown.cancelled() => return None,
                    event = subscription.next() => {
                        let event = event?;
                        let mut frame = Vec::with_capacity(event.json.len() + 64);
                        frame.extend_from_slice(b"id: ");
                        frame.extend_from_slice(event.id.as_bytes());
                        frame.extend_from_slice(b"\nevent: ");
                        frame.extend_from_slice(event.kind.name().as_bytes());
                        frame.extend_from_slice(b"\ndata: ");
                        frame.extend_from_slice(&event.json);
                        frame.extend_from_slice(b"\n\n");
                        Bytes::from(frame)
                    }
                    () = tokio::time::sleep(SSE_KEEPALIVE) => Bytes::from_static(b": keepalive\n\n"),
                };
                Some((
                    Ok::<_, Infallible>(Frame::data(frame)),
                    (subscription, shutdown),
                ))
            },
        );
        // The first bytes go out at once, so a client knows it is subscribed.
        let hello = futures_util::stream::once(async {
            Ok::<_, Infallible>(Frame::data(Bytes::from_static(b": pushd events\n\n")))
        });
        let body = StreamBody::new(futures_util::StreamExt::chain(hello, frames));
        let mut response = Response::new(BodyExt::boxed_unsync(body));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        Ok(response)
    }

    /// Carries out `request` as pushctl's would be: the result, and what the
    /// cluster did not confirm.
    async fn ask(&self, request: AdminRequest) -> Result<(AdminResponse, Vec<String>), Refusal> {
        let ReplyLine {
            result,
            error: refused,
            incomplete,
            ..
        } = crate::requests::answer(&self.node, request).await;
        match (result, refused) {
            (Some(result), _) => Ok((result, incomplete)),
            (None, why) => Err(Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                why.as_deref().unwrap_or("no answer"),
            )),
        }
    }
}

/// With `--http-token-file`, a request must carry that bearer `token`;
/// without it, only loopback clients are served.
fn authorize(
    token: Option<&str>,
    presented: Option<&HeaderValue>,
    peer: SocketAddr,
) -> Result<(), Refusal> {
    let Some(token) = token else {
        if peer.ip().is_loopback() {
            return Ok(());
        }
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            "the HTTP API serves loopback clients only, unless pushd has --http-token-file",
        ));
    };
    let presented = presented.and_then(|value| value.as_bytes().strip_prefix(b"Bearer "));
    match presented {
        Some(presented) if constant_time_eq(presented, token.as_bytes()) => Ok(()),
        _ => Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token",
        )),
    }
}

/// Reads a whole body of at most `limit` bytes, within `timeout`.
async fn read_body(body: Incoming, limit: usize, timeout: Duration) -> Result<Bytes, Refusal> {
    let collected = tokio::time::timeout(timeout, Limited::new(body, limit).collect());
    match collected.await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(err)) if err.downcast_ref::<LengthLimitError>().is_some() => Err(Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is over {limit} bytes"),
        )),
        Ok(Err(err)) => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            format!("reading the body: {err}"),
        )),
        Err(_) => Err(Refusal::new(
            StatusCode::REQUEST_TIMEOUT,
            "the body did not arrive in time",
        )),
    }
}

/// A message body: UTF-8 text (a text frame's payload), at most `limit` bytes.
async fn text_body(body: Incoming, limit: usize, timeout: Duration) -> Result<String, Refusal> {
    let bytes = read_body(body, limit, timeout).await?;
    String::from_utf8(bytes.into())
        .map_err(|_| Refusal::new(StatusCode::BAD_REQUEST, "the message is not UTF-8"))
}

/// The uid of a path segment, percent-decoded and checked.
fn path_uid(segment: &str) -> Result<Uid, Refusal> {
    let decoded = super::percent::decode(segment, false).ok_or_else(|| {
        Refusal::new(StatusCode::BAD_REQUEST, "invalid uid: bad percent-encoding")
    })?;
    Uid::parse(&decoded)
        .map_err(|err| Refusal::new(StatusCode::BAD_REQUEST, format!("invalid uid: {err}")))
}

/// The percent-decoded value of `?name=` in the query.
fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    let raw = query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then_some(value)
    })?;
    super::percent::decode(raw, true)
}

/// Whether `?name=1` (or `true`) is in the query.
fn query_flag(query: Option<&str>, name: &str) -> bool {
    query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .any(|pair| pair == name || pair == format!("{name}=1") || pair == format!("{name}=true"))
}

/// Compares a presented token with the real one in time that does not depend
/// on where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

/// A JSON answer; a non-empty `incomplete` is added to an object answer.
fn json_response(
    status: StatusCode,
    answer: impl serde::Serialize,
    incomplete: Vec<String>,
) -> Response<Body> {
    let mut body = if incomplete.is_empty() {
        serde_json::to_vec(&answer)
    } else {
        let mut answer = serde_json::to_value(&answer).expect("answers serialize");
        if let Some(object) = answer.as_object_mut() {
            object.insert("incomplete".into(), json!(incomplete));
        }
        serde_json::to_vec(&answer)
    }
    .expect("answers serialize");
    body.push(b'\n');
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    let content_type = HeaderValue::from_static("application/json");
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    response
}

/// `{"error": why}` with `status`.
fn error(status: StatusCode, why: &str) -> Response<Body> {
    json_response(status, json!({ "error": why }), Vec::new())
}

fn unexpected(result: &AdminResponse) -> Refusal {
    let why = format!("unexpected {} answer", result.kind());
    Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_take_one_method_and_uids_one_segment() {
        assert_eq!(Route::of("/metrics"), Some((Method::GET, Route::Metrics)));
        assert_eq!(
            Route::of("/v1/send/42"),
            Some((Method::POST, Route::Send("42".into())))
        );
        assert_eq!(
            Route::of("/v1/online/a%2Fb"),
            Some((Method::GET, Route::Online("a%2Fb".into())))
        );
        assert_eq!(Route::of("/v1/push"), Some((Method::POST, Route::Push)));
        assert_eq!(Route::of("/v1/send/"), None);
        assert_eq!(Route::of("/v1/send"), None);
        assert_eq!(Route::of("/v1/send/a/b"), None);
        assert_eq!(Route::of("/v1/list/x"), None);
        assert_eq!(Route::of("/v2/list"), None);
        assert_eq!(Route::of("/"), None);
    }

    #[test]
    fn without_a_token_only_loopback_is_served_and_with_one_only_its_bearer() {
        let status = |token, presented: Option<&str>, peer: &str| {
            let presented = presented.map(|p| HeaderValue::from_str(p).unwrap());
            let peer: SocketAddr = peer.parse().unwrap();
            match authorize(token, presented.as_ref(), peer) {
                Ok(()) => 200,
                Err(refusal) => refusal.status.as_u16(),
            }
        };
        assert_eq!(status(None, None, "127.0.0.9:1"), 200);
        assert_eq!(status(None, None, "[::1]:1"), 200);
        assert_eq!(status(None, Some("Bearer x"), "192.0.2.1:1"), 403);
        let token = Some("0123456789abcdef");
        assert_eq!(
            status(token, Some("Bearer 0123456789abcdef"), "192.0.2.1:1"),
            200
        );
        assert_eq!(
            status(token, Some("Bearer 0123456789abcdeF"), "127.0.0.1:1"),
            401
        );
        assert_eq!(status(token, Some("0123456789abcdef"), "127.0.0.1:1"), 401);
        assert_eq!(status(token, None, "127.0.0.1:1"), 401);
    }

    #[test]
    fn flags_and_tokens() {
        assert!(query_flag(Some("transient=1"), "transient"));
        assert!(query_flag(Some("a=b&transient"), "transient"));
        assert!(!query_flag(Some("transient=0"), "transient"));
        assert!(!query_flag(None, "transient"));
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret!"));
    }
}
