//! Prometheus metrics on `--metrics-listen` (off by default).
//!
//! The figures already live in the registry's atomics; a collector reads
//! them at scrape time (prometheus-client's `Collector`), so counting costs
//! the hot path nothing extra. The only metric kept here is the histogram of
//! text-port push durations. The HTTP side is deliberately tiny: `GET
//! /metrics` answers the OpenMetrics text, anything else 404, one request per
//! connection, bounded in size and time.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::Daemon;

/// A new histogram for text-port push durations: 10 µs to ~80 ms.
pub fn push_duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_01, 2.0, 14))
}

/// Longest scrape request accepted, and how long it may take to arrive.
const MAX_REQUEST: usize = 8 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `/metrics` until shutdown.
pub(crate) async fn serve(
    listener: TcpListener,
    daemon: Arc<Daemon>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let mut registry = Registry::with_prefix("pushd");
    registry.register(
        "text_push_duration_seconds",
        "Time to parse a text-port line, queue it for its uid's connections here and (cluster mode) route it to other nodes; lines answered together share one figure",
        daemon.text_push_seconds.clone(),
    );
    registry.register_collector(Box::new(DaemonCollector(daemon.clone())));
    let registry = Arc::new(registry);
    let refused = &daemon.registry.counters.connections_refused;
    crate::accept::serve_tcp(
        listener,
        "metrics",
        &shutdown,
        &tracker,
        refused,
        |stream, _| {
            let registry = registry.clone();
            async move {
                if let Err(err) = scrape(stream, &registry).await {
                    debug!(%err, "metrics request failed");
                }
            }
        },
    )
    .await;
}

/// Answers one HTTP request.
async fn scrape(mut stream: TcpStream, registry: &Registry) -> std::io::Result<()> {
    let mut request = Vec::with_capacity(512);
    let read = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let mut chunk = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < MAX_REQUEST {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            request.extend_from_slice(&chunk[..n]);
        }
        std::io::Result::Ok(())
    });
    read.await.map_err(|_| std::io::ErrorKind::TimedOut)??;
    let response = if request.starts_with(b"GET /metrics ") || request.starts_with(b"GET /metrics?")
    {
        let mut body = String::new();
        prometheus_client::encoding::text::encode(&mut body, registry)
            .map_err(std::io::Error::other)?;
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    } else {
        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned()
    };
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Reads the daemon's gauges and counters at scrape time.
#[derive(Debug)]
struct DaemonCollector(Arc<Daemon>);

impl Collector for DaemonCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let daemon = &self.0;
        let c = daemon.registry.counters.snapshot();
        let (connections, uids) = daemon.registry.sizes();
        let text = daemon
            .text_connections
            .load(std::sync::atomic::Ordering::Relaxed);
        let bans = daemon.registry.bans().len() as u64;
        for (name, help, value) in [
            (
                "connections",
                "Open WebSocket connections, bound or not",
                connections,
            ),
            ("uids", "Distinct bound uids", uids),
            ("text_connections", "Open text-port connections", text),
            ("bans", "Active bans", bans),
        ]
        .into_iter()
        .chain(daemon.cluster.as_ref().map(|cluster| {
            (
                "cluster_up",
                "Cluster mode: 1 while this node reaches Redis (lease renewed, subscribed), else 0",
                u64::from(cluster.is_up()),
            )
        })) {
            let gauge = ConstGauge::new(value as i64);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        for (name, help, value) in [
            (
                "connections_opened",
                "WebSocket connections accepted",
                c.connections_opened,
            ),
            (
                "connections_closed",
                "WebSocket connections closed, for any reason",
                c.connections_closed,
            ),
            (
                "handshakes_failed",
                "WebSocket handshakes that failed or timed out",
                c.handshakes_failed,
            ),
            ("binds", "Connections bound to a uid", c.binds),
            (
                "messages_delivered",
                "Messages queued to a connection, one per recipient",
                c.messages_delivered,
            ),
        ] {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        labelled(
            &mut encoder,
            "disconnects",
            "Connections closed by pushd, by reason",
            "reason",
            &[
                ("heartbeat", c.heartbeat_timeouts),
                ("kicked", c.kicked),
                ("slow_consumer", c.slow_consumers),
                ("invalid_uid", c.invalid_uids),
                ("invalid_token", c.invalid_tokens),
                ("too_big", c.oversized_messages),
                ("bind_timeout", c.bind_timeouts),
                ("replaced", c.per_uid_replaced),
                ("per_uid", c.per_uid_refused),
                ("banned", c.banned_refused),
            ],
        )?;
        labelled(
            &mut encoder,
            "refused",
            "Connections refused before they became WebSockets, by reason",
            "reason",
            &[
                ("capacity", c.capacity_refused),
                ("per_ip", c.per_ip_refused),
                ("origin", c.origin_refused),
                ("no_fds", c.connections_refused),
            ],
        )?;
        labelled(
            &mut encoder,
            "text_requests",
            "Text-port requests, by answer",
            "result",
            &[("ok", c.text_ok), ("fail", c.text_fail)],
        )
    }
}

/// One counter family with a single label.
fn labelled(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: &[(&str, u64)],
) -> Result<(), std::fmt::Error> {
    let counter_type = ConstCounter::new(0u64).metric_type();
    let mut family = encoder.encode_descriptor(name, help, None, counter_type)?;
    for (value, count) in values {
        let labels = [(label, *value)];
        ConstCounter::new(*count).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}
