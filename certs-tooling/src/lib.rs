//! Identity and PKI for Edgeward: SPIFFE IDs, the X.509-SVID profile, CAs, issuance, CSR
//! signing and revocation.

pub mod spiffe;

pub use spiffe::{PathPrefix, SpiffeId, SpiffeIdError, TrustDomain};
