//! SPIFFE IDs, parsed once into a type that cannot hold a bad value.
//!
//! Rules follow the SPIFFE ID specification (SPIFFE-ID.md, sections 2.1 to 2.3):
//! scheme `spiffe`, a lowercase trust domain of `[a-z0-9._-]`, and a path of segments of
//! `[A-Za-z0-9._-]` with no empty, `.` or `..` segment and no trailing slash. No
//! percent-encoding, query, fragment, port or user info, and at most 2048 bytes in all.

use std::fmt;
use std::str::FromStr;

/// The longest SPIFFE ID we accept, in bytes (SPIFFE-ID.md, section 2.3).
pub const MAX_SPIFFE_ID_LEN: usize = 2048;
/// The longest trust domain name we accept, in bytes (SPIFFE-ID.md, section 2.1).
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;

const SCHEME: &str = "spiffe://";

/// Which rule of the SPIFFE ID format an input broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpiffeIdError {
    #[error("is empty")]
    Empty,
    #[error("is longer than {MAX_SPIFFE_ID_LEN} bytes")]
    TooLong,
    #[error("must start with the scheme `spiffe://` (lowercase)")]
    WrongScheme,
    #[error("has an empty trust domain")]
    EmptyTrustDomain,
    #[error("has a trust domain longer than {MAX_TRUST_DOMAIN_LEN} bytes")]
    TrustDomainTooLong,
    #[error(
        "has a trust domain with character `{0}`: only lowercase letters, digits, `.`, `-` and `_` are allowed"
    )]
    BadTrustDomainChar(char),
    #[error("must not carry a port or user info in its trust domain")]
    PortOrUserInfo,
    #[error("has no path: a workload or device ID needs one, e.g. `spiffe://td/service/name`")]
    EmptyPath,
    #[error("must start with `/`")]
    RelativePrefix,
    #[error("must not end with `/`")]
    TrailingSlash,
    #[error("has an empty path segment (`//`)")]
    EmptySegment,
    #[error("has a `.` or `..` path segment")]
    DotSegment,
    #[error("must not use percent-encoding (`%`)")]
    PercentEncoded,
    #[error("must not carry a query (`?`)")]
    Query,
    #[error("must not carry a fragment (`#`)")]
    Fragment,
    #[error(
        "has a path with character `{0}`: only letters, digits, `.`, `-` and `_` are allowed in segments"
    )]
    BadPathChar(char),
}

/// A trust domain name such as `acme.example`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrustDomain(String);

impl TrustDomain {
    /// Parses a bare trust domain name (no scheme).
    pub fn new(name: &str) -> Result<Self, SpiffeIdError> {
        if name.is_empty() {
            return Err(SpiffeIdError::EmptyTrustDomain);
        }
        if name.len() > MAX_TRUST_DOMAIN_LEN {
            return Err(SpiffeIdError::TrustDomainTooLong);
        }
        if name.contains([':', '@']) {
            return Err(SpiffeIdError::PortOrUserInfo);
        }
        if let Some(c) = name.chars().find(|c| {
            !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_'))
        }) {
            return Err(check_common(c).unwrap_or(SpiffeIdError::BadTrustDomainChar(c)));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name, e.g. `acme.example`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The trust domain's own ID, `spiffe://acme.example`, as CA certificates carry it.
    pub fn id_uri(&self) -> String {
        format!("{SCHEME}{}", self.0)
    }

    /// Parses `spiffe://td` (no path) or a bare name.
    pub fn parse_uri_or_name(input: &str) -> Result<Self, SpiffeIdError> {
        match input.strip_prefix(SCHEME) {
            Some(rest) => Self::new(rest),
            None if input.contains("://") => Err(SpiffeIdError::WrongScheme),
            None => Self::new(input),
        }
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A workload or device identity: `spiffe://<trust domain>/<path>` with a non-empty path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    trust_domain: TrustDomain,
    /// The path, starting with `/`.
    path: String,
}

impl SpiffeId {
    /// Parses and validates a SPIFFE ID; the error names the rule that was broken.
    pub fn parse(input: &str) -> Result<Self, SpiffeIdError> {
        if input.is_empty() {
            return Err(SpiffeIdError::Empty);
        }
        if input.len() > MAX_SPIFFE_ID_LEN {
            return Err(SpiffeIdError::TooLong);
        }
        let rest = input
            .strip_prefix(SCHEME)
            .ok_or(SpiffeIdError::WrongScheme)?;
        let (td, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        // Query and fragment are reported as such even when they follow the trust domain.
        if let Some(c) = td.chars().find(|c| matches!(c, '?' | '#' | '%')) {
            return Err(check_common(c).unwrap_or(SpiffeIdError::BadTrustDomainChar(c)));
        }
        let trust_domain = TrustDomain::new(td)?;
        validate_path(path)?;
        Ok(Self {
            trust_domain,
            path: path.to_owned(),
        })
    }

    /// The trust domain this ID belongs to.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The path, starting with `/`, e.g. `/site/berlin/device/cam-7`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The path's segments, e.g. `["site", "berlin", "device", "cam-7"]`.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.path[1..].split('/')
    }

    /// True when this ID's path is `prefix` or lies below it (segment-wise: `/site/a` does not
    /// contain `/site/ab`).
    pub fn is_under(&self, prefix: &PathPrefix) -> bool {
        let p = prefix.as_str();
        p == "/" || self.path == p || self.path.starts_with(&format!("{p}/"))
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}{}", self.trust_domain, self.path)
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A path prefix that a site CA is limited to, e.g. `/site/berlin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPrefix(String);

impl PathPrefix {
    /// Parses a prefix with the same segment rules as an ID's path.
    pub fn parse(input: &str) -> Result<Self, SpiffeIdError> {
        if input == "/" {
            return Ok(Self(input.to_owned()));
        }
        if !input.starts_with('/') {
            return Err(SpiffeIdError::RelativePrefix);
        }
        validate_path(input)?;
        Ok(Self(input.to_owned()))
    }

    /// The prefix, starting with `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PathPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn check_common(c: char) -> Option<SpiffeIdError> {
    match c {
        '%' => Some(SpiffeIdError::PercentEncoded),
        '?' => Some(SpiffeIdError::Query),
        '#' => Some(SpiffeIdError::Fragment),
        _ => None,
    }
}

fn validate_path(path: &str) -> Result<(), SpiffeIdError> {
    if path.is_empty() || path == "/" {
        return Err(SpiffeIdError::EmptyPath);
    }
    if let Some(c) = path.chars().find(|c| matches!(c, '%' | '?' | '#')) {
        return Err(check_common(c).unwrap_or(SpiffeIdError::BadPathChar(c)));
    }
    if path.ends_with('/') {
        return Err(SpiffeIdError::TrailingSlash);
    }
    for segment in path[1..].split('/') {
        if segment.is_empty() {
            return Err(SpiffeIdError::EmptySegment);
        }
        if segment == "." || segment == ".." {
            return Err(SpiffeIdError::DotSegment);
        }
        if let Some(c) = segment
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
        {
            return Err(SpiffeIdError::BadPathChar(c));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str) -> SpiffeIdError {
        SpiffeId::parse(s).unwrap_err()
    }

    #[test]
    fn valid_ids_parse_and_round_trip() {
        for s in [
            "spiffe://acme.example/service/api",
            "spiffe://a/b",
            "spiffe://acme-corp_1.example/site/berlin/device/cam.7",
            "spiffe://td/A-Za_z.09",
        ] {
            let id = SpiffeId::parse(s).unwrap();
            assert_eq!(id.to_string(), s);
        }
        let id = SpiffeId::parse("spiffe://acme.example/site/berlin/device/cam-7").unwrap();
        assert_eq!(id.trust_domain().as_str(), "acme.example");
        assert_eq!(id.path(), "/site/berlin/device/cam-7");
        assert_eq!(
            id.segments().collect::<Vec<_>>(),
            ["site", "berlin", "device", "cam-7"]
        );
    }

    #[test]
    fn each_invalid_class_names_its_rule() {
        assert_eq!(err(""), SpiffeIdError::Empty);
        assert_eq!(err("SPIFFE://acme.example/x"), SpiffeIdError::WrongScheme);
        assert_eq!(err("https://acme.example/x"), SpiffeIdError::WrongScheme);
        assert_eq!(err("spiffe:/acme.example/x"), SpiffeIdError::WrongScheme);
        assert_eq!(err("spiffe:///x"), SpiffeIdError::EmptyTrustDomain);
        assert_eq!(
            err("spiffe://Acme.example/x"),
            SpiffeIdError::BadTrustDomainChar('A')
        );
        assert_eq!(
            err("spiffe://acme.example:443/x"),
            SpiffeIdError::PortOrUserInfo
        );
        assert_eq!(
            err("spiffe://u@acme.example/x"),
            SpiffeIdError::PortOrUserInfo
        );
        assert_eq!(err("spiffe://acme.example"), SpiffeIdError::EmptyPath);
        assert_eq!(err("spiffe://acme.example/"), SpiffeIdError::EmptyPath);
        assert_eq!(
            err("spiffe://acme.example/x/"),
            SpiffeIdError::TrailingSlash
        );
        assert_eq!(
            err("spiffe://acme.example/a//b"),
            SpiffeIdError::EmptySegment
        );
        assert_eq!(
            err("spiffe://acme.example/x/../admin"),
            SpiffeIdError::DotSegment
        );
        assert_eq!(err("spiffe://acme.example/./x"), SpiffeIdError::DotSegment);
        assert_eq!(
            err("spiffe://acme.example/%2Fx"),
            SpiffeIdError::PercentEncoded
        );
        assert_eq!(err("spiffe://acme.example/x?a=b"), SpiffeIdError::Query);
        assert_eq!(err("spiffe://acme.example/x#f"), SpiffeIdError::Fragment);
        assert_eq!(err("spiffe://acme.example?x"), SpiffeIdError::Query);
        assert_eq!(
            err("spiffe://acme.example/a b"),
            SpiffeIdError::BadPathChar(' ')
        );
        assert_eq!(
            err("spiffe://acme.example/é"),
            SpiffeIdError::BadPathChar('é')
        );
        let long = format!("spiffe://td/{}", "a".repeat(MAX_SPIFFE_ID_LEN));
        assert_eq!(err(&long), SpiffeIdError::TooLong);
        let long_td = format!("spiffe://{}/x", "a".repeat(MAX_TRUST_DOMAIN_LEN + 1));
        assert_eq!(err(&long_td), SpiffeIdError::TrustDomainTooLong);
    }

    #[test]
    fn prefixes_match_whole_segments() {
        let p = PathPrefix::parse("/site/a").unwrap();
        let yes = SpiffeId::parse("spiffe://td/site/a/device/x").unwrap();
        let exact = SpiffeId::parse("spiffe://td/site/a").unwrap();
        let no = SpiffeId::parse("spiffe://td/site/ab/device/x").unwrap();
        assert!(yes.is_under(&p));
        assert!(exact.is_under(&p));
        assert!(!no.is_under(&p));
        assert!(PathPrefix::parse("/site/a/").is_err());
        assert!(PathPrefix::parse("site").is_err());
    }

    #[test]
    fn trust_domain_forms() {
        assert_eq!(
            TrustDomain::parse_uri_or_name("spiffe://acme.example")
                .unwrap()
                .as_str(),
            "acme.example"
        );
        assert_eq!(
            TrustDomain::parse_uri_or_name("acme.example")
                .unwrap()
                .id_uri(),
            "spiffe://acme.example"
        );
        assert!(TrustDomain::parse_uri_or_name("http://acme.example").is_err());
    }
}
