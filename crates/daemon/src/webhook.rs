//! `--webhook URL`: presence events POSTed to the backend in batches.
//!
//! One task reads the events like any other consumer, gathers up to [`BATCH`]
//! of them (waiting [`LINGER`] for more after the first), and POSTs
//! `{"events": [...]}`, signed with `--webhook-secret-file`. A batch that
//! fails (no answer within [`TIMEOUT`], or not 2xx) is sent again, whole,
//! with a backoff from [`BACKOFF_MIN`] doubling to [`BACKOFF_MAX`], for as
//! long as the receiver fails: the backlog meanwhile is the events ring,
//! fixed in size, so a receiver down for an hour costs no more memory than one
//! down for a second; what overflows it is counted in `events_dropped`.
//! Retries can deliver a batch twice; each event's `id` lets the receiver
//! drop the duplicates.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tracing::{info, warn};

use crate::core::counters::Counter;
use crate::core::events::Subscription;
use crate::logging::Throttled;
use crate::node::Node;

/// At shutdown, once the events ended: how long the last batches may take to
/// be posted (each attempt, and the retries together). What is not taken by
/// then is logged and dropped.
pub(crate) const AT_SHUTDOWN: Duration = Duration::from_secs(3);

/// Most events in one POST.
const BATCH: usize = 100;
/// How long the first event of a batch waits for others.
const LINGER: Duration = Duration::from_millis(50);
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

/// Posts the events of `events` until they end (at shutdown, after the
/// shutdown's own events, which get [`AT_SHUTDOWN`] to be taken).
pub(crate) async fn run(webhook: Webhook, mut events: Subscription, node: Arc<Node>) {
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
    let client = Client::builder(TokioExecutor::new()).build(https);
    let counters = &node.counters;
    let mut failing = Throttled::new("webhook", "its events are kept and retried");
    // Only scheme and host in logs: hook URLs often carry a secret in their path.
    let shown = format!(
        "{}://{}/…",
        webhook.url.scheme_str().unwrap_or("http"),
        webhook.url.authority().map_or("", |a| a.as_str())
    );
    info!(url = %shown, "webhook: posting events");
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
        let mut body =
            Vec::with_capacity(batch.iter().map(|e| e.json.len() + 1).sum::<usize>() + 16);
        body.extend_from_slice(b"{\"events\":[");
        for (i, event) in batch.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(&event.json);
        }
        body.extend_from_slice(b"]}");
        let body = Bytes::from(body);
        let signed = webhook.secret.as_ref().map(|key| signature(key, &body));
        let mut backoff = BACKOFF_MIN;
        loop {
            let mut request = hyper::Request::post(webhook.url.clone())
                .header("content-type", "application/json")
                .header("user-agent", concat!("pushd/", env!("CARGO_PKG_VERSION")));
            if let Some(signed) = &signed {
                request = request.header("x-pushd-signature", signed);
            }
            let request = request
                .body(Full::new(body.clone()))
                .expect("a valid request");
            if node.events.has_ended() {
                last_call.get_or_insert_with(|| tokio::time::Instant::now() + AT_SHUTDOWN);
            }
            let deadline = last_call.map_or(tokio::time::Instant::now() + TIMEOUT, |end| {
                end.min(tokio::time::Instant::now() + TIMEOUT)
            });
            let outcome = tokio::time::timeout_at(deadline, client.request(request)).await;
            let failure = match outcome {
                Ok(Ok(response)) if response.status().is_success() => None,
                Ok(Ok(response)) => Some(format!("answered {}", response.status())),
                Ok(Err(err)) => Some(format!("{err:#}")),
                Err(_) => Some(format!("no answer within {TIMEOUT:?}")),
            };
            let Some(failure) = failure else {
                counters.bump(Counter::WebhookPosts);
                break;
            };
            counters.bump(Counter::WebhookFailures);
            failing.warn(&format_args!("POST {shown} failed: {failure}"));
            let retry_at = tokio::time::Instant::now() + backoff;
            if last_call.is_some_and(|end| retry_at >= end) {
                warn!(
                    events = batch.len(),
                    "webhook: shutting down; the last events were not taken by {shown}"
                );
                return;
            }
            // A shutdown cuts the wait short: the last attempts have their own bound.
            tokio::select! {
                () = tokio::time::sleep_until(retry_at) => {}
                () = node.events.ending() => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
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
