//! A parsed view of one X.509 certificate: the facts the profile checks, `cert inspect` prints
//! and the proxy reads, taken out of the DER once.

use std::net::IpAddr;

use serde::Serialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Why a certificate could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertParseError {
    #[error("not a DER certificate: {0}")]
    Der(String),
    #[error("has a malformed `{0}` extension")]
    Extension(&'static str),
    #[error("carries a validity date that cannot be represented")]
    Validity,
}

/// The key algorithm of a certificate or CSR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum KeyType {
    #[serde(rename = "ECDSA P-256")]
    P256,
    #[serde(rename = "ECDSA P-384")]
    P384,
    #[serde(rename = "Ed25519")]
    Ed25519,
    #[serde(rename = "RSA")]
    Rsa,
    #[serde(rename = "other")]
    Other,
}

impl KeyType {
    /// Reads the key type from a SubjectPublicKeyInfo's algorithm identifier.
    pub fn from_spki(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> Self {
        let alg = spki.algorithm.algorithm.to_id_string();
        let param = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .map(|o| o.to_id_string());
        match (alg.as_str(), param.as_deref()) {
            ("1.2.840.10045.2.1", Some("1.2.840.10045.3.1.7")) => KeyType::P256,
            ("1.2.840.10045.2.1", Some("1.3.132.0.34")) => KeyType::P384,
            ("1.3.101.112", _) => KeyType::Ed25519,
            ("1.2.840.113549.1.1.1", _) => KeyType::Rsa,
            _ => KeyType::Other,
        }
    }

    /// A name for people: `ECDSA P-256`.
    pub fn name(self) -> &'static str {
        match self {
            KeyType::P256 => "ECDSA P-256",
            KeyType::P384 => "ECDSA P-384",
            KeyType::Ed25519 => "Ed25519",
            KeyType::Rsa => "RSA",
            KeyType::Other => "other",
        }
    }
}

/// Key usage bits a certificate asserts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KeyUsages {
    /// Whether the keyUsage extension is present.
    pub present: bool,
    /// Whether it is marked critical.
    pub critical: bool,
    pub digital_signature: bool,
    pub key_encipherment: bool,
    pub key_agreement: bool,
    pub key_cert_sign: bool,
    pub crl_sign: bool,
}

/// The facts of one certificate.
#[derive(Debug, Clone, Serialize)]
pub struct CertView {
    /// The DER encoding.
    #[serde(skip)]
    pub der: Vec<u8>,
    pub subject: String,
    pub issuer: String,
    /// The serial in lowercase hex, no separators.
    pub serial: String,
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    pub key_type: KeyType,
    /// The raw public key bits (for matching a key file to this certificate).
    #[serde(skip)]
    pub public_key: Vec<u8>,
    pub uris: Vec<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    /// Other kinds of SAN (email, directory name, ...), as text.
    pub other_sans: Vec<String>,
    /// `Some(path_len)` when basicConstraints says CA:TRUE (`None` inside means unconstrained).
    pub ca: Option<Option<u32>>,
    pub basic_constraints_critical: bool,
    pub key_usage: KeyUsages,
    pub server_auth: bool,
    pub client_auth: bool,
    /// Subject and authority key identifiers, hex.
    pub subject_key_id: Option<String>,
    pub authority_key_id: Option<String>,
    /// SHA-256 of the DER, colon-separated uppercase hex as openssl prints it.
    pub sha256_fingerprint: String,
    /// The raw subject, to match an issuer.
    #[serde(skip)]
    pub raw_subject: Vec<u8>,
    #[serde(skip)]
    pub raw_issuer: Vec<u8>,
}

impl CertView {
    /// Parses one DER certificate.
    pub fn parse(der: &[u8]) -> Result<Self, CertParseError> {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| CertParseError::Der(e.to_string()))?;
        let validity = cert.validity();
        let not_before = OffsetDateTime::from_unix_timestamp(validity.not_before.timestamp())
            .map_err(|_| CertParseError::Validity)?;
        let not_after = OffsetDateTime::from_unix_timestamp(validity.not_after.timestamp())
            .map_err(|_| CertParseError::Validity)?;

        let mut view = CertView {
            der: der.to_vec(),
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            serial: normalize_serial(&hex(cert.raw_serial())).unwrap_or_default(),
            not_before,
            not_after,
            key_type: KeyType::from_spki(cert.public_key()),
            public_key: cert.public_key().subject_public_key.data.to_vec(),
            uris: Vec::new(),
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            other_sans: Vec::new(),
            ca: None,
            basic_constraints_critical: false,
            key_usage: KeyUsages::default(),
            server_auth: false,
            client_auth: false,
            subject_key_id: None,
            authority_key_id: None,
            sha256_fingerprint: fingerprint(der),
            raw_subject: cert.subject().as_raw().to_vec(),
            raw_issuer: cert.issuer().as_raw().to_vec(),
        };
        view.read_extensions(&cert)?;
        Ok(view)
    }

    fn read_extensions(&mut self, cert: &X509Certificate<'_>) -> Result<(), CertParseError> {
        // Subject alternative names.
        let san = cert
            .subject_alternative_name()
            .map_err(|_| CertParseError::Extension("subjectAltName"))?;
        for name in san.iter().flat_map(|s| s.value.general_names.iter()) {
            match name {
                GeneralName::URI(u) => self.uris.push((*u).to_owned()),
                GeneralName::DNSName(d) => self.dns_names.push((*d).to_owned()),
                GeneralName::IPAddress(b) => match ip_from_bytes(b) {
                    Some(ip) => self.ip_addresses.push(ip),
                    None => self.other_sans.push(format!("IP:{}", hex(b))),
                },
                other => self.other_sans.push(other.to_string()),
            }
        }

        // Basic constraints and key usages.
        let bc = cert
            .basic_constraints()
            .map_err(|_| CertParseError::Extension("basicConstraints"))?;
        if let Some(bc) = bc {
            self.basic_constraints_critical = bc.critical;
            if bc.value.ca {
                self.ca = Some(bc.value.path_len_constraint);
            }
        }
        let ku = cert
            .key_usage()
            .map_err(|_| CertParseError::Extension("keyUsage"))?;
        if let Some(ku) = ku {
            let v = ku.value;
            self.key_usage = KeyUsages {
                present: true,
                critical: ku.critical,
                digital_signature: v.digital_signature(),
                key_encipherment: v.key_encipherment(),
                key_agreement: v.key_agreement(),
                key_cert_sign: v.key_cert_sign(),
                crl_sign: v.crl_sign(),
            };
        }
        let eku = cert
            .extended_key_usage()
            .map_err(|_| CertParseError::Extension("extendedKeyUsage"))?;
        if let Some(eku) = eku {
            self.server_auth = eku.value.server_auth;
            self.client_auth = eku.value.client_auth;
        }

        // Key identifiers.
        for ext in cert.extensions() {
            use x509_parser::extensions::ParsedExtension;
            match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => self.subject_key_id = Some(hex(id.0)),
                ParsedExtension::AuthorityKeyIdentifier(aki) => {
                    self.authority_key_id = aki.key_identifier.as_ref().map(|k| hex(k.0));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Whether this certificate is a CA (basicConstraints CA:TRUE).
    pub fn is_ca(&self) -> bool {
        self.ca.is_some()
    }

    /// Whether `self` names `issuer` as its issuer (by name and, when both carry them, by key id).
    pub fn issued_by(&self, issuer: &CertView) -> bool {
        self.raw_issuer == issuer.raw_subject
            && match (&self.authority_key_id, &issuer.subject_key_id) {
                (Some(a), Some(s)) => a == s,
                _ => true,
            }
    }

    /// The fraction of the lifetime that has passed at `now` (0.0 at notBefore, 1.0 at notAfter).
    pub fn elapsed_fraction(&self, now: OffsetDateTime) -> f64 {
        let total = (self.not_after - self.not_before).as_seconds_f64();
        if total <= 0.0 {
            return 1.0;
        }
        (now - self.not_before).as_seconds_f64() / total
    }

    /// Seconds left until notAfter (negative once expired).
    pub fn seconds_left(&self, now: OffsetDateTime) -> i64 {
        (self.not_after - now).whole_seconds()
    }
}

/// A timestamp as RFC 3339 in UTC, to the second: `2026-12-03T20:03:58Z`.
pub fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// Lowercase hex with no separators.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses a serial given as hex (colons allowed, leading zeros ignored) into the canonical form.
pub fn normalize_serial(input: &str) -> Option<String> {
    let digits: String = input
        .trim()
        .trim_start_matches("0x")
        .chars()
        .filter(|c| *c != ':')
        .collect();
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let trimmed = digits.trim_start_matches('0').to_ascii_lowercase();
    Some(if trimmed.is_empty() {
        "0".to_owned()
    } else {
        trimmed
    })
}

fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => <[u8; 4]>::try_from(b).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(b).ok().map(IpAddr::from),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_normalize() {
        assert_eq!(normalize_serial("0A:1b").as_deref(), Some("a1b"));
        assert_eq!(normalize_serial("00ff").as_deref(), Some("ff"));
        assert_eq!(normalize_serial("0x10").as_deref(), Some("10"));
        assert_eq!(normalize_serial("zz"), None);
        assert_eq!(normalize_serial(""), None);
    }

    #[test]
    fn garbage_der_is_an_error() {
        assert!(matches!(
            CertView::parse(b"not a certificate"),
            Err(CertParseError::Der(_))
        ));
    }
}
