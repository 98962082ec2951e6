//! Active health checks and the endpoint gauges: each cluster with a `[clusters.health]`
//! section has its endpoints asked `GET path` on its interval, through the same kind of
//! connection the proxy uses (mTLS upstreams included, identity checked). Results move the
//! endpoint by the configured thresholds (pure logic in `balance`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::balance::{EndpointId, HealthTransition};
use crate::config::HealthCheck;
use crate::metrics::EndpointLabels;
use crate::state::{ClusterRuntime, Shared};
use crate::upstream::{self, Timeouts};

/// How often the loop looks for due checks and refreshes gauges.
const TICK: Duration = Duration::from_millis(250);

/// The background service that runs the checks.
pub struct HealthChecker {
    pub shared: Arc<Shared>,
}

#[async_trait]
impl BackgroundService for HealthChecker {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let connector = Arc::new(Connector::new(Some(upstream::connector_options(16))));
        let mut due: HashMap<(String, usize), Instant> = HashMap::new();
        let mut ticker = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = ticker.tick() => {}
            }
            let snapshot = self.shared.snapshot();
            let now = Instant::now();
            for (name, rt) in &snapshot.clusters {
                self.update_gauges(name, rt, now);
                let Some(check) = rt.config.health.clone() else {
                    continue;
                };
                for id in rt.cluster.endpoint_ids() {
                    let key = (name.clone(), id.0);
                    if due.get(&key).is_some_and(|t| *t > now) {
                        continue;
                    }
                    due.insert(key, now + check.interval);
                    let (shared, rt, check, connector) = (
                        self.shared.clone(),
                        rt.clone(),
                        check.clone(),
                        connector.clone(),
                    );
                    tokio::spawn(async move {
                        let ok = probe(&shared, &rt, id, &check, &connector).await;
                        record(&rt, id, ok);
                    });
                }
            }
        }
    }
}

impl HealthChecker {
    fn update_gauges(&self, name: &str, rt: &ClusterRuntime, now: Instant) {
        for id in rt.cluster.endpoint_ids() {
            if let (Some((tier, usable, _)), Some(ep)) =
                (rt.cluster.endpoint_status(id, now), rt.cluster.endpoint(id))
            {
                self.shared
                    .metrics
                    .endpoint_healthy
                    .get_or_create(&EndpointLabels {
                        cluster: name.to_owned(),
                        endpoint: ep.address.to_string(),
                        tier: tier.as_str().to_owned(),
                    })
                    .set(i64::from(usable));
            }
        }
    }
}

fn record(rt: &ClusterRuntime, id: EndpointId, ok: Result<(), String>) {
    let cluster = rt.config.name.as_str();
    let endpoint = rt
        .cluster
        .endpoint(id)
        .map(|e| e.address.to_string())
        .unwrap_or_default();
    if let Err(reason) = &ok {
        tracing::debug!(cluster, endpoint = %endpoint, reason = %reason, "health check failed");
    }
    match rt.cluster.report_check(id, ok.is_ok()) {
        Some(HealthTransition::BecameHealthy) => {
            tracing::info!(cluster, endpoint = %endpoint, "endpoint healthy")
        }
        Some(HealthTransition::BecameUnhealthy) => {
            tracing::warn!(cluster, endpoint = %endpoint, reason = %ok.err().unwrap_or_default(), "endpoint unhealthy")
        }
        None => {}
    }
}

/// One check: connect, `GET path`, and a 2xx or 3xx within the timeout.
async fn probe(
    shared: &Shared,
    rt: &ClusterRuntime,
    id: EndpointId,
    check: &HealthCheck,
    connector: &Connector,
) -> Result<(), String> {
    let endpoint = rt.cluster.endpoint(id).ok_or("unknown endpoint")?;
    let addr = rt.addr(id).ok_or("no address")?;
    let node = shared.serving.as_ref().map(|s| s.current());
    let trust = shared.trust.current();
    let timeouts = Timeouts {
        connect: check.timeout,
        request: check.timeout,
    };
    let http2 = rt.config.http2;
    let peer = upstream::peer_for(
        addr,
        &endpoint.transport,
        http2,
        timeouts,
        node.as_deref(),
        &trust,
    )?;

    let attempt = async {
        let (mut session, _) = connector
            .get_http_session(&peer)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        upstream::verify_identity(shared, rt, id, session.digest()).await?;
        let mut req =
            RequestHeader::build("GET", check.path.as_bytes(), None).map_err(|e| e.to_string())?;
        req.insert_header("host", addr.to_string())
            .map_err(|e| e.to_string())?;
        req.insert_header("user-agent", "edgeward-health")
            .map_err(|e| e.to_string())?;
        if !http2 {
            // HTTP/2 has no `Connection` field; its connection is pooled instead.
            req.insert_header("connection", "close")
                .map_err(|e| e.to_string())?;
        }
        session
            .write_request_header(Box::new(req))
            .await
            .map_err(|e| e.to_string())?;
        session
            .finish_request_body()
            .await
            .map_err(|e| e.to_string())?;
        session
            .read_response_header()
            .await
            .map_err(|e| e.to_string())?;
        let status = session
            .response_header()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        session.shutdown().await;
        if (200..400).contains(&status) {
            Ok(())
        } else {
            Err(format!("status {status}"))
        }
    };
    tokio::time::timeout(check.timeout, attempt)
        .await
        .map_err(|_| format!("no answer within {:?}", check.timeout))?
}
