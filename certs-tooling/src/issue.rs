//! Leaf SVIDs: issued directly with a new key, or signed from a device's CSR so that the
//! device's key never leaves it.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::Rng;
use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose, PublicKeyData,
    SanType, SerialNumber, SignatureAlgorithm,
};
use time::OffsetDateTime;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509CertificationRequest};

use crate::ca::{clamp, truncate, Ca, KeyAlg, CLOCK_SKEW};
use crate::cert::KeyType;
use crate::files::{Output, Secrecy};
use crate::pem_io::{self, Kind};
use crate::spiffe::SpiffeId;
use crate::PkiError;

/// What a leaf carries besides its SPIFFE ID.
#[derive(Debug, Clone, Default)]
pub struct ExtraSans {
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
}

/// What a new leaf is for: its identity, extra names, lifetime and the time of issue.
pub struct LeafRequest<'a> {
    pub id: &'a SpiffeId,
    pub sans: &'a ExtraSans,
    pub ttl: Duration,
    pub now: OffsetDateTime,
}

/// A signed leaf: the PEM chain to write and whether its lifetime was cut to the CA's.
pub struct SignedLeaf {
    pub chain_pem: String,
    pub clamped: bool,
    pub not_after: OffsetDateTime,
}

/// A random, positive serial of 127 bits (RFC 5280 section 4.1.2.2 allows up to 20 octets;
/// CA/B Forum asks for at least 64 bits of randomness). Never derived from the key.
pub fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::rng().fill(&mut bytes);
    // Positive, and with a fixed length so the DER encoding never needs a padding byte.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

/// Checks that `ca` may issue `id`: same trust domain, inside its path prefix.
pub fn check_may_issue(ca: &Ca, id: &SpiffeId) -> Result<(), PkiError> {
    if id.trust_domain() != &ca.trust_domain {
        return Err(PkiError::OtherTrustDomain {
            id: id.to_string(),
            id_td: id.trust_domain().to_string(),
            ca_td: ca.trust_domain.to_string(),
        });
    }
    if let Some(prefix) = ca.path_prefix()? {
        if !id.is_under(&prefix) {
            return Err(PkiError::OutsidePrefix {
                id: id.to_string(),
                prefix: prefix.to_string(),
            });
        }
    }
    Ok(())
}

/// Signs a leaf for `id` over `public_key` with `ca`.
pub fn sign_leaf(
    ca: &Ca,
    req: &LeafRequest<'_>,
    public_key: &impl PublicKeyData,
) -> Result<SignedLeaf, PkiError> {
    let LeafRequest { id, sans, ttl, now } = *req;
    check_may_issue(ca, id)?;
    let crypto = |e: rcgen::Error| PkiError::Crypto(e.to_string());

    // Profile: one URI SAN, CA:FALSE, critical keyUsage digitalSignature, both auth EKUs.
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, id.trust_domain().as_str());
    let cn = id.segments().last().unwrap_or("svid");
    params
        .distinguished_name
        .push(DnType::CommonName, truncate(cn, 64));
    params.subject_alt_names = vec![SanType::URI(id.to_string().try_into().map_err(crypto)?)];
    for d in &sans.dns {
        let name = d
            .clone()
            .try_into()
            .map_err(|_| PkiError::BadSan(d.clone()))?;
        params.subject_alt_names.push(SanType::DnsName(name));
    }
    for ip in &sans.ips {
        params.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial());
    params.not_before = now - CLOCK_SKEW;
    let (not_after, clamped) = clamp(now + ttl, ca.cert.not_after);
    params.not_after = not_after;

    let cert = params
        .signed_by(public_key, &ca.issuer()?)
        .map_err(crypto)?;
    let mut chain_pem = cert.pem();
    chain_pem.push_str(&pem_io::encode(
        "CERTIFICATE",
        &ca.issuing_chain_without_root(),
    ));
    Ok(SignedLeaf {
        chain_pem,
        clamped,
        not_after,
    })
}

/// `cert issue`: a new key and its leaf, written as `PREFIX.crt` and `PREFIX.key`.
pub fn issue(
    ca: &Ca,
    req: &LeafRequest<'_>,
    key_alg: KeyAlg,
    out_prefix: &Path,
    force: bool,
) -> Result<(Vec<PathBuf>, SignedLeaf), PkiError> {
    let (crt, key_path) = (with_ext(out_prefix, "crt"), with_ext(out_prefix, "key"));
    let mut out = Output::new(force);
    out.check_absent(&crt)?;
    out.check_absent(&key_path)?;
    let key = key_alg.generate()?;
    let leaf = sign_leaf(ca, req, &key)?;
    out.stage(&key_path, key.serialize_pem().as_bytes(), Secrecy::Secret)?;
    out.stage(&crt, leaf.chain_pem.as_bytes(), Secrecy::Public)?;
    Ok((out.commit()?, leaf))
}

/// `cert csr`: a new key and a CSR for `id`, written as `PREFIX.csr` and `PREFIX.key`.
pub fn create_csr(
    id: &SpiffeId,
    sans: &ExtraSans,
    key_alg: KeyAlg,
    out_prefix: &Path,
    force: bool,
) -> Result<Vec<PathBuf>, PkiError> {
    let (csr_path, key_path) = (with_ext(out_prefix, "csr"), with_ext(out_prefix, "key"));
    let mut out = Output::new(force);
    out.check_absent(&csr_path)?;
    out.check_absent(&key_path)?;
    let crypto = |e: rcgen::Error| PkiError::Crypto(e.to_string());
    let key = key_alg.generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.subject_alt_names = vec![SanType::URI(id.to_string().try_into().map_err(crypto)?)];
    for d in &sans.dns {
        let name = d
            .clone()
            .try_into()
            .map_err(|_| PkiError::BadSan(d.clone()))?;
        params.subject_alt_names.push(SanType::DnsName(name));
    }
    for ip in &sans.ips {
        params.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    let csr = params.serialize_request(&key).map_err(crypto)?;
    out.stage(&key_path, key.serialize_pem().as_bytes(), Secrecy::Secret)?;
    out.stage(
        &csr_path,
        csr.pem().map_err(crypto)?.as_bytes(),
        Secrecy::Public,
    )?;
    Ok(out.commit()?)
}

/// What `cert sign` takes from a CSR: the SPIFFE ID, extra SANs and the public key. Anything
/// else the CSR asks for (a CA flag, key usages, other extensions) is ignored.
pub struct CsrRequest {
    pub id: SpiffeId,
    pub sans: ExtraSans,
    pub key: CsrPublicKey,
}

/// A public key taken from a CSR whose signature was verified.
pub struct CsrPublicKey {
    raw: Vec<u8>,
    alg: &'static SignatureAlgorithm,
}

impl PublicKeyData for CsrPublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.raw
    }
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.alg
    }
}

/// Reads a CSR file, verifies its signature and extracts what a leaf may take from it.
pub fn read_csr(path: &Path) -> Result<CsrRequest, PkiError> {
    let bad = |reason: String| PkiError::BadCsr {
        path: path.to_path_buf(),
        reason,
    };
    let blocks = pem_io::read_blocks(path, Kind::Csr)?;
    let [der] = blocks.as_slice() else {
        return Err(bad(format!(
            "holds {} requests, expected one",
            blocks.len()
        )));
    };
    let (_, csr) =
        X509CertificationRequest::from_der(der).map_err(|e| bad(format!("does not parse: {e}")))?;
    csr.verify_signature().map_err(|_| {
        bad("its signature does not verify: it was altered or not signed by its key".into())
    })?;

    // The key: only algorithms we issue for.
    let spki = &csr.certification_request_info.subject_pki;
    let alg: &'static SignatureAlgorithm = match KeyType::from_spki(spki) {
        KeyType::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        KeyType::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        KeyType::Ed25519 => &rcgen::PKCS_ED25519,
        other => {
            return Err(bad(format!(
                "its key type ({}) is not supported: use P-256, P-384 or Ed25519",
                other.name()
            )))
        }
    };

    // The names.
    let mut uris = Vec::new();
    let mut sans = ExtraSans::default();
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for name in &san.general_names {
                match name {
                    GeneralName::URI(u) => uris.push((*u).to_owned()),
                    GeneralName::DNSName(d) => sans.dns.push((*d).to_owned()),
                    GeneralName::IPAddress(b) => match b.len() {
                        4 => sans.ips.push(IpAddr::from(
                            <[u8; 4]>::try_from(*b)
                                .map_err(|_| bad("has a malformed IP address SAN".into()))?,
                        )),
                        16 => sans.ips.push(IpAddr::from(
                            <[u8; 16]>::try_from(*b)
                                .map_err(|_| bad("has a malformed IP address SAN".into()))?,
                        )),
                        _ => return Err(bad("has a malformed IP address SAN".into())),
                    },
                    _ => {}
                }
            }
        }
    }
    let uri = match uris.as_slice() {
        [one] => one,
        [] => return Err(bad("has no URI SAN: put the SPIFFE ID in one".into())),
        many => {
            return Err(bad(format!(
                "has {} URI SANs: an SVID carries exactly one SPIFFE ID",
                many.len()
            )))
        }
    };
    let id = SpiffeId::parse(uri).map_err(|e| {
        bad(format!(
            "its URI SAN `{uri}` is not a valid SPIFFE ID: it {e}"
        ))
    })?;
    Ok(CsrRequest {
        id,
        sans,
        key: CsrPublicKey {
            raw: spki.subject_public_key.data.to_vec(),
            alg,
        },
    })
}

/// Appends `.ext` to a prefix path (`out/device` → `out/device.crt`).
pub fn with_ext(prefix: &Path, ext: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}
