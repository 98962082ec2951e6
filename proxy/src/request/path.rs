//! Request-target canonicalization: percent-escape normalization, slash merging and
//! dot-segment removal, with the encodings that smuggle separators refused.

use std::fmt::Write as _;

/// A request target in canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalTarget {
    /// The canonical path: starts with `/`, no `//`, no dot segments, unreserved characters
    /// decoded and every other escape in upper-case hex.
    pub path: String,
    /// The query after the first `?`, exactly as received (not decoded).
    pub query: Option<String>,
}

/// An absolute-form target (`http://host/path`, RFC 9112 section 3.2.2), split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbsoluteTarget {
    /// The authority as received; canonicalize it with `canonicalize_host` or hand it to
    /// `resolve_authority`.
    pub authority: String,
    /// The canonical path and query.
    pub target: CanonicalTarget,
}

/// Why a request target was refused; every variant is answered with 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The target is empty.
    #[error("request target is empty")]
    Empty,
    /// The target does not start with `/` (and is not absolute-form where that is accepted).
    #[error("request target must start with `/`")]
    NotOriginForm,
    /// An absolute-form target that is not `http://` or `https://` with a plain authority.
    #[error("absolute-form target must be `http://` or `https://` with a host and no user info")]
    BadAbsoluteForm,
    /// `%2F` in the path: an encoded separator.
    #[error("path has an encoded slash (`%2F`)")]
    EncodedSlash,
    /// `%5C` in the path: an encoded backslash, a separator for some servers.
    #[error("path has an encoded backslash (`%5C`)")]
    EncodedBackslash,
    /// A raw `\` in the path.
    #[error("path has a backslash")]
    Backslash,
    /// `%00` anywhere in the path.
    #[error("path has an encoded NUL (`%00`)")]
    EncodedNul,
    /// A raw `#`: a fragment never belongs in a request target (RFC 9112 section 3.2).
    #[error("request target has a raw `#`")]
    Fragment,
    /// A control character (U+0000 to U+001F or U+007F).
    #[error("request target has a control character")]
    ControlChar,
    /// A `%` not followed by two hex digits.
    #[error("request target has a malformed percent-escape")]
    BadEscape,
}

impl PathError {
    /// True for the errors a route may opt out of with `allow_encoded_slash`.
    pub fn is_encoded_separator(self) -> bool {
        matches!(
            self,
            PathError::EncodedSlash | PathError::EncodedBackslash | PathError::Backslash
        )
    }
}

/// Canonicalizes an origin-form target (`/path?query`).
///
/// Steps, in order: percent-escapes of unreserved characters (RFC 3986 section 2.3) are
/// decoded and other escapes get upper-case hex (section 6.2.2.1); characters not allowed
/// raw in a path are percent-encoded; repeated slashes are merged; dot segments are removed
/// (section 5.2.4). `%2F`, `%5C` and `\` are refused unless `allow_encoded_slash`, in which
/// case they stay encoded and never act as separators. `%00`, a raw `#`, control characters
/// and malformed escapes are always refused.
pub fn canonicalize_path(
    raw_path_and_query: &str,
    allow_encoded_slash: bool,
) -> Result<CanonicalTarget, PathError> {
    if raw_path_and_query.is_empty() {
        return Err(PathError::Empty);
    }
    if !raw_path_and_query.starts_with('/') {
        return Err(PathError::NotOriginForm);
    }

    // Split off the query, which is checked but kept as received.
    let (raw_path, query) = match raw_path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (raw_path_and_query, None),
    };
    if let Some(q) = query {
        check_query(q)?;
    }

    let decoded = normalize_escapes(raw_path, allow_encoded_slash)?;
    let path = remove_dot_segments(&merge_slashes(&decoded));
    Ok(CanonicalTarget {
        path,
        query: query.map(str::to_owned),
    })
}

/// Canonicalizes an absolute-form target (`http://host:port/path?query`), returning the
/// authority as received next to the canonical target. An empty path becomes `/`
/// (RFC 9112 section 3.2.2). User info is refused (RFC 9110 section 4.2.4).
pub fn canonicalize_absolute(
    raw: &str,
    allow_encoded_slash: bool,
) -> Result<AbsoluteTarget, PathError> {
    let (scheme, rest) = raw.split_once("://").ok_or(PathError::BadAbsoluteForm)?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(PathError::BadAbsoluteForm);
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.is_empty() || authority.contains('@') {
        return Err(PathError::BadAbsoluteForm);
    }
    let target = if tail.starts_with('/') {
        canonicalize_path(tail, allow_encoded_slash)?
    } else {
        canonicalize_path(&format!("/{tail}"), allow_encoded_slash)?
    };
    Ok(AbsoluteTarget {
        authority: authority.to_owned(),
        target,
    })
}

fn check_query(query: &str) -> Result<(), PathError> {
    for b in query.bytes() {
        match b {
            b'#' => return Err(PathError::Fragment),
            b if b < 0x20 || b == 0x7f => return Err(PathError::ControlChar),
            _ => {}
        }
    }
    Ok(())
}

/// RFC 3986 section 2.3.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Characters allowed raw in a path: pchar and `/` (RFC 3986 section 3.3).
fn is_path_char(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
                | b'/'
        )
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn push_escaped(out: &mut String, b: u8) {
    // Writing to a String cannot fail.
    let _ = write!(out, "%{b:02X}");
}

fn normalize_escapes(raw: &str, allow_encoded_slash: bool) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let hi = bytes.get(i + 1).copied().and_then(hex_value);
                let lo = bytes.get(i + 2).copied().and_then(hex_value);
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(PathError::BadEscape);
                };
                let value = hi * 16 + lo;
                match value {
                    0 => return Err(PathError::EncodedNul),
                    b'/' if !allow_encoded_slash => return Err(PathError::EncodedSlash),
                    b'\\' if !allow_encoded_slash => return Err(PathError::EncodedBackslash),
                    v if is_unreserved(v) => out.push(char::from(v)),
                    v => push_escaped(&mut out, v),
                }
                i += 3;
                continue;
            }
            b'#' => return Err(PathError::Fragment),
            b if b < 0x20 || b == 0x7f => return Err(PathError::ControlChar),
            b'\\' if !allow_encoded_slash => return Err(PathError::Backslash),
            b if is_path_char(b) => out.push(char::from(b)),
            // Backslash when opted in, space, `"<>[]^`{|}` and non-ASCII bytes: encode, so
            // the raw and encoded spellings of the same path compare equal.
            b => push_escaped(&mut out, b),
        }
        i += 1;
    }
    Ok(out)
}

fn merge_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut previous_slash = false;
    for c in path.chars() {
        if c == '/' && previous_slash {
            continue;
        }
        previous_slash = c == '/';
        out.push(c);
    }
    out
}

/// RFC 3986 section 5.2.4 for an absolute path without empty segments (slashes already
/// merged): `.` segments vanish, `..` removes the segment before it and never climbs above
/// the root, and a final dot segment leaves a trailing slash.
fn remove_dot_segments(path: &str) -> String {
    let rest = path.strip_prefix('/').unwrap_or(path);
    let segments: Vec<&str> = rest.split('/').collect();
    let last = segments.len().saturating_sub(1);
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    for (i, segment) in segments.iter().enumerate() {
        match *segment {
            "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
        if i == last && matches!(*segment, "." | "..") {
            out.push("");
        }
    }
    format!("/{}", out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(raw: &str) -> Result<String, PathError> {
        canonicalize_path(raw, false).map(|t| t.path)
    }

    #[test]
    fn traversal_spellings_all_reach_the_same_path() {
        assert_eq!(path("/public/../admin"), Ok("/admin".into()));
        assert_eq!(path("/public/%2e%2e/admin"), Ok("/admin".into()));
        assert_eq!(path("/public/.%2E/admin"), Ok("/admin".into()));
        assert_eq!(path("//admin"), Ok("/admin".into()));
        assert_eq!(path("/.."), Ok("/".into()));
        assert_eq!(path("/a/b/../../../c"), Ok("/c".into()));
    }

    #[test]
    fn dot_segments_follow_rfc3986() {
        assert_eq!(path("/a/./b"), Ok("/a/b".into()));
        assert_eq!(path("/a/."), Ok("/a/".into()));
        assert_eq!(path("/a/.."), Ok("/".into()));
        assert_eq!(path("/a/b/"), Ok("/a/b/".into()));
        assert_eq!(path("/"), Ok("/".into()));
        assert_eq!(path("/a/..b/.c"), Ok("/a/..b/.c".into()));
    }

    #[test]
    fn escapes_are_normalized() {
        assert_eq!(path("/%41%7e%2d"), Ok("/A~-".into()));
        assert_eq!(path("/a%3fb%3Ac"), Ok("/a%3Fb%3Ac".into()));
        assert_eq!(path("/a b{c}"), Ok("/a%20b%7Bc%7D".into()));
        assert_eq!(path("/caf\u{e9}"), Ok("/caf%C3%A9".into()));
        assert_eq!(path("/a%0a"), Ok("/a%0A".into()));
    }

    #[test]
    fn separators_smuggled_by_encoding_are_refused() {
        assert_eq!(path("/public%2F..%2Fadmin"), Err(PathError::EncodedSlash));
        assert_eq!(path("/a%5cb"), Err(PathError::EncodedBackslash));
        assert_eq!(path("/a\\b"), Err(PathError::Backslash));
        assert_eq!(path("/a%00b"), Err(PathError::EncodedNul));
        assert_eq!(path("/a#b"), Err(PathError::Fragment));
        assert_eq!(path("/a?x#y"), Err(PathError::Fragment));
        assert_eq!(path("/a\tb"), Err(PathError::ControlChar));
        assert_eq!(path("/a?x\u{7f}"), Err(PathError::ControlChar));
    }

    #[test]
    fn opted_in_encoded_slash_stays_encoded_and_does_not_traverse() {
        assert_eq!(
            canonicalize_path("/public%2f..%2Fadmin", true).map(|t| t.path),
            Ok("/public%2F..%2Fadmin".into())
        );
        assert_eq!(
            canonicalize_path("/a\\b/%5c", true).map(|t| t.path),
            Ok("/a%5Cb/%5C".into())
        );
        assert_eq!(canonicalize_path("/a%00", true), Err(PathError::EncodedNul));
        assert_eq!(canonicalize_path("/a#", true), Err(PathError::Fragment));
    }

    #[test]
    fn malformed_targets_are_refused() {
        assert_eq!(path(""), Err(PathError::Empty));
        assert_eq!(path("admin"), Err(PathError::NotOriginForm));
        assert_eq!(path("*"), Err(PathError::NotOriginForm));
        assert_eq!(path("/a%zz"), Err(PathError::BadEscape));
        assert_eq!(path("/a%4"), Err(PathError::BadEscape));
        assert_eq!(path("/a%"), Err(PathError::BadEscape));
    }

    #[test]
    fn query_is_kept_as_received() {
        let t = canonicalize_path("/a/../b?x=%2F&y=../z", false);
        assert_eq!(
            t,
            Ok(CanonicalTarget {
                path: "/b".into(),
                query: Some("x=%2F&y=../z".into()),
            })
        );
        assert_eq!(canonicalize_path("/a", false).map(|t| t.query), Ok(None));
    }

    #[test]
    fn absolute_form_returns_the_authority() {
        let t = canonicalize_absolute("http://Api.Example:80/x/../admin?q", false);
        assert_eq!(
            t,
            Ok(AbsoluteTarget {
                authority: "Api.Example:80".into(),
                target: CanonicalTarget {
                    path: "/admin".into(),
                    query: Some("q".into()),
                },
            })
        );
        let bare = canonicalize_absolute("HTTPS://h?q=1", false).map(|t| t.target);
        assert_eq!(
            bare,
            Ok(CanonicalTarget {
                path: "/".into(),
                query: Some("q=1".into()),
            })
        );
        assert_eq!(
            canonicalize_absolute("ftp://h/", false),
            Err(PathError::BadAbsoluteForm)
        );
        assert_eq!(
            canonicalize_absolute("http://u@h/", false),
            Err(PathError::BadAbsoluteForm)
        );
        assert_eq!(
            canonicalize_absolute("http:///x", false),
            Err(PathError::BadAbsoluteForm)
        );
    }
}
