//! HTTP adapter: the API for backends (`--http-listen`) and `/metrics`
//! (on that listener, or alone on `--metrics-listen`), served by hyper.
//!
//! This file is the server: a connection's limits (head size and time), who
//! may ask (a bearer token, or loopback only), which route and method, and
//! how answers and refusals are written. `routes` holds each route's handler
//! (body limits, the admin request it becomes, its answer), `sse` the event
//! stream. The endpoints and their answers are in docs/http-api.md, where
//! every example is run by a test.

mod admin;
mod auth;
mod groups;
mod idle;
mod metrics;
mod routes;
mod sse;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use pushd_proto::admin::Response as AdminResponse;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use super::accept::Cap;
use crate::core::counters::Counter;
use crate::node::Node;
use idle::Watched;
use routes::Route;

/// Largest request head (request line and headers) hyper buffers.
const MAX_HEAD: usize = 16 * 1024;

/// How long shutdown waits for requests in flight, event streams included:
/// those end once the shutdown's own events are out, after every WebSocket
/// closed (the whole shutdown is bounded by `SHUTDOWN_GRACE` anyway).
const DRAIN: Duration = crate::config::SHUTDOWN_GRACE;

/// What a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Routes {
    /// `--http-listen`: the API and `/metrics`, behind the API's access rule.
    Api,
    /// `--metrics-listen`: `/metrics` only, to whoever reaches the address.
    MetricsOnly,
}

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// What every HTTP connection of one listener shares.
pub(crate) struct HttpServer {
    node: Arc<Node>,
    routes: Routes,
    metrics: prometheus_client::registry::Registry,
    /// Longest a request's head, and then its body, may take to arrive
    /// (slowloris): `--handshake-timeout`, as for WebSocket handshakes.
    request_timeout: Duration,
    limits: HttpLimits,
}

/// Each HTTP listener's limits: connections at once
/// (`--max-http-connections`), and how long one may stay silent
/// (`--http-idle-timeout`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct HttpLimits {
    pub(crate) max_connections: usize,
    pub(crate) idle_timeout: Option<Duration>,
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
        limits: HttpLimits,
    ) -> Self {
        let metrics = metrics::registry(&node);
        HttpServer {
            node,
            routes,
            metrics,
            request_timeout,
            limits,
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
    let cap = Cap::new(server.limits.max_connections, Counter::HttpRefused);
    super::accept::serve(
        listener,
        "HTTP",
        &counters,
        Some(&cap),
        &server,
        &shutdown,
        &tracker,
        connection,
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
    let stream = Watched::new(stream, server.node.clock);
    let activity = stream.activity();
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(server.request_timeout)
        .max_buf_size(MAX_HEAD)
        .serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = activity.silent_for(server.limits.idle_timeout) => {
            server.node.counters.bump(Counter::HttpIdleClosed);
            debug!(%peer, "HTTP connection closed: idle past --http-idle-timeout");
            return;
        }
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            tokio::time::timeout(DRAIN, connection).await.unwrap_or(Ok(()))
        }
    };
    if let Err(err) = result {
        debug!(%peer, %err, "HTTP connection ended with an error");
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
            Some((_, route))
                if self.routes == Routes::MetricsOnly
                    && route != Route::Metrics
                    && !route.is_probe() =>
            {
                return error(
                    StatusCode::NOT_FOUND,
                    "this listener serves /metrics, /v1/health and /v1/ready only",
                );
            }
            Some(found) => found,
            None => {
                return error(
                    StatusCode::NOT_FOUND,
                    "no such endpoint (see docs/http-api.md)",
                );
            }
        };
        if self.routes == Routes::Api && !route.is_probe() && !route.is_page() {
            let token = self.node.secrets.http_token();
            let token = token.as_deref().map(String::as_str);
            if let Err(refusal) = auth::authorize(token, request.headers(), peer) {
                return refusal.into_response();
            }
        }
        if !allowed.contains(request.method()) {
            let mut response = error(StatusCode::METHOD_NOT_ALLOWED, "wrong method");
            let names: Vec<&str> = allowed.iter().map(Method::as_str).collect();
            let allow =
                HeaderValue::from_str(&names.join(", ")).expect("methods are a header value");
            response.headers_mut().insert(header::ALLOW, allow);
            return response;
        }
        self.route(route, request)
            .await
            .unwrap_or_else(Refusal::into_response)
    }
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
