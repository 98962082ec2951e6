//! The node's metrics, in Prometheus text on the admin port (`prometheus-client` encodes them).
//!
//! Labels carry only route, cluster, endpoint and certificate names from config, decisions,
//! status classes and tiers: never paths, client addresses or identities.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, LazyLock, Mutex, RwLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Client TLS handshakes that failed, counted by the binary's log layer from pingora's log lines
/// (pingora does the handshake before any Edgeward code sees the connection). One per process.
pub static TLS_HANDSHAKE_FAILURES: LazyLock<Counter> = LazyLock::new(Counter::default);

/// Labels of a proxied or refused request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub decision: String,
    pub status_class: String,
    pub tier: String,
}

/// Labels of an authorization decision.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub route: String,
    pub decision: String,
    pub mode: String,
}

/// Labels of an endpoint.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub cluster: String,
    pub endpoint: String,
    pub tier: String,
}

/// Labels of a tier change.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailoverLabels {
    pub cluster: String,
    pub from: String,
    pub to: String,
}

/// Labels naming a certificate.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertLabels {
    pub cert: String,
}

/// Labels naming what was reloaded.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub what: String,
}

/// Labels of the per-listener connection metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: String,
}

/// Labels of a latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

/// Every metric of the node.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub decisions: Family<DecisionLabels, Counter>,
    pub latency: Family<RouteLabels, Histogram>,
    pub endpoint_healthy: Family<EndpointLabels, Gauge>,
    pub failovers: Family<FailoverLabels, Counter>,
    pub cert_expiry: Family<CertLabels, Gauge<f64, AtomicU64>>,
    pub reloads: Family<ReloadLabels, Counter>,
    pub reload_failures: Family<ReloadLabels, Counter>,
    pub config_generation: Gauge,
    pub policy_generation: Gauge,
    pub policy_count: Gauge,
    pub connections_open: Family<ListenerLabels, Gauge>,
    pub connections_refused: Family<ListenerLabels, Counter>,
    pub header_timeouts: Family<ListenerLabels, Counter>,
    pub control_connected: Gauge,
    pub telemetry_queued: Gauge,
    /// Batches the on-disk queue dropped since the process started (`_total` when exposed).
    pub telemetry_dropped: Counter,
    /// Per route name, the handles a request counts itself with (see [`RouteMetrics`]).
    routes: RwLock<HashMap<String, Arc<RouteMetrics>>>,
}

/// The per-request metrics of one route, found once per request by the route's name. Counting
/// through these handles builds no label strings and hashes nothing: the handles are the
/// families' own entries, created on first use.
pub struct RouteMetrics {
    route: String,
    requests_family: Family<RequestLabels, Counter>,
    decisions_family: Family<DecisionLabels, Counter>,
    /// The route's request duration histogram.
    pub latency: Histogram,
    /// (decision, status class, tier) -> counter; a route sees a handful of these.
    requests: Mutex<Vec<(RequestKey, Counter)>>,
    /// Indexed by [`RouteMetrics::decision_index`].
    decisions: Mutex<[Option<Counter>; 4]>,
}

/// The labels of `edgeward_requests_total` besides the route, all from fixed sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestKey {
    pub decision: &'static str,
    pub status_class: &'static str,
    pub tier: &'static str,
}

impl RouteMetrics {
    /// Counts one request.
    pub fn request(&self, key: RequestKey) {
        let mut known = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, c)) = known.iter().find(|(k, _)| *k == key) {
            c.inc();
            return;
        }
        let counter = self
            .requests_family
            .get_or_create(&RequestLabels {
                route: self.route.clone(),
                decision: key.decision.to_owned(),
                status_class: key.status_class.to_owned(),
                tier: key.tier.to_owned(),
            })
            .clone();
        counter.inc();
        known.push((key, counter));
    }

    /// Counts one authorization decision.
    pub fn decision(&self, allowed: bool, enforce: bool) {
        let i = usize::from(allowed) * 2 + usize::from(enforce);
        let mut known = self.decisions.lock().unwrap_or_else(|p| p.into_inner());
        let counter = known[i].get_or_insert_with(|| {
            self.decisions_family
                .get_or_create(&DecisionLabels {
                    route: self.route.clone(),
                    decision: if allowed { "allow" } else { "deny" }.into(),
                    mode: if enforce { "enforce" } else { "audit" }.into(),
                })
                .clone()
        });
        counter.inc();
    }
}

fn latency_histogram() -> Histogram {
    // 0.5 ms to about 16 s.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0005, 2.0, 16,
    ))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("edgeward");
        let requests = Family::<RequestLabels, Counter>::default();
        let decisions = Family::<DecisionLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let endpoint_healthy = Family::<EndpointLabels, Gauge>::default();
        let failovers = Family::<FailoverLabels, Counter>::default();
        let cert_expiry = Family::<CertLabels, Gauge<f64, AtomicU64>>::default();
        let reloads = Family::<ReloadLabels, Counter>::default();
        let reload_failures = Family::<ReloadLabels, Counter>::default();
        let config_generation = Gauge::default();
        let policy_generation = Gauge::default();
        let policy_count = Gauge::default();
        let connections_open = Family::<ListenerLabels, Gauge>::default();
        let connections_refused = Family::<ListenerLabels, Counter>::default();
        let header_timeouts = Family::<ListenerLabels, Counter>::default();
        let control_connected = Gauge::default();
        let telemetry_queued = Gauge::default();
        let telemetry_dropped = Counter::default();
        registry.register(
            "control_plane_connected",
            "1 while the node is connected to its control plane",
            control_connected.clone(),
        );
        registry.register(
            "telemetry_queued_batches",
            "Telemetry batches on disk waiting for the control plane's acknowledgement",
            telemetry_queued.clone(),
        );
        registry.register(
            "telemetry_dropped_batches",
            "Telemetry batches dropped because the on-disk queue was full",
            telemetry_dropped.clone(),
        );
        registry.register(
            "requests",
            "Requests by route, decision, status class and tier",
            requests.clone(),
        );
        registry.register(
            "authz_decisions",
            "Authorization decisions by route, decision and mode",
            decisions.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from request to the end of the response, by route",
            latency.clone(),
        );
        registry.register(
            "endpoint_healthy",
            "1 when an endpoint may receive traffic (healthy and not ejected)",
            endpoint_healthy.clone(),
        );
        registry.register(
            "failovers",
            "Changes of the tier that serves a cluster",
            failovers.clone(),
        );
        registry.register(
            "cert_expiry_seconds",
            "Seconds until a certificate expires (negative once expired)",
            cert_expiry.clone(),
        );
        registry.register(
            "reloads",
            "Successful reloads by what changed",
            reloads.clone(),
        );
        registry.register(
            "reload_failures",
            "Refused reloads by what was refused (the old material stays in force)",
            reload_failures.clone(),
        );
        registry.register(
            "config_generation",
            "How many config versions this process has applied",
            config_generation.clone(),
        );
        registry.register(
            "policy_generation",
            "How many policy sets this process has applied",
            policy_generation.clone(),
        );
        registry.register("policies", "Policies in force", policy_count.clone());
        registry.register(
            "connections_open",
            "Client connections open, by listener",
            connections_open.clone(),
        );
        registry.register(
            "connections_refused",
            "Client connections closed at accept because the listener was at max_connections",
            connections_refused.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "Client TLS handshakes that failed (no or a refused client certificate, a protocol error, a timeout)",
            TLS_HANDSHAKE_FAILURES.clone(),
        );
        registry.register(
            "header_timeouts",
            "Requests answered 408 because their header did not arrive within limits.header_timeout",
            header_timeouts.clone(),
        );
        Self {
            registry,
            requests,
            decisions,
            latency,
            endpoint_healthy,
            failovers,
            cert_expiry,
            reloads,
            reload_failures,
            config_generation,
            policy_generation,
            policy_count,
            connections_open,
            connections_refused,
            header_timeouts,
            control_connected,
            telemetry_queued,
            telemetry_dropped,
            routes: RwLock::default(),
        }
    }
}

impl Metrics {
    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The per-request metrics of the route named `route` (`none` for requests without one).
    pub fn route(&self, route: &str) -> Arc<RouteMetrics> {
        if let Some(m) = self
            .routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(route)
        {
            return m.clone();
        }
        let mut routes = self.routes.write().unwrap_or_else(|p| p.into_inner());
        routes
            .entry(route.to_owned())
            .or_insert_with(|| {
                Arc::new(RouteMetrics {
                    route: route.to_owned(),
                    requests_family: self.requests.clone(),
                    decisions_family: self.decisions.clone(),
                    latency: self
                        .latency
                        .get_or_create(&RouteLabels {
                            route: route.to_owned(),
                        })
                        .clone(),
                    requests: Mutex::default(),
                    decisions: Mutex::default(),
                })
            })
            .clone()
    }

    /// Counts a reload outcome.
    pub fn reload(&self, what: &str, ok: bool) {
        let labels = ReloadLabels {
            what: what.to_owned(),
        };
        if ok {
            self.reloads.get_or_create(&labels).inc();
        } else {
            self.reload_failures.get_or_create(&labels).inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_telemetry_is_a_counter_that_follows_the_queue_total() {
        let m = Metrics::default();
        m.telemetry_dropped
            .inner()
            .fetch_max(3, std::sync::atomic::Ordering::Relaxed);
        // An older total read on another thread does not take it back.
        m.telemetry_dropped
            .inner()
            .fetch_max(2, std::sync::atomic::Ordering::Relaxed);
        let text = m.encode();
        assert!(
            text.contains("# TYPE edgeward_telemetry_dropped_batches counter"),
            "{text}"
        );
        assert!(
            text.contains("edgeward_telemetry_dropped_batches_total 3"),
            "{text}"
        );
    }

    #[test]
    fn route_handles_count_into_the_exposed_families() {
        let m = Metrics::default();
        let key = RequestKey {
            decision: "allow",
            status_class: "2xx",
            tier: "site",
        };
        m.route("api").request(key);
        m.route("api").request(key);
        m.route("api").request(RequestKey {
            decision: "deny",
            status_class: "4xx",
            tier: "none",
        });
        m.route("api").decision(true, true);
        m.route("api").latency.observe(0.001);
        let text = m.encode();
        assert!(
            text.contains(
                r#"edgeward_requests_total{route="api",decision="allow",status_class="2xx",tier="site"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"edgeward_requests_total{route="api",decision="deny",status_class="4xx",tier="none"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"edgeward_authz_decisions_total{route="api",decision="allow",mode="enforce"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"edgeward_request_duration_seconds_count{route="api"} 1"#),
            "{text}"
        );
        // One set of handles per route name.
        assert!(Arc::ptr_eq(&m.route("api"), &m.route("api")));
    }
}
