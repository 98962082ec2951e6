//! Upstream identity: the SPIFFE ID an mTLS upstream must present.
//!
//! pingora verifies an upstream's chain against the trust domain's roots but has no hook to
//! read its URI SAN, and its per-peer TLS setup replaces any custom verifier. So the check is
//! split: pingora proves the chain and key possession, and this module proves that a leaf with
//! that exact SHA-256 carries the configured SPIFFE ID, by a probe handshake of its own with a
//! verifier that checks chain, profile and ID. Results are remembered per leaf hash, so only a
//! new upstream certificate costs a probe.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edgeward_certs::{profile, CertView, SpiffeId};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::identity::NodeCert;

/// The most remembered upstream leaves; cleared when full.
const PIN_LIMIT: usize = 4_096;

/// Leaf hashes proven to carry a SPIFFE ID.
#[derive(Default)]
pub struct UpstreamPins {
    known: Mutex<HashMap<Vec<u8>, SpiffeId>>,
}

impl UpstreamPins {
    /// Whether the leaf with `hash` was proven to be `expected`.
    pub fn is_known(&self, hash: &[u8], expected: &SpiffeId) -> bool {
        self.known
            .lock()
            .map(|k| k.get(hash) == Some(expected))
            .unwrap_or(false)
    }

    /// Checks that the leaf with `hash` (as pingora's digest reports it) is `expected`,
    /// probing the upstream when this leaf was not seen before.
    pub async fn check(
        &self,
        hash: &[u8],
        expected: &SpiffeId,
        probe: Probe<'_>,
    ) -> Result<(), String> {
        if self.is_known(hash, expected) {
            return Ok(());
        }
        let (leaf_hash, id) = probe.run(expected).await?;
        if let Ok(mut k) = self.known.lock() {
            if k.len() >= PIN_LIMIT {
                k.clear();
            }
            k.insert(leaf_hash.clone(), id);
        }
        if leaf_hash == hash {
            Ok(())
        } else {
            Err("the upstream presented a certificate other than the one its probe verified".into())
        }
    }
}

/// Where and how to probe an upstream.
pub struct Probe<'a> {
    pub addr: SocketAddr,
    pub sni: &'a str,
    pub roots: Vec<CertificateDer<'static>>,
    pub node: &'a NodeCert,
    pub provider: Arc<CryptoProvider>,
    pub timeout: Duration,
}

impl Probe<'_> {
    /// Connects, handshakes with a verifier that insists on `expected`, and returns the hash
    /// of the leaf the upstream presented.
    async fn run(&self, expected: &SpiffeId) -> Result<(Vec<u8>, SpiffeId), String> {
        let verifier = Arc::new(IdVerifier::new(
            "upstream",
            self.roots.clone(),
            expected.clone(),
            self.provider.clone(),
        ));
        let certs: Vec<CertificateDer<'static>> = self
            .node
            .chain
            .iter()
            .cloned()
            .map(CertificateDer::from)
            .collect();
        let key = rustls::pki_types::PrivateKeyDer::try_from(self.node.key_der.clone())
            .map_err(|e| e.to_string())?;
        let config = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(certs, key)
            .map_err(|e| e.to_string())?;
        let name = ServerName::try_from(self.sni.to_owned()).map_err(|e| e.to_string())?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));

        let attempt = async {
            let tcp = tokio::net::TcpStream::connect(self.addr)
                .await
                .map_err(|e| format!("probe connect to {}: {e}", self.addr))?;
            let tls = connector
                .connect(name, tcp)
                .await
                .map_err(|e| format!("upstream identity check failed: {e}"))?;
            let (_, conn) = tls.get_ref();
            let leaf = conn
                .peer_certificates()
                .and_then(|c| c.first())
                .ok_or("the upstream presented no certificate")?;
            Ok::<_, String>(Sha256::digest(leaf.as_ref()).to_vec())
        };
        let hash = tokio::time::timeout(self.timeout, attempt)
            .await
            .map_err(|_| format!("probe of {} timed out", self.addr))??;
        Ok((hash, expected.clone()))
    }
}

/// Verifies a server's chain to its trust domain's roots and that its SPIFFE ID is the one
/// configured (an mTLS upstream, the control plane). Host names play no part: the SPIFFE ID is
/// the identity.
pub struct IdVerifier {
    /// What the server is, for errors: `upstream`, `control plane`.
    role: &'static str,
    roots: Vec<CertificateDer<'static>>,
    expected: SpiffeId,
    provider: Arc<CryptoProvider>,
}

impl IdVerifier {
    pub fn new(
        role: &'static str,
        roots: Vec<CertificateDer<'static>>,
        expected: SpiffeId,
        provider: Arc<CryptoProvider>,
    ) -> Self {
        Self {
            role,
            roots,
            expected,
            provider,
        }
    }
}

impl std::fmt::Debug for IdVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IdVerifier({})", self.expected)
    }
}

impl ServerCertVerifier for IdVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let fail = |m: String| rustls::Error::General(m);
        let view = CertView::parse(end_entity).map_err(|e| fail(e.to_string()))?;
        let id = profile::check_leaf(&view)
            .map_err(|e| fail(format!("{} certificate {e}", self.role)))?;
        if id != self.expected {
            return Err(fail(format!(
                "{} presented `{id}`, expected `{}`",
                self.role, self.expected
            )));
        }
        let anchors = self
            .roots
            .iter()
            .map(|r| webpki::anchor_from_trusted_cert(r).map(|a| a.to_owned()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| fail(format!("{e:?}")))?;
        let ee = webpki::EndEntityCert::try_from(end_entity).map_err(|e| fail(format!("{e:?}")))?;
        ee.verify_for_usage(
            self.provider.signature_verification_algorithms.all,
            &anchors,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .map_err(|e| fail(format!("{} chain: {e:?}", self.role)))?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
