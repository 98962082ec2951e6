//! Route matching: which route, and so which cluster and Cedar service, serves a request.
//!
//! Host-specific routes beat wildcard ones; among the routes for one host the longest path
//! prefix wins, and prefixes match whole segments (`/api` matches `/api` and `/api/x`, never
//! `/apix`). Matching runs on the canonical host and path from `crate::request`, the same
//! values authorization sees.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::Route;
use crate::request::{
    canonicalize_absolute, canonicalize_path, CanonicalHost, CanonicalTarget, PathError,
};

/// Why a request could not be given a route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The target is malformed or uses an encoding no matching route allows (answer 400).
    #[error(transparent)]
    Path(#[from] PathError),
    /// No route serves this host and path (answer 404).
    #[error("no route for this host and path")]
    NoRoute,
}

/// The routes of one config, indexed for matching.
#[derive(Debug, Clone)]
pub struct RouteTable {
    /// Shared with the requests they serve (a request keeps its route without copying it).
    routes: Vec<Arc<Route>>,
    /// Route indexes per host name, longest prefix first.
    by_host: HashMap<String, Vec<usize>>,
    /// Routes for any host, longest prefix first.
    wildcard: Vec<usize>,
}

impl RouteTable {
    /// Indexes validated routes. Validation already refused two routes with the same host and
    /// prefix; were there any, the first in file order would win.
    pub fn new(routes: &[Route]) -> Self {
        let mut by_host: HashMap<String, Vec<usize>> = HashMap::new();
        let mut wildcard = Vec::new();
        for (i, route) in routes.iter().enumerate() {
            match &route.host {
                Some(host) => by_host
                    .entry(host.hostname().to_owned())
                    .or_default()
                    .push(i),
                None => wildcard.push(i),
            }
        }
        // A stable sort keeps file order among equal prefix lengths.
        let longest_first = |list: &mut Vec<usize>| {
            list.sort_by_key(|i| std::cmp::Reverse(routes[*i].path_prefix.len()));
        };
        by_host.values_mut().for_each(longest_first);
        longest_first(&mut wildcard);
        Self {
            routes: routes.iter().cloned().map(Arc::new).collect(),
            by_host,
            wildcard,
        }
    }

    /// The route for a canonical host and path, if any. The port plays no part.
    pub fn match_route(&self, host: &CanonicalHost, path: &str) -> Option<&Arc<Route>> {
        let find = |list: &[usize]| {
            list.iter()
                .map(|i| &self.routes[*i])
                .find(|r| prefix_matches(&r.path_prefix, path))
        };
        self.by_host
            .get(host.hostname())
            .and_then(|list| find(list))
            .or_else(|| find(&self.wildcard))
    }

    /// Canonicalizes a raw request target (origin-form, or absolute-form whose authority the
    /// caller already passed to `resolve_authority`) and matches it.
    ///
    /// The target is canonicalized strictly first. Only when that fails on an encoded slash or
    /// backslash is it canonicalized leniently (kept encoded, never a separator), and the
    /// result is accepted only if the route it matches opted in with `allow_encoded_slash`;
    /// otherwise the strict error stands.
    pub fn canonicalize_and_match(
        &self,
        host: &CanonicalHost,
        raw_target: &str,
    ) -> Result<(CanonicalTarget, &Arc<Route>), RequestError> {
        let strict = canonicalize_target(raw_target, false);
        let target = match strict {
            Ok(t) => t,
            Err(e) if e.is_encoded_separator() => {
                let lenient = canonicalize_target(raw_target, true)?;
                return match self.match_route(host, &lenient.path) {
                    Some(route) if route.allow_encoded_slash => Ok((lenient, route)),
                    _ => Err(RequestError::Path(e)),
                };
            }
            Err(e) => return Err(RequestError::Path(e)),
        };
        let route = self
            .match_route(host, &target.path)
            .ok_or(RequestError::NoRoute)?;
        Ok((target, route))
    }
}

fn canonicalize_target(raw: &str, allow_encoded_slash: bool) -> Result<CanonicalTarget, PathError> {
    if raw.starts_with('/') {
        canonicalize_path(raw, allow_encoded_slash)
    } else if raw.contains("://") {
        canonicalize_absolute(raw, allow_encoded_slash).map(|a| a.target)
    } else {
        canonicalize_path(raw, allow_encoded_slash)
    }
}

/// Whole-segment prefix match: the path equals the prefix, or continues it after a `/`.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some("") => true,
        Some(rest) => prefix.ends_with('/') || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;
    use crate::request::canonicalize_host;

    fn table(routes: &[(&str, Option<&str>, &str, bool)]) -> RouteTable {
        let mut text = String::from(
            "[node]\nid = \"n\"\nsite = \"s\"\nzone = \"z\"\nregion = \"r\"\n\
             [authz]\npolicies = \"p\"\nschema = \"s\"\n\
             [[clusters]]\nname = \"c\"\n[[clusters.endpoints]]\naddress = \"127.0.0.1:1\"\n\
             site = \"s\"\nzone = \"z\"\nregion = \"r\"\n",
        );
        for (name, host, prefix, slash) in routes {
            text.push_str(&format!(
                "[[routes]]\nname = \"{name}\"\npath_prefix = \"{prefix}\"\ncluster = \"c\"\n\
                 allow_encoded_slash = {slash}\n"
            ));
            if let Some(h) = host {
                text.push_str(&format!("host = \"{h}\"\n"));
            }
        }
        let config = Config::from_toml_str(&text, Path::new("t.toml")).expect("valid config");
        RouteTable::new(&config.routes)
    }

    fn matched(t: &RouteTable, host: &str, path: &str) -> Option<String> {
        let host = canonicalize_host(host, true).expect("host");
        t.match_route(&host, path).map(|r| r.name.to_string())
    }

    #[test]
    fn host_specific_beats_wildcard_then_longest_prefix() {
        let t = table(&[
            ("any", None, "/", false),
            ("any-api", None, "/api/v1", false),
            ("admin", Some("admin.example"), "/", false),
            ("admin-api", Some("admin.example"), "/api", false),
        ]);
        assert_eq!(
            matched(&t, "admin.example", "/api/v1/x"),
            Some("admin-api".into())
        );
        assert_eq!(
            matched(&t, "admin.example:8443", "/other"),
            Some("admin".into())
        );
        assert_eq!(
            matched(&t, "public.example", "/api/v1"),
            Some("any-api".into())
        );
        assert_eq!(
            matched(&t, "public.example", "/api/v10"),
            Some("any".into())
        );
    }

    #[test]
    fn prefixes_match_whole_segments() {
        let t = table(&[
            ("api", None, "/api", false),
            ("docs", None, "/docs/", false),
        ]);
        assert_eq!(matched(&t, "h", "/api"), Some("api".into()));
        assert_eq!(matched(&t, "h", "/api/x"), Some("api".into()));
        assert_eq!(matched(&t, "h", "/apix"), None);
        assert_eq!(matched(&t, "h", "/docs/"), Some("docs".into()));
        assert_eq!(matched(&t, "h", "/docs"), None);
    }

    #[test]
    fn host_routes_fall_back_to_wildcard_when_no_prefix_fits() {
        let t = table(&[
            ("any", None, "/", false),
            ("a", Some("a.example"), "/only", false),
        ]);
        assert_eq!(matched(&t, "a.example", "/else"), Some("any".into()));
    }

    #[test]
    fn traversal_reaches_the_route_of_the_canonical_path() {
        let t = table(&[
            ("public", None, "/public", false),
            ("admin", None, "/admin", false),
        ]);
        let host = canonicalize_host("h", false).expect("host");
        for raw in ["/public/../admin", "/public/%2e%2e/admin", "//admin"] {
            let (target, route) = t.canonicalize_and_match(&host, raw).expect("routed");
            assert_eq!(
                (target.path.as_str(), route.name.as_str()),
                ("/admin", "admin")
            );
        }
        assert_eq!(
            t.canonicalize_and_match(&host, "/public%2F..%2Fadmin")
                .map(|(t, _)| t),
            Err(RequestError::Path(PathError::EncodedSlash))
        );
        assert_eq!(
            t.canonicalize_and_match(&host, "/nothing"),
            Err(RequestError::NoRoute)
        );
    }

    #[test]
    fn encoded_slash_only_for_routes_that_opt_in() {
        let t = table(&[
            ("files", None, "/files", true),
            ("admin", None, "/admin", false),
        ]);
        let host = canonicalize_host("h", false).expect("host");
        let (target, route) = t
            .canonicalize_and_match(&host, "/files/a%2fb")
            .expect("routed");
        assert_eq!(
            (target.path.as_str(), route.name.as_str()),
            ("/files/a%2Fb", "files")
        );
        assert_eq!(
            t.canonicalize_and_match(&host, "/admin/a%2Fb")
                .map(|(t, _)| t),
            Err(RequestError::Path(PathError::EncodedSlash))
        );
        assert_eq!(
            t.canonicalize_and_match(&host, "/files/a%2F%00")
                .map(|(t, _)| t),
            Err(RequestError::Path(PathError::EncodedNul))
        );
        let (target, _) = t
            .canonicalize_and_match(&host, "http://h/files/x")
            .expect("absolute-form");
        assert_eq!(target.path, "/files/x");
    }
}
