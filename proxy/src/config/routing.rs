//! Validation of `[[routes]]` and `[[clusters]]` with their endpoints, health checks and
//! outlier settings.

use std::net::IpAddr;
use std::time::Duration;

use edgeward_certs::SpiffeId;

use super::context::Ctx;
use super::raw::{RawCluster, RawEndpoint, RawHealth, RawOutlier, RawRoute};
use super::types::{
    BalanceKind, ClusterConfig, EndpointConfig, HealthCheck, Limits, Locality, Mode, Outlier,
    Route, UpstreamAddress, UpstreamHost, UpstreamTransport,
};
use crate::request::{canonicalize_host, canonicalize_path};

pub(super) fn route(
    cx: &mut Ctx<'_>,
    i: usize,
    raw: &RawRoute,
    limits: Option<&Limits>,
) -> Option<Route> {
    let key = format!("routes[{i}]");
    let name = cx.name(&format!("{key}.name"), raw.name.as_deref());
    let cluster = cx.name(&format!("{key}.cluster"), raw.cluster.as_deref());
    let service = match raw.service.as_deref() {
        Some(s) => cx.name(&format!("{key}.service"), Some(s)),
        None => cluster.clone(),
    };
    let allow_encoded_slash = raw.allow_encoded_slash.unwrap_or(false);

    // The host is canonicalized exactly like request hosts, so the two compare as strings.
    let host = match raw.host.as_deref() {
        None | Some("*") => Some(None),
        Some(h) => match canonicalize_host(h, false) {
            Ok(c) if c.port().is_none() => Some(Some(c)),
            Ok(_) => {
                cx.error(
                    format!("{key}.host"),
                    format!(
                        "expected a host without a port, found `{}`",
                        h.escape_default()
                    ),
                );
                None
            }
            Err(e) => {
                cx.error(
                    format!("{key}.host"),
                    format!("expected a host name such as `api.example` or `*`: {e}"),
                );
                None
            }
        },
    };

    // The prefix must already be canonical, or it could never match a canonical path.
    let path_prefix = cx
        .required(&format!("{key}.path_prefix"), raw.path_prefix.as_deref())
        .and_then(|p| match canonicalize_path(p, allow_encoded_slash) {
            Ok(t) if t.query.is_none() && t.path == p => Some(p.to_owned()),
            Ok(t) => {
                cx.error(
                    format!("{key}.path_prefix"),
                    format!(
                        "expected a canonical path without a query, such as `{}`, found `{}`",
                        t.path,
                        p.escape_default()
                    ),
                );
                None
            }
            Err(e) => {
                cx.error(
                    format!("{key}.path_prefix"),
                    format!("expected a path starting with `/`: {e}"),
                );
                None
            }
        });

    let mode = match raw.mode.as_deref() {
        None | Some("enforce") => Some(Mode::Enforce),
        Some("audit") => Some(Mode::Audit),
        Some(other) => {
            cx.error(
                format!("{key}.mode"),
                format!(
                    "expected `enforce` or `audit`, found `{}`",
                    other.escape_default()
                ),
            );
            None
        }
    };
    let default_body = limits.map_or(10 * 1024 * 1024, |l| l.max_body_bytes.get());
    let max_body_bytes = cx.count_u64(
        &format!("{key}.max_body_bytes"),
        raw.max_body_bytes,
        default_body,
    );
    let connect_timeout = cx.duration(
        &format!("{key}.connect_timeout"),
        raw.connect_timeout.as_deref(),
        Duration::from_secs(2),
    );
    let request_timeout = cx.duration(
        &format!("{key}.request_timeout"),
        raw.request_timeout.as_deref(),
        Duration::from_secs(30),
    );
    let retries = match u32::try_from(raw.retries.unwrap_or(2)) {
        Ok(r) => Some(r),
        Err(_) => {
            cx.error(
                format!("{key}.retries"),
                "expected a small number of retries, such as 2",
            );
            None
        }
    };
    Some(Route {
        name: name?,
        host: host?,
        path_prefix: path_prefix?,
        cluster: cluster?,
        service: service?,
        mode: mode?,
        allow_encoded_slash,
        max_body_bytes: max_body_bytes?,
        connect_timeout: connect_timeout?,
        request_timeout: request_timeout?,
        retries: retries?,
    })
}

pub(super) fn cluster(cx: &mut Ctx<'_>, i: usize, raw: &RawCluster) -> Option<ClusterConfig> {
    let key = format!("clusters[{i}]");
    let name = cx.name(&format!("{key}.name"), raw.name.as_deref());
    let balance = match raw.balance.as_deref() {
        None | Some("round_robin") => Some(BalanceKind::RoundRobin),
        Some("least_outstanding") => Some(BalanceKind::LeastOutstanding),
        Some(other) => {
            cx.error(
                format!("{key}.balance"),
                format!(
                    "expected `round_robin` or `least_outstanding`, found `{}`",
                    other.escape_default()
                ),
            );
            None
        }
    };
    let health = raw.health.as_ref().map(|h| health(cx, &key, h));
    let outlier = match &raw.outlier {
        Some(o) => outlier(cx, &key, o),
        None => Some(Outlier::default()),
    };
    if raw.endpoints.is_empty() {
        cx.error(
            format!("{key}.endpoints"),
            "expected at least one `[[clusters.endpoints]]`",
        );
    }
    let endpoints: Vec<_> = raw
        .endpoints
        .iter()
        .enumerate()
        .map(|(j, e)| endpoint(cx, &format!("{key}.endpoints[{j}]"), e))
        .collect();
    Some(ClusterConfig {
        name: name?,
        balance: balance?,
        http2: raw.http2.unwrap_or(false),
        health: health.map_or(Some(None), |h| h.map(Some))?,
        outlier: outlier?,
        endpoints: endpoints.into_iter().collect::<Option<_>>()?,
    })
}

fn health(cx: &mut Ctx<'_>, cluster_key: &str, raw: &RawHealth) -> Option<HealthCheck> {
    let key = format!("{cluster_key}.health");
    let path = cx
        .required(&format!("{key}.path"), raw.path.as_deref())
        .and_then(|p| match canonicalize_path(p, false) {
            Ok(_) if p.starts_with('/') => Some(p.to_owned()),
            _ => {
                cx.error(
                    format!("{key}.path"),
                    format!(
                        "expected a path such as `/healthz`, found `{}`",
                        p.escape_default()
                    ),
                );
                None
            }
        });
    let interval = cx.duration(
        &format!("{key}.interval"),
        raw.interval.as_deref(),
        Duration::from_secs(2),
    );
    let timeout = cx.duration(
        &format!("{key}.timeout"),
        raw.timeout.as_deref(),
        Duration::from_secs(1),
    );
    if let (Some(i), Some(t)) = (interval, timeout) {
        if t > i {
            cx.error(
                format!("{key}.timeout"),
                format!(
                    "expected at most the interval ({}), found {}",
                    humantime::format_duration(i),
                    humantime::format_duration(t)
                ),
            );
        }
    }
    let healthy = cx.count_u32(
        &format!("{key}.healthy_threshold"),
        raw.healthy_threshold,
        2,
    );
    let unhealthy = cx.count_u32(
        &format!("{key}.unhealthy_threshold"),
        raw.unhealthy_threshold,
        2,
    );
    Some(HealthCheck {
        path: path?,
        interval: interval?,
        timeout: timeout?,
        healthy_threshold: healthy?,
        unhealthy_threshold: unhealthy?,
    })
}

fn outlier(cx: &mut Ctx<'_>, cluster_key: &str, raw: &RawOutlier) -> Option<Outlier> {
    let key = format!("{cluster_key}.outlier");
    let defaults = Outlier::default();
    let failures = cx.count_u32(
        &format!("{key}.consecutive_failures"),
        raw.consecutive_failures,
        defaults.consecutive_failures.get(),
    );
    let base = cx.duration(
        &format!("{key}.base_ejection"),
        raw.base_ejection.as_deref(),
        defaults.base_ejection,
    );
    let max = cx.duration(
        &format!("{key}.max_ejection"),
        raw.max_ejection.as_deref(),
        defaults.max_ejection,
    );
    if let (Some(b), Some(m)) = (base, max) {
        if m < b {
            cx.error(
                format!("{key}.max_ejection"),
                format!(
                    "expected at least `base_ejection` ({}), found {}",
                    humantime::format_duration(b),
                    humantime::format_duration(m)
                ),
            );
        }
    }
    Some(Outlier {
        consecutive_failures: failures?,
        base_ejection: base?,
        max_ejection: max?,
    })
}

fn endpoint(cx: &mut Ctx<'_>, key: &str, raw: &RawEndpoint) -> Option<EndpointConfig> {
    let address = cx
        .required(&format!("{key}.address"), raw.address.as_deref())
        .and_then(|a| match upstream_address(a) {
            Some(addr) => Some(addr),
            None => {
                cx.error(format!("{key}.address"), format!("expected `host:port` with an IP or a host name, such as `127.0.0.1:8080`, found `{}`", a.escape_default()));
                None
            }
        });
    let site = cx.name(&format!("{key}.site"), raw.site.as_deref());
    let zone = cx.name(&format!("{key}.zone"), raw.zone.as_deref());
    let region = cx.name(&format!("{key}.region"), raw.region.as_deref());

    // An mTLS upstream is only as trustworthy as the identity we pin for it.
    let transport = if raw.tls.unwrap_or(false) {
        let spiffe_id = match raw.spiffe_id.as_deref() {
            None => {
                cx.error(
                    format!("{key}.spiffe_id"),
                    "is required when `tls = true`: the SPIFFE ID the upstream must present",
                );
                None
            }
            Some(s) => match SpiffeId::parse(s) {
                Ok(id) => Some(id),
                Err(e) => {
                    cx.error(format!("{key}.spiffe_id"), format!("expected a SPIFFE ID such as `spiffe://acme.example/cloud/api`: `{}` {e}", s.escape_default()));
                    None
                }
            },
        };
        let sni = raw
            .sni
            .as_deref()
            .and_then(|s| match canonicalize_host(s, true) {
                Ok(h) if h.port().is_none() && !h.hostname().starts_with('[') => {
                    Some(Some(h.hostname().to_owned()))
                }
                _ => {
                    cx.error(
                        format!("{key}.sni"),
                        format!(
                            "expected a DNS name such as `api.cloud.example`, found `{}`",
                            s.escape_default()
                        ),
                    );
                    None
                }
            });
        let sni = if raw.sni.is_some() { sni? } else { None };
        spiffe_id.map(|spiffe_id| UpstreamTransport::Tls { spiffe_id, sni })
    } else {
        for (field, set) in [
            ("spiffe_id", raw.spiffe_id.is_some()),
            ("sni", raw.sni.is_some()),
        ] {
            if set {
                cx.error(
                    format!("{key}.{field}"),
                    "only applies with `tls = true`; set `tls = true` or remove it",
                );
            }
        }
        Some(UpstreamTransport::Plaintext)
    };
    Some(EndpointConfig {
        address: address?,
        locality: Locality {
            site: site?,
            zone: zone?,
            region: region?,
        },
        transport: transport?,
    })
}

/// Parses `ip:port`, `[ipv6]:port` or `name:port`; `None` when malformed.
fn upstream_address(raw: &str) -> Option<UpstreamAddress> {
    let (host, port) = raw.rsplit_once(':')?;
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let host = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        UpstreamHost::Ip(IpAddr::V6(v6.parse().ok()?))
    } else if let Ok(ip) = host.parse::<IpAddr>() {
        if ip.is_ipv6() {
            // IPv6 needs brackets, or the port is ambiguous.
            return None;
        }
        UpstreamHost::Ip(ip)
    } else {
        let canonical = canonicalize_host(host, false).ok()?;
        if canonical.port().is_some() {
            return None;
        }
        UpstreamHost::Name(canonical.hostname().to_owned())
    };
    Some(UpstreamAddress { host, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_addresses_parse_ips_and_names() {
        let a = |s: &str| upstream_address(s).map(|a| a.to_string());
        assert_eq!(a("127.0.0.1:8080"), Some("127.0.0.1:8080".into()));
        assert_eq!(a("[::1]:8080"), Some("[::1]:8080".into()));
        assert_eq!(a("LocalHost:80"), Some("localhost:80".into()));
        assert_eq!(a("localhost"), None);
        assert_eq!(a("localhost:0"), None);
        assert_eq!(a("localhost:99999"), None);
        assert_eq!(a("::1:80"), None);
        assert_eq!(a("bad host:80"), None);
        assert_eq!(a(":80"), None);
    }
}
