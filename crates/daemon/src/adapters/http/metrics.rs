//! `GET /metrics`: the Prometheus/OpenMetrics text.
//!
//! The figures already live in the daemon's atomics; a collector reads them at
//! scrape time (prometheus-client's `Collector`), so counting costs the hot path
//! nothing extra. Which counters exist, and under which name, comes from the one
//! table in `pushd_proto::counters`.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use pushd_proto::counters::{Counter, Family, Metric};

use crate::node::Node;

/// The registry every scrape encodes: the push histogram and the node's figures.
pub(super) fn registry(node: &Arc<Node>) -> Registry {
    let mut registry = Registry::with_prefix("pushd");
    registry.register(
        "text_push_duration_seconds",
        "Time to answer one batch of text-port lines (up to 64 read together): parse, queue for the uids' connections here and (cluster mode) route to other nodes",
        node.counters.push_seconds.clone(),
    );
    registry.register_collector(Box::new(NodeCollector(node.clone())));
    registry
}

/// The OpenMetrics text of `registry`, now.
pub(super) fn render(registry: &Registry) -> String {
    let mut body = String::new();
    prometheus_client::encoding::text::encode(&mut body, registry)
        .expect("writing to a String cannot fail");
    body
}

/// The content type of [`render`]'s text.
pub(super) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Reads the node's gauges and counters at scrape time.
#[derive(Debug)]
struct NodeCollector(Arc<Node>);

impl Collector for NodeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let node = &self.0;
        let counters = &node.counters;
        let sizes = node.registry.sizes();
        let waiting = node.registry.mailbox_totals();
        let text = counters
            .text_connections
            .load(std::sync::atomic::Ordering::Relaxed);
        let gauges = [
            (
                "connections",
                "Open WebSocket connections, bound or not",
                sizes.connections,
            ),
            ("uids", "Distinct bound uids", sizes.uids),
            ("text_connections", "Open text-port connections", text),
            ("bans", "Active bans", node.registry.ban_count()),
            (
                "event_subscribers",
                "Consumers of presence events (SSE streams, pushctl events, the webhook)",
                node.events.subscribers(),
            ),
            (
                "mailbox_uids",
                "Uids with messages waiting in their mailbox",
                waiting.uids,
            ),
            (
                "mailbox_waiting",
                "Messages waiting in mailboxes",
                waiting.messages,
            ),
            (
                "mailbox_bytes",
                "Payload bytes waiting in mailboxes",
                waiting.bytes,
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
