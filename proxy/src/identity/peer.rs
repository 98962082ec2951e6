//! The peer's certificate chain, captured at the end of each handshake (full or resumed) and
//! carried to every request of the connection in pingora's `SslDigest` extension.
//!
//! A connection keeps its chain for its whole life (the trust store re-checks it against
//! reloaded bundles and CRLs), and a service or device usually holds several connections at
//! once. Open connections that presented the same chain share one copy of it
//! ([`SharedChains`]); rustls and pingora keep their own copies per connection regardless.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::TlsRef;
use rustls::pki_types::CertificateDer;
use sha2::{Digest, Sha256};

/// What the handshake left for the HTTP layer.
#[derive(Debug, Clone)]
pub struct PeerCert {
    /// The chain the client presented (leaf first); empty on server-only TLS.
    pub chain: Arc<[CertificateDer<'static>]>,
    /// SHA-256 of the leaf, the key of the trust store's per-certificate answers (computed
    /// once per connection rather than per request).
    pub leaf_sha256: Option<[u8; 32]>,
    /// The negotiated protocol version, e.g. `TLSv1_3`.
    pub version: &'static str,
}

/// The handshake callbacks of TLS listeners.
#[derive(Default)]
pub struct PeerCallbacks {
    chains: Mutex<SharedChains>,
}

#[async_trait]
impl TlsAccept for PeerCallbacks {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        let presented = tls.peer_cert_chain_der().unwrap_or_default();
        let leaf_sha256: Option<[u8; 32]> = presented
            .first()
            .map(|leaf| Sha256::digest(leaf.as_ref()).into());
        let chain = match leaf_sha256 {
            Some(key) => match self.chains.lock() {
                Ok(mut chains) => chains.share(key, presented),
                Err(_) => Arc::from(presented),
            },
            None => Arc::from(presented),
        };
        let peer = PeerCert {
            chain,
            leaf_sha256,
            version: tls.version().unwrap_or_default(),
        };
        Some(Arc::new(peer))
    }
}

/// Below this many entries the table is never swept.
const SWEEP_FLOOR: usize = 64;

/// The chains of open connections, by the SHA-256 of their leaf. Entries do not keep a chain
/// alive: when its last connection closes the chain is freed, and the table drops the entry
/// at its next sweep (when it has doubled since the last one).
#[derive(Debug)]
pub struct SharedChains {
    by_leaf: HashMap<[u8; 32], Weak<[CertificateDer<'static>]>>,
    sweep_at: usize,
}

impl Default for SharedChains {
    fn default() -> Self {
        Self {
            by_leaf: HashMap::new(),
            sweep_at: SWEEP_FLOOR,
        }
    }
}

impl SharedChains {
    /// The copy of `presented` (whose leaf hashes to `leaf_sha256`) this connection keeps:
    /// another open connection's when it presented exactly the same chain, a new one
    /// otherwise. A chain with the same leaf and other intermediates is not shared.
    pub fn share(
        &mut self,
        leaf_sha256: [u8; 32],
        presented: &[CertificateDer<'static>],
    ) -> Arc<[CertificateDer<'static>]> {
        if let Some(open) = self.by_leaf.get(&leaf_sha256).and_then(Weak::upgrade) {
            if *open == *presented {
                return open;
            }
            return Arc::from(presented);
        }
        if self.by_leaf.len() >= self.sweep_at {
            self.by_leaf.retain(|_, chain| chain.strong_count() > 0);
            self.sweep_at = (2 * self.by_leaf.len()).max(SWEEP_FLOOR);
        }
        let chain: Arc<[CertificateDer<'static>]> = Arc::from(presented);
        self.by_leaf.insert(leaf_sha256, Arc::downgrade(&chain));
        chain
    }

    /// Entries in the table, live or not yet swept.
    pub fn len(&self) -> usize {
        self.by_leaf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_leaf.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(bytes: &[u8]) -> CertificateDer<'static> {
        CertificateDer::from(bytes.to_vec())
    }

    fn key(n: u8) -> [u8; 32] {
        [n; 32]
    }

    #[test]
    fn open_connections_with_the_same_chain_share_one_copy() {
        let mut chains = SharedChains::default();
        let presented = [cert(b"leaf"), cert(b"site ca")];
        let a = chains.share(key(1), &presented);
        let b = chains.share(key(1), &presented);
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(&*a, &presented[..]);
    }

    #[test]
    fn the_same_leaf_with_other_intermediates_gets_its_own_copy() {
        let mut chains = SharedChains::default();
        let a = chains.share(key(1), &[cert(b"leaf"), cert(b"site ca")]);
        let other = [cert(b"leaf"), cert(b"another ca")];
        let b = chains.share(key(1), &other);
        assert!(!Arc::ptr_eq(&a, &b));
        assert_eq!(&*b, &other[..]);
        // The first chain stays the shared one.
        let c = chains.share(key(1), &[cert(b"leaf"), cert(b"site ca")]);
        assert!(Arc::ptr_eq(&a, &c));
    }

    #[test]
    fn a_chain_is_freed_with_its_last_connection_and_its_entry_swept() {
        let mut chains = SharedChains::default();
        let first = chains.share(key(0), &[cert(b"first")]);
        let weak = Arc::downgrade(&first);
        drop(first);
        assert!(
            weak.upgrade().is_none(),
            "the table must not keep a chain alive"
        );
        // A closed chain presented again is a new copy.
        let again = chains.share(key(0), &[cert(b"first")]);
        assert_eq!(&*again, &[cert(b"first")][..]);
        drop(again);
        // Filling the table to its sweep point keeps the closed entry until the next insert,
        // which sweeps it.
        let open: Vec<_> = (1..SWEEP_FLOOR as u8)
            .map(|n| chains.share(key(n), &[cert(&[n])]))
            .collect();
        assert_eq!(chains.len(), SWEEP_FLOOR);
        let _late = chains.share(key(200), &[cert(b"late")]);
        assert_eq!(chains.len(), SWEEP_FLOOR, "key 0 swept, key 200 added");
        assert!(open.iter().all(|c| c.len() == 1));
        drop(open);
    }
}
