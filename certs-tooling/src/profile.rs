//! The SPIFFE X.509-SVID profile (X509-SVID.md, sections 4 and 5), checked on parsed
//! certificates. These are the checks a TLS library does not do for us.

use crate::cert::CertView;
use crate::spiffe::{SpiffeId, SpiffeIdError, TrustDomain};

/// Which rule of the SVID profile a certificate breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    #[error("has no URI SAN: an SVID carries its SPIFFE ID as exactly one URI SAN")]
    NoUriSan,
    #[error("has {0} URI SANs: an SVID carries exactly one")]
    SeveralUriSans(usize),
    #[error("URI SAN `{uri}` is not a valid SPIFFE ID: it {reason}")]
    BadSpiffeId { uri: String, reason: SpiffeIdError },
    #[error("is a CA certificate (basicConstraints CA:TRUE) where a leaf was expected")]
    LeafIsCa,
    #[error("has no keyUsage extension")]
    NoKeyUsage,
    #[error("keyUsage is not marked critical")]
    KeyUsageNotCritical,
    #[error("keyUsage lacks digitalSignature")]
    NoDigitalSignature,
    #[error("a leaf must not assert keyCertSign or cRLSign")]
    LeafSignsCertificates,
    #[error("is not a CA certificate (basicConstraints CA:TRUE, critical, is required)")]
    NotCa,
    #[error("keyUsage of a CA must include keyCertSign and cRLSign")]
    CaKeyUsage,
    #[error("a CA's SPIFFE ID must have no path, found `{0}`")]
    CaIdHasPath(String),
}

/// Checks a leaf SVID and returns its SPIFFE ID.
pub fn check_leaf(cert: &CertView) -> Result<SpiffeId, ProfileError> {
    let id = single_spiffe_uri(cert)?;
    let id = SpiffeId::parse(id).map_err(|reason| ProfileError::BadSpiffeId {
        uri: id.to_owned(),
        reason,
    })?;
    if cert.is_ca() {
        return Err(ProfileError::LeafIsCa);
    }
    let ku = &cert.key_usage;
    if !ku.present {
        return Err(ProfileError::NoKeyUsage);
    }
    if !ku.critical {
        return Err(ProfileError::KeyUsageNotCritical);
    }
    if !ku.digital_signature {
        return Err(ProfileError::NoDigitalSignature);
    }
    if ku.key_cert_sign || ku.crl_sign {
        return Err(ProfileError::LeafSignsCertificates);
    }
    Ok(id)
}

/// Checks a signing certificate (root or intermediate) and returns its trust domain.
pub fn check_ca(cert: &CertView) -> Result<TrustDomain, ProfileError> {
    if !cert.is_ca() || !cert.basic_constraints_critical {
        return Err(ProfileError::NotCa);
    }
    if !(cert.key_usage.key_cert_sign && cert.key_usage.crl_sign) {
        return Err(ProfileError::CaKeyUsage);
    }
    let uri = single_spiffe_uri(cert)?;
    ca_trust_domain(uri)
}

/// The trust domain a CA certificate names, if it carries a well-formed `spiffe://td` URI SAN.
pub fn ca_trust_domain_of(cert: &CertView) -> Option<TrustDomain> {
    match cert.uris.as_slice() {
        [uri] => ca_trust_domain(uri).ok(),
        _ => None,
    }
}

fn ca_trust_domain(uri: &str) -> Result<TrustDomain, ProfileError> {
    let bad = |reason| ProfileError::BadSpiffeId {
        uri: uri.to_owned(),
        reason,
    };
    let rest = uri
        .strip_prefix("spiffe://")
        .ok_or_else(|| bad(SpiffeIdError::WrongScheme))?;
    if rest.contains('/') {
        return Err(ProfileError::CaIdHasPath(uri.to_owned()));
    }
    TrustDomain::new(rest).map_err(bad)
}

fn single_spiffe_uri(cert: &CertView) -> Result<&str, ProfileError> {
    match cert.uris.as_slice() {
        [] => Err(ProfileError::NoUriSan),
        [one] => Ok(one),
        many => Err(ProfileError::SeveralUriSans(many.len())),
    }
}
