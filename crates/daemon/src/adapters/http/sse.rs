//! `GET /v1/events`: presence events as Server-Sent Events, until the client
//! leaves or pushd shuts down.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::Response;
use hyper::StatusCode;
use hyper::body::Frame;
use hyper::header::{self, HeaderValue};

use super::{Body, HttpServer, Refusal};
use crate::adapters::url;
use crate::core::events::{EventId, parse_kinds};

/// An SSE comment sent on a quiet stream, so that proxies keep it open.
const SSE_KEEPALIVE: Duration = Duration::from_secs(15);

impl HttpServer {
    /// `GET /v1/events[?type=online,offline][&since=ID]`: Server-Sent Events,
    /// one event per `data:` line, until the client leaves or pushd shuts down
    /// (after the events of the shutdown itself). With `Last-Event-ID` (what
    /// an `EventSource` sends when it reconnects) or `?since=`, the events
    /// held after that id come first.
    pub(super) fn events(
        &self,
        query: Option<&str>,
        headers: &hyper::HeaderMap,
    ) -> Result<Response<Body>, Refusal> {
        let kinds = url::param(query, "type").unwrap_or_default();
        let kinds =
            parse_kinds(&kinds).map_err(|why| Refusal::new(StatusCode::BAD_REQUEST, why))?;
        let since = headers
            .get("last-event-id")
            .map(|id| String::from_utf8_lossy(id.as_bytes()).into_owned())
            .or_else(|| url::param(query, "since"))
            .map(|id| {
                EventId::parse(id.trim()).ok_or_else(|| {
                    Refusal::new(
                        StatusCode::BAD_REQUEST,
                        format!("{id:?} is not an event id (MS-N, as events carry them)"),
                    )
                })
            })
            .transpose()?;
        let subscription = self.node.events.subscribe(kinds, since);
        // At shutdown the events end after the last connection's
        // `disconnect` and `offline`, and so does the stream, once it sent them.
        let frames = futures_util::stream::unfold(subscription, |mut subscription| async move {
            let frame = tokio::select! {
                event = subscription.next() => {
                    let event = event?;
                    let mut frame = Vec::with_capacity(event.body.len() + 96);
                    frame.extend_from_slice(b"id: ");
                    frame.extend_from_slice(event.id.to_string().as_bytes());
                    frame.extend_from_slice(b"\nevent: ");
                    frame.extend_from_slice(event.kind.name().as_bytes());
                    frame.extend_from_slice(b"\ndata: ");
                    event.write_json(&mut frame);
                    frame.extend_from_slice(b"\n\n");
                    Bytes::from(frame)
                }
                () = tokio::time::sleep(SSE_KEEPALIVE) => Bytes::from_static(b": keepalive\n\n"),
            };
            Some((Ok::<_, Infallible>(Frame::data(frame)), subscription))
        });
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
}
