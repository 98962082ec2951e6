//! One access event per request, on the node only: the decision and the policies that made
//! it, the route, tier and status. Raw logs never leave the node (only aggregates do).

use pingora::prelude::*;
use pingora::proxy::Session;

use super::{Pipeline, RequestCtx};
use crate::metrics::RequestKey;

/// Logs the access event and counts the request.
pub fn record(p: &Pipeline, session: &Session, e: Option<&Error>, ctx: &RequestCtx) {
    let status = session
        .response_written()
        .map(|r| r.status.as_u16())
        .filter(|s| *s != 0)
        .unwrap_or(if ctx.status != 0 {
            ctx.status
        } else if e.is_some() {
            502
        } else {
            0
        });
    let tier = ctx.tier.map(|t| t.as_str()).unwrap_or("none");
    let elapsed = ctx.started.elapsed();

    // Counted: route, decision, status class and tier only.
    let class = match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "none",
    };
    let metrics = match &ctx.metrics {
        Some(m) => m.clone(),
        None => p.shared.metrics.route("none"),
    };
    metrics.request(RequestKey {
        decision: ctx.outcome,
        status_class: class,
        tier,
    });
    metrics.latency.observe(elapsed.as_secs_f64());
    let route = || {
        ctx.route
            .as_ref()
            .map(|r| r.name.as_str())
            .unwrap_or("none")
    };
    if p.shared.telemetry.enabled() {
        p.shared.telemetry.record_request(
            crate::telemetry::RequestKey {
                route: route().to_owned(),
                decision: ctx.outcome.to_owned(),
                status_class: class.to_owned(),
                tier: tier.to_owned(),
            },
            elapsed.as_secs_f64() * 1000.0,
        );
    }

    // Logged on the node: what was decided and why. Client-controlled text is escaped. The
    // fields are only put together when access events are logged at all.
    if !tracing::enabled!(target: "edgeward::access", tracing::Level::INFO) {
        return;
    }
    let (policies, errors) = match &ctx.decision {
        Some(d) => (
            d.reasons
                .iter()
                .map(|r| r.id.as_str())
                .collect::<Vec<_>>()
                .join(","),
            d.errors.join("; "),
        ),
        None => (String::new(), String::new()),
    };
    let peer = ctx
        .identity
        .as_ref()
        .map(|i| i.to_string())
        .unwrap_or_else(|| "anonymous".into());
    let req = session.req_header();
    tracing::info!(
        target: "edgeward::access",
        listener = %p.listener_name,
        peer.id = %peer,
        method = %req.method,
        host = ?ctx.canonical_host,
        path = ?ctx.canonical_path,
        route = %route(),
        decision = ctx.outcome,
        policies = %policies,
        errors = %errors,
        status,
        tier,
        attempts = ctx.attempts,
        duration_ms = elapsed.as_millis() as u64,
        error = e.map(|e| e.to_string()).unwrap_or_default(),
        "access"
    );
}
