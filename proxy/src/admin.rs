//! The admin port (loopback by default): `/healthz` (the process runs), `/readyz` (its
//! certificate is valid and policies are loaded), `/metrics` (Prometheus text) and `/config`
//! (the effective config, no secrets).

use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::state::Shared;

/// The admin HTTP application.
pub struct Admin {
    pub shared: Arc<Shared>,
}

impl Admin {
    /// Why the node is not ready, if it is not.
    pub fn not_ready(&self) -> Option<String> {
        let now = time::OffsetDateTime::now_utc();
        if let Some(serving) = &self.shared.serving {
            let cert = serving.current();
            if now > cert.leaf.not_after {
                return Some(format!("the node certificate `{}` has expired", cert.id));
            }
        }
        let snapshot = self.shared.snapshot();
        let policies = self.shared.policies.current();
        if !snapshot.config.routes.is_empty() && policies.policy_count() == 0 {
            return Some("no policies are loaded: every request is denied".into());
        }
        None
    }
}

fn text(status: u16, body: String, content_type: &str) -> Response<Vec<u8>> {
    let mut builder = Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("cache-control", "no-store")
        .header("content-length", body.len());
    if status == 405 {
        builder = builder.header("allow", "GET");
    }
    builder
        .body(body.into_bytes())
        .unwrap_or_else(|_| Response::new(Vec::new()))
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        if req.method != http::Method::GET && req.method != http::Method::HEAD {
            return text(405, "method not allowed\n".into(), "text/plain");
        }
        match req.uri.path() {
            "/healthz" => text(200, "ok\n".into(), "text/plain"),
            "/readyz" => match self.not_ready() {
                None => text(200, "ready\n".into(), "text/plain"),
                Some(reason) => text(503, format!("not ready: {reason}\n"), "text/plain"),
            },
            "/metrics" => {
                crate::server::refresh_gauges(&self.shared);
                text(
                    200,
                    self.shared.metrics.encode(),
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )
            }
            "/config" => {
                let snapshot = self.shared.snapshot();
                let mut json = snapshot.config.redacted_json();
                json["generation"] = serde_json::json!(snapshot.generation);
                let body = serde_json::to_string_pretty(&json).unwrap_or_default();
                text(200, body + "\n", "application/json")
            }
            _ => text(
                404,
                "not found: try /healthz, /readyz, /metrics or /config\n".into(),
                "text/plain",
            ),
        }
    }
}
