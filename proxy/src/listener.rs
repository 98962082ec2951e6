//! Connection-level guards that pingora does not provide, wrapped around each listener's
//! proxy application:
//!
//! - `max_connections`: a listener at its limit closes new connections at accept, counted in
//!   `edgeward_connections_refused_total`.
//! - `header_timeout`: on HTTP/1 connections the whole request header must arrive within the
//!   deadline, or the client gets `408` and the connection closes (pingora only has a per-read
//!   timeout, which a client trickling one byte at a time never trips). The clock starts when
//!   the connection is accepted and, for later requests on a kept-alive connection, at the first
//!   byte of the next request, so idle keep-alive time is not counted (pingora's keep-alive
//!   timeout governs that). HTTP/2 has its own header list limit and is not wrapped.
//! - between HTTP/1 requests, a connection waits for the next request without pingora's
//!   per-request state, so an idle keep-alive connection costs little memory.
//! - each connection runs on a task of its own, not on the task pingora accepted it on, which is
//!   laid out for the TLS handshake and would keep that size for the connection's life.

mod deadline;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Stream, ALPN};
use pingora::server::ShutdownWatch;
use tokio::sync::Semaphore;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use crate::metrics::{ListenerLabels, Metrics};
pub use deadline::{HeaderDeadline, TIMEOUT_RESPONSE};

/// How long a kept-alive HTTP/1 connection may idle between requests (pingora's default).
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);

/// A listener's application behind its connection limit and header deadline.
pub struct Guarded<A> {
    inner: Arc<A>,
    permits: Arc<Semaphore>,
    header_timeout: Duration,
    listener: String,
    open: Gauge,
    refused: Counter,
    timeouts: Counter,
}

impl<A> Guarded<A> {
    pub fn new(
        inner: A,
        listener: &str,
        max_connections: u32,
        header_timeout: Duration,
        metrics: &Metrics,
    ) -> Self {
        let labels = ListenerLabels {
            listener: listener.to_owned(),
        };
        Self {
            inner: Arc::new(inner),
            permits: Arc::new(Semaphore::new(max_connections as usize)),
            header_timeout,
            listener: listener.to_owned(),
            open: metrics.connections_open.get_or_create(&labels).clone(),
            refused: metrics.connections_refused.get_or_create(&labels).clone(),
            timeouts: metrics.header_timeouts.get_or_create(&labels).clone(),
        }
    }
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> ServerApp for Guarded<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            self.refused.inc();
            tracing::warn!(listener = %self.listener, "at max_connections: closing a new connection");
            return None;
        };
        // The connection is served on a task of its own, on this worker. pingora's connection
        // task is laid out for its TLS handshake (about 9 KB) and would keep that allocation
        // for the connection's whole life; returning here frees it.
        let this = Arc::clone(self);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            // The permit is held until the connection (and every request on it) is done.
            let _permit = permit;
            // Counted until it closes, so that a graceful stop ends once none is left.
            let _open = crate::drain::OpenConnection::count();
            this.open.inc();
            this.serve(stream, &shutdown).await;
            this.open.dec();
        });
        None
    }

    async fn cleanup(&self) {
        self.inner.http_cleanup().await
    }
}

impl<A: HttpServerApp + Send + Sync + 'static> Guarded<A> {
    /// One connection, until it closes: HTTP/1 by our loop below, HTTP/2 and custom protocols
    /// by pingora's.
    async fn serve(&self, stream: Stream, shutdown: &ShutdownWatch) {
        let pingora_handles_it = matches!(
            stream.selected_alpn_proto(),
            Some(ALPN::H2) | Some(ALPN::Custom(_))
        ) || self
            .inner
            .server_options()
            .is_some_and(|o| o.h2c || o.force_custom);
        if !pingora_handles_it {
            let conn = HeaderDeadline::new(stream, self.header_timeout, self.timeouts.clone());
            return self.serve_http1(conn, shutdown).await;
        }
        // As pingora's own connection task does: a stream handed back is served again.
        let mut next = Some(stream);
        while let Some(stream) = next {
            next = ServerApp::process_new(&self.inner, stream, shutdown).await;
        }
    }

    /// An HTTP/1 connection, request after request, as pingora's own loop does, except that
    /// between requests it waits for the next one's first bytes itself: pingora's state for a
    /// request (tens of KiB) is only created once there is a request, so an idle keep-alive
    /// connection holds its stream and no read buffer, not a whole request's machinery.
    async fn serve_http1(&self, mut conn: HeaderDeadline, shutdown: &ShutdownWatch) {
        let mut settings: Option<HttpPersistentSettings> = None;
        let mut first = true;
        loop {
            if !first {
                let mut stop = shutdown.clone();
                let next = tokio::select! {
                    next = conn.next_request(KEEPALIVE_IDLE) => next,
                    _ = stop.changed() => return,
                };
                match next {
                    Ok(true) => {}
                    // Closed by the client, failed, or idle past the keep-alive timeout.
                    Ok(false) | Err(_) => return,
                }
            }
            let session = self.session(conn, settings.take(), shutdown);
            let Some(reused) = self.inner.process_new_http(session, shutdown).await else {
                return;
            };
            let (stream, kept) = reused.consume();
            let Ok(back) = stream.into_any().downcast::<HeaderDeadline>() else {
                return;
            };
            conn = *back;
            settings = kept;
            first = false;
        }
    }

    /// pingora's session for the next request on `conn`, with what the previous request on it
    /// left (`kept`). Built outside the async loop, so that the loop's state, which an idle
    /// connection keeps, has no room for a session (680 bytes) while it waits.
    fn session(
        &self,
        conn: HeaderDeadline,
        kept: Option<HttpPersistentSettings>,
        shutdown: &ShutdownWatch,
    ) -> ServerSession {
        let mut session = ServerSession::new_http1(Box::new(conn));
        match kept {
            Some(kept) => kept.apply_to_session(&mut session),
            None => session.set_keepalive_reuses_remaining(
                self.inner
                    .server_options()
                    .and_then(|o| o.keepalive_request_limit),
            ),
        }
        if *shutdown.borrow() {
            // Stop reusing connections once the service is shutting down.
            session.set_keepalive(None);
        } else if session.get_keepalive().is_none() {
            session.set_keepalive(Some(KEEPALIVE_IDLE.as_secs()));
        }
        session
    }
}
