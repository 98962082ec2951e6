//! What every request reads: a snapshot of config, routes and clusters that is swapped whole on
//! reload (a request finishes on the snapshot it started with), next to the policy store, the
//! trust store, the serving certificate and the metrics.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;

use crate::authz::{Authorizer, PolicyStore};
use crate::balance::{Cluster, EndpointId};
use crate::config::{ClusterConfig, Config, UpstreamHost};
use crate::identity::{ServingCert, TrustStore};
use crate::metrics::Metrics;
use crate::route::RouteTable;
use crate::upstream::pin::UpstreamPins;

/// A cluster with its endpoints' resolved socket addresses.
pub struct ClusterRuntime {
    pub cluster: Arc<Cluster>,
    pub config: ClusterConfig,
    /// Per endpoint id: the addresses its name resolved to when the snapshot was built.
    pub addrs: Vec<Vec<SocketAddr>>,
}

impl ClusterRuntime {
    /// The address to connect to for an endpoint.
    pub fn addr(&self, id: EndpointId) -> Option<SocketAddr> {
        self.addrs.get(id.0).and_then(|a| a.first().copied())
    }
}

/// One consistent view of the config.
pub struct Snapshot {
    pub config: Arc<Config>,
    pub routes: RouteTable,
    pub clusters: HashMap<String, Arc<ClusterRuntime>>,
    pub generation: u64,
}

impl Snapshot {
    /// Builds a snapshot; clusters whose config did not change keep their health state.
    pub fn build(
        config: Config,
        generation: u64,
        previous: Option<&Snapshot>,
    ) -> Result<Self, String> {
        let mut clusters = HashMap::new();
        for cc in &config.clusters {
            let name = cc.name.as_str().to_owned();
            if let Some(old) = previous.and_then(|p| p.clusters.get(&name)) {
                if old.config == *cc {
                    clusters.insert(name, old.clone());
                    continue;
                }
            }
            let mut addrs = Vec::with_capacity(cc.endpoints.len());
            for (i, ep) in cc.endpoints.iter().enumerate() {
                let resolved: Vec<SocketAddr> = match &ep.address.host {
                    UpstreamHost::Ip(ip) => vec![SocketAddr::new(*ip, ep.address.port)],
                    UpstreamHost::Name(n) => (n.as_str(), ep.address.port)
                        .to_socket_addrs()
                        .map(|a| a.collect())
                        .map_err(|e| {
                            format!(
                                "clusters `{name}` endpoint {i} `{}`: cannot resolve: {e}",
                                ep.address
                            )
                        })?,
                };
                if resolved.is_empty() {
                    return Err(format!(
                        "clusters `{name}` endpoint {i} `{}` resolves to nothing",
                        ep.address
                    ));
                }
                addrs.push(resolved);
            }
            let cluster = Arc::new(Cluster::new(cc, &config.node.locality));
            clusters.insert(
                name,
                Arc::new(ClusterRuntime {
                    cluster,
                    config: cc.clone(),
                    addrs,
                }),
            );
        }
        Ok(Self {
            routes: RouteTable::new(&config.routes),
            config: Arc::new(config),
            clusters,
            generation,
        })
    }
}

/// Everything shared by listeners, background tasks and the admin port.
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub policies: PolicyStore,
    pub policy_generation: std::sync::atomic::AtomicU64,
    pub authorizer: Authorizer,
    pub trust: Arc<TrustStore>,
    pub serving: Option<Arc<ServingCert>>,
    pub metrics: Metrics,
    pub pins: UpstreamPins,
    pub started: Instant,
    /// The telemetry window being filled (sent when a control plane is configured).
    pub telemetry: crate::telemetry::Aggregator,
}

impl Shared {
    /// The snapshot in force now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }
}
