//! The node's own SVID: served on TLS listeners, presented to mTLS upstreams, and swapped in
//! place when its files change, so a rotated certificate is served without a restart.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use edgeward_certs::{pem_io, profile, CertView, SpiffeId};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::InconsistentKeys;

use super::IdentityError;

/// One loaded certificate and key of the node (or of the control plane, which loads its own
/// the same way, from an `[identity]` section with the same keys).
pub struct NodeCert {
    pub id: SpiffeId,
    pub leaf: CertView,
    /// The chain as DER (leaf first).
    pub chain: Vec<Vec<u8>>,
    /// The key as PKCS#8 DER (for pingora's upstream client certificate).
    pub key_der: Vec<u8>,
    pub certified: Arc<CertifiedKey>,
}

impl NodeCert {
    /// Loads and checks the node's chain and key: an SVID leaf, and a key that matches it.
    pub fn load(
        cert_path: &Path,
        key_path: &Path,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Self, IdentityError> {
        // Each error names the config key and the file, and says what to do where it can.
        let cert_err = |reason: String| IdentityError::File {
            key: "identity.cert",
            path: cert_path.to_path_buf(),
            reason,
        };
        let key_err = |reason: String| IdentityError::File {
            key: "identity.key",
            path: key_path.to_path_buf(),
            reason,
        };
        let chain = pem_io::read_certificates(cert_path).map_err(|e| cert_err(pem_reason(&e)))?;
        let leaf = CertView::parse(&chain[0]).map_err(|e| cert_err(e.to_string()))?;
        let id = profile::check_leaf(&leaf).map_err(|e| {
            cert_err(format!(
                "the certificate {e}: issue one with `edgeward cert issue`"
            ))
        })?;
        let key_der = pem_io::read_private_key(key_path).map_err(|e| key_err(pem_reason(&e)))?;
        let unusable = |e: &dyn std::fmt::Display| {
            key_err(format!(
                "cannot be used as a key: {e}: give the key `edgeward cert issue` wrote \
                 (`NAME.key`, PKCS#8)"
            ))
        };
        let private = PrivateKeyDer::try_from(key_der.clone()).map_err(|e| unusable(&e))?;
        let signing = provider
            .key_provider
            .load_private_key(private)
            .map_err(|e| unusable(&e))?;

        // The key must be the certificate's: compared by public key, as rustls does. A key
        // whose public half rustls cannot tell is taken, as rustls takes it.
        let certs: Vec<CertificateDer<'static>> =
            chain.iter().cloned().map(CertificateDer::from).collect();
        let certified = CertifiedKey::new(certs, signing);
        match certified.keys_match() {
            Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => {}
            Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
                return Err(key_err(format!(
                    "is not the key of the certificate `{}`: give the key it was issued \
                     with (`edgeward cert issue` writes it beside the certificate)",
                    cert_path.display()
                )))
            }
            Err(e) => return Err(cert_err(format!("cannot be checked against its key: {e}"))),
        }
        Ok(Self {
            id,
            leaf,
            chain,
            key_der,
            certified: Arc::new(certified),
        })
    }

    /// The client certificate pingora presents to mTLS upstreams.
    pub fn pingora_cert_key(&self) -> pingora::utils::tls::CertKey {
        pingora::utils::tls::CertKey::new(self.chain.clone(), self.key_der.clone())
    }
}

/// A PEM error without the path, which [`IdentityError::File`] names already, and what to do
/// about it.
fn pem_reason(e: &pem_io::PemError) -> String {
    use edgeward_certs::files::FileError;
    use pem_io::PemError;
    match e {
        PemError::File(FileError::Read { error, .. }) => format!(
            "cannot be read: {error}: check the path (a relative one is taken from the config \
             file's folder) and that the node may read it"
        ),
        PemError::File(other) => other.to_string(),
        PemError::Content { problem, .. } => format!(
            "{problem}: give the files `edgeward cert issue` wrote: `NAME.crt` for \
             `identity.cert`, `NAME.key` for `identity.key`"
        ),
    }
}

/// The serving certificate, swapped atomically.
pub struct ServingCert {
    current: ArcSwap<NodeCert>,
}

impl ServingCert {
    /// Serves `cert`.
    pub fn new(cert: NodeCert) -> Self {
        Self {
            current: ArcSwap::from_pointee(cert),
        }
    }

    /// Replaces the certificate; new handshakes use it, open connections keep theirs.
    pub fn replace(&self, cert: NodeCert) {
        self.current.store(Arc::new(cert));
    }

    /// The certificate in use now.
    pub fn current(&self) -> Arc<NodeCert> {
        self.current.load_full()
    }
}

/// A rustls resolver over the shared serving certificate.
pub struct Resolver(pub Arc<ServingCert>);

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServingCertResolver")
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current().certified.clone())
    }
}
