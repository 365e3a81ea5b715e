//! `--webhook URL`: presence events POSTed to the backend in batches.
//!
//! Batches of up to [`BATCH`] events (waiting [`LINGER`] for more after the
//! first) are POSTed as `{"events": [...]}`, signed with
//! `--webhook-secret-file`. A batch that fails (no answer within [`TIMEOUT`],
//! or not 2xx) is sent again, whole, with a backoff from [`BACKOFF_MIN`]
//! doubling to [`BACKOFF_MAX`], for as long as the receiver fails. Retries can
//! deliver a batch twice; each event's `id` lets the receiver drop the
//! duplicates.
//!
//! A single node reads its events like any other consumer ([`run`]): the
//! backlog while the receiver fails is the events ring, fixed in size, so a
//! receiver down for an hour costs no more memory than one down for a second;
//! what overflows it is counted in `events_dropped`. In cluster mode the
//! batches come from the cluster's events stream, posted by one node at a
//! time (`cluster::events`), with this module's [`Poster`].

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tracing::{info, warn};

use crate::core::counters::{Counter, Counters};
use crate::core::events::{Published, Subscription};
use crate::logging::Throttled;
use crate::node::Node;

/// At shutdown, once the events ended: how long the last batches may take to
/// be posted (each attempt, and the retries together). What is not taken by
/// then is logged and dropped.
pub(crate) const AT_SHUTDOWN: Duration = Duration::from_secs(3);

/// Most events in one POST.
pub(crate) const BATCH: usize = 100;
/// How long the first event of a batch waits for others.
pub(crate) const LINGER: Duration = Duration::from_millis(50);
/// Longest wait for the receiver's answer.
const TIMEOUT: Duration = Duration::from_secs(10);
/// First pause after a failure; it doubles up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Where events go, and what signs them.
#[derive(Debug, Clone)]
pub(crate) struct Webhook {
    url: Uri,
    secret: Option<ring::hmac::Key>,
}

impl Webhook {
    /// Checks `url` and reads the secret file.
    pub(crate) fn new(url: &str, secret_file: Option<&std::path::Path>) -> anyhow::Result<Self> {
        let parsed: Uri = url
            .parse()
            .with_context(|| format!("--webhook {url:?} is not a URL"))?;
        anyhow::ensure!(
            matches!(parsed.scheme_str(), Some("http" | "https")) && parsed.host().is_some(),
            "--webhook {url:?} must be an http:// or https:// URL"
        );
        let secret = secret_file
            .map(|path| {
                let secret = pushd_proto::token::read_secret_file(path)?;
                anyhow::Ok(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret))
            })
            .transpose()?;
        Ok(Webhook {
            url: parsed,
            secret,
        })
    }
}

/// `sha256=<hex HMAC-SHA256 of body>`, the `X-Pushd-Signature` header.
fn signature(key: &ring::hmac::Key, body: &[u8]) -> String {
    let tag = ring::hmac::sign(key, body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// Makes POSTs to the webhook and says how they went.
pub(crate) struct Poster {
    webhook: Webhook,
    client: Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        Full<Bytes>,
    >,
    counters: Arc<Counters>,
    failing: Throttled,
    /// Scheme and host only, for logs: hook URLs often carry a secret in their path.
    pub(crate) shown: String,
}

impl Poster {
    /// An HTTP(S) client for `webhook`, counting in `counters`.
    pub(crate) fn new(webhook: Webhook, counters: Arc<Counters>) -> Self {
        let https = match hyper_rustls::HttpsConnectorBuilder::new().with_native_roots() {
            Ok(builder) => builder.https_or_http().enable_http1().build(),
            Err(err) => {
                warn!(%err, "webhook: no system CA certificates; https receivers will fail");
                let roots = tokio_rustls::rustls::RootCertStore::empty();
                let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
                let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .expect("rustls's defaults")
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(config)
                    .https_or_http()
                    .enable_http1()
                    .build()
            }
        };
        let shown = format!(
            "{}://{}/…",
            webhook.url.scheme_str().unwrap_or("http"),
            webhook.url.authority().map_or("", |a| a.as_str())
        );
        Poster {
            webhook,
            client: Client::builder(TokioExecutor::new()).build(https),
            counters,
            failing: Throttled::new("webhook", "its events are kept and retried"),
            shown,
        }
    }

    /// Where it counts.
    pub(crate) fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// One attempt to post `body`, until `deadline` at the latest; a failure
    /// is counted and logged (throttled).
    pub(crate) async fn post(
        &mut self,
        body: &Bytes,
        deadline: tokio::time::Instant,
    ) -> Result<(), String> {
        let mut request = hyper::Request::post(self.webhook.url.clone())
            .header("content-type", "application/json")
            .header("user-agent", concat!("pushd/", env!("CARGO_PKG_VERSION")));
        if let Some(key) = &self.webhook.secret {
            request = request.header("x-pushd-signature", signature(key, body));
        }
        let request = request
            .body(Full::new(body.clone()))
            .expect("a valid request");
        let deadline = deadline.min(tokio::time::Instant::now() + TIMEOUT);
        let outcome = tokio::time::timeout_at(deadline, self.client.request(request)).await;
        let failure = match outcome {
            Ok(Ok(response)) if response.status().is_success() => None,
            Ok(Ok(response)) => Some(format!("answered {}", response.status())),
            Ok(Err(err)) => Some(format!("{err:#}")),
            Err(_) => Some(format!("no answer within {TIMEOUT:?}")),
        };
        match failure {
            None => {
                self.counters.bump(Counter::WebhookPosts);
                Ok(())
            }
            Some(failure) => {
                self.counters.bump(Counter::WebhookFailures);
                let shown = &self.shown;
                self.failing
                    .warn(&format_args!("POST {shown} failed: {failure}"));
                Err(failure)
            }
        }
    }
}

/// The pause after each failure in a row: [`BACKOFF_MIN`] doubling to [`BACKOFF_MAX`].
#[derive(Debug)]
pub(crate) struct Backoff(Duration);

impl Backoff {
    pub(crate) fn new() -> Self {
        Backoff(BACKOFF_MIN)
    }

    /// The next pause.
    pub(crate) fn next(&mut self) -> Duration {
        let pause = self.0;
        self.0 = (self.0 * 2).min(BACKOFF_MAX);
        pause
    }
}

/// The body of one POST: `{"events":[...]}`.
pub(crate) fn body(batch: &[Published]) -> Bytes {
    let mut body = Vec::with_capacity(batch.iter().map(|e| e.body.len() + 40).sum::<usize>() + 16);
    body.extend_from_slice(b"{\"events\":[");
    for (i, event) in batch.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        event.write_json(&mut body);
    }
    body.extend_from_slice(b"]}");
    Bytes::from(body)
}

/// A single node: posts the events of `events` until they end (at shutdown,
/// after the shutdown's own events, which get [`AT_SHUTDOWN`] to be taken).
pub(crate) async fn run(webhook: Webhook, mut events: Subscription, node: Arc<Node>) {
    let mut poster = Poster::new(webhook, node.counters.clone());
    info!(url = %poster.shown, "webhook: posting events");
    // When the events ended, and so when posting must give up.
    let mut last_call: Option<tokio::time::Instant> = None;
    loop {
        let Some(first) = events.next().await else {
            return;
        };
        let mut batch = vec![first];
        let linger = tokio::time::sleep(LINGER);
        tokio::pin!(linger);
        while batch.len() < BATCH {
            tokio::select! {
                () = &mut linger => break,
                event = events.next() => match event {
                    Some(event) => batch.push(event),
                    None => break,
                },
            }
        }
        let body = body(&batch);
        let mut backoff = Backoff::new();
        loop {
            if node.events.has_ended() {
                last_call.get_or_insert_with(|| tokio::time::Instant::now() + AT_SHUTDOWN);
            }
            let deadline = last_call.unwrap_or_else(|| tokio::time::Instant::now() + TIMEOUT);
            if poster.post(&body, deadline).await.is_ok() {
                break;
            }
            let retry_at = tokio::time::Instant::now() + backoff.next();
            if last_call.is_some_and(|end| retry_at >= end) {
                warn!(
                    events = batch.len(),
                    "webhook: shutting down; the last events were not taken by {}", poster.shown
                );
                return;
            }
            // A shutdown cuts the wait short: the last attempts have their own bound.
            tokio::select! {
                () = tokio::time::sleep_until(retry_at) => {}
                () = node.events.ending() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hex_hmac_sha256_of_the_body() {
        // RFC 4231, test case 2.
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"Jefe");
        assert_eq!(
            signature(&key, b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn only_http_and_https_urls() {
        assert!(Webhook::new("http://127.0.0.1:9/hook", None).is_ok());
        assert!(Webhook::new("https://hooks.example.com/pushd", None).is_ok());
        assert!(Webhook::new("ftp://example.com/", None).is_err());
        assert!(Webhook::new("/just/a/path", None).is_err());
    }
}
