//! The QUIC server nodes connect to (the protocol is documented in `edgeward_wire`).
//!
//! TLS: the control plane serves its own SVID and requires a client certificate, verified by
//! the proxy's own SPIFFE verifier against the configured bundle (chain, validity, exactly one
//! URI SAN that is a SPIFFE ID, trust domain equal to the bundle's; X509-SVID sections 4-5),
//! with the CRLs of `[identity] crls`, read at start. A refused certificate ends the handshake
//! and is recorded as an event.
//!
//! Each connection is one [`session`]: register, then bundles, acks, telemetry and heartbeats.

pub mod session;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edgeward_certs::TrustDomain;
use edgeward_proxy::config::TrustDomainConfig;
use edgeward_proxy::identity::{NodeCert, SpiffeClientVerifier, TrustMaterial, TrustStore};
use edgeward_wire::protocol::{self, close};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::config::Identity;
use crate::metrics::Metrics;
use crate::publish::Publisher;
use crate::store::Store;

/// Why the channel cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("identity: {0}")]
    Identity(String),
    #[error("cannot listen on {addr} (QUIC): {reason}")]
    Listen { addr: SocketAddr, reason: String },
}

/// What every session shares.
pub struct Shared {
    pub publisher: Arc<Publisher>,
    pub store: Arc<Store>,
    pub trust: Arc<TrustStore>,
    pub metrics: Arc<Metrics>,
    /// The registered connection of each node, by node id.
    connected: Mutex<HashMap<String, quinn::Connection>>,
}

impl Shared {
    /// State for sessions; `trust` comes from [`load_identity`].
    pub fn new(
        publisher: Arc<Publisher>,
        store: Arc<Store>,
        trust: Arc<TrustStore>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            publisher,
            store,
            trust,
            metrics,
            connected: Mutex::new(HashMap::new()),
        }
    }

    /// The ids of the nodes connected now.
    pub fn connected_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.connected().keys().cloned().collect();
        ids.sort();
        ids
    }

    fn connected(&self) -> std::sync::MutexGuard<'_, HashMap<String, quinn::Connection>> {
        self.connected.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The control plane's identity, loaded: its trust domain, the trust store nodes are checked
/// against, and the rustls server config.
pub struct LoadedIdentity {
    pub trust_domain: TrustDomain,
    pub trust: Arc<TrustStore>,
    pub server: rustls::ServerConfig,
}

/// Loads `[identity]`: the bundle's trust domain, the verifier, and the serving SVID.
pub fn load_identity(
    identity: &Identity,
    store: Arc<Store>,
) -> Result<LoadedIdentity, ChannelError> {
    let bad = |e: String| ChannelError::Identity(e);
    let provider = Arc::new(rustls::crypto::ring::default_provider());

    // The trust domain is the one every root of the bundle belongs to.
    let roots = edgeward_certs::pem_io::read_certificates(&identity.bundle)
        .map_err(|e| bad(e.to_string()))?;
    let mut domains = roots.iter().map(|der| {
        edgeward_certs::CertView::parse(der)
            .ok()
            .and_then(|v| edgeward_certs::profile::ca_trust_domain_of(&v))
    });
    let td = match domains.next().flatten() {
        Some(td) => td,
        None => {
            return Err(bad(format!(
                "`{}` does not start with a CA certificate of a trust domain",
                identity.bundle.display()
            )))
        }
    };
    if domains.any(|d| d.as_ref() != Some(&td)) {
        return Err(bad(format!(
            "`{}` mixes trust domains: the control plane serves one, `{td}`",
            identity.bundle.display()
        )));
    }

    // The verifier: the proxy's SPIFFE client verifier over this one trust domain.
    let cfg = TrustDomainConfig {
        name: td.clone(),
        bundle: identity.bundle.clone(),
        crls: identity.crls.clone(),
    };
    let material = TrustMaterial::load(&[cfg], &provider, 1).map_err(|e| bad(e.to_string()))?;
    let trust = Arc::new(TrustStore::new(material, provider.clone()));
    let verifier = Arc::new(RecordingVerifier {
        inner: SpiffeClientVerifier::new(trust.clone()),
        trust: trust.clone(),
        store,
    });

    // The serving SVID, checked as the node checks its own.
    let svid =
        NodeCert::load(&identity.cert, &identity.key, &provider).map_err(|e| bad(e.to_string()))?;
    if svid.id.trust_domain() != &td {
        return Err(bad(format!(
            "the control plane's certificate `{}` is of trust domain `{}`, the bundle of `{td}`",
            identity.cert.display(),
            svid.id.trust_domain()
        )));
    }
    let chain: Vec<CertificateDer<'static>> = svid
        .chain
        .iter()
        .cloned()
        .map(CertificateDer::from)
        .collect();
    let key = PrivateKeyDer::try_from(svid.key_der.clone()).map_err(|e| bad(e.to_string()))?;
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| bad(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| bad(e.to_string()))?;
    server.alpn_protocols = vec![protocol::ALPN.to_vec()];
    Ok(LoadedIdentity {
        trust_domain: td,
        trust,
        server,
    })
}

/// Binds the QUIC endpoint.
pub fn bind(addr: SocketAddr, tls: rustls::ServerConfig) -> Result<quinn::Endpoint, ChannelError> {
    let listen_err = |reason: String| ChannelError::Listen { addr, reason };
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| listen_err(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(1u8.into())
        .max_concurrent_uni_streams(0u8.into())
        .max_idle_timeout(Duration::from_secs(60).try_into().ok());
    config.transport_config(Arc::new(transport));
    quinn::Endpoint::server(config, addr).map_err(|e| listen_err(e.to_string()))
}

/// Accepts connections until the endpoint is closed.
pub async fn serve(endpoint: quinn::Endpoint, shared: Arc<Shared>) {
    while let Some(incoming) = endpoint.accept().await {
        let shared = shared.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            match incoming.await {
                Ok(conn) => session::run(conn, shared).await,
                Err(e) => {
                    tracing::debug!(peer.addr = %remote, error = %e, "control channel handshake failed");
                    Metrics::count(&shared.metrics.connections_refused, "handshake");
                }
            }
        });
    }
}

/// Closes every connection, telling nodes the control plane is going away.
pub fn shutdown(endpoint: &quinn::Endpoint) {
    endpoint.close(
        close::SHUTDOWN.into(),
        b"the control plane is shutting down",
    );
}

/// The proxy's verifier, plus an event in the store for each refused node certificate.
struct RecordingVerifier {
    inner: SpiffeClientVerifier,
    trust: Arc<TrustStore>,
    store: Arc<Store>,
}

impl std::fmt::Debug for RecordingVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordingVerifier")
    }
}

impl ClientCertVerifier for RecordingVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let result = self
            .inner
            .verify_client_cert(end_entity, intermediates, now);
        if result.is_err() {
            let reason = match self
                .trust
                .current()
                .verify_chain(end_entity, intermediates, now)
            {
                Err(r) => r,
                Ok(_) => "the certificate does not verify".into(),
            };
            tracing::info!(reason = ?reason, "refused a node certificate at the handshake");
            let at = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
            let message = format!("node certificate refused at the handshake: {reason}");
            if let Err(e) = self.store.event(at, None, "handshake-refused", &message) {
                tracing::error!(error = %e, "cannot record a refused handshake");
            }
        }
        result
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
