//! Cross-field checks, all in one place: names that must be unique or must exist, TLS
//! settings that need an identity or trust domains, and addresses that must not collide.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::context::Ctx;
use super::raw::RawConfig;
use super::types::{ClusterConfig, Listener, ListenerKind, Route, UpstreamTransport};

/// The validated pieces the checks look at, each with its index in the file.
pub(super) struct Validated<'a> {
    pub listeners: &'a [(usize, Listener)],
    pub routes: &'a [(usize, Route)],
    pub clusters: &'a [(usize, ClusterConfig)],
    pub admin: Option<SocketAddr>,
}

pub(super) fn cross_field(cx: &mut Ctx<'_>, raw: &RawConfig, v: &Validated<'_>) {
    unique_names(
        cx,
        "listeners",
        raw.listeners.iter().map(|l| l.name.as_deref()),
    );
    unique_names(cx, "routes", raw.routes.iter().map(|r| r.name.as_deref()));
    unique_names(
        cx,
        "clusters",
        raw.clusters.iter().map(|c| c.name.as_deref()),
    );
    unique_names(
        cx,
        "trust_domains",
        raw.trust_domains.iter().map(|t| t.name.as_deref()),
    );

    // Every route names a cluster that exists.
    for (i, r) in raw.routes.iter().enumerate() {
        let Some(cluster) = r.cluster.as_deref() else {
            continue;
        };
        if !raw
            .clusters
            .iter()
            .any(|c| c.name.as_deref() == Some(cluster))
        {
            cx.error(
                format!("routes[{i}].cluster"),
                format!(
                    "expected the name of a `[[clusters]]` entry, found `{}`",
                    cluster.escape_default()
                ),
            );
        }
    }

    // Two routes with the same host and prefix would make the match depend on file order.
    let mut seen: HashMap<(String, &str), usize> = HashMap::new();
    for (i, r) in v.routes {
        let host = r
            .host
            .as_ref()
            .map_or_else(|| "*".to_owned(), |h| h.to_string());
        if let Some(first) = seen.insert((host.clone(), r.path_prefix.as_str()), *i) {
            cx.error(
                format!("routes[{i}].path_prefix"),
                format!(
                    "host `{host}` and prefix `{}` are already routed by routes[{first}]",
                    r.path_prefix
                ),
            );
        }
    }

    // Listener addresses, and the admin address, are bound once each.
    let mut bound: HashMap<SocketAddr, String> = HashMap::new();
    if let Some(admin) = v.admin {
        bound.insert(admin, "admin.address".to_owned());
    }
    for (i, l) in v.listeners {
        if let Some(first) = bound.insert(l.address, format!("listeners[{i}].address")) {
            cx.error(
                format!("listeners[{i}].address"),
                format!("`{}` is already used by {first}", l.address),
            );
        }
    }

    tls_material(cx, raw, v);
}

fn unique_names<'a>(cx: &mut Ctx<'_>, section: &str, names: impl Iterator<Item = Option<&'a str>>) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, name) in names.enumerate() {
        let Some(name) = name else { continue };
        if let Some(first) = seen.insert(name, i) {
            cx.error(
                format!("{section}[{i}].name"),
                format!(
                    "expected a unique name, `{}` is also used by {section}[{first}]",
                    name.escape_default()
                ),
            );
        }
    }
}

fn tls_material(cx: &mut Ctx<'_>, raw: &RawConfig, v: &Validated<'_>) {
    let tls_endpoints: Vec<(String, &UpstreamTransport)> = v
        .clusters
        .iter()
        .flat_map(|(i, c)| {
            c.endpoints
                .iter()
                .enumerate()
                .map(move |(j, e)| (format!("clusters[{i}].endpoints[{j}]"), &e.transport))
        })
        .filter(|(_, t)| matches!(t, UpstreamTransport::Tls { .. }))
        .collect();

    // The node's SVID is served on TLS listeners and presented to mTLS upstreams.
    if raw.identity.is_none() {
        for (i, l) in v.listeners {
            if l.kind != ListenerKind::Plaintext {
                cx.error(
                    format!("listeners[{i}].kind"),
                    "needs the node's `[identity]` (cert and key) to serve TLS",
                );
            }
        }
        for (key, _) in &tls_endpoints {
            cx.error(
                format!("{key}.tls"),
                "needs the node's `[identity]` (cert and key) for mTLS to the upstream",
            );
        }
    }

    // Client certificates and upstream certificates are verified against a trust domain.
    for (i, l) in v.listeners {
        if l.kind == ListenerKind::Mtls && raw.trust_domains.is_empty() {
            cx.error(
                format!("listeners[{i}].kind"),
                "needs at least one `[[trust_domains]]` to verify client certificates",
            );
        }
    }
    for (key, transport) in &tls_endpoints {
        let UpstreamTransport::Tls { spiffe_id, .. } = transport else {
            continue;
        };
        let domain = spiffe_id.trust_domain().as_str();
        if !raw
            .trust_domains
            .iter()
            .any(|t| t.name.as_deref() == Some(domain))
        {
            cx.error(
                format!("{key}.spiffe_id"),
                format!("trust domain `{domain}` has no `[[trust_domains]]` entry to verify the upstream against"),
            );
        }
    }
}
