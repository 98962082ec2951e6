//! Revocation: the CA records what it revoked in its folder and signs CRLs (RFC 5280 section 5)
//! listing them, for the proxy and `cert verify` to check.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevocationReason, RevokedCertParams};
use time::OffsetDateTime;

use crate::ca::{Ca, Revocation};
use crate::cert::{normalize_serial, CertView};
use crate::files::{Output, Secrecy};
use crate::pem_io;
use crate::PkiError;

/// A revocation reason, as RFC 5280 section 5.3.1 names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reason(RevocationReason);

const REASONS: &[(&str, RevocationReason)] = &[
    ("unspecified", RevocationReason::Unspecified),
    ("key-compromise", RevocationReason::KeyCompromise),
    ("ca-compromise", RevocationReason::CaCompromise),
    ("affiliation-changed", RevocationReason::AffiliationChanged),
    ("superseded", RevocationReason::Superseded),
    (
        "cessation-of-operation",
        RevocationReason::CessationOfOperation,
    ),
    ("certificate-hold", RevocationReason::CertificateHold),
    ("privilege-withdrawn", RevocationReason::PrivilegeWithdrawn),
];

impl Reason {
    /// The name used on the command line and in `state.json`.
    pub fn name(self) -> &'static str {
        REASONS
            .iter()
            .find(|(_, r)| *r == self.0)
            .map(|(n, _)| *n)
            .unwrap_or("unspecified")
    }
}

impl Default for Reason {
    fn default() -> Self {
        Reason(RevocationReason::Unspecified)
    }
}

impl FromStr for Reason {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        REASONS
            .iter()
            .find(|(n, _)| *n == s)
            .map(|(_, r)| Reason(*r))
            .ok_or_else(|| {
                let names: Vec<_> = REASONS.iter().map(|(n, _)| *n).collect();
                format!("unknown reason `{s}`: use one of {}", names.join(", "))
            })
    }
}

/// What to revoke.
pub enum Target<'a> {
    /// A certificate file; its first certificate must have been issued by the CA.
    File(&'a Path),
    /// A serial in hex.
    Serial(&'a str),
}

/// The outcome of a revocation.
pub enum Revoked {
    /// Newly recorded.
    Recorded(Revocation),
    /// The CA had already revoked it; nothing changed.
    AlreadyRevoked(Revocation),
}

/// Records a revocation in the CA's folder.
pub fn revoke(
    ca: &Ca,
    target: Target<'_>,
    reason: Reason,
    now: OffsetDateTime,
) -> Result<Revoked, PkiError> {
    let serial = match target {
        Target::Serial(hex) => {
            normalize_serial(hex).ok_or_else(|| PkiError::BadSerial(hex.to_owned()))?
        }
        Target::File(path) => {
            let ders = pem_io::read_certificates(path)?;
            let cert = CertView::parse(&ders[0]).map_err(|e| PkiError::BadCert {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
            if !cert.issued_by(&ca.cert) {
                return Err(PkiError::NotIssuedBy {
                    path: path.to_path_buf(),
                    ca: ca.dir.clone(),
                });
            }
            cert.serial
        }
    };

    let mut state = ca.state()?;
    if let Some(existing) = state.revoked.iter().find(|r| r.serial == serial) {
        return Ok(Revoked::AlreadyRevoked(existing.clone()));
    }
    let record = Revocation {
        serial,
        revoked_at: now,
        reason: reason.name().to_owned(),
    };
    state.revoked.push(record.clone());
    ca.save_state(&state)?;
    Ok(Revoked::Recorded(record))
}

/// Signs a CRL listing everything the CA revoked, valid for `ttl`, and writes it to `out`.
pub fn write_crl(
    ca: &Ca,
    out_path: &Path,
    ttl: Duration,
    force: bool,
    now: OffsetDateTime,
) -> Result<(PathBuf, usize), PkiError> {
    let mut out = Output::new(force);
    out.check_absent(out_path)?;
    let mut state = ca.state()?;

    // Each entry: its serial as bytes and the reason recorded.
    let mut revoked_certs = Vec::with_capacity(state.revoked.len());
    for r in &state.revoked {
        let bytes = serial_bytes(&r.serial).ok_or_else(|| PkiError::BadSerial(r.serial.clone()))?;
        let reason = r.reason.parse::<Reason>().unwrap_or_default();
        revoked_certs.push(RevokedCertParams {
            serial_number: rcgen::SerialNumber::from_slice(&bytes),
            revocation_time: r.revoked_at,
            reason_code: Some(reason.0),
            invalidity_date: None,
        });
    }

    let ski = ca
        .cert
        .subject_key_id
        .as_deref()
        .and_then(serial_bytes)
        .ok_or_else(|| PkiError::BadCert {
            path: ca.dir.join("ca.crt"),
            reason: "has no subject key identifier".into(),
        })?;
    state.crl_number += 1;
    let params = CertificateRevocationListParams {
        this_update: now,
        next_update: now + ttl,
        crl_number: rcgen::SerialNumber::from(state.crl_number),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: KeyIdMethod::PreSpecified(ski),
    };
    let crl = params
        .signed_by(&ca.issuer()?)
        .map_err(|e| PkiError::Crypto(e.to_string()))?;
    let pem = crl.pem().map_err(|e| PkiError::Crypto(e.to_string()))?;

    // The CRL number only moves forward: save it before the CRL lands.
    out.stage(out_path, pem.as_bytes(), Secrecy::Public)?;
    ca.save_state(&state)?;
    out.commit()?;
    Ok((out_path.to_path_buf(), state.revoked.len()))
}

/// Hex (as stored) to bytes.
fn serial_bytes(hex: &str) -> Option<Vec<u8>> {
    let padded = if hex.len() % 2 == 1 {
        format!("0{hex}")
    } else {
        hex.to_owned()
    };
    (0..padded.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&padded[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_parse_by_rfc_name() {
        assert_eq!(
            "key-compromise".parse::<Reason>().unwrap().name(),
            "key-compromise"
        );
        assert!("stolen".parse::<Reason>().is_err());
    }

    #[test]
    fn serial_hex_to_bytes() {
        assert_eq!(serial_bytes("a1b").unwrap(), vec![0x0a, 0x1b]);
        assert_eq!(serial_bytes("zz"), None);
    }
}
