//! Forwarding: the nearest healthy endpoint for the route's cluster, tier changes logged and
//! counted, the upstream's SPIFFE ID checked, and retries only where they are safe (a failed
//! connect for any method; after the request may have been sent, only idempotent methods
//! without a body).

use std::time::Instant;

use pingora::prelude::*;
use pingora::protocols::Digest;
use pingora::proxy::Session;
use pingora::RetryType;

use super::{Pipeline, RequestCtx};
use crate::balance::{retry_allowed, FailureKind};
use crate::metrics::FailoverLabels;
use crate::upstream;

/// Picks the endpoint and builds its peer.
pub fn pick_peer(p: &Pipeline, _session: &Session, ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
    let no_upstream = || Error::explain(ErrorType::HTTPStatus(503), "no healthy endpoint");
    let (Some(cluster), Some(route)) = (ctx.cluster.clone(), ctx.route.clone()) else {
        return Err(no_upstream());
    };

    // The nearest healthy tier; none at all answers 503 at once.
    let Some(pick) = cluster.cluster.pick(Instant::now(), &ctx.tried) else {
        tracing::warn!(cluster = %cluster.config.name.as_str(), "no healthy endpoint in any tier");
        ctx.outcome = "no-upstream";
        return Err(no_upstream());
    };
    if let Some(change) = pick.tier_change {
        let cluster_name = cluster.config.name.as_str();
        if change.is_failover() {
            tracing::info!(
                cluster = cluster_name,
                from = change.from.as_str(),
                to = change.to.as_str(),
                "failed over"
            );
        } else {
            tracing::info!(
                cluster = cluster_name,
                from = change.from.as_str(),
                to = change.to.as_str(),
                "returned to a nearer tier"
            );
        }
        p.shared
            .metrics
            .failovers
            .get_or_create(&FailoverLabels {
                cluster: cluster_name.to_owned(),
                from: change.from.as_str().to_owned(),
                to: change.to.as_str().to_owned(),
            })
            .inc();
        p.shared
            .telemetry
            .record_failover(crate::telemetry::FailoverKey {
                cluster: cluster_name.to_owned(),
                from: change.from.as_str().to_owned(),
                to: change.to.as_str().to_owned(),
            });
    }
    let id = pick.endpoint;
    ctx.endpoint = Some(id);
    ctx.tier = Some(pick.tier);
    ctx.guard = Some(pick.guard);
    ctx.attempts += 1;

    // The peer: plaintext, or mTLS with the node's identity.
    let endpoint = cluster.cluster.endpoint(id).ok_or_else(no_upstream)?;
    let addr = cluster.addr(id).ok_or_else(no_upstream)?;
    let node = p.shared.serving.as_ref().map(|s| s.current());
    let trust = p.shared.trust.current();
    let timeouts = upstream::Timeouts {
        connect: route.connect_timeout,
        request: route.request_timeout,
    };
    let peer = upstream::peer_for(
        addr,
        &endpoint.transport,
        cluster.config.http2,
        timeouts,
        node.as_deref(),
        &trust,
    )
    .map_err(|e| Error::explain(ErrorType::InternalError, e))?;
    Ok(Box::new(peer))
}

/// After connecting (or reusing a pooled connection) to an mTLS upstream: its leaf must be
/// proven to carry the configured SPIFFE ID.
pub async fn check_upstream_identity(
    p: &Pipeline,
    digest: Option<&Digest>,
    ctx: &mut RequestCtx,
) -> Result<()> {
    let (Some(cluster), Some(id)) = (ctx.cluster.clone(), ctx.endpoint) else {
        return Ok(());
    };
    upstream::verify_identity(&p.shared, &cluster, id, digest)
        .await
        .map_err(|m| {
            tracing::warn!(cluster = %cluster.config.name.as_str(), endpoint = id.0, reason = %m, "upstream identity refused");
            Error::explain(ErrorType::ConnectError, m)
        })
}

/// A connect failure: count it against the endpoint, and retry elsewhere for any method.
pub fn on_connect_failure(
    session: &Session,
    ctx: &mut RequestCtx,
    mut e: Box<Error>,
) -> Box<Error> {
    if let (Some(cluster), Some(id)) = (ctx.cluster.as_ref(), ctx.endpoint) {
        if let Some(ej) = cluster.cluster.report_connect_failure(id, Instant::now()) {
            tracing::info!(cluster = %cluster.config.name.as_str(), endpoint = id.0, seconds = ej.duration.as_secs(), "endpoint ejected after connect failures");
        }
        ctx.tried.push(id);
    }
    ctx.guard = None;
    let retries = ctx.route.as_ref().map(|r| r.retries).unwrap_or(0);
    let method = session.req_header().method.as_str();
    e.set_retry(retry_allowed(
        method,
        ctx.counted_attempts(),
        retries,
        FailureKind::ConnectFailed,
        !ctx.has_body,
    ));
    e
}

/// A failure after the request may have reached the upstream: only idempotent requests
/// without a body are sent again. Only the upstream's own failures count against it: a client
/// that goes away or resets its stream must not get endpoints ejected.
pub fn on_proxy_error(
    _peer: &HttpPeer,
    session: &mut Session,
    mut e: Box<Error>,
    ctx: &mut RequestCtx,
    client_reused: bool,
) -> Box<Error> {
    ctx.guard = None;
    if !upstream_at_fault(e.esource()) {
        e.set_retry(false);
        return e;
    }
    // A pooled connection the upstream had already closed: it was closed or reset before a
    // byte of the response came (pingora marks that `ReusedOnly`). It says nothing about the
    // endpoint's health, and the request goes again on another connection without using up
    // one of the route's retries: after an upstream restarts, every connection in the pool is
    // such a one, and the retries would run out on them. Each leaves the pool as it fails, and
    // pingora's own limit on attempts (16) bounds the rest.
    let stale = client_reused && matches!(e.retry, RetryType::ReusedOnly);
    if stale {
        ctx.stale_reuses += 1;
    } else if let (Some(cluster), Some(id)) = (ctx.cluster.as_ref(), ctx.endpoint) {
        // A reused connection that failed otherwise says little about the endpoint either.
        if !client_reused {
            cluster.cluster.report_connect_failure(id, Instant::now());
        }
    }
    let retries = ctx.route.as_ref().map(|r| r.retries).unwrap_or(0);
    let method = session.req_header().method.as_str().to_owned();
    let body_replayable = !ctx.has_body && !session.retry_buffer_truncated();
    e.set_retry(retry_allowed(
        &method,
        ctx.counted_attempts(),
        retries,
        FailureKind::AfterRequestSent,
        body_replayable,
    ));
    e
}

/// Whether an error while proxying is the upstream's doing (not the client's, not ours).
fn upstream_at_fault(source: &ErrorSource) -> bool {
    matches!(source, ErrorSource::Upstream | ErrorSource::Unset)
}

/// An upstream answered: 5xx counts toward its ejection, anything else resets the count.
pub fn on_response(ctx: &mut RequestCtx, status: u16) {
    ctx.status = status;
    if let (Some(cluster), Some(id)) = (ctx.cluster.as_ref(), ctx.endpoint) {
        if let Some(ej) = cluster.cluster.report_response(id, status, Instant::now()) {
            tracing::info!(cluster = %cluster.config.name.as_str(), endpoint = id.0, seconds = ej.duration.as_secs(), "endpoint ejected after 5xx answers");
        }
    }
}
