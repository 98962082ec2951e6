//! Telemetry that leaves the node: aggregates only.
//!
//! Each request adds to a window: a count by route, decision, status class and tier, and its
//! duration to a histogram; each tier change adds to a count by cluster and tiers. Every
//! `control_plane.telemetry_interval` the window is closed into one OTLP
//! `ExportMetricsServiceRequest` (delta sums and a delta histogram) and put in the on-disk
//! queue ([`queue`]), from which the control channel sends it. No path, client address, header
//! value or identity is ever part of it: route and cluster names come from the config.

pub mod otlp;
pub mod queue;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Upper bounds of the latency buckets, in milliseconds (one more bucket holds the rest).
pub const LATENCY_BOUNDS_MS: [f64; 14] = [
    1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
];

/// The labels of one request count.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RequestKey {
    pub route: String,
    pub decision: String,
    pub status_class: String,
    pub tier: String,
}

/// The labels of one tier-change count.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FailoverKey {
    pub cluster: String,
    pub from: String,
    pub to: String,
}

/// One interval's aggregates.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Window {
    /// Unix nanoseconds at which the window opened and closed.
    pub start_ns: u64,
    pub end_ns: u64,
    pub requests: BTreeMap<RequestKey, u64>,
    pub failovers: BTreeMap<FailoverKey, u64>,
    /// One count per bound of [`LATENCY_BOUNDS_MS`], then the overflow bucket.
    pub latency_buckets: Vec<u64>,
    pub latency_sum_ms: f64,
}

impl Window {
    fn open(start_ns: u64) -> Self {
        Self {
            start_ns,
            latency_buckets: vec![0; LATENCY_BOUNDS_MS.len() + 1],
            ..Self::default()
        }
    }

    /// Whether anything happened in the window.
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty() && self.failovers.is_empty()
    }

    /// Requests counted in the window.
    pub fn request_count(&self) -> u64 {
        self.requests.values().sum()
    }
}

/// The window being filled. It counts nothing until [`Aggregator::enable`]: a node without a
/// control plane pays nothing for telemetry on its request path.
#[derive(Debug)]
pub struct Aggregator {
    enabled: AtomicBool,
    window: Mutex<Window>,
}

impl Default for Aggregator {
    fn default() -> Self {
        Self {
            enabled: AtomicBool::new(false),
            window: Mutex::new(Window::open(now_ns())),
        }
    }
}

impl Aggregator {
    /// Starts counting (a control plane will take the windows).
    pub fn enable(&self) {
        self.enabled.store(true, Ordering::Relaxed);
    }

    /// Whether requests are counted.
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Counts one finished request.
    pub fn record_request(&self, key: RequestKey, duration_ms: f64) {
        if !self.enabled() {
            return;
        }
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        *w.requests.entry(key).or_default() += 1;
        let bucket = LATENCY_BOUNDS_MS
            .iter()
            .position(|b| duration_ms <= *b)
            .unwrap_or(LATENCY_BOUNDS_MS.len());
        w.latency_buckets[bucket] += 1;
        w.latency_sum_ms += duration_ms;
    }

    /// Counts one change of the tier serving a cluster.
    pub fn record_failover(&self, key: FailoverKey) {
        if !self.enabled() {
            return;
        }
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        *w.failovers.entry(key).or_default() += 1;
    }

    /// Closes the window at `end_ns` and opens the next one there.
    pub fn take(&self, end_ns: u64) -> Window {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        let mut done = std::mem::replace(&mut *w, Window::open(end_ns));
        done.end_ns = end_ns;
        done
    }
}

/// Now, in Unix nanoseconds.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(decision: &str, tier: &str) -> RequestKey {
        RequestKey {
            route: "app".into(),
            decision: decision.into(),
            status_class: "2xx".into(),
            tier: tier.into(),
        }
    }

    #[test]
    fn a_window_counts_exactly_and_the_next_starts_empty() {
        let a = Aggregator::default();
        a.record_request(key("allow", "site"), 1.0);
        assert!(
            a.take(now_ns()).is_empty(),
            "nothing is counted before enable"
        );
        a.enable();
        a.record_request(key("allow", "site"), 0.4);
        a.record_request(key("allow", "site"), 30.0);
        a.record_request(key("deny", "none"), 70_000.0);
        let w = a.take(now_ns());
        assert_eq!(w.request_count(), 3);
        assert_eq!(w.requests[&key("allow", "site")], 2);
        assert_eq!(w.latency_buckets[0], 1, "0.4 ms in the first bucket");
        assert_eq!(w.latency_buckets[5], 1, "30 ms in the 50 ms bucket");
        assert_eq!(*w.latency_buckets.last().unwrap(), 1, "overflow");
        let next = a.take(now_ns());
        assert!(next.is_empty());
        assert_eq!(next.start_ns, w.end_ns);
    }
}
