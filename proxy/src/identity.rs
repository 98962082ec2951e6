//! Identity on the node: the trust bundles and CRLs that client certificates are checked
//! against ([`trust`]), the node's own SVID that it serves and presents upstream ([`serving`]),
//! and the peer identity carried from the handshake to each request ([`peer`]).

pub mod peer;
pub mod serving;
pub mod trust;

pub use peer::{PeerCallbacks, PeerCert};
pub use serving::{NodeCert, ServingCert};
pub use trust::{SpiffeClientVerifier, TrustMaterial, TrustStore};

/// Why identity material could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A certificate or key file, named by its config key (`identity.cert`) and its path.
    #[error("`{key}` (`{}`): {reason}", path.display())]
    File {
        key: &'static str,
        path: std::path::PathBuf,
        reason: String,
    },
    /// A trust domain's bundle or CRL, named by its config key (`trust_domains[0].bundle`).
    #[error("`{key}` (trust domain `{td}`): {reason}")]
    Bundle {
        key: String,
        td: String,
        reason: String,
    },
}
