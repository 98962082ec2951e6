//! Host canonicalization and the reconciliation of `Host` with `:authority` or an
//! absolute-form target.

use std::fmt;
use std::net::Ipv6Addr;

/// The longest host name we accept, in bytes (RFC 1035 section 2.3.4).
const MAX_HOST_LEN: usize = 253;

/// A canonical host: lowercase, no trailing dot, IPv6 literals in brackets in their shortest
/// form, and the port only when it is not the scheme's default.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CanonicalHost {
    host: String,
    port: Option<u16>,
}

impl CanonicalHost {
    /// The host without the port (IPv6 literals keep their brackets).
    pub fn hostname(&self) -> &str {
        &self.host
    }

    /// The port, when it is not the default for the scheme.
    pub fn port(&self) -> Option<u16> {
        self.port
    }
}

impl fmt::Display for CanonicalHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}:{port}", self.host),
            None => f.write_str(&self.host),
        }
    }
}

/// Why a host or authority was refused; every variant is answered with 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// No host at all.
    #[error("host is empty")]
    Empty,
    /// A character outside `[A-Za-z0-9.-_]` in a host name.
    #[error("host has character `{0}`: only letters, digits, `.`, `-` and `_` are allowed")]
    BadChar(char),
    /// An empty label (`a..b`, `.a`).
    #[error("host has an empty label")]
    EmptyLabel,
    /// Longer than 253 bytes.
    #[error("host is longer than {MAX_HOST_LEN} bytes")]
    TooLong,
    /// A bracketed literal that is not an IPv6 address, or a missing bracket.
    #[error("host has a malformed IPv6 literal")]
    BadIpv6,
    /// A port that is empty, not a number, zero or above 65535.
    #[error("host has a malformed port")]
    BadPort,
    /// More than one `Host` header (RFC 9112 section 3.2).
    #[error("request has more than one `Host` header")]
    DuplicateHost,
    /// `Host` and `:authority` or the absolute-form target name different hosts.
    #[error("`Host` header and request authority disagree")]
    Conflict,
    /// Neither `Host` nor an authority.
    #[error("request has no `Host` header and no authority")]
    Missing,
}

/// Canonicalizes a host with optional port. `tls` selects the default port that is dropped
/// (443 with TLS, 80 without).
pub fn canonicalize_host(raw: &str, tls: bool) -> Result<CanonicalHost, HostError> {
    if raw.is_empty() {
        return Err(HostError::Empty);
    }

    // Split host and port; an IPv6 literal keeps its colons inside brackets.
    let (host, port) = if let Some(rest) = raw.strip_prefix('[') {
        let (literal, after) = rest.split_once(']').ok_or(HostError::BadIpv6)?;
        let address: Ipv6Addr = literal.parse().map_err(|_| HostError::BadIpv6)?;
        let port = match after {
            "" => None,
            p => Some(parse_port(p.strip_prefix(':').ok_or(HostError::BadPort)?)?),
        };
        (format!("[{address}]"), port)
    } else {
        let (name, port) = match raw.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (raw, None),
        };
        // The port first, so that an unbracketed IPv6 literal reads as a bad port.
        let port = port.map(parse_port).transpose()?;
        (canonical_name(name)?, port)
    };

    let default = if tls { 443 } else { 80 };
    Ok(CanonicalHost {
        host,
        port: port.filter(|p| *p != default),
    })
}

fn canonical_name(name: &str) -> Result<String, HostError> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return Err(HostError::Empty);
    }
    if name.len() > MAX_HOST_LEN {
        return Err(HostError::TooLong);
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
    {
        return Err(HostError::BadChar(c));
    }
    if name.split('.').any(str::is_empty) {
        return Err(HostError::EmptyLabel);
    }
    Ok(name.to_ascii_lowercase())
}

fn parse_port(raw: &str) -> Result<u16, HostError> {
    if raw.is_empty() || raw.len() > 5 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HostError::BadPort);
    }
    match raw.parse::<u16>() {
        Ok(0) | Err(_) => Err(HostError::BadPort),
        Ok(port) => Ok(port),
    }
}

/// Decides the request's one canonical host from its `Host` headers and its authority
/// (`:authority` in HTTP/2, or the authority of an absolute-form target).
///
/// More than one `Host` is refused (RFC 9112 section 3.2); when both a `Host` and an
/// authority are present they must agree after canonicalization, so that routing and
/// authorization cannot be fed one host while the upstream sees another.
pub fn resolve_authority(
    host_headers: &[&str],
    authority: Option<&str>,
    tls: bool,
) -> Result<CanonicalHost, HostError> {
    if host_headers.len() > 1 {
        return Err(HostError::DuplicateHost);
    }
    let from_header = host_headers
        .first()
        .map(|h| canonicalize_host(h, tls))
        .transpose()?;
    let from_authority = authority.map(|a| canonicalize_host(a, tls)).transpose()?;
    match (from_header, from_authority) {
        (Some(h), Some(a)) if h != a => Err(HostError::Conflict),
        (_, Some(a)) => Ok(a),
        (Some(h), None) => Ok(h),
        (None, None) => Err(HostError::Missing),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(raw: &str, tls: bool) -> Result<String, HostError> {
        canonicalize_host(raw, tls).map(|h| h.to_string())
    }

    #[test]
    fn hosts_are_lowercased_without_trailing_dot_or_default_port() {
        assert_eq!(host("ADMIN.example.", false), Ok("admin.example".into()));
        assert_eq!(host("Api.Example:80", false), Ok("api.example".into()));
        assert_eq!(host("api.example:443", true), Ok("api.example".into()));
        assert_eq!(host("api.example:443", false), Ok("api.example:443".into()));
        assert_eq!(
            host("api.example.:8443", true),
            Ok("api.example:8443".into())
        );
        assert_eq!(host("127.0.0.1:8080", false), Ok("127.0.0.1:8080".into()));
    }

    #[test]
    fn ipv6_literals_keep_brackets_in_shortest_form() {
        assert_eq!(host("[::1]", false), Ok("[::1]".into()));
        assert_eq!(host("[0:0:0:0:0:0:0:1]:443", true), Ok("[::1]".into()));
        assert_eq!(host("[FE80::A]:8080", false), Ok("[fe80::a]:8080".into()));
        let h = canonicalize_host("[::1]:9000", false);
        assert_eq!(h.as_ref().map(|h| h.hostname()), Ok("[::1]"));
        assert_eq!(h.map(|h| h.port()), Ok(Some(9000)));
    }

    #[test]
    fn malformed_hosts_are_refused() {
        assert_eq!(host("", false), Err(HostError::Empty));
        assert_eq!(host(".", false), Err(HostError::Empty));
        assert_eq!(host(":80", false), Err(HostError::Empty));
        assert_eq!(host("a b", false), Err(HostError::BadChar(' ')));
        assert_eq!(host("u@h", false), Err(HostError::BadChar('@')));
        assert_eq!(host("a..b", false), Err(HostError::EmptyLabel));
        assert_eq!(host("h:", false), Err(HostError::BadPort));
        assert_eq!(host("h:0", false), Err(HostError::BadPort));
        assert_eq!(host("h:65536", false), Err(HostError::BadPort));
        assert_eq!(host("h:+80", false), Err(HostError::BadPort));
        assert_eq!(host("h:1:2", false), Err(HostError::BadPort));
        assert_eq!(host("::1", false), Err(HostError::BadPort));
        assert_eq!(host("[::g]", false), Err(HostError::BadIpv6));
        assert_eq!(host("[::1", false), Err(HostError::BadIpv6));
        assert_eq!(host("[::1]x", false), Err(HostError::BadPort));
        assert_eq!(host(&"a".repeat(254), false), Err(HostError::TooLong));
    }

    #[test]
    fn authority_reconciliation() {
        let ok = |h: &[&str], a: Option<&str>| resolve_authority(h, a, true).map(|h| h.to_string());
        assert_eq!(ok(&["API.example"], None), Ok("api.example".into()));
        assert_eq!(ok(&[], Some("api.example:443")), Ok("api.example".into()));
        assert_eq!(
            ok(&["api.example."], Some("Api.Example:443")),
            Ok("api.example".into())
        );
        assert_eq!(
            ok(&["a.example", "a.example"], None),
            Err(HostError::DuplicateHost)
        );
        assert_eq!(
            ok(&["public.example"], Some("admin.example")),
            Err(HostError::Conflict)
        );
        assert_eq!(ok(&[], None), Err(HostError::Missing));
        assert_eq!(ok(&["bad host"], None), Err(HostError::BadChar(' ')));
    }
}
