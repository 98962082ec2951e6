//! A CA folder: `ca.crt`, `ca.key`, for an intermediate `chain.pem` (itself, then the root),
//! `ca.json` (what it may issue) and `state.json` (its revocations and CRL number).
//!
//! One root per trust domain (path length 1), one intermediate per site (path length 0), so a
//! site can keep issuing while its link is down.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::cert::CertView;
use crate::files::{self, Output, Secrecy};
use crate::pem_io;
use crate::profile;
use crate::spiffe::{PathPrefix, TrustDomain};
use crate::PkiError;

/// Certificates get a notBefore this far in the past, for clocks that run a little behind.
pub const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// The key algorithm for a new key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyAlg {
    #[default]
    P256,
    P384,
    Ed25519,
}

impl KeyAlg {
    pub(crate) fn rcgen(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            KeyAlg::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlg::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyAlg::Ed25519 => &rcgen::PKCS_ED25519,
        }
    }

    /// Generates a new key of this type.
    pub fn generate(self) -> Result<KeyPair, PkiError> {
        KeyPair::generate_for(self.rcgen()).map_err(|e| PkiError::Crypto(e.to_string()))
    }
}

impl FromStr for KeyAlg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "p256" => Ok(KeyAlg::P256),
            "p384" => Ok(KeyAlg::P384),
            "ed25519" => Ok(KeyAlg::Ed25519),
            other => Err(format!(
                "unknown key type `{other}`: use p256, p384 or ed25519"
            )),
        }
    }
}

/// What a CA folder says about itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaMeta {
    /// `root` or `intermediate`.
    pub kind: String,
    pub trust_domain: String,
    pub name: String,
    /// When set, the CA only issues SPIFFE IDs at or below this path.
    pub path_prefix: Option<String>,
}

/// A revocation the CA recorded.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Revocation {
    /// Lowercase hex, no leading zeros.
    pub serial: String,
    #[serde(with = "time::serde::rfc3339")]
    pub revoked_at: OffsetDateTime,
    pub reason: String,
}

/// The CA's mutable state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CaState {
    pub crl_number: u64,
    pub revoked: Vec<Revocation>,
}

/// A loaded, checked CA: its certificate matches its key, it is a CA of the SVID profile and
/// it has not expired.
pub struct Ca {
    pub dir: PathBuf,
    pub cert: CertView,
    pub key: KeyPair,
    /// The chain above and including this CA, as found in `chain.pem` (or just `ca.crt`).
    pub chain: Vec<Vec<u8>>,
    pub trust_domain: TrustDomain,
    pub meta: CaMeta,
}

impl Ca {
    /// Loads and checks the CA in `dir`.
    pub fn load(dir: &Path, now: OffsetDateTime) -> Result<Self, PkiError> {
        if !dir.is_dir() {
            return Err(PkiError::CaMissing(dir.to_path_buf()));
        }
        let cert_path = dir.join("ca.crt");
        let key_path = dir.join("ca.key");
        for p in [&cert_path, &key_path] {
            if !p.is_file() {
                return Err(PkiError::CaIncomplete(p.clone()));
            }
        }

        // The certificate must be a CA of the profile, and its key must be the one beside it.
        let ders = pem_io::read_certificates(&cert_path)?;
        let cert = CertView::parse(&ders[0]).map_err(|e| PkiError::BadCert {
            path: cert_path.clone(),
            reason: e.to_string(),
        })?;
        let trust_domain = profile::check_ca(&cert).map_err(|e| PkiError::BadCert {
            path: cert_path.clone(),
            reason: e.to_string(),
        })?;
        let key_pem = pem_io::read_private_key_pem(&key_path)?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| PkiError::BadKey {
            path: key_path.clone(),
            reason: e.to_string(),
        })?;
        if key.public_key_raw() != cert.public_key.as_slice() {
            return Err(PkiError::KeyMismatch(dir.to_path_buf()));
        }
        if now > cert.not_after {
            return Err(PkiError::CaExpired {
                dir: dir.to_path_buf(),
                not_after: cert.not_after,
            });
        }

        // Chain and metadata.
        let chain_path = dir.join("chain.pem");
        let chain = if chain_path.is_file() {
            pem_io::read_certificates(&chain_path)?
        } else {
            vec![ders[0].clone()]
        };
        let meta = read_meta(dir)?.unwrap_or_else(|| CaMeta {
            kind: if cert.raw_issuer == cert.raw_subject {
                "root".into()
            } else {
                "intermediate".into()
            },
            trust_domain: trust_domain.to_string(),
            name: String::new(),
            path_prefix: None,
        });
        Ok(Self {
            dir: dir.to_path_buf(),
            cert,
            key,
            chain,
            trust_domain,
            meta,
        })
    }

    /// The path prefix this CA is limited to, if any.
    pub fn path_prefix(&self) -> Result<Option<PathPrefix>, PkiError> {
        self.meta
            .path_prefix
            .as_deref()
            .map(|p| {
                PathPrefix::parse(p).map_err(|e| PkiError::BadMeta {
                    path: self.dir.join("ca.json"),
                    reason: format!("path_prefix `{p}` {e}"),
                })
            })
            .transpose()
    }

    /// An rcgen issuer for this CA (its name, key identifier and key).
    pub fn issuer(&self) -> Result<Issuer<'_, &KeyPair>, PkiError> {
        Issuer::from_ca_cert_der(&self.cert.der.as_slice().into(), &self.key)
            .map_err(|e| PkiError::Crypto(e.to_string()))
    }

    /// The chain to append to a leaf this CA issues: every certificate above the leaf except
    /// the root.
    pub fn issuing_chain_without_root(&self) -> Vec<&[u8]> {
        self.chain
            .iter()
            .filter(|der| {
                CertView::parse(der)
                    .map(|c| c.raw_issuer != c.raw_subject)
                    .unwrap_or(false)
            })
            .map(|d| d.as_slice())
            .collect()
    }

    /// Reads the CA's revocations and CRL number.
    pub fn state(&self) -> Result<CaState, PkiError> {
        let path = self.dir.join("state.json");
        if !path.exists() {
            return Ok(CaState::default());
        }
        let bytes = files::read(&path)?;
        serde_json::from_slice(&bytes).map_err(|e| PkiError::BadMeta {
            path,
            reason: e.to_string(),
        })
    }

    /// Replaces the CA's state atomically.
    pub fn save_state(&self, state: &CaState) -> Result<(), PkiError> {
        let json = serde_json::to_vec_pretty(state).map_err(|e| PkiError::Crypto(e.to_string()))?;
        files::replace(&self.dir.join("state.json"), &json)?;
        Ok(())
    }
}

fn read_meta(dir: &Path) -> Result<Option<CaMeta>, PkiError> {
    let path = dir.join("ca.json");
    if !path.exists() {
        return Ok(None);
    }
    let bytes = files::read(&path)?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| PkiError::BadMeta {
            path,
            reason: e.to_string(),
        })
}

/// Options shared by `ca init` and `ca intermediate`.
pub struct NewCa<'a> {
    pub out: &'a Path,
    pub ttl: Duration,
    pub key_alg: KeyAlg,
    pub force: bool,
    pub now: OffsetDateTime,
}

/// Creates a trust domain's root CA in `opts.out`.
pub fn init_root(td: &TrustDomain, opts: &NewCa<'_>) -> Result<Vec<PathBuf>, PkiError> {
    let key = opts.key_alg.generate()?;
    let mut params = ca_params(td, &format!("{td} root CA"), 1, opts.now, opts.ttl)?;
    params.not_after = opts.now + opts.ttl;
    let cert = params
        .self_signed(&key)
        .map_err(|e| PkiError::Crypto(e.to_string()))?;
    let meta = CaMeta {
        kind: "root".into(),
        trust_domain: td.to_string(),
        name: "root".into(),
        path_prefix: None,
    };
    write_ca(opts, cert.pem(), key, None, &meta)
}

/// Creates a site CA signed by `parent`; returns the files written and whether its lifetime
/// was cut to the parent's.
pub fn create_intermediate(
    parent: &Ca,
    name: &str,
    path_prefix: Option<&PathPrefix>,
    opts: &NewCa<'_>,
) -> Result<(Vec<PathBuf>, bool), PkiError> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    {
        return Err(PkiError::BadName(name.to_owned()));
    }
    if parent.cert.ca == Some(Some(0)) {
        return Err(PkiError::PathLenExhausted(parent.dir.clone()));
    }
    if let (Some(own), Some(p)) = (parent.path_prefix()?, path_prefix) {
        if !p.as_str().starts_with(own.as_str()) {
            return Err(PkiError::OutsidePrefix {
                id: p.to_string(),
                prefix: own.to_string(),
            });
        }
    }

    let key = opts.key_alg.generate()?;
    let td = &parent.trust_domain;
    let mut params = ca_params(td, &format!("{td} site CA {name}"), 0, opts.now, opts.ttl)?;
    let (not_after, clamped) = clamp(opts.now + opts.ttl, parent.cert.not_after);
    params.not_after = not_after;
    let cert = params
        .signed_by(&key, &parent.issuer()?)
        .map_err(|e| PkiError::Crypto(e.to_string()))?;
    let mut chain = cert.pem();
    for der in &parent.chain {
        chain.push_str(&pem_io::encode("CERTIFICATE", &[der]));
    }
    let meta = CaMeta {
        kind: "intermediate".into(),
        trust_domain: td.to_string(),
        name: name.to_owned(),
        path_prefix: path_prefix.map(|p| p.to_string()),
    };
    let written = write_ca(opts, cert.pem(), key, Some(chain), &meta)?;
    Ok((written, clamped))
}

/// Cuts `wanted` to `limit`; the flag says whether it was cut.
pub fn clamp(wanted: OffsetDateTime, limit: OffsetDateTime) -> (OffsetDateTime, bool) {
    if wanted > limit {
        (limit, true)
    } else {
        (wanted, false)
    }
}

fn ca_params(
    td: &TrustDomain,
    common_name: &str,
    path_len: u8,
    now: OffsetDateTime,
    ttl: Duration,
) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, td.as_str());
    params
        .distinguished_name
        .push(DnType::CommonName, truncate(common_name, 64));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.subject_alt_names =
        vec![SanType::URI(td.id_uri().try_into().map_err(
            |e: rcgen::Error| PkiError::Crypto(e.to_string()),
        )?)];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(crate::issue::random_serial());
    params.not_before = now - CLOCK_SKEW;
    params.not_after = now + ttl;
    Ok(params)
}

fn write_ca(
    opts: &NewCa<'_>,
    cert_pem: String,
    key: KeyPair,
    chain: Option<String>,
    meta: &CaMeta,
) -> Result<Vec<PathBuf>, PkiError> {
    let existed = opts.out.exists();
    let result = write_ca_files(opts, cert_pem, key, chain, meta);
    if result.is_err() && !existed {
        // A folder this command created must not outlive its failure (it is empty by now).
        let _ = std::fs::remove_dir(opts.out);
    }
    result
}

fn write_ca_files(
    opts: &NewCa<'_>,
    cert_pem: String,
    key: KeyPair,
    chain: Option<String>,
    meta: &CaMeta,
) -> Result<Vec<PathBuf>, PkiError> {
    if !opts.out.exists() {
        std::fs::create_dir_all(opts.out).map_err(|error| files::FileError::Write {
            path: opts.out.to_path_buf(),
            error,
        })?;
    }
    let mut out = Output::new(opts.force);
    // Check every target before writing any, so a refusal writes nothing.
    let targets = ["ca.crt", "ca.key", "ca.json", "state.json", "chain.pem"];
    for t in targets {
        out.check_absent(&opts.out.join(t))?;
    }
    out.stage(
        &opts.out.join("ca.key"),
        key.serialize_pem().as_bytes(),
        Secrecy::Secret,
    )?;
    out.stage(
        &opts.out.join("ca.crt"),
        cert_pem.as_bytes(),
        Secrecy::Public,
    )?;
    if let Some(chain) = chain {
        out.stage(
            &opts.out.join("chain.pem"),
            chain.as_bytes(),
            Secrecy::Public,
        )?;
    }
    let meta_json = serde_json::to_vec_pretty(meta).map_err(|e| PkiError::Crypto(e.to_string()))?;
    out.stage(&opts.out.join("ca.json"), &meta_json, Secrecy::Public)?;
    let state = serde_json::to_vec_pretty(&CaState::default())
        .map_err(|e| PkiError::Crypto(e.to_string()))?;
    out.stage(&opts.out.join("state.json"), &state, Secrecy::Public)?;
    let written = out.commit()?;
    // A root re-created with --force over an intermediate must not keep the old chain.
    if !written.iter().any(|p| p.ends_with("chain.pem")) {
        let _ = std::fs::remove_file(opts.out.join("chain.pem"));
    }
    Ok(written)
}

pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
