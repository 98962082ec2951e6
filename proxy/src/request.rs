//! Canonical request values, computed once per request and shared by routing and
//! authorization, so that both see exactly what goes upstream.
//!
//! `path` canonicalizes the request target (RFC 3986 section 6.2.2 normalization and section
//! 5.2.4 dot-segment removal); `host` canonicalizes the authority and reconciles `Host` with
//! `:authority` or an absolute-form target (RFC 9110 section 7.2, RFC 9112 section 3.2).

mod host;
mod path;

pub use host::{canonicalize_host, resolve_authority, CanonicalHost, HostError};
pub use path::{
    canonicalize_absolute, canonicalize_path, AbsoluteTarget, CanonicalTarget, PathError,
};
