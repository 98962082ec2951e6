//! A cluster at run time: its endpoints with their tiers, health and in-flight counts, and
//! the choice of the endpoint for each attempt.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use super::health::{Ejection, HealthState, HealthTransition};
use super::tier::{select_tier, Tier};
use crate::config::{
    BalanceKind, ClusterConfig, EndpointConfig, HealthCheck, Locality, Name, Outlier,
};

/// An endpoint's index within its cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointId(pub usize);

/// The cluster's serving tier moved: log it at info ("failed over from site to region",
/// "returned to site") and count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierChange {
    /// The tier served before.
    pub from: Tier,
    /// The tier served now.
    pub to: Tier,
}

impl TierChange {
    /// True when traffic moved to a farther tier.
    pub fn is_failover(&self) -> bool {
        self.to > self.from
    }
}

/// Counts a request in flight on an endpoint until dropped.
#[derive(Debug)]
pub struct OutstandingGuard {
    counter: Arc<AtomicUsize>,
}

impl OutstandingGuard {
    fn new(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self {
            counter: Arc::clone(counter),
        }
    }
}

impl Drop for OutstandingGuard {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The endpoint chosen for one attempt. Keep it until the attempt ends: it holds the
/// in-flight count that least-outstanding balancing reads.
#[derive(Debug)]
pub struct Pick {
    /// The chosen endpoint.
    pub endpoint: EndpointId,
    /// Its tier.
    pub tier: Tier,
    /// Set when the cluster's serving tier changed with this pick.
    pub tier_change: Option<TierChange>,
    /// Decrements the endpoint's in-flight count when dropped.
    pub guard: OutstandingGuard,
}

#[derive(Debug)]
struct EndpointState {
    config: EndpointConfig,
    tier: Tier,
    outstanding: Arc<AtomicUsize>,
    health: Mutex<HealthState>,
}

impl EndpointState {
    fn health(&self) -> MutexGuard<'_, HealthState> {
        // The state is plain counters, consistent after any panic, so a poisoned lock is
        // still usable.
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A cluster's endpoints and their state, shared by all requests to it.
#[derive(Debug)]
pub struct Cluster {
    name: Name,
    balance: BalanceKind,
    health_check: Option<HealthCheck>,
    outlier: Outlier,
    endpoints: Vec<EndpointState>,
    next: AtomicUsize,
    /// The last serving tier: 0 for none yet, else `tier_code`.
    last_tier: AtomicU8,
}

impl Cluster {
    /// Builds the run-time cluster for a node at `node`. All endpoints start healthy.
    pub fn new(config: &ClusterConfig, node: &Locality) -> Self {
        let endpoints = config
            .endpoints
            .iter()
            .map(|e| EndpointState {
                config: e.clone(),
                tier: Tier::of(node, &e.locality),
                outstanding: Arc::new(AtomicUsize::new(0)),
                health: Mutex::new(HealthState::default()),
            })
            .collect();
        Self {
            name: config.name.clone(),
            balance: config.balance,
            health_check: config.health.clone(),
            outlier: config.outlier.clone(),
            endpoints,
            next: AtomicUsize::new(0),
            last_tier: AtomicU8::new(0),
        }
    }

    /// The cluster's name.
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// The endpoint ids, for health checking and metrics.
    pub fn endpoint_ids(&self) -> impl Iterator<Item = EndpointId> {
        (0..self.endpoints.len()).map(EndpointId)
    }

    /// An endpoint's config (address, transport), for connecting.
    pub fn endpoint(&self, id: EndpointId) -> Option<&EndpointConfig> {
        self.endpoints.get(id.0).map(|e| &e.config)
    }

    /// An endpoint's tier, health at `now`, and requests in flight, for metrics.
    pub fn endpoint_status(&self, id: EndpointId, now: Instant) -> Option<(Tier, bool, usize)> {
        let e = self.endpoints.get(id.0)?;
        let available = e.health().is_available(now);
        Some((e.tier, available, e.outstanding.load(Ordering::Relaxed)))
    }

    /// Chooses an endpoint for one attempt: the nearest tier with an available endpoint not in
    /// `exclude`, then round robin or least outstanding within it. `None` when nothing can
    /// serve: the caller answers 503 at once.
    ///
    /// The serving tier (and so `tier_change`) is judged without `exclude`, so a single retry
    /// on a farther endpoint is not reported as a failover.
    pub fn pick(&self, now: Instant, exclude: &[EndpointId]) -> Option<Pick> {
        // Availability, read once per endpoint.
        let available: Vec<bool> = self
            .endpoints
            .iter()
            .map(|e| e.health().is_available(now))
            .collect();

        // Track the serving tier.
        let serving = select_tier(
            self.endpoints
                .iter()
                .zip(&available)
                .map(|(e, a)| (e.tier, *a)),
        );
        let tier_change = serving.and_then(|to| {
            let previous = self.last_tier.swap(tier_code(to), Ordering::Relaxed);
            tier_from_code(previous)
                .filter(|from| *from != to)
                .map(|from| TierChange { from, to })
        });

        // The nearest tier among the endpoints this attempt may use.
        let usable = |i: usize| available[i] && !exclude.contains(&EndpointId(i));
        let tier =
            select_tier((0..self.endpoints.len()).map(|i| (self.endpoints[i].tier, usable(i))))?;
        let candidates: Vec<usize> = (0..self.endpoints.len())
            .filter(|i| usable(*i) && self.endpoints[*i].tier == tier)
            .collect();

        // Within the tier.
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let chosen = match self.balance {
            BalanceKind::RoundRobin => candidates.get(start % candidates.len().max(1)).copied(),
            BalanceKind::LeastOutstanding => (0..candidates.len())
                .map(|k| candidates[(start + k) % candidates.len()])
                .min_by_key(|i| self.endpoints[*i].outstanding.load(Ordering::Relaxed)),
        }?;
        Some(Pick {
            endpoint: EndpointId(chosen),
            tier,
            tier_change,
            guard: OutstandingGuard::new(&self.endpoints[chosen].outstanding),
        })
    }

    /// A connect (or TLS handshake) failure: counts towards ejection.
    pub fn report_connect_failure(&self, id: EndpointId, now: Instant) -> Option<Ejection> {
        let e = self.endpoints.get(id.0)?;
        let ejection = e.health().record_failure(now, &self.outlier);
        ejection
    }

    /// A response status: 5xx counts towards ejection, anything else resets the count.
    pub fn report_response(&self, id: EndpointId, status: u16, now: Instant) -> Option<Ejection> {
        let e = self.endpoints.get(id.0)?;
        let mut health = e.health();
        if (500..600).contains(&status) {
            health.record_failure(now, &self.outlier)
        } else {
            health.record_success(now, &self.outlier);
            None
        }
    }

    /// An active health check result. Ignored when the cluster has no `[clusters.health]`.
    pub fn report_check(&self, id: EndpointId, ok: bool) -> Option<HealthTransition> {
        let check = self.health_check.as_ref()?;
        let e = self.endpoints.get(id.0)?;
        let transition = e.health().record_check(ok, check);
        transition
    }
}

fn tier_code(tier: Tier) -> u8 {
    match tier {
        Tier::Site => 1,
        Tier::Zone => 2,
        Tier::Region => 3,
        Tier::Any => 4,
    }
}

fn tier_from_code(code: u8) -> Option<Tier> {
    match code {
        1 => Some(Tier::Site),
        2 => Some(Tier::Zone),
        3 => Some(Tier::Region),
        4 => Some(Tier::Any),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
