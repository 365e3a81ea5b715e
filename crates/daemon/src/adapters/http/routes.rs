//! The HTTP API's routes and their handlers. Each route becomes the admin
//! request pushctl would send (`requests::answer`), so the API is cluster-wide
//! exactly as pushctl is, or text-port lines (`/v1/push`, answered by
//! `text::Lines`). The endpoints and their answers are in docs/http-api.md.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use pushd_proto::admin::{ReplyLine, Request as AdminRequest, Response as AdminResponse};
use pushd_proto::uid::Uid;
use serde::Deserialize;
use serde_json::json;

use super::{Body, HttpServer, Refusal, full, json_response, metrics, unexpected};
use crate::adapters::text::Lines;
use crate::adapters::url;

/// The optional body of `POST /v1/kick/{uid}` and `POST /v1/connections/{id}/kick`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KickBody {
    reason: Option<String>,
    ban: Option<String>,
}

/// A connection id from a path segment, percent-decoded.
fn connection_id(segment: &str) -> Result<String, Refusal> {
    url::decode(segment, false)
        .ok_or_else(|| Refusal::new(StatusCode::BAD_REQUEST, "the connection id is not UTF-8"))
}

/// 200, or 404 when nothing was found.
pub(super) fn found(any: bool) -> StatusCode {
    if any {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    }
}

/// `/v1/push` bodies may hold this many lines of `--max-message-size` each.
pub(crate) const PUSH_BODY_LINES: usize = 16;

/// Where a request goes, once its path is known.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Route {
    Metrics,
    Health,
    Ready,
    Send(String),
    Push,
    Broadcast,
    Kick(String),
    Online(String),
    List,
    Stats,
    Events,
    /// `/v1/groups`.
    Groups,
    /// `/v1/groups/{group}`.
    Group(String),
    /// `/v1/groups/{group}/members`: the bulk change.
    GroupMembers(String),
    /// `/v1/groups/{group}/members/{uid}`.
    GroupMember(String, String),
    /// `/v1/groups/{group}/send`.
    GroupSend(String),
    /// `/v1/uids/{uid}/groups`.
    UidGroups(String),
    /// `/v1/connections/{id}/kick`.
    KickConnection(String),
    /// `/v1/connections/{id}/send`.
    SendConnection(String),
    /// `/` and `/admin.js`: the admin page (`admin`).
    AdminPage,
    AdminScript,
}

const GET: &[Method] = &[Method::GET];
const POST: &[Method] = &[Method::POST];

impl Route {
    /// Whether anyone may ask it, without the API token: what load balancers
    /// and orchestrators call, on every listener.
    pub(super) fn is_probe(&self) -> bool {
        matches!(self, Route::Health | Route::Ready)
    }

    /// Whether it is the admin page's own files, which hold nothing secret and
    /// load without the token (every call the page makes carries it).
    pub(super) fn is_page(&self) -> bool {
        matches!(self, Route::AdminPage | Route::AdminScript)
    }

    /// The route of `path` and the methods it takes.
    pub(super) fn of(path: &str) -> Option<(&'static [Method], Route)> {
        match path {
            "/metrics" => return Some((GET, Route::Metrics)),
            "/" => return Some((GET, Route::AdminPage)),
            "/admin.js" => return Some((GET, Route::AdminScript)),
            _ => {}
        }
        let rest = path.strip_prefix("/v1/")?;
        if let Some(found) = Route::of_groups(rest) {
            return found;
        }
        let (name, uid) = match rest.split_once('/') {
            Some((name, uid)) if !uid.is_empty() && !uid.contains('/') => (name, Some(uid)),
            Some(_) => return None,
            None => (rest, None),
        };
        let uid = || uid.map(str::to_owned);
        Some(match (name, uid()) {
            ("send", Some(uid)) => (POST, Route::Send(uid)),
            ("kick", Some(uid)) => (POST, Route::Kick(uid)),
            ("online", Some(uid)) => (GET, Route::Online(uid)),
            ("push", None) => (POST, Route::Push),
            ("broadcast", None) => (POST, Route::Broadcast),
            ("list", None) => (GET, Route::List),
            ("stats", None) => (GET, Route::Stats),
            ("events", None) => (GET, Route::Events),
            ("health", None) => (GET, Route::Health),
            ("ready", None) => (GET, Route::Ready),
            _ => return None,
        })
    }

    /// The group routes (`groups/...`, `uids/{uid}/groups`) and
    /// `connections/{id}/kick`: `None` when
    /// `rest` is not one of their paths at all, `Some(None)` for a path
    /// under them that names nothing.
    #[allow(clippy::option_option)]
    fn of_groups(rest: &str) -> Option<Option<(&'static [Method], Route)>> {
        let segments: Vec<&str> = rest.split('/').collect();
        let named = |s: &&str| !s.is_empty();
        if !segments.iter().all(named) && segments != ["groups"] {
            return match segments[0] {
                "groups" | "uids" | "connections" => Some(None),
                _ => None,
            };
        }
        const GET_DELETE: &[Method] = &[Method::GET, Method::DELETE];
        const PUT_DELETE: &[Method] = &[Method::PUT, Method::DELETE];
        let owned = |s: &str| s.to_owned();
        Some(match segments.as_slice() {
            ["groups"] => Some((GET, Route::Groups)),
            ["connections", id, "kick"] => Some((POST, Route::KickConnection(owned(id)))),
            ["connections", id, "send"] => Some((POST, Route::SendConnection(owned(id)))),
            ["groups", group] => Some((GET_DELETE, Route::Group(owned(group)))),
            ["groups", group, "members"] => Some((POST, Route::GroupMembers(owned(group)))),
            ["groups", group, "members", uid] => {
                Some((PUT_DELETE, Route::GroupMember(owned(group), owned(uid))))
            }
            ["groups", group, "send"] => Some((POST, Route::GroupSend(owned(group)))),
            ["uids", uid, "groups"] => Some((GET, Route::UidGroups(owned(uid)))),
            ["groups", ..] | ["uids", ..] => None,
            _ => return None,
        })
    }
}

impl HttpServer {
    /// Carries out a request on `route`, allowed and of the right method.
    pub(super) async fn route(
        &self,
        route: Route,
        request: Request<Incoming>,
    ) -> Result<Response<Body>, Refusal> {
        let query = request.uri().query().map(str::to_owned);
        let transient = url::flag(query.as_deref(), "transient");
        match route {
            Route::Metrics => Ok(self.metrics()),
            Route::AdminPage => Ok(super::admin::page()),
            Route::AdminScript => Ok(super::admin::script()),
            Route::Health => Ok(json_response(
                StatusCode::OK,
                json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }),
                Vec::new(),
            )),
            Route::Ready => Ok(match self.node.ready() {
                Ok(()) => json_response(StatusCode::OK, json!({ "ready": true }), Vec::new()),
                Err(reason) => json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({ "ready": false, "reason": reason }),
                    Vec::new(),
                ),
            }),
            Route::Send(uid) => self.send(&uid, request.into_body(), transient).await,
            Route::Push => self.push(request.into_body()).await,
            Route::Broadcast => self.broadcast(request.into_body()).await,
            Route::Kick(uid) => self.kick(&uid, request.into_body()).await,
            Route::KickConnection(id) => self.kick_connection(&id, request.into_body()).await,
            Route::SendConnection(id) => self.send_connection(&id, request.into_body()).await,
            Route::Online(uid) => self.online(&uid).await,
            Route::List => self.list().await,
            Route::Stats => self.stats().await,
            Route::Events => self.events(query.as_deref(), request.headers()),
            Route::Groups => self.groups().await,
            Route::Group(group) if request.method() == Method::DELETE => {
                self.drop_group(&group).await
            }
            Route::Group(group) => self.group(&group).await,
            Route::GroupMembers(group) => self.change_members(&group, request.into_body()).await,
            Route::GroupMember(group, uid) if request.method() == Method::PUT => {
                self.add_member(&group, &uid, request.into_body()).await
            }
            Route::GroupMember(group, uid) => self.remove_member(&group, &uid).await,
            Route::GroupSend(group) => {
                self.send_group(&group, request.into_body(), transient)
                    .await
            }
            Route::UidGroups(uid) => self.uid_groups(&uid).await,
        }
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
        let uid = path_uid(uid)?;
        let KickBody { reason, ban } = self.kick_body(body).await?;
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
        self.kicked(request).await
    }

    /// `POST /v1/connections/{id}/send`: that connection only; 404 when no
    /// node has it (nothing is kept for later).
    async fn send_connection(&self, id: &str, body: Incoming) -> Result<Response<Body>, Refusal> {
        let connection = connection_id(id)?;
        let message = text_body(body, self.node.max_message_size, self.request_timeout).await?;
        let request = AdminRequest::SendConnection {
            connection,
            message,
        };
        let (result, incomplete) = self.ask(request).await?;
        let AdminResponse::Delivered { connections, .. } = result else {
            return Err(unexpected(&result));
        };
        Ok(json_response(
            found(connections > 0),
            json!({ "delivered": connections }),
            incomplete,
        ))
    }

    /// `POST /v1/connections/{id}/kick`: that connection only (a ban, which
    /// is a uid's, is refused).
    async fn kick_connection(&self, id: &str, body: Incoming) -> Result<Response<Body>, Refusal> {
        let connection = connection_id(id)?;
        let KickBody { reason, ban } = self.kick_body(body).await?;
        if ban.is_some() {
            let why = "a ban is a uid's: POST /v1/kick/{uid}";
            return Err(Refusal::new(StatusCode::BAD_REQUEST, why));
        }
        self.kicked(AdminRequest::KickConnection { connection, reason })
            .await
    }

    /// The optional body of the kicks.
    async fn kick_body(&self, body: Incoming) -> Result<KickBody, Refusal> {
        let body = read_body(body, 4096, self.request_timeout).await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(KickBody {
                reason: None,
                ban: None,
            });
        }
        serde_json::from_slice(&body).map_err(|err| {
            let why = format!("the body is not {{\"reason\": ..., \"ban\": ...}}: {err}");
            Refusal::new(StatusCode::BAD_REQUEST, why)
        })
    }

    /// A kick's answer: 200 with the connections closed, 404 with none.
    async fn kicked(&self, request: AdminRequest) -> Result<Response<Body>, Refusal> {
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

    /// Carries out `request` as pushctl's would be: the result, and what the
    /// cluster did not confirm.
    pub(super) async fn ask(
        &self,
        request: AdminRequest,
    ) -> Result<(AdminResponse, Vec<String>), Refusal> {
        crate::requests::check(&request)
            .map_err(|why| Refusal::new(StatusCode::BAD_REQUEST, why))?;
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

/// Reads a whole body of at most `limit` bytes, within `timeout`.
pub(super) async fn read_body(
    body: Incoming,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, Refusal> {
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
pub(super) async fn text_body(
    body: Incoming,
    limit: usize,
    timeout: Duration,
) -> Result<String, Refusal> {
    let bytes = read_body(body, limit, timeout).await?;
    String::from_utf8(bytes.into())
        .map_err(|_| Refusal::new(StatusCode::BAD_REQUEST, "the message is not UTF-8"))
}

/// The uid of a path segment, percent-decoded and checked.
pub(super) fn path_uid(segment: &str) -> Result<Uid, Refusal> {
    let decoded = url::decode(segment, false).ok_or_else(|| {
        Refusal::new(StatusCode::BAD_REQUEST, "invalid uid: bad percent-encoding")
    })?;
    Uid::parse(&decoded)
        .map_err(|err| Refusal::new(StatusCode::BAD_REQUEST, format!("invalid uid: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_take_their_methods_and_uids_one_segment() {
        assert_eq!(Route::of("/metrics"), Some((GET, Route::Metrics)));
        assert_eq!(
            Route::of("/v1/send/42"),
            Some((POST, Route::Send("42".into())))
        );
        assert_eq!(
            Route::of("/v1/online/a%2Fb"),
            Some((GET, Route::Online("a%2Fb".into())))
        );
        assert_eq!(Route::of("/v1/push"), Some((POST, Route::Push)));
        assert_eq!(Route::of("/v1/groups"), Some((GET, Route::Groups)));
        let member = Route::of("/v1/groups/g/members/a%2Fb").unwrap();
        assert_eq!(member.1, Route::GroupMember("g".into(), "a%2Fb".into()));
        assert_eq!(member.0, &[Method::PUT, Method::DELETE]);
        assert_eq!(
            Route::of("/v1/groups/g/send"),
            Some((POST, Route::GroupSend("g".into())))
        );
        assert_eq!(
            Route::of("/v1/uids/7/groups"),
            Some((GET, Route::UidGroups("7".into())))
        );
        assert_eq!(Route::of("/v1/groups/"), None);
        assert_eq!(Route::of("/v1/groups/g/x"), None);
        assert_eq!(Route::of("/v1/groups//send"), None);
        assert_eq!(Route::of("/v1/uids/7"), None);
        assert_eq!(Route::of("/v1/send/"), None);
        assert_eq!(Route::of("/v1/send"), None);
        assert_eq!(Route::of("/v1/send/a/b"), None);
        assert_eq!(Route::of("/v1/list/x"), None);
        assert_eq!(Route::of("/v2/list"), None);
        assert_eq!(Route::of("/"), Some((GET, Route::AdminPage)));
        assert_eq!(Route::of("/admin.js"), Some((GET, Route::AdminScript)));
        assert_eq!(Route::of("/index.html"), None);
    }
}
