//! Trust material: per trust domain, its root bundle and CRLs, and a client certificate verifier
//! that picks the bundle by the trust domain named in the certificate's SPIFFE ID.
//!
//! rustls' `WebPkiClientVerifier` checks the chain, validity and revocation; this module adds
//! what it does not (X509-SVID section 5): exactly one URI SAN, a valid SPIFFE ID, a leaf that
//! is not a CA, and the ID's trust domain equal to the domain whose bundle validated the chain.
//! Choosing the verifier by the ID's trust domain makes the last rule hold by construction.
//!
//! A session resumed after a reload skips the handshake's verification, so every request
//! re-checks its peer chain against the current material ([`TrustStore::check`]); the answer is
//! cached per certificate and trust generation, so the common case is one hash lookup.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use edgeward_certs::{pem_io, profile, CertView, SpiffeId, TrustDomain};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

use super::{IdentityError, PeerCert};
use crate::config::TrustDomainConfig;

/// The most verification results kept; the cache is cleared when it is full.
const CACHE_LIMIT: usize = 16_384;

/// One trust domain's bundle and CRLs, ready to verify.
struct DomainTrust {
    td: TrustDomain,
    verifier: Arc<dyn ClientCertVerifier>,
    roots: Vec<CertificateDer<'static>>,
}

/// All trust domains at one point in time.
pub struct TrustMaterial {
    domains: Vec<DomainTrust>,
    /// Increases on every successful reload.
    pub generation: u64,
    /// Root certificates of every domain, for upstream TLS.
    pub all_roots: Vec<CertificateDer<'static>>,
    /// Expiry facts of every bundle certificate, for metrics: (name, notAfter unix).
    pub expiries: Vec<(String, i64)>,
}

impl TrustMaterial {
    /// Loads every trust domain's bundle and CRLs. Any bad file refuses the whole set.
    pub fn load(
        configs: &[TrustDomainConfig],
        provider: &Arc<CryptoProvider>,
        generation: u64,
    ) -> Result<Self, IdentityError> {
        let mut domains = Vec::new();
        let mut all_roots = Vec::new();
        let mut expiries = Vec::new();
        for (i, cfg) in configs.iter().enumerate() {
            let bad_at = |key: String, reason: String| IdentityError::Bundle {
                key,
                td: cfg.name.to_string(),
                reason,
            };
            let bad = |reason: String| bad_at(format!("trust_domains[{i}].bundle"), reason);

            // The bundle: every certificate must be a CA of this trust domain.
            let ders = pem_io::read_certificates(&cfg.bundle).map_err(|e| bad(e.to_string()))?;
            let mut store = RootCertStore::empty();
            let mut roots = Vec::new();
            for der in ders {
                let view = CertView::parse(&der).map_err(|e| bad(e.to_string()))?;
                match profile::ca_trust_domain_of(&view) {
                    Some(td) if td == cfg.name => {}
                    other => {
                        return Err(bad(format!(
                            "bundle `{}` holds a certificate of trust domain `{}`",
                            cfg.bundle.display(),
                            other
                                .map(|t| t.to_string())
                                .unwrap_or_else(|| "none".into())
                        )))
                    }
                }
                expiries.push((
                    format!("bundle:{}:{}", cfg.name, view.serial),
                    view.not_after.unix_timestamp(),
                ));
                let der = CertificateDer::from(der);
                store.add(der.clone()).map_err(|e| bad(e.to_string()))?;
                roots.push(der.clone());
                all_roots.push(der);
            }

            // CRLs.
            let mut crls = Vec::new();
            for (j, path) in cfg.crls.iter().enumerate() {
                let bad = |reason: String| bad_at(format!("trust_domains[{i}].crls[{j}]"), reason);
                let blocks =
                    pem_io::read_blocks(path, pem_io::Kind::Crl).map_err(|e| bad(e.to_string()))?;
                for b in blocks {
                    webpki::OwnedCertRevocationList::from_der(&b).map_err(|e| {
                        bad(format!("CRL `{}` does not parse: {e:?}", path.display()))
                    })?;
                    crls.push(CertificateRevocationListDer::from(b));
                }
            }

            // CRLs exist for the site CAs; a CA without one (the root) is allowed unknown status.
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider.clone())
                    .with_crls(crls)
                    .allow_unknown_revocation_status()
                    .build()
                    .map_err(|e| bad(e.to_string()))?;
            domains.push(DomainTrust {
                td: cfg.name.clone(),
                verifier,
                roots,
            });
        }
        Ok(Self {
            domains,
            generation,
            all_roots,
            expiries,
        })
    }

    /// Roots of one trust domain.
    pub fn roots_of(&self, td: &TrustDomain) -> Option<&[CertificateDer<'static>]> {
        self.domains
            .iter()
            .find(|d| &d.td == td)
            .map(|d| d.roots.as_slice())
    }

    /// Verifies a client chain: SVID profile, then the chain to the bundle of the ID's trust
    /// domain, with that domain's CRLs.
    pub fn verify_chain(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<SpiffeId, String> {
        let view = CertView::parse(end_entity).map_err(|e| format!("certificate {e}"))?;
        let id = profile::check_leaf(&view).map_err(|e| format!("certificate {e}"))?;
        let domain = self
            .domains
            .iter()
            .find(|d| &d.td == id.trust_domain())
            .ok_or_else(|| format!("trust domain `{}` is not trusted here", id.trust_domain()))?;
        domain
            .verifier
            .verify_client_cert(end_entity, intermediates, now)
            .map_err(|e| e.to_string())?;
        Ok(id)
    }
}

/// A verification result, valid for one trust generation.
#[derive(Clone)]
struct Cached {
    generation: u64,
    result: Result<SpiffeId, String>,
    not_after: i64,
}

/// The current trust material, swapped atomically on reload, and the verification cache.
pub struct TrustStore {
    current: ArcSwap<TrustMaterial>,
    next_generation: AtomicU64,
    cache: Mutex<HashMap<[u8; 32], Cached>>,
    provider: Arc<CryptoProvider>,
}

impl TrustStore {
    /// A store holding `material`.
    pub fn new(material: TrustMaterial, provider: Arc<CryptoProvider>) -> Self {
        let next = material.generation + 1;
        Self {
            current: ArcSwap::from_pointee(material),
            next_generation: AtomicU64::new(next),
            cache: Mutex::new(HashMap::new()),
            provider,
        }
    }

    /// Loads new material; on error the old material stays in force.
    pub fn reload(&self, configs: &[TrustDomainConfig]) -> Result<u64, IdentityError> {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let material = TrustMaterial::load(configs, &self.provider, generation)?;
        self.current.store(Arc::new(material));
        Ok(generation)
    }

    /// The material in force now.
    pub fn current(&self) -> Arc<TrustMaterial> {
        self.current.load_full()
    }

    /// The crypto provider everything is verified with.
    pub fn provider(&self) -> &Arc<CryptoProvider> {
        &self.provider
    }

    /// Checks a peer chain against the current material at `now_unix`: the per-request check
    /// that closes the session-resumption gap after a revocation or a bundle change.
    pub fn check(
        &self,
        chain: &[CertificateDer<'static>],
        now_unix: i64,
    ) -> Result<SpiffeId, String> {
        let leaf = chain.first().ok_or("no client certificate")?;
        self.check_keyed(chain, Sha256::digest(leaf.as_ref()).into(), now_unix)
    }

    /// [`TrustStore::check`] of the chain a connection's handshake captured, whose leaf hash
    /// was computed then.
    pub fn check_peer(&self, peer: &PeerCert, now_unix: i64) -> Result<SpiffeId, String> {
        match peer.leaf_sha256 {
            Some(key) if !peer.chain.is_empty() => self.check_keyed(&peer.chain, key, now_unix),
            _ => Err("no client certificate".into()),
        }
    }

    fn check_keyed(
        &self,
        chain: &[CertificateDer<'static>],
        key: [u8; 32],
        now_unix: i64,
    ) -> Result<SpiffeId, String> {
        let leaf = &chain[0];
        let material = self.current();

        // The common case: this certificate was verified under the current generation.
        if let Ok(cache) = self.cache.lock() {
            if let Some(c) = cache.get(&key) {
                if c.generation == material.generation {
                    if now_unix > c.not_after {
                        return Err("certificate expired".into());
                    }
                    return c.result.clone();
                }
            }
        }

        // Otherwise verify again and remember the answer.
        let secs = u64::try_from(now_unix).unwrap_or(0);
        let now = UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs));
        let result = material.verify_chain(leaf, &chain[1..], now);
        let not_after = CertView::parse(leaf)
            .map(|v| v.not_after.unix_timestamp())
            .unwrap_or(i64::MIN);
        self.remember(key, material.generation, result.clone(), not_after);
        result
    }

    fn remember(
        &self,
        key: [u8; 32],
        generation: u64,
        result: Result<SpiffeId, String>,
        not_after: i64,
    ) {
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(
                key,
                Cached {
                    generation,
                    result,
                    not_after,
                },
            );
        }
    }
}

/// The rustls client certificate verifier of `mtls` listeners.
pub struct SpiffeClientVerifier {
    store: Arc<TrustStore>,
}

impl SpiffeClientVerifier {
    /// A verifier reading the store's current material at each handshake.
    pub fn new(store: Arc<TrustStore>) -> Self {
        Self { store }
    }
}

impl std::fmt::Debug for SpiffeClientVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SpiffeClientVerifier")
    }
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hints: several trust domains may be trusted, and clients hold one SVID anyway.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let material = self.store.current();
        let result = material.verify_chain(end_entity, intermediates, now);
        let key: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        let not_after = CertView::parse(end_entity)
            .map(|v| v.not_after.unix_timestamp())
            .unwrap_or(i64::MIN);
        self.store
            .remember(key, material.generation, result.clone(), not_after);
        match result {
            Ok(id) => {
                tracing::debug!(peer.id = %id, "client certificate verified");
                Ok(ClientCertVerified::assertion())
            }
            Err(reason) => {
                tracing::debug!(reason = %reason, "client certificate refused");
                Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::ApplicationVerificationFailure,
                ))
            }
        }
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
            &self.store.provider.signature_verification_algorithms,
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
            &self.store.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.store
            .provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
