//! `cert inspect` and `cert needs-renewal`: what a certificate file holds, and whether its leaf
//! is due for renewal.

use serde::Serialize;
use time::OffsetDateTime;

use crate::cert::CertView;
use crate::spiffe::SpiffeId;

/// Renewal is due once this share of the lifetime has passed (a third left).
pub const DEFAULT_RENEW_AT: f64 = 2.0 / 3.0;

/// One certificate, as `cert inspect` reports it.
#[derive(Debug, Serialize)]
pub struct Report {
    pub index: usize,
    pub role: &'static str,
    pub spiffe_id: Option<String>,
    #[serde(flatten)]
    pub cert: CertView,
    pub seconds_left: i64,
    pub lifetime_used: f64,
    pub warnings: Vec<String>,
}

/// Describes every certificate of a chain; the first is treated as the leaf when it is no CA.
pub fn inspect(certs: Vec<CertView>, now: OffsetDateTime) -> Vec<Report> {
    certs
        .into_iter()
        .enumerate()
        .map(|(i, cert)| {
            let role = match (cert.is_ca(), cert.raw_issuer == cert.raw_subject) {
                (true, true) => "root CA",
                (true, false) => "intermediate CA",
                (false, _) => "leaf",
            };
            let spiffe_id = match cert.uris.as_slice() {
                [one] if !cert.is_ca() => SpiffeId::parse(one).ok().map(|id| id.to_string()),
                [one] => Some(one.clone()),
                _ => None,
            };
            let mut warnings = Vec::new();
            let used = cert.elapsed_fraction(now);
            if now > cert.not_after {
                warnings.push(format!(
                    "expired at {}",
                    crate::cert::rfc3339(cert.not_after)
                ));
            } else if now < cert.not_before {
                warnings.push(format!(
                    "not valid before {}",
                    crate::cert::rfc3339(cert.not_before)
                ));
            } else if role == "leaf" && used >= DEFAULT_RENEW_AT {
                warnings.push("less than a third of its lifetime is left: renew it".into());
            }
            if role == "leaf" && cert.uris.len() != 1 {
                warnings.push(format!(
                    "has {} URI SANs: an SVID carries exactly one",
                    cert.uris.len()
                ));
            }
            Report {
                index: i + 1,
                role,
                spiffe_id,
                seconds_left: cert.seconds_left(now),
                lifetime_used: (used * 1000.0).round() / 1000.0,
                warnings,
                cert,
            }
        })
        .collect()
}

/// Whether `cert` is past `at` (a fraction of its lifetime) or expired.
pub fn needs_renewal(cert: &CertView, at: f64, now: OffsetDateTime) -> bool {
    now >= cert.not_after || cert.elapsed_fraction(now) >= at
}
