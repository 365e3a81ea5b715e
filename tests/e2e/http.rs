//! The one HTTP client and the one SSE reader of the end-to-end tests: hyper's
//! pooled client (keep-alive, as a backend would use it) over plain HTTP; and
//! a real webhook receiver.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;

use crate::harness::{Pushd, STEP, within};

/// An HTTP client; clones share its pool of kept-alive connections.
#[derive(Clone)]
pub struct Http(Client<HttpConnector, Full<Bytes>>);

impl Http {
    pub fn new() -> Self {
        Http(Client::builder(TokioExecutor::new()).build_http())
    }

    /// One request, with the bearer `token` if given; the response, its body unread.
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        token: Option<&str>,
        body: &str,
    ) -> hyper::Response<Incoming> {
        let bearer = token.map(|token| format!("Bearer {token}"));
        let headers: Vec<(&str, &str)> = bearer
            .iter()
            .map(|b| ("Authorization", b.as_str()))
            .collect();
        self.send_with(method, url, &headers, body).await
    }

    /// One request with `headers` (a `Host` among them replaces the URL's).
    pub async fn send_with(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> hyper::Response<Incoming> {
        let mut request = hyper::Request::builder().method(method).uri(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap();
        within(STEP, "an HTTP answer", self.0.request(request))
            .await
            .expect("HTTP request")
    }

    /// One request: its status and body.
    pub async fn call(
        &self,
        method: &str,
        url: &str,
        token: Option<&str>,
        body: &str,
    ) -> (u16, String) {
        let response = self.send(method, url, token, body).await;
        let status = response.status().as_u16();
        let body = within(STEP, "an HTTP body", response.into_body().collect())
            .await
            .unwrap()
            .to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    /// `GET url` without a token: status and body.
    pub async fn get(&self, url: &str) -> (u16, String) {
        self.call("GET", url, None, "").await
    }
}

/// An SSE stream read with hyper: each event's `data:` JSON, in order.
pub struct Sse {
    body: Incoming,
    buffer: String,
}

impl Sse {
    pub async fn open(pushd: &Pushd, query: &str) -> Sse {
        Self::open_with(pushd, query, &[]).await
    }

    /// [`Sse::open`] with request `headers` (`Last-Event-ID`).
    pub async fn open_with(pushd: &Pushd, query: &str, headers: &[(&str, &str)]) -> Sse {
        let url = format!("http://{}/v1/events{query}", pushd.listener("http"));
        let response = Http::new().send_with("GET", &url, headers, "").await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let mut sse = Sse {
            body: response.into_body(),
            buffer: String::new(),
        };
        // The greeting comment says the subscription is in place.
        within(STEP, "the SSE greeting", async {
            while !sse.buffer.contains("\n\n") {
                sse.read_more().await;
            }
        })
        .await;
        sse.buffer.clear();
        sse
    }

    async fn read_more(&mut self) {
        assert!(self.try_read_more().await, "the stream ended");
    }

    /// Reads what comes next; false when the stream has ended.
    async fn try_read_more(&mut self) -> bool {
        let Some(frame) = self.body.frame().await else {
            return false;
        };
        if let Some(data) = frame.unwrap().data_ref() {
            self.buffer.push_str(std::str::from_utf8(data).unwrap());
        }
        true
    }

    /// Every event until the stream ends, which must be within `limit`.
    pub async fn rest(&mut self, limit: Duration) -> Vec<Value> {
        within(limit, "the SSE stream to end", async {
            while self.try_read_more().await {}
        })
        .await;
        let mut events = Vec::new();
        for block in self.buffer.split("\n\n") {
            if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) {
                events.push(serde_json::from_str(data).unwrap());
            }
        }
        self.buffer.clear();
        events
    }

    /// The next event, skipping comments.
    pub async fn next(&mut self) -> Value {
        self.next_within(STEP).await.expect("an event")
    }

    /// The next event, if one comes within `limit`.
    pub async fn next_within(&mut self, limit: Duration) -> Option<Value> {
        tokio::time::timeout(limit, async {
            loop {
                if let Some(end) = self.buffer.find("\n\n") {
                    let block: String = self.buffer.drain(..end + 2).collect();
                    if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) {
                        return serde_json::from_str(data).unwrap();
                    }
                    continue;
                }
                self.read_more().await;
            }
        })
        .await
        .ok()
    }
}

/// A real HTTP receiver: answers each POST with the next status of `script`
/// (then 200), and keeps what it was sent.
pub struct Receiver {
    pub posts: Arc<Mutex<Vec<Post>>>,
}

/// One POST as received: its `X-Pushd-Signature`, and its body.
pub type Post = (Option<String>, Bytes);

impl Receiver {
    pub async fn start_at(addr: SocketAddr, script: Vec<u16>) -> Receiver {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let posts = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(script.into_iter()));
        let kept = posts.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (kept, script) = (kept.clone(), script.clone());
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                            let (kept, script) = (kept.clone(), script.clone());
                            async move {
                                let signature = request
                                    .headers()
                                    .get("x-pushd-signature")
                                    .map(|v| v.to_str().unwrap().to_owned());
                                let body = request.into_body().collect().await.unwrap().to_bytes();
                                kept.lock().unwrap().push((signature, body));
                                let status = script.lock().unwrap().next().unwrap_or(200);
                                let mut response = hyper::Response::new(Full::new(Bytes::new()));
                                *response.status_mut() =
                                    hyper::StatusCode::from_u16(status).unwrap();
                                Ok::<_, Infallible>(response)
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Receiver { posts }
    }

    /// Every event received, in order, duplicates included.
    pub fn events(&self) -> Vec<Value> {
        let posts = self.posts.lock().unwrap();
        posts
            .iter()
            .flat_map(|(_, body)| {
                let batch: Value = serde_json::from_slice(body).unwrap();
                batch["events"].as_array().unwrap().clone()
            })
            .collect()
    }
}
