//! Prometheus metrics on `--metrics-listen` (off by default).
//!
//! The figures already live in the daemon's atomics; a collector reads them at
//! scrape time (prometheus-client's `Collector`), so counting costs the hot path
//! nothing extra. Which counters exist, and under which name, comes from the one
//! table in `pushd_proto::counters`. The HTTP side is deliberately tiny: `GET
//! /metrics` answers the OpenMetrics text, anything else 404, one request per
//! connection, bounded in size and time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use pushd_proto::counters::{Counter, Family, Metric};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::node::Node;

/// Longest scrape request accepted, and how long it may take to arrive.
const MAX_REQUEST: usize = 8 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `/metrics` until shutdown.
pub(crate) async fn serve(
    listener: TcpListener,
    node: Arc<Node>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let mut registry = Registry::with_prefix("pushd");
    registry.register(
        "text_push_duration_seconds",
        "Time to answer one batch of text-port lines (up to 64 read together): parse, queue for the uids' connections here and (cluster mode) route to other nodes",
        node.counters.push_seconds.clone(),
    );
    registry.register_collector(Box::new(NodeCollector(node.clone())));
    let registry = Arc::new(registry);
    let counters = &node.counters;
    super::accept::serve(
        listener, "metrics", counters, &registry, &shutdown, &tracker, scrape,
    )
    .await;
}

/// Answers one scrape; an error only ends that connection.
async fn scrape(stream: TcpStream, _: SocketAddr, registry: Arc<Registry>, _: CancellationToken) {
    if let Err(err) = answer(stream, &registry).await {
        debug!(%err, "metrics request failed");
    }
}

/// Answers one HTTP request.
async fn answer(mut stream: TcpStream, registry: &Registry) -> std::io::Result<()> {
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

/// Reads the node's gauges and counters at scrape time.
#[derive(Debug)]
struct NodeCollector(Arc<Node>);

impl Collector for NodeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let node = &self.0;
        let counters = &node.counters;
        let (connections, uids) = node.registry.sizes();
        let waiting = node.registry.mailbox_totals();
        let text = counters
            .text_connections
            .load(std::sync::atomic::Ordering::Relaxed);
        let gauges = [
            (
                "connections",
                "Open WebSocket connections, bound or not",
                connections,
            ),
            ("uids", "Distinct bound uids", uids),
            ("text_connections", "Open text-port connections", text),
            ("bans", "Active bans", node.registry.ban_count()),
            (
                "mailbox_uids",
                "Uids with messages waiting in their mailbox",
                waiting.0,
            ),
            (
                "mailbox_waiting",
                "Messages waiting in mailboxes",
                waiting.1,
            ),
            (
                "mailbox_bytes",
                "Payload bytes waiting in mailboxes",
                waiting.2,
            ),
        ];
        let cluster_up = node.cluster.as_ref().map(|cluster| {
            (
                "cluster_up",
                "Cluster mode: 1 while this node reaches Redis (lease renewed, subscribed), else 0",
                u64::from(cluster.is_up()),
            )
        });
        for (name, help, value) in gauges.into_iter().chain(cluster_up) {
            let gauge = ConstGauge::new(value as i64);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        for &counter in Counter::ALL {
            if counter.metric() == Metric::Alone {
                let value = ConstCounter::new(counters.get(counter));
                let descriptor = encoder.encode_descriptor(
                    counter.name(),
                    counter.help(),
                    None,
                    value.metric_type(),
                )?;
                value.encode(descriptor)?;
            }
        }
        for family in Family::ALL {
            let counter_type = ConstCounter::new(0u64).metric_type();
            let mut members =
                encoder.encode_descriptor(family.name(), family.help(), None, counter_type)?;
            for &counter in Counter::ALL {
                if let Metric::In(of, label) = counter.metric()
                    && of == family
                {
                    let labels = [(family.label(), label)];
                    ConstCounter::new(counters.get(counter))
                        .encode(members.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}
