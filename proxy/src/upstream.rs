//! Upstream connections: the pingora peer for a picked endpoint (plaintext to loopback
//! services, or mTLS with the node's identity), and the check of an mTLS upstream's SPIFFE ID
//! ([`pin`]).

pub mod pin;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pingora::protocols::tls::CaType;
use pingora::upstreams::peer::{HttpPeer, HttpUpstreamRequestPolicy};
use pingora::utils::tls::WrappedX509;

use pingora::protocols::Digest;

use crate::balance::EndpointId;
use crate::config::UpstreamTransport;
use crate::identity::{NodeCert, TrustMaterial};
use crate::state::{ClusterRuntime, Shared};
use pin::Probe;

/// Connect and per-read timeouts of an upstream request.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub request: Duration,
}

/// The CA file given to pingora's upstream connectors: none. Every upstream peer carries its
/// own roots (the trust bundle, in [`peer_for`]), so the connector's default store is never
/// consulted; left unset, pingora loads the platform's CA store for each connector, which took
/// about 5 ms per listener at start.
pub const CONNECTOR_CA_FILE: &str = "/dev/null";

/// Connector options for the health checker: pingora's defaults without the platform CAs.
pub fn connector_options(keepalive_pool_size: usize) -> pingora::connectors::ConnectorOptions {
    let mut options = pingora::connectors::ConnectorOptions::new(keepalive_pool_size);
    options.ca_file = Some(CONNECTOR_CA_FILE.to_owned());
    options
}

/// Builds the pingora peer for an endpoint.
pub fn peer_for(
    addr: SocketAddr,
    transport: &UpstreamTransport,
    http2: bool,
    timeouts: Timeouts,
    node: Option<&NodeCert>,
    trust: &TrustMaterial,
) -> Result<HttpPeer, String> {
    let mut peer = match transport {
        UpstreamTransport::Plaintext => HttpPeer::new(addr, false, String::new()),
        UpstreamTransport::Tls { spiffe_id, sni } => {
            let node = node.ok_or("an mTLS upstream needs the node's [identity]")?;
            let roots = trust.roots_of(spiffe_id.trust_domain()).ok_or_else(|| {
                format!("trust domain `{}` has no bundle", spiffe_id.trust_domain())
            })?;
            // SNI must not be empty, or pingora skips verification altogether.
            let sni = sni.clone().unwrap_or_else(|| addr.ip().to_string());
            let mut peer = HttpPeer::new(addr, true, sni);
            peer.client_cert_key = Some(Arc::new(node.pingora_cert_key()));
            let ca: Vec<WrappedX509> = roots
                .iter()
                .map(|r| WrappedX509::new(r.to_vec(), pingora::utils::tls::parse_x509))
                .collect();
            let ca: Arc<CaType> = Arc::from(ca.into_boxed_slice());
            peer.options.ca = Some(ca);
            // The chain is verified; the name is not: the SPIFFE ID is checked by `pin`.
            peer.options.verify_cert = true;
            peer.options.verify_hostname = false;
            peer
        }
    };
    if http2 {
        peer.options.set_http_version(2, 2);
    }
    // Hop-by-hop fields, and the fields the client's `Connection` nominates, are removed by
    // pingora before `upstream_request_filter` runs (a request nominating `Host` or a
    // forwarding field is refused); only a WebSocket upgrade is passed on. The pipeline's
    // header rewriting relies on it (see `pipeline::headers`).
    peer.options.http_upstream_request_policy = HttpUpstreamRequestPolicy::standard();
    peer.options.connection_timeout = Some(timeouts.connect);
    peer.options.total_connection_timeout = Some(timeouts.connect + Duration::from_secs(1));
    peer.options.read_timeout = Some(timeouts.request);
    peer.options.write_timeout = Some(timeouts.request);
    peer.options.idle_timeout = Some(Duration::from_secs(60));
    Ok(peer)
}

/// Checks that the upstream behind a connection with `digest` carries the endpoint's
/// configured SPIFFE ID (plaintext endpoints pass). Used for proxied requests and health
/// checks alike.
pub async fn verify_identity(
    shared: &Shared,
    cluster: &ClusterRuntime,
    id: EndpointId,
    digest: Option<&Digest>,
) -> Result<(), String> {
    let Some(endpoint) = cluster.cluster.endpoint(id) else {
        return Ok(());
    };
    let UpstreamTransport::Tls { spiffe_id, sni } = &endpoint.transport else {
        return Ok(());
    };
    let hash = digest
        .and_then(|d| d.ssl_digest.as_ref())
        .map(|s| s.cert_digest.clone())
        .filter(|h| !h.is_empty())
        .ok_or("the upstream presented no certificate")?;
    if shared.pins.is_known(&hash, spiffe_id) {
        return Ok(());
    }
    let node = shared
        .serving
        .as_ref()
        .map(|s| s.current())
        .ok_or("no node identity to probe the upstream with")?;
    let trust = shared.trust.current();
    let roots = trust
        .roots_of(spiffe_id.trust_domain())
        .map(|r| r.to_vec())
        .unwrap_or_default();
    let addr = cluster.addr(id).ok_or("endpoint has no address")?;
    let sni = sni.clone().unwrap_or_else(|| addr.ip().to_string());
    let probe = Probe {
        addr,
        sni: &sni,
        roots,
        node: &node,
        provider: shared.trust.provider().clone(),
        timeout: Duration::from_secs(5),
    };
    shared.pins.check(&hash, spiffe_id, probe).await
}
