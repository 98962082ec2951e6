//! Admission: everything decided before a byte goes upstream, in order: header limits,
//! message framing (RFC 9112 section 6), the canonical host and path (once, shared by routing
//! and authorization), the route, the peer's identity, and the Cedar decision.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;

use super::{Pipeline, RequestCtx};
use crate::authz::facts::{build_facts, route_request, FactsError, RawRequest};
use crate::authz::{RequestFacts, TlsFacts};
use crate::config::{ListenerKind, Mode, Route};
use crate::identity::PeerCert;
use crate::request::CanonicalTarget;
use crate::route::RequestError;
use crate::state::Snapshot;
use edgeward_certs::SpiffeId;

/// Runs admission; `Ok(true)` means the request was answered here.
pub async fn admit(p: &Pipeline, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
    let snapshot = ctx.snapshot.clone();
    let limits = &snapshot.config.limits;
    let tls = p.listener != ListenerKind::Plaintext;

    // Header limits: pingora's own are about 1 MiB; ours are the configured ones.
    let (count, bytes) = header_size(session);
    if count > limits.max_header_count.get() || bytes > limits.max_header_bytes.get() {
        ctx.outcome = "headers-too-large";
        return reply(session, ctx, 431, "request header fields too large\n").await;
    }

    // Framing: ambiguous message lengths are how requests get smuggled (RFC 9112 section 6.3).
    if !session.is_http2() {
        if let Err(reason) = check_framing(session) {
            tracing::debug!(reason, "bad framing");
            ctx.outcome = "bad-framing";
            return reply(session, ctx, 400, "bad request framing\n").await;
        }
    }
    let declared_length = content_length(session);
    ctx.has_body = has_body(session, declared_length);
    ctx.upgrade = session.is_upgrade_req();

    // The peer: on mTLS listeners, its chain is checked against the trust material in force
    // now, so a resumed session of a since-revoked client does not get in.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let peer = session
        .digest()
        .and_then(|d| d.ssl_digest.as_ref())
        .and_then(|s| s.extension.get::<PeerCert>());
    ctx.tls_version = peer.map(|p| p.version).unwrap_or_default();
    let checked = match p.listener {
        ListenerKind::Mtls => Some(match peer {
            Some(peer) => p.shared.trust.check_peer(peer, now),
            None => Err("no client certificate".to_owned()),
        }),
        _ => None,
    };

    // Host, target, route and facts, as `edgeward policy` makes them.
    let routed = route_and_facts(
        session,
        &snapshot,
        tls,
        checked.as_ref(),
        ctx.tls_version,
        now,
    );
    let (target, route, facts, unchanged) = match routed {
        Ok(routed) => routed,
        Err(FactsError::Host(e)) => {
            tracing::debug!(error = %e, "bad host");
            ctx.outcome = "bad-host";
            return reply(session, ctx, 400, "bad host\n").await;
        }
        Err(FactsError::Request(RequestError::NoRoute)) => {
            ctx.outcome = "no-route";
            return reply(session, ctx, 404, "no route\n").await;
        }
        Err(FactsError::Request(RequestError::Path(e))) => {
            tracing::debug!(error = %e, "bad path");
            ctx.outcome = "bad-path";
            return reply(session, ctx, 400, "bad path\n").await;
        }
    };
    // The target goes upstream rewritten only when canonicalization changed it.
    ctx.rewrite_target = !unchanged;
    ctx.canonical_host = facts.host.clone();
    ctx.canonical_target = match &target.query {
        Some(q) => format!("{}?{q}", target.path),
        None => target.path.clone(),
    };
    ctx.canonical_path = target.path;
    ctx.cluster = snapshot.clusters.get(route.cluster.as_str()).cloned();
    ctx.metrics = Some(p.shared.metrics.route(route.name.as_str()));
    ctx.route = Some(route.clone());

    // A declared body over the route's limit is refused before it is read.
    if declared_length.is_some_and(|len| len > route.max_body_bytes.get()) {
        ctx.outcome = "body-too-large";
        return reply(session, ctx, 413, "request body too large\n").await;
    }

    if let Some(Err(reason)) = checked {
        tracing::info!(listener = %p.listener_name, reason = %reason, "peer no longer trusted; closing");
        ctx.outcome = "untrusted-peer";
        return reply(session, ctx, 403, "forbidden\n").await;
    }
    ctx.identity = facts.identity.clone();

    // Authorization: default deny, any error denies, audit lets a deny through.
    let policies = p.shared.policies.current();
    let decision =
        p.shared
            .authorizer
            .decide_memoized(&policies, &facts, snapshot.config.authz.decision_memo);
    let allowed = decision.allowed;
    let mode = route.mode;
    ctx.decision = Some(decision);
    ctx.outcome = match (allowed, mode) {
        (true, _) => "allow",
        (false, Mode::Enforce) => "deny",
        (false, Mode::Audit) => "audit-deny",
    };
    if let Some(m) = &ctx.metrics {
        m.decision(allowed, mode == Mode::Enforce);
    }
    if !allowed && mode == Mode::Enforce {
        // The body names no policy; the access log has the reasons.
        return reply(session, ctx, 403, "forbidden\n").await;
    }
    Ok(false)
}

/// What routing hands to authorization: the canonical target, the route, the facts and
/// whether the target is the one the client sent.
type Routed = (CanonicalTarget, Arc<Route>, RequestFacts, bool);

/// The canonical host (one Host, agreeing with :authority or an absolute-form target), the
/// canonical target and the route, then the facts: the same functions `edgeward policy` uses.
fn route_and_facts(
    session: &Session,
    snapshot: &Snapshot,
    tls: bool,
    checked: Option<&Result<SpiffeId, String>>,
    tls_version: &'static str,
    now: i64,
) -> Result<Routed, FactsError> {
    let req = session.req_header();
    let host_headers: Vec<&str> = req
        .headers
        .get_all(http::header::HOST)
        .iter()
        .take(2)
        .map(|v| v.to_str().unwrap_or("\u{0}"))
        .collect();
    let raw_target = match req.uri.path_and_query() {
        Some(pq) if req.uri.authority().is_some() => Cow::Borrowed(pq.as_str()),
        _ => String::from_utf8_lossy(req.raw_path()),
    };
    let context_headers: Vec<(&str, &str)> = if snapshot.config.authz.context_headers.is_empty() {
        Vec::new()
    } else {
        req.headers
            .iter()
            .filter_map(|(n, v)| v.to_str().ok().map(|v| (n.as_str(), v)))
            .collect()
    };
    let raw = RawRequest {
        identity: checked.and_then(|c| c.as_ref().ok()).cloned(),
        method: req.method.as_str(),
        host_headers: &host_headers,
        authority: req.uri.authority().map(|a| a.as_str()),
        target: &raw_target,
        tls_listener: tls,
        peer_ip: peer_ip(session),
        tls: TlsFacts {
            version: tls_version.into(),
            mtls: matches!(checked, Some(Ok(_))),
            alpn: match (tls, session.is_http2()) {
                (false, _) => "",
                (true, true) => "h2",
                (true, false) => "http/1.1",
            }
            .into(),
        },
        headers: &context_headers,
        now_unix: now,
    };
    route_request(&snapshot.routes, &raw).map(|(host, target, route)| {
        let facts = build_facts(&snapshot.config, &host, &target, route, &raw);
        // An absolute-form target (and HTTP/2's) always goes upstream in origin-form.
        let unchanged = req.uri.authority().is_none() && same_target(&raw_target, &target);
        (target, route.clone(), facts, unchanged)
    })
}

/// Whether the canonical target is the received one, byte for byte (origin-form only).
fn same_target(raw: &str, target: &CanonicalTarget) -> bool {
    match raw.strip_prefix(target.path.as_str()) {
        Some("") => target.query.is_none(),
        Some(rest) => target
            .query
            .as_deref()
            .is_some_and(|q| rest.strip_prefix('?') == Some(q)),
        None => false,
    }
}

/// Answers locally. A request with a body gets its connection closed, so an unread body is
/// never taken for the next request.
pub async fn reply(
    session: &mut Session,
    ctx: &mut RequestCtx,
    status: u16,
    body: &'static str,
) -> Result<bool> {
    ctx.status = status;
    let close = ctx.has_body || has_body(session, content_length(session)) || status == 400;
    if close {
        session.set_keepalive(None);
    }
    let mut resp = ResponseHeader::build(status, Some(4))?;
    resp.insert_header("content-type", "text/plain")?;
    resp.insert_header("content-length", body.len().to_string())?;
    resp.insert_header("cache-control", "no-store")?;
    if close && !session.is_http2() {
        resp.insert_header("connection", "close")?;
    }
    session.write_response_header(Box::new(resp), false).await?;
    session
        .write_response_body(Some(Bytes::from_static(body.as_bytes())), true)
        .await?;
    Ok(true)
}

fn header_size(session: &Session) -> (usize, usize) {
    let req = session.req_header();
    let line = req.method.as_str().len() + req.raw_path().len() + 12;
    let fields: usize = req
        .headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum();
    (req.headers.len(), line + fields)
}

fn check_framing(session: &Session) -> Result<(), &'static str> {
    let headers = &session.req_header().headers;
    let cls: Vec<_> = headers
        .get_all(http::header::CONTENT_LENGTH)
        .iter()
        .collect();
    let tes: Vec<_> = headers
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .collect();
    // pingora drops `Content-Length` when `Transfer-Encoding` is present (RFC 9112 6.3 lets it);
    // we refuse the pair instead, so look at the header block as it arrived.
    if !tes.is_empty() && (!cls.is_empty() || raw_content_length(session)) {
        return Err("content-length with transfer-encoding");
    }
    if cls.len() > 1 {
        return Err("more than one content-length");
    }
    if let Some(v) = cls.first() {
        let ok = v
            .to_str()
            .map(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()));
        if !matches!(ok, Ok(true)) {
            return Err("malformed content-length");
        }
    }
    if !tes.is_empty() {
        // The last coding must be chunked, or the length is unknowable (RFC 9112 6.3).
        let joined: Vec<String> = tes
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|s| s.split(','))
            .map(|c| c.trim().to_ascii_lowercase())
            .collect();
        if joined.last().map(String::as_str) != Some("chunked") {
            return Err("transfer coding that does not end in chunked");
        }
    }
    Ok(())
}

/// Whether the HTTP/1 header block, as received, has a `Content-Length` field.
fn raw_content_length(session: &Session) -> bool {
    let Some(h1) = session.as_downstream().as_http1() else {
        return false;
    };
    has_content_length_field(&h1.get_headers_raw_bytes())
}

fn has_content_length_field(block: &[u8]) -> bool {
    block
        .split(|b| *b == b'\n')
        .skip(1) // the request line
        .filter_map(|line| line.iter().position(|b| *b == b':').map(|i| &line[..i]))
        .any(|name| name.trim_ascii().eq_ignore_ascii_case(b"content-length"))
}

fn content_length(session: &Session) -> Option<u64> {
    session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse().ok())
}

fn has_body(session: &Session, content_length: Option<u64>) -> bool {
    content_length.is_some_and(|n| n > 0)
        || session
            .req_header()
            .headers
            .contains_key(http::header::TRANSFER_ENCODING)
}

fn peer_ip(session: &Session) -> std::net::IpAddr {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

#[cfg(test)]
mod tests {
    use super::{has_content_length_field, same_target};
    use crate::request::CanonicalTarget;

    fn target(path: &str, query: Option<&str>) -> CanonicalTarget {
        CanonicalTarget {
            path: path.into(),
            query: query.map(Into::into),
        }
    }

    #[test]
    fn a_target_is_rewritten_only_when_canonicalization_changed_it() {
        assert!(same_target("/a/b", &target("/a/b", None)));
        assert!(same_target("/a?x=1", &target("/a", Some("x=1"))));
        assert!(same_target("/a?", &target("/a", Some(""))));
        assert!(!same_target("/a/./b", &target("/a/b", None)));
        assert!(!same_target("/a/b?", &target("/a/b", None)));
        assert!(!same_target("/a/bc", &target("/a/b", None)));
        assert!(!same_target("/%7Ea", &target("/~a", None)));
        assert!(!same_target("/a?x=1", &target("/a", Some("x=2"))));
    }

    #[test]
    fn finds_content_length_in_the_raw_header_block() {
        let block = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(has_content_length_field(block));
        assert!(has_content_length_field(
            b"POST / HTTP/1.1\r\ncontent-LENGTH : 5\r\n\r\n"
        ));
        assert!(!has_content_length_field(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nX-Content-Length: 1\r\n\r\n"
        ));
        // A request line that looks like a field is not one.
        assert!(!has_content_length_field(
            b"content-length: / HTTP/1.1\r\n\r\n"
        ));
    }
}
