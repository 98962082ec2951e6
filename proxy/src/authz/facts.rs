//! From a raw request to [`RequestFacts`], the way the proxy does it: canonical host, route
//! match on the canonical path, the route's service, the node's locality and the context
//! headers the config lists.
//!
//! The proxy calls [`facts_for`] once per request after the listener has verified the peer;
//! `edgeward policy test` and `explain` call the same function, so the tooling decides with
//! exactly the facts the proxy would build. Nothing here reads a socket or the clock.

use std::net::IpAddr;
use std::sync::Arc;

use edgeward_certs::SpiffeId;

use super::request::{select_headers, Locality, RequestFacts, TlsFacts};
use crate::config::{Config, Route};
use crate::request::{resolve_authority, CanonicalHost, CanonicalTarget, HostError};
use crate::route::{RequestError, RouteTable};

/// A request as the listener received it, before canonicalization.
#[derive(Debug, Clone)]
pub struct RawRequest<'a> {
    /// The peer's verified SPIFFE ID; `None` without a client certificate.
    pub identity: Option<SpiffeId>,
    /// The HTTP method, as received.
    pub method: &'a str,
    /// Every `Host` header value (more than one is refused).
    pub host_headers: &'a [&'a str],
    /// `:authority` (HTTP/2) or the authority of an absolute-form target.
    pub authority: Option<&'a str>,
    /// The request target as received: origin-form or absolute-form.
    pub target: &'a str,
    /// True on a TLS listener (drops port 443 rather than 80 from the host).
    pub tls_listener: bool,
    /// The peer address.
    pub peer_ip: IpAddr,
    /// TLS facts of the connection.
    pub tls: TlsFacts,
    /// The request's headers; only those in `authz.context_headers` reach the context.
    pub headers: &'a [(&'a str, &'a str)],
    /// Now, in seconds since the Unix epoch.
    pub now_unix: i64,
}

/// Why a request has no facts: it is answered before authorization.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FactsError {
    /// The host is malformed or ambiguous (answer 400).
    #[error(transparent)]
    Host(#[from] HostError),
    /// The target is malformed (answer 400) or no route serves it (answer 404).
    #[error(transparent)]
    Request(#[from] RequestError),
}

/// The facts of one routed request, and where it would go.
#[derive(Debug, Clone)]
pub struct RoutedFacts<'c> {
    /// What authorization decides on.
    pub facts: RequestFacts,
    /// The canonical host routing and authorization used.
    pub host: CanonicalHost,
    /// The canonical target that goes upstream.
    pub target: CanonicalTarget,
    /// The matched route (its cluster, service and mode).
    pub route: &'c Route,
}

/// The node's locality as authorization sees it.
pub fn node_locality(config: &Config) -> Locality {
    let l = &config.node.locality;
    Locality {
        site: l.site.as_str().to_owned(),
        zone: l.zone.as_str().to_owned(),
        region: l.region.as_str().to_owned(),
    }
}

/// The request's canonical host, canonical target and route: the routing step, alone, for a
/// caller that has work to do between routing and authorization (the proxy checks the body
/// limit and the peer's chain there). [`facts_for`] is this, then [`build_facts`].
pub fn route_request<'c>(
    table: &'c RouteTable,
    request: &RawRequest<'_>,
) -> Result<(CanonicalHost, CanonicalTarget, &'c Arc<Route>), FactsError> {
    let host = resolve_authority(
        request.host_headers,
        request.authority,
        request.tls_listener,
    )?;
    let (target, route) = table.canonicalize_and_match(&host, request.target)?;
    Ok((host, target, route))
}

/// The facts of a routed request: the canonical host as [`CanonicalHost`] prints it (with a
/// port only when it is not the default), the canonical path, the route and its service, the
/// node's locality, and the context headers `config` lists.
pub fn build_facts(
    config: &Config,
    host: &CanonicalHost,
    target: &CanonicalTarget,
    route: &Route,
    request: &RawRequest<'_>,
) -> RequestFacts {
    RequestFacts {
        identity: request.identity.clone(),
        method: request.method.to_owned(),
        host: host.to_string(),
        path: target.path.clone(),
        route: route.name.as_str().to_owned(),
        service: route.service.as_str().to_owned(),
        node: node_locality(config),
        peer_ip: request.peer_ip,
        tls: request.tls.clone(),
        now_unix: request.now_unix,
        headers: select_headers(
            &config.authz.context_headers,
            request.headers.iter().copied(),
        ),
    }
}

/// Canonicalizes the host (reconciling `Host` with the authority), canonicalizes the target
/// and matches the route in `table` (built from `config.routes`), then fills in the facts:
/// the route and its service, the node's locality, and the context headers of `config`.
pub fn facts_for<'c>(
    config: &Config,
    table: &'c RouteTable,
    request: &RawRequest<'_>,
) -> Result<RoutedFacts<'c>, FactsError> {
    let (host, target, route) = route_request(table, request)?;
    let facts = build_facts(config, &host, &target, route, request);
    Ok(RoutedFacts {
        facts,
        host,
        target,
        route,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::authz::testkit::NOW;

    const CONFIG: &str = r#"
[node]
id = "n"
site = "berlin"
zone = "berlin-a"
region = "eu-central"
[authz]
policies = "p"
schema = "s"
context_headers = ["x-priority"]
[[routes]]
name = "admin"
path_prefix = "/admin"
cluster = "c"
service = "ops"
[[routes]]
name = "all"
path_prefix = "/"
cluster = "c"
[[clusters]]
name = "c"
[[clusters.endpoints]]
address = "127.0.0.1:1"
site = "berlin"
zone = "berlin-a"
region = "eu-central"
"#;

    fn request<'a>(target: &'a str, headers: &'a [(&'a str, &'a str)]) -> RawRequest<'a> {
        RawRequest {
            identity: None,
            method: "GET",
            host_headers: &["Site.Example.:443"],
            authority: None,
            target,
            tls_listener: true,
            peer_ip: "10.0.0.1".parse().expect("ip"),
            tls: TlsFacts::default(),
            headers,
            now_unix: NOW,
        }
    }

    #[test]
    fn traversal_is_decided_on_the_canonical_path_and_its_route() {
        let config = Config::from_toml_str(CONFIG, Path::new("c.toml")).expect("config");
        let table = RouteTable::new(&config.routes);
        let headers = [("X-Priority", "high"), ("cookie", "secret")];
        let routed =
            facts_for(&config, &table, &request("/public/../admin/x", &headers)).expect("routed");
        assert_eq!(routed.facts.host, "site.example");
        let mut with_port = request("/x", &[]);
        with_port.host_headers = &["site.example:8443"];
        let routed_port = facts_for(&config, &table, &with_port).expect("routed");
        assert_eq!(routed_port.facts.host, "site.example:8443");
        assert_eq!(routed.facts.path, "/admin/x");
        assert_eq!(routed.facts.route, "admin");
        assert_eq!(routed.facts.service, "ops");
        assert_eq!(routed.facts.node.site, "berlin");
        assert_eq!(
            routed.facts.headers,
            vec![("x-priority".to_owned(), "high".to_owned())]
        );
    }

    #[test]
    fn facts_name_the_route_its_service_and_cluster() {
        let config = Config::from_toml_str(CONFIG, Path::new("c.toml")).expect("config");
        let table = RouteTable::new(&config.routes);
        let routed = facts_for(&config, &table, &request("/x", &[])).expect("routed");
        assert_eq!(routed.facts.route, "all");
        assert_eq!(routed.facts.service, routed.route.service.as_str());
        assert_eq!(routed.route.cluster.as_str(), "c");
    }

    #[test]
    fn bad_targets_and_hosts_have_no_facts() {
        let config = Config::from_toml_str(CONFIG, Path::new("c.toml")).expect("config");
        let table = RouteTable::new(&config.routes);
        assert!(matches!(
            facts_for(&config, &table, &request("/a%2Fb", &[])),
            Err(FactsError::Request(_))
        ));
        let mut bad_host = request("/x", &[]);
        bad_host.host_headers = &["a", "b"];
        assert_eq!(
            facts_for(&config, &table, &bad_host).map(|r| r.facts),
            Err(FactsError::Host(HostError::DuplicateHost))
        );
    }
}
