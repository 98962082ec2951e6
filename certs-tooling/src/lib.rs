//! Identity and PKI for Edgeward: SPIFFE IDs, the X.509-SVID profile, CAs, issuance, CSR
//! signing and revocation.
//!
//! The `edgeward ca` and `edgeward cert` commands are thin wrappers around this crate; the proxy
//! uses its SPIFFE ID type, its certificate view and its profile checks.

pub mod ca;
pub mod cert;
pub mod files;
pub mod inspect;
pub mod issue;
pub mod pem_io;
pub mod profile;
pub mod revoke;
pub mod spiffe;
pub mod ttl;
pub mod verify;

use std::path::PathBuf;

pub use cert::CertView;
pub use spiffe::{PathPrefix, SpiffeId, SpiffeIdError, TrustDomain};

/// A failure of a CA or certificate operation, phrased for the operator.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error(transparent)]
    File(#[from] files::FileError),
    #[error(transparent)]
    Pem(#[from] pem_io::PemError),
    #[error("CA folder `{0}` does not exist: create it with `edgeward ca init` or `edgeward ca intermediate`")]
    CaMissing(PathBuf),
    #[error("`{0}` is missing: a CA folder holds ca.crt and ca.key")]
    CaIncomplete(PathBuf),
    #[error("the key in `{0}` does not match its certificate: ca.key and ca.crt must be a pair")]
    KeyMismatch(PathBuf),
    #[error("the CA in `{dir}` expired at {}: create a new CA", cert::rfc3339(*not_after))]
    CaExpired {
        dir: PathBuf,
        not_after: time::OffsetDateTime,
    },
    #[error("`{path}`: {reason}")]
    BadCert { path: PathBuf, reason: String },
    #[error("`{path}` is not a usable private key: {reason}")]
    BadKey { path: PathBuf, reason: String },
    #[error("`{path}` is not a usable CSR: it {reason}")]
    BadCsr { path: PathBuf, reason: String },
    #[error("`{path}` is damaged: {reason}")]
    BadMeta { path: PathBuf, reason: String },
    #[error("CA name `{0}` is invalid: use letters, digits, `.`, `-` and `_`")]
    BadName(String),
    #[error("DNS name `{0}` is invalid")]
    BadSan(String),
    #[error("serial `{0}` is not hexadecimal")]
    BadSerial(String),
    #[error("`{id}` belongs to trust domain `{id_td}`, but this CA is for trust domain `{ca_td}`")]
    OtherTrustDomain {
        id: String,
        id_td: String,
        ca_td: String,
    },
    #[error("`{id}` is outside this CA's path prefix `{prefix}`")]
    OutsidePrefix { id: String, prefix: String },
    #[error("the CA in `{0}` may not sign another CA (its path length is 0): create site CAs from the root")]
    PathLenExhausted(PathBuf),
    #[error("`{path}` was not issued by the CA in `{ca}`")]
    NotIssuedBy { path: PathBuf, ca: PathBuf },
    #[error("cryptographic failure: {0}")]
    Crypto(String),
}

impl PkiError {
    /// True when the failure is ours rather than the input's (exit code 3 instead of 2).
    pub fn is_internal(&self) -> bool {
        matches!(self, PkiError::Crypto(_))
    }
}
