//! The control plane's own metrics, served as Prometheus text on the API listener.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// One label naming what happened.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub outcome: String,
}

/// Counters and gauges of the channel and the publisher.
#[derive(Default)]
pub struct Metrics {
    /// Nodes with a registered connection now.
    pub nodes_connected: Gauge,
    /// Connections that ended before or instead of serving, by reason.
    pub connections_refused: Family<Outcome, Counter>,
    /// Bundles sent to nodes.
    pub bundles_sent: Counter,
    /// Bundle acks, `applied` or `refused`.
    pub bundle_acks: Family<Outcome, Counter>,
    /// Telemetry batches, `stored`, `duplicate` or `refused`.
    pub telemetry_batches: Family<Outcome, Counter>,
    /// Revisions evaluated, `published` or `refused`.
    pub revisions: Family<Outcome, Counter>,
}

impl Metrics {
    /// Counts one event of `family` with `outcome`.
    pub fn count(family: &Family<Outcome, Counter>, outcome: &str) {
        family
            .get_or_create(&Outcome {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Encodes every metric as Prometheus text.
    pub fn encode(&self) -> String {
        let mut reg = Registry::with_prefix("edgeward_cp");
        reg.register(
            "nodes_connected",
            "Nodes with a registered connection",
            self.nodes_connected.clone(),
        );
        reg.register(
            "connections_refused",
            "Node connections refused, by reason",
            self.connections_refused.clone(),
        );
        reg.register(
            "bundles_sent",
            "Bundles sent to nodes",
            self.bundles_sent.clone(),
        );
        reg.register(
            "bundle_acks",
            "Bundle acks from nodes",
            self.bundle_acks.clone(),
        );
        reg.register(
            "telemetry_batches",
            "Telemetry batches received, by outcome",
            self.telemetry_batches.clone(),
        );
        reg.register(
            "revisions",
            "Revisions evaluated, by outcome",
            self.revisions.clone(),
        );
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &reg).is_err() {
            out.clear();
        }
        out
    }
}
