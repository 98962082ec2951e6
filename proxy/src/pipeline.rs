//! The request path, as pingora hooks: admission (limits, framing, canonical host and path,
//! route, identity, authorization) in [`admission`], header rewriting in [`headers`], endpoint
//! choice and retries in [`forward`], and one access event per request in [`access`].

pub mod access;
pub mod admission;
pub mod forward;
pub mod headers;

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::HttpModules;
use pingora::prelude::*;
use pingora::protocols::Digest;
use pingora::proxy::{ProxyHttp, Session};

use crate::authz::Decision;
use crate::balance::{EndpointId, OutstandingGuard, Tier};
use crate::config::{ListenerKind, Route};
use crate::metrics::RouteMetrics;
use crate::state::{ClusterRuntime, Shared, Snapshot};
use edgeward_certs::SpiffeId;

/// The header that carries the verified peer identity upstream.
pub const PEER_ID_HEADER: &str = "x-edgeward-peer-id";

/// What the pipeline knows about one request.
pub struct RequestCtx {
    pub snapshot: Arc<Snapshot>,
    pub started: Instant,
    pub route: Option<Arc<Route>>,
    /// The route's metric handles (or `none`'s), once the route is known.
    pub metrics: Option<Arc<RouteMetrics>>,
    pub cluster: Option<Arc<ClusterRuntime>>,
    pub identity: Option<SpiffeId>,
    pub decision: Option<Arc<Decision>>,
    /// `allow`, `deny`, `audit-deny`, or what refused the request before a decision.
    pub outcome: &'static str,
    pub canonical_host: String,
    pub canonical_target: String,
    /// Whether the upstream request needs `canonical_target` as its target (it differs from
    /// what the client sent, or the client sent an absolute form).
    pub rewrite_target: bool,
    pub canonical_path: String,
    pub endpoint: Option<EndpointId>,
    pub tier: Option<Tier>,
    pub tried: Vec<EndpointId>,
    pub guard: Option<OutstandingGuard>,
    pub attempts: u32,
    /// Attempts that failed on a pooled connection the upstream had already closed; they do
    /// not count against the route's retries (see `forward::on_proxy_error`).
    pub stale_reuses: u32,
    pub has_body: bool,
    pub body_seen: u64,
    pub tls_version: &'static str,
    pub upgrade: bool,
    pub status: u16,
}

impl RequestCtx {
    /// The attempts that count against the route's retries.
    pub fn counted_attempts(&self) -> u32 {
        self.attempts.saturating_sub(self.stale_reuses)
    }
}

/// One listener's proxy logic.
pub struct Pipeline {
    pub shared: Arc<Shared>,
    pub listener: ListenerKind,
    pub listener_name: String,
}

#[async_trait]
impl ProxyHttp for Pipeline {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> Self::CTX {
        RequestCtx {
            snapshot: self.shared.snapshot(),
            started: Instant::now(),
            route: None,
            metrics: None,
            cluster: None,
            identity: None,
            decision: None,
            outcome: "refused",
            canonical_host: String::new(),
            canonical_target: String::new(),
            rewrite_target: true,
            canonical_path: String::new(),
            endpoint: None,
            tier: None,
            tried: Vec::new(),
            guard: None,
            attempts: 0,
            stale_reuses: 0,
            has_body: false,
            body_seen: 0,
            tls_version: "",
            upgrade: false,
            status: 0,
        }
    }

    /// No downstream modules. pingora's default adds its response compression module, disabled,
    /// which still cost an allocation and three filter calls per request; the proxy passes
    /// responses through as the upstream encoded them.
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        admission::admit(self, session, ctx).await
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        // A chunked body has no length up front: count it as it streams.
        if let (Some(b), Some(route)) = (body.as_ref(), ctx.route.as_ref()) {
            ctx.body_seen += b.len() as u64;
            if ctx.body_seen > route.max_body_bytes.get() {
                ctx.outcome = "body-too-large";
                return Err(Error::explain(
                    ErrorType::HTTPStatus(413),
                    "request body over the route's limit",
                ));
            }
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        forward::pick_peer(self, session, ctx)
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        _reused: bool,
        _peer: &HttpPeer,
        #[cfg(unix)] _fd: std::os::unix::io::RawFd,
        #[cfg(windows)] _sock: std::os::windows::io::RawSocket,
        digest: Option<&Digest>,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        forward::check_upstream_identity(self, digest, ctx).await
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Self::CTX,
        e: Box<Error>,
    ) -> Box<Error> {
        forward::on_connect_failure(session, ctx, e)
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Self::CTX,
        client_reused: bool,
    ) -> Box<Error> {
        forward::on_proxy_error(peer, session, e, ctx, client_reused)
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        headers::rewrite_request(self, session, upstream_request, ctx)
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        forward::on_response(ctx, upstream_response.status.as_u16());
        headers::rewrite_response(upstream_response, ctx.upgrade);
        Ok(())
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Self::CTX) {
        access::record(self, session, e, ctx);
    }
}
