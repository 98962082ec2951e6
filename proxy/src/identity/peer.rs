//! The peer's certificate chain, captured at the end of each handshake (full or resumed) and
//! carried to every request of the connection in pingora's `SslDigest` extension.

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::TlsRef;
use rustls::pki_types::CertificateDer;
use sha2::{Digest, Sha256};

/// What the handshake left for the HTTP layer.
#[derive(Debug, Clone)]
pub struct PeerCert {
    /// The chain the client presented (leaf first); empty on server-only TLS.
    pub chain: Vec<CertificateDer<'static>>,
    /// SHA-256 of the leaf, the key of the trust store's per-certificate answers (computed
    /// once per connection rather than per request).
    pub leaf_sha256: Option<[u8; 32]>,
    /// The negotiated protocol version, e.g. `TLSv1_3`.
    pub version: &'static str,
}

/// The handshake callbacks of TLS listeners.
pub struct PeerCallbacks;

#[async_trait]
impl TlsAccept for PeerCallbacks {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        let chain = tls
            .peer_cert_chain_der()
            .map(|c| c.to_vec())
            .unwrap_or_default();
        let leaf_sha256 = chain
            .first()
            .map(|leaf| Sha256::digest(leaf.as_ref()).into());
        let peer = PeerCert {
            chain,
            leaf_sha256,
            version: tls.version().unwrap_or_default(),
        };
        Some(Arc::new(peer))
    }
}
