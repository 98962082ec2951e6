//! `cert verify`: a chain to a bundle of roots (rustls-webpki), the SVID profile, revocation
//! by CRL, and the rule that the ID's trust domain is the one whose root validated the chain.

use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use time::OffsetDateTime;
use webpki::{
    CertRevocationList, EndEntityCert, ExpirationPolicy, OwnedCertRevocationList,
    RevocationCheckDepth, RevocationOptionsBuilder, UnknownStatusPolicy,
};

use crate::cert::CertView;
use crate::profile::{self, ProfileError};
use crate::spiffe::SpiffeId;

/// Why a chain is not a valid SVID here.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("the file holds no certificate")]
    Empty,
    #[error("the bundle holds no usable root: {0}")]
    BadBundle(String),
    #[error("a CRL does not parse: {0}")]
    BadCrl(String),
    #[error("certificate {index} does not parse: {reason}")]
    Parse { index: usize, reason: String },
    #[error("the leaf breaks the SVID profile: it {0}")]
    Profile(#[from] ProfileError),
    #[error("the chain does not verify: {0}")]
    Chain(String),
    #[error("the leaf is expired (notAfter {})", crate::cert::rfc3339(*.0))]
    Expired(OffsetDateTime),
    #[error("the leaf is not yet valid (notBefore {})", crate::cert::rfc3339(*.0))]
    NotYetValid(OffsetDateTime),
    #[error("the certificate was revoked")]
    Revoked,
    #[error(
        "the SPIFFE ID's trust domain `{id_td}` is not the trust domain of the root that validated it (`{root_td}`)"
    )]
    TrustDomainMismatch { id_td: String, root_td: String },
}

/// A chain that verified: its SPIFFE ID and parsed leaf.
#[derive(Debug)]
pub struct VerifiedSvid {
    pub id: SpiffeId,
    pub leaf: CertView,
}

/// Verifies `chain` (leaf first, then intermediates) against `roots` and `crls` at `now`.
pub fn verify_svid(
    chain: &[Vec<u8>],
    roots: &[Vec<u8>],
    crls: &[Vec<u8>],
    now: OffsetDateTime,
) -> Result<VerifiedSvid, VerifyError> {
    let leaf_der = chain.first().ok_or(VerifyError::Empty)?;
    let leaf = CertView::parse(leaf_der).map_err(|e| VerifyError::Parse {
        index: 1,
        reason: e.to_string(),
    })?;

    // The profile first: it gives the clearest reason for a certificate that was never an SVID.
    let id = profile::check_leaf(&leaf)?;

    // Trust anchors, remembering which root each one came from.
    let root_views: Vec<CertView> = roots
        .iter()
        .filter_map(|d| CertView::parse(d).ok())
        .collect();
    let root_ders: Vec<CertificateDer<'_>> = roots
        .iter()
        .map(|d| CertificateDer::from(d.as_slice()))
        .collect();
    let anchors = root_ders
        .iter()
        .map(|d| webpki::anchor_from_trusted_cert(d).map(|a| a.to_owned()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| VerifyError::BadBundle(format!("{e:?}")))?;
    if anchors.is_empty() {
        return Err(VerifyError::BadBundle("it is empty".into()));
    }
    let intermediates: Vec<CertificateDer<'_>> = chain[1..]
        .iter()
        .map(|d| CertificateDer::from(d.as_slice()))
        .collect();

    // Revocation: every certificate of the chain, and an expired CRL fails closed.
    let owned_crls = crls
        .iter()
        .map(|d| {
            OwnedCertRevocationList::from_der(
                CertificateRevocationListDer::from(d.as_slice()).as_ref(),
            )
            .map(CertRevocationList::from)
            .map_err(|e| VerifyError::BadCrl(format!("{e:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let crl_refs: Vec<&CertRevocationList<'_>> = owned_crls.iter().collect();
    let revocation = RevocationOptionsBuilder::new(&crl_refs).ok().map(|b| {
        b.with_depth(RevocationCheckDepth::Chain)
            .with_status_policy(UnknownStatusPolicy::Allow)
            .with_expiration_policy(ExpirationPolicy::Enforce)
            .build()
    });

    // The chain.
    let leaf_cert_der = CertificateDer::from(leaf_der.as_slice());
    let ee = EndEntityCert::try_from(&leaf_cert_der)
        .map_err(|e| VerifyError::Chain(format!("{e:?}")))?;
    let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        now.unix_timestamp().max(0) as u64,
    ));
    let path = ee
        .verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &intermediates,
            time,
            webpki::KeyUsage::client_auth(),
            revocation,
            None,
        )
        .map_err(|e| match e {
            webpki::Error::CertRevoked => VerifyError::Revoked,
            webpki::Error::CertExpired { .. } if now > leaf.not_after => {
                VerifyError::Expired(leaf.not_after)
            }
            webpki::Error::CertNotValidYet { .. } if now < leaf.not_before => {
                VerifyError::NotYetValid(leaf.not_before)
            }
            other => VerifyError::Chain(describe(&other)),
        })?;

    // The root that validated the chain must be of the ID's trust domain.
    let anchor = path.anchor();
    let root = root_views
        .iter()
        .find(|r| same_name(&r.raw_subject, anchor.subject.as_ref()));
    let root_td = root.and_then(profile::ca_trust_domain_of);
    match root_td {
        Some(td) if &td == id.trust_domain() => Ok(VerifiedSvid { id, leaf }),
        other => Err(VerifyError::TrustDomainMismatch {
            id_td: id.trust_domain().to_string(),
            root_td: other
                .map(|t| t.to_string())
                .unwrap_or_else(|| "none".into()),
        }),
    }
}

/// webpki keeps a trust anchor's subject without the outer SEQUENCE header; x509-parser keeps
/// it with. Compare the contents.
fn same_name(with_header: &[u8], contents: &[u8]) -> bool {
    with_header.len() > contents.len()
        && with_header.len() - contents.len() <= 4
        && with_header.ends_with(contents)
}

fn describe(e: &webpki::Error) -> String {
    match e {
        webpki::Error::UnknownIssuer => {
            "no root in the bundle issued it (unknown issuer): check --bundle and that the file carries its intermediate".into()
        }
        webpki::Error::CertExpired { .. } => "a certificate of the chain has expired".into(),
        webpki::Error::CrlExpired { .. } => "a CRL is past its nextUpdate: issue a new one with `edgeward ca crl`".into(),
        webpki::Error::InvalidSignatureForPublicKey => "a signature does not verify".into(),
        other => format!("{other:?}"),
    }
}
