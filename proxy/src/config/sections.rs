//! Validation of the node-level sections: `[node]`, `[identity]`, `[[trust_domains]]`,
//! `[[listeners]]`, `[admin]`, `[limits]`, `[authz]` and `[control_plane]`.

use std::net::SocketAddr;
use std::time::Duration;

use edgeward_certs::{SpiffeId, TrustDomain};

use super::context::Ctx;
use super::raw::{
    RawAdmin, RawAuthz, RawControlPlane, RawIdentity, RawLimits, RawListener, RawNode,
    RawTrustDomain,
};
use super::types::{
    Admin, Authz, ControlPlane, Identity, Limits, Listener, ListenerKind, Locality, Node,
    TrustDomainConfig,
};

/// The admin address when none is configured.
pub const DEFAULT_ADMIN_ADDRESS: &str = "127.0.0.1:9901";

pub(super) fn node(cx: &mut Ctx<'_>, raw: Option<&RawNode>) -> Option<Node> {
    let Some(raw) = raw else {
        cx.error(
            "node",
            "is required: a `[node]` table with `id`, `site`, `zone` and `region`",
        );
        return None;
    };
    let id = cx.name("node.id", raw.id.as_deref());
    let site = cx.name("node.site", raw.site.as_deref());
    let zone = cx.name("node.zone", raw.zone.as_deref());
    let region = cx.name("node.region", raw.region.as_deref());
    let data_dir = cx.opt_path("node.data_dir", raw.data_dir.as_deref());
    Some(Node {
        id: id?,
        locality: Locality {
            site: site?,
            zone: zone?,
            region: region?,
        },
        data_dir,
    })
}

pub(super) fn identity(cx: &mut Ctx<'_>, raw: &RawIdentity) -> Option<Identity> {
    let cert = cx.path("identity.cert", raw.cert.as_deref());
    let key = cx.path("identity.key", raw.key.as_deref());
    let reload_interval = cx.duration(
        "identity.reload_interval",
        raw.reload_interval.as_deref(),
        Duration::from_secs(5),
    );
    Some(Identity {
        cert: cert?,
        key: key?,
        reload_interval: reload_interval?,
    })
}

pub(super) fn trust_domain(
    cx: &mut Ctx<'_>,
    i: usize,
    raw: &RawTrustDomain,
) -> Option<TrustDomainConfig> {
    let key = format!("trust_domains[{i}]");
    let name = cx
        .required(&format!("{key}.name"), raw.name.as_deref())
        .and_then(|n| match TrustDomain::new(n) {
            Ok(td) => Some(td),
            Err(e) => {
                cx.error(
                    format!("{key}.name"),
                    format!(
                        "expected a trust domain name such as `acme.example`: `{}` {e}",
                        n.escape_default()
                    ),
                );
                None
            }
        });
    let bundle = cx.path(&format!("{key}.bundle"), raw.bundle.as_deref());
    let crls: Vec<_> = raw
        .crls
        .iter()
        .enumerate()
        .map(|(j, c)| cx.path(&format!("{key}.crls[{j}]"), Some(c)))
        .collect();
    Some(TrustDomainConfig {
        name: name?,
        bundle: bundle?,
        crls: crls.into_iter().collect::<Option<_>>()?,
    })
}

pub(super) fn listener(cx: &mut Ctx<'_>, i: usize, raw: &RawListener) -> Option<Listener> {
    let key = format!("listeners[{i}]");
    let name = cx.name(&format!("{key}.name"), raw.name.as_deref());
    let spelled = cx.required(&format!("{key}.kind"), raw.kind.as_deref());
    let kind = match spelled.map(|s| (s, ListenerKind::ALL.into_iter().find(|k| k.as_str() == s))) {
        Some((_, Some(kind))) => Some(kind),
        Some((other, None)) => {
            cx.error(
                format!("{key}.kind"),
                format!(
                    "expected `mtls`, `tls` or `plaintext`, found `{}`",
                    other.escape_default()
                ),
            );
            None
        }
        None => None,
    };
    let address = socket_address(cx, &format!("{key}.address"), raw.address.as_deref());
    let max_connections = cx.count_u32(
        &format!("{key}.max_connections"),
        raw.max_connections,
        10_000,
    );

    // Plaintext carries no identity, so it is only allowed where nothing off the host can
    // reach it.
    if let (Some(ListenerKind::Plaintext), Some(addr)) = (kind, address) {
        if !addr.ip().is_loopback() {
            cx.error(
                format!("{key}.address"),
                format!(
                    "expected a loopback address for a plaintext listener (such as `127.0.0.1:{}`), found `{addr}`; use kind `tls` or `mtls` elsewhere",
                    addr.port()
                ),
            );
        }
    }
    Some(Listener {
        name: name?,
        kind: kind?,
        address: address?,
        max_connections: max_connections?,
    })
}

pub(super) fn admin(cx: &mut Ctx<'_>, raw: Option<&RawAdmin>) -> Option<Admin> {
    let value = raw
        .and_then(|a| a.address.as_deref())
        .unwrap_or(DEFAULT_ADMIN_ADDRESS);
    let address = socket_address(cx, "admin.address", Some(value))?;
    Some(Admin { address })
}

/// The most header fields pingora's HTTP/1 parser reads (`MAX_HEADERS` in pingora-core).
pub const MAX_PARSED_HEADERS: usize = 256;

pub(super) fn limits(cx: &mut Ctx<'_>, raw: &RawLimits) -> Option<Limits> {
    let max_header_bytes =
        cx.count_usize("limits.max_header_bytes", raw.max_header_bytes, 32 * 1024);
    let max_header_count = cx
        .count_usize("limits.max_header_count", raw.max_header_count, 100)
        .filter(|n| {
            let fits = n.get() <= MAX_PARSED_HEADERS;
            if !fits {
                cx.error(
                    "limits.max_header_count",
                    format!(
                        "at most {MAX_PARSED_HEADERS}, found {n}: pingora's HTTP/1 parser reads no \
                         more header fields than that (a request with more gets its 400)"
                    ),
                );
            }
            fits
        });
    let header_timeout = cx.duration(
        "limits.header_timeout",
        raw.header_timeout.as_deref(),
        Duration::from_secs(15),
    );
    let streams = cx.count_u32(
        "limits.h2_max_concurrent_streams",
        raw.h2_max_concurrent_streams,
        100,
    );
    let header_list = cx.count_u32(
        "limits.h2_max_header_list_bytes",
        raw.h2_max_header_list_bytes,
        32 * 1024,
    );
    let max_body_bytes = cx.count_u64(
        "limits.max_body_bytes",
        raw.max_body_bytes,
        10 * 1024 * 1024,
    );
    Some(Limits {
        max_header_bytes: max_header_bytes?,
        max_header_count: max_header_count?,
        header_timeout: header_timeout?,
        h2_max_concurrent_streams: streams?,
        h2_max_header_list_bytes: header_list?,
        max_body_bytes: max_body_bytes?,
    })
}

pub(super) fn control_plane(
    cx: &mut Ctx<'_>,
    raw: &RawControlPlane,
    has_data_dir: bool,
) -> Option<ControlPlane> {
    if !has_data_dir {
        cx.error(
            "node.data_dir",
            "is required with `[control_plane]`: the folder where the node keeps its last-known-good bundle and telemetry queue",
        );
    }
    let address = socket_address(cx, "control_plane.address", raw.address.as_deref());
    let spiffe_id = match cx.required("control_plane.spiffe_id", raw.spiffe_id.as_deref()) {
        None => None,
        Some(s) => match SpiffeId::parse(s) {
            Ok(id) => Some(id),
            Err(e) => {
                cx.error(
                    "control_plane.spiffe_id",
                    format!(
                        "expected the control plane's SPIFFE ID such as `spiffe://acme.example/control-plane`: `{}` {e}",
                        s.escape_default()
                    ),
                );
                None
            }
        },
    };
    let server_name = raw
        .server_name
        .clone()
        .unwrap_or_else(|| "localhost".into());
    if rustls_pki_types::ServerName::try_from(server_name.as_str()).is_err() {
        cx.error(
            "control_plane.server_name",
            format!(
                "expected a DNS name or IP address such as `cp.acme.example`, found `{}`",
                server_name.escape_default()
            ),
        );
    }
    let interval = cx.duration(
        "control_plane.telemetry_interval",
        raw.telemetry_interval.as_deref(),
        Duration::from_secs(10),
    );
    let queue = cx.count_u64(
        "control_plane.telemetry_queue_bytes",
        raw.telemetry_queue_bytes,
        64 * 1024 * 1024,
    );
    Some(ControlPlane {
        address: address?,
        spiffe_id: spiffe_id?,
        server_name,
        telemetry_interval: interval?,
        telemetry_queue_bytes: queue?,
    })
}

/// Decisions remembered per policy snapshot unless `authz.decision_memo` says otherwise.
pub const DEFAULT_DECISION_MEMO: usize = 4096;
/// The most `authz.decision_memo` may ask for.
pub const MAX_DECISION_MEMO: usize = 100_000;

pub(super) fn authz(cx: &mut Ctx<'_>, raw: Option<&RawAuthz>) -> Option<Authz> {
    let Some(raw) = raw else {
        cx.error(
            "authz",
            "is required: an `[authz]` table with `policies` and `schema`",
        );
        return None;
    };
    let policies = cx.path("authz.policies", raw.policies.as_deref());
    let schema = cx.path("authz.schema", raw.schema.as_deref());
    let entities = cx.opt_path("authz.entities", raw.entities.as_deref());
    let mut headers_ok = true;
    for (i, h) in raw.context_headers.iter().enumerate() {
        // RFC 9110 section 5.1 field names are tokens; we also require lowercase so that the
        // names match what HTTP/2 sends and what policies compare against.
        let token =
            |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "!#$%&'*+-.^_`|~".contains(c);
        if h.is_empty() || !h.chars().all(token) {
            headers_ok = false;
            cx.error(
                format!("authz.context_headers[{i}]"),
                format!(
                    "expected a lowercase header name such as `x-request-priority`, found `{}`",
                    h.escape_default()
                ),
            );
        }
    }
    let memo = raw.decision_memo.unwrap_or(DEFAULT_DECISION_MEMO as u64);
    if memo > MAX_DECISION_MEMO as u64 {
        cx.error(
            "authz.decision_memo",
            format!(
                "expected at most {MAX_DECISION_MEMO} remembered decisions (each takes a few hundred bytes), found {memo}; 0 turns the memo off"
            ),
        );
        return None;
    }
    if !headers_ok {
        return None;
    }
    Some(Authz {
        policies: policies?,
        schema: schema?,
        entities,
        context_headers: raw.context_headers.clone(),
        decision_memo: memo as usize,
    })
}

fn socket_address(cx: &mut Ctx<'_>, key: &str, value: Option<&str>) -> Option<SocketAddr> {
    let value = cx.required(key, value)?;
    match value.parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            cx.error(
                key,
                format!(
                    "expected an IP address and port such as `0.0.0.0:8443` or `[::1]:8443`, found `{}`",
                    value.escape_default()
                ),
            );
            None
        }
    }
}
