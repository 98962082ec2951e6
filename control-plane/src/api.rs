//! The JSON API and the fleet page, on a plain HTTP/1.1 listener (hyper). Bind it to a local
//! address: it has no authentication of its own.
//!
//! - `GET /`: the fleet page (one HTML file, inline CSS and JS, reading the API below).
//! - `GET /api/fleet`: the published revision and each site with its nodes.
//! - `GET /api/nodes`, `GET /api/nodes/{id}` (with its recent events).
//! - `GET /api/revisions`: the published revision (the one kept in the store, after a restart
//!   whose first sync refused the source's), the last refused one with its problems, and the
//!   last source error.
//! - `GET /api/telemetry?node=&since=`: points, oldest first (all nodes summed without `node`;
//!   `since` in Unix seconds, default one hour ago).
//! - `GET /api/events?node=&limit=`: newest first.
//! - `POST /api/sync`: read the source now; answers what the sync did.
//! - `GET /healthz`, `GET /metrics` (Prometheus text) for the control plane itself.

pub mod view;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use serde_json::json;
use tokio::net::TcpListener;

use crate::channel::session::now;
use crate::metrics::Metrics;
use crate::publish::{Publisher, SyncOutcome};
use crate::store::{Store, StoreError};

const PAGE: &str = include_str!("api/page.html");

/// What the API reads.
pub struct ApiState {
    pub publisher: Arc<Publisher>,
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
}

/// Serves the API on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, state: Arc<ApiState>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "API listener cannot accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, req).await) }
            });
            let result = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc)
                .await;
            if let Err(e) = result {
                tracing::debug!(peer.addr = %peer, error = %e, "API connection ended with an error");
            }
        });
    }
}

/// Runs one sync off the async workers, counting its outcome.
pub async fn sync_now(publisher: &Arc<Publisher>, metrics: &Metrics) -> SyncOutcome {
    let p = publisher.clone();
    let outcome = tokio::task::spawn_blocking(move || p.sync(now()))
        .await
        .unwrap_or_else(|e| SyncOutcome::SourceFailed {
            reason: format!("the sync task failed: {e}"),
        });
    match &outcome {
        SyncOutcome::Published { .. } => Metrics::count(&metrics.revisions, "published"),
        SyncOutcome::Refused { .. } => Metrics::count(&metrics.revisions, "refused"),
        _ => {}
    }
    outcome
}

async fn route(state: &ApiState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let result = match (req.method(), path.as_str()) {
        (&Method::GET, "/") => return text(StatusCode::OK, "text/html; charset=utf-8", PAGE),
        (&Method::GET, "/healthz") => return text(StatusCode::OK, "text/plain", "ok\n"),
        (&Method::GET, "/metrics") => {
            let body = state.metrics.encode();
            return text(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                &body,
            );
        }
        (&Method::GET, "/api/fleet") => fleet(state),
        (&Method::GET, "/api/nodes") => nodes(state).map(|n| json!(n)),
        (&Method::GET, "/api/revisions") => Ok(revisions(state)),
        (&Method::GET, "/api/telemetry") => telemetry(state, &query),
        (&Method::GET, "/api/events") => events(state, &query),
        (&Method::POST, "/api/sync") => Ok(json!(sync_now(&state.publisher, &state.metrics).await)),
        (&Method::GET, p) if p.starts_with("/api/nodes/") => {
            match node(state, &p["/api/nodes/".len()..]) {
                Ok(Some(v)) => Ok(v),
                Ok(None) => return error(StatusCode::NOT_FOUND, "no such node"),
                Err(e) => Err(e),
            }
        }
        (_, "/" | "/healthz" | "/metrics" | "/api/fleet" | "/api/nodes" | "/api/revisions")
        | (_, "/api/telemetry" | "/api/events" | "/api/sync") => {
            return error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => return error(StatusCode::NOT_FOUND, "not found"),
    };
    match result {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err(e) => {
            tracing::error!(error = %e, "API query failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, "the store query failed")
        }
    }
}

fn views(state: &ApiState) -> Result<Vec<view::NodeView>, StoreError> {
    let t = now();
    state
        .store
        .nodes()?
        .into_iter()
        .map(|row| {
            let points = state.store.series(Some(&row.id), t - 3600)?;
            Ok(view::node_view(row, &points, t))
        })
        .collect()
}

fn nodes(state: &ApiState) -> Result<Vec<view::NodeView>, StoreError> {
    views(state)
}

fn fleet(state: &ApiState) -> Result<serde_json::Value, StoreError> {
    let published = state.publisher.current();
    let sites = published
        .as_ref()
        .map(|p| p.sites.clone())
        .unwrap_or_default();
    let t = now();
    let all = state.store.series(None, t - 3600)?;
    Ok(json!({
        "now": t,
        "revision": published.as_ref().map(|p| &p.revision),
        "published_at": published.as_ref().map(|p| p.at),
        "refused": state.publisher.refused().map(|r| r.revision),
        "summary": view::summarize(&all, t),
        "sites": view::by_site(views(state)?, &sites),
    }))
}

fn node(state: &ApiState, id: &str) -> Result<Option<serde_json::Value>, StoreError> {
    let t = now();
    let Some(row) = state.store.node(id)? else {
        return Ok(None);
    };
    let points = state.store.series(Some(id), t - 3600)?;
    let events = state.store.events(Some(id), 50)?;
    Ok(Some(json!({
        "node": view::node_view(row, &points, t),
        "events": events,
    })))
}

fn revisions(state: &ApiState) -> serde_json::Value {
    let p = state.publisher.current();
    json!({
        "published": p.as_ref().map(|p| json!({
            "revision": p.revision,
            "at": p.at,
            "nodes": p.nodes.values().map(|n| json!({
                "node_id": n.node_id,
                "spiffe_id": n.spiffe_id,
                "site": n.site,
                "commit": n.bundle.version.commit,
                "hash": n.bundle.version.hash,
            })).collect::<Vec<_>>(),
        })),
        "refused": state.publisher.refused(),
        "source_error": state.publisher.last_error(),
    })
}

fn telemetry(state: &ApiState, query: &str) -> Result<serde_json::Value, StoreError> {
    let node = param(query, "node");
    let since = param(query, "since")
        .and_then(|s| s.parse().ok())
        .unwrap_or(now() - 3600);
    Ok(json!(state.store.series(node.as_deref(), since)?))
}

fn events(state: &ApiState, query: &str) -> Result<serde_json::Value, StoreError> {
    let node = param(query, "node");
    let limit = param(query, "limit")
        .and_then(|s| s.parse().ok())
        .unwrap_or(100u32)
        .min(1000);
    Ok(json!(state.store.events(node.as_deref(), limit)?))
}

/// The value of `key` in a query string (percent-decoded).
fn param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key && !v.is_empty()).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn json_response<T: Serialize>(status: StatusCode, v: &T) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(v).unwrap_or_else(|_| b"null".to_vec());
    response(status, "application/json", Bytes::from(body))
}

fn text(status: StatusCode, content_type: &str, body: &str) -> Response<Full<Bytes>> {
    response(status, content_type, Bytes::from(body.to_owned()))
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json_response(status, &json!({ "error": message }))
}

fn response(status: StatusCode, content_type: &str, body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_decoded() {
        assert_eq!(
            param("node=berlin-gw-1&since=5", "since").as_deref(),
            Some("5")
        );
        assert_eq!(param("node=a%2Fb+c", "node").as_deref(), Some("a/b c"));
        assert_eq!(param("node=", "node"), None);
        assert_eq!(param("x=1", "node"), None);
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
