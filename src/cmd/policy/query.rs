//! One request as `policy test` and `policy explain` describe it, decided the way the proxy
//! decides it: `facts_for` (canonical host, canonical path, route match, node locality,
//! context headers), then `Authorizer::decide`, then the balancer's pick for the route's
//! cluster, as at start with every endpoint healthy.

use std::net::IpAddr;
use std::time::Instant;

use edgeward_certs::SpiffeId;
use edgeward_proxy::authz::facts::{facts_for, RawRequest};
use edgeward_proxy::authz::{Authorizer, Decision, PolicySnapshot, TlsFacts};
use edgeward_proxy::balance::Cluster;
use edgeward_proxy::config::{Config, Mode};
use edgeward_proxy::request::canonicalize_absolute;
use edgeward_proxy::route::RouteTable;
use serde_json::json;

/// The peer address when a case or `explain` gives none: TEST-NET-1 (RFC 5737), in no site
/// network, so no policy on the peer address is met by accident.
pub const DEFAULT_PEER_IP: &str = "192.0.2.10";

/// A request to decide.
#[derive(Debug, Clone)]
pub struct Query {
    /// The peer's SPIFFE ID; `None` for an anonymous request.
    pub identity: Option<SpiffeId>,
    /// The HTTP method, case-sensitive.
    pub method: String,
    /// An absolute URL, or a host and an origin-form target.
    pub target: Target,
    /// The peer address.
    pub peer_ip: IpAddr,
    /// Seconds since the Unix epoch.
    pub now_unix: i64,
    /// Overrides of the TLS facts; by default `https` is TLS 1.3 with ALPN `h2` and mTLS when
    /// an identity is given.
    pub mtls: Option<bool>,
    /// The TLS version override.
    pub tls_version: Option<String>,
    /// The ALPN override.
    pub alpn: Option<String>,
    /// Request headers (the config picks those that reach the context).
    pub headers: Vec<(String, String)>,
}

/// Where the request goes.
#[derive(Debug, Clone)]
pub enum Target {
    /// `https://host[:port]/path?query` or `http://...`.
    Url(String),
    /// A `Host` value and an origin-form target, over TLS.
    HostPath {
        /// The `Host` header.
        host: String,
        /// The request target, e.g. `/api/x?y=1`.
        path: String,
    },
}

/// The decision with everything that led to it.
#[derive(Debug, Clone)]
pub struct Explained {
    /// The decision; a request that cannot be routed is denied with the reason in `errors`.
    pub decision: Decision,
    /// The canonical host and path, when the request got that far.
    pub host: Option<String>,
    /// The canonical path.
    pub path: Option<String>,
    /// The matched route, its service, cluster and mode.
    pub route: Option<RouteInfo>,
}

/// The route a request matched and the upstream the proxy would pick.
#[derive(Debug, Clone)]
pub struct RouteInfo {
    /// The route name.
    pub name: String,
    /// The Cedar service.
    pub service: String,
    /// The cluster.
    pub cluster: String,
    /// `enforce` or `audit`.
    pub mode: &'static str,
    /// The endpoint and its tier (`local`, `zone`, `region`), when the cluster has one.
    pub upstream: Option<(String, &'static str)>,
}

/// Decides `query` against `snapshot` with the routes and node of `config`.
pub fn decide(snapshot: &PolicySnapshot, config: &Config, query: &Query) -> Explained {
    let table = RouteTable::new(&config.routes);

    // The request as a listener would receive it.
    let (tls_listener, authority, target, host_header) = match &query.target {
        Target::Url(url) => {
            let https = url
                .get(..8)
                .is_some_and(|s| s.eq_ignore_ascii_case("https://"));
            let authority = canonicalize_absolute(url, true)
                .map(|a| a.authority)
                .unwrap_or_default();
            (https, Some(authority), url.as_str(), None)
        }
        Target::HostPath { host, path } => (true, None, path.as_str(), Some(host.as_str())),
    };
    let host_headers: Vec<&str> = host_header.into_iter().collect();
    let headers: Vec<(&str, &str)> = query
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let tls = TlsFacts {
        version: query
            .tls_version
            .clone()
            .unwrap_or_else(|| if tls_listener { "TLSv1.3" } else { "" }.to_owned()),
        mtls: query
            .mtls
            .unwrap_or(query.identity.is_some() && tls_listener),
        alpn: query
            .alpn
            .clone()
            .unwrap_or_else(|| if tls_listener { "h2" } else { "" }.to_owned()),
    };
    let raw = RawRequest {
        identity: query.identity.clone(),
        method: &query.method,
        host_headers: &host_headers,
        authority: authority.as_deref(),
        target,
        tls_listener,
        peer_ip: query.peer_ip,
        tls,
        headers: &headers,
        now_unix: query.now_unix,
    };

    // Canonicalize and route, as the proxy does before authorization.
    let routed = match facts_for(config, &table, &raw) {
        Ok(routed) => routed,
        Err(e) => {
            return Explained {
                decision: Decision {
                    allowed: false,
                    reasons: Vec::new(),
                    errors: vec![format!(
                        "not routed, the proxy answers it without authorization: {e}"
                    )],
                },
                host: None,
                path: None,
                route: None,
            }
        }
    };

    // Decide, then the upstream the balancer would pick.
    let decision = Authorizer::new().decide(snapshot, &routed.facts);
    let route = routed.route;
    let upstream = config
        .clusters
        .iter()
        .find(|c| c.name == route.cluster)
        .and_then(|c| {
            let cluster = Cluster::new(c, &config.node.locality);
            let pick = cluster.pick(Instant::now(), &[])?;
            let endpoint = cluster.endpoint(pick.endpoint)?;
            Some((endpoint.address.to_string(), pick.tier.as_str()))
        });
    Explained {
        decision,
        host: Some(routed.facts.host.clone()),
        path: Some(routed.facts.path.clone()),
        route: Some(RouteInfo {
            name: route.name.as_str().to_owned(),
            service: route.service.as_str().to_owned(),
            cluster: route.cluster.as_str().to_owned(),
            mode: match route.mode {
                Mode::Enforce => "enforce",
                Mode::Audit => "audit",
            },
            upstream,
        }),
    }
}

impl Explained {
    /// `allow` or `deny`.
    pub fn verdict(&self) -> &'static str {
        if self.decision.allowed {
            "allow"
        } else {
            "deny"
        }
    }

    /// The deciding policy ids, in file and line order.
    pub fn policy_ids(&self) -> Vec<String> {
        self.decision.reasons.iter().map(|r| r.id.clone()).collect()
    }

    /// The JSON form printed by `explain --json`.
    pub fn to_json(&self) -> serde_json::Value {
        let reasons: Vec<_> = self
            .decision
            .reasons
            .iter()
            .map(|r| json!({ "id": r.id, "file": r.file.display().to_string(), "line": r.line }))
            .collect();
        let route = self.route.as_ref().map(|r| {
            json!({
                "name": r.name,
                "service": r.service,
                "cluster": r.cluster,
                "mode": r.mode,
                "endpoint": r.upstream.as_ref().map(|u| &u.0),
                "tier": r.upstream.as_ref().map(|u| u.1),
            })
        });
        json!({
            "decision": self.verdict(),
            "policies": reasons,
            "errors": self.decision.errors,
            "host": self.host,
            "path": self.path,
            "route": route,
        })
    }
}

/// The route and node of a request when no proxy config is given.
#[derive(Debug, Clone, Default)]
pub struct Standalone {
    /// The route name.
    pub route: Option<String>,
    /// The route's service [default: the route name].
    pub service: Option<String>,
    /// The node's site.
    pub site: Option<String>,
    /// The node's zone [default: the site].
    pub zone: Option<String>,
    /// The node's region [default: the site].
    pub region: Option<String>,
}

/// A config with one route for every host and path, for requests decided without a proxy
/// config, so that they go through `facts_for` like any other. Its upstream is a placeholder:
/// callers do not show it.
pub fn standalone_config(given: &Standalone) -> Result<Config, String> {
    let (Some(route), Some(site)) = (&given.route, &given.site) else {
        return Err("without a proxy config, give the route (`route`) and the node's site (`site`); or give a config".to_owned());
    };
    let quote = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let service = given.service.as_deref().unwrap_or(route);
    let zone = given.zone.as_deref().unwrap_or(site);
    let region = given.region.as_deref().unwrap_or(site);
    let text = format!(
        "[node]\nid = \"policy-tool\"\nsite = {site}\nzone = {zone}\nregion = {region}\n\
         [authz]\npolicies = \"policies\"\nschema = \"policies/schema.cedarschema\"\n\
         [[routes]]\nname = {route}\npath_prefix = \"/\"\ncluster = \"standalone\"\nservice = {service}\n\
         [[clusters]]\nname = \"standalone\"\n[[clusters.endpoints]]\naddress = \"127.0.0.1:9\"\n\
         site = {site}\nzone = {zone}\nregion = {region}\n",
        site = quote(site),
        zone = quote(zone),
        region = quote(region),
        route = quote(route),
        service = quote(service),
    );
    Config::from_toml_str(&text, std::path::Path::new("(standalone)")).map_err(|e| {
        e.errors()
            .iter()
            .map(|e| format!("`{}` {}", e.key, e.message))
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// Removes the placeholder upstream of a standalone config from an explanation.
pub fn without_upstream(mut explained: Explained) -> Explained {
    if let Some(route) = &mut explained.route {
        route.cluster.clear();
        route.upstream = None;
    }
    explained
}
