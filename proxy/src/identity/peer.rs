//! The peer's certificate chain, captured at the end of each handshake (full or resumed) and
//! carried to every request of the connection in pingora's `SslDigest` extension.

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::TlsRef;
use rustls::pki_types::CertificateDer;

/// What the handshake left for the HTTP layer.
#[derive(Debug, Clone)]
pub struct PeerCert {
    /// The chain the client presented (leaf first); empty on server-only TLS.
    pub chain: Vec<CertificateDer<'static>>,
    /// The negotiated protocol version, e.g. `TLSv1_3`.
    pub version: String,
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
        let peer = PeerCert {
            chain,
            version: tls.version().unwrap_or_default().to_owned(),
        };
        Some(Arc::new(peer))
    }
}
