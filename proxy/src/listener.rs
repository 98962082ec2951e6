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

mod deadline;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::{Stream, ALPN};
use pingora::server::ShutdownWatch;
use tokio::sync::Semaphore;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use crate::metrics::{ListenerLabels, Metrics};
pub use deadline::{HeaderDeadline, TIMEOUT_RESPONSE};

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
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Guarded<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let Ok(_permit) = self.permits.clone().try_acquire_owned() else {
            self.refused.inc();
            tracing::warn!(listener = %self.listener, "at max_connections: closing a new connection");
            return None;
        };
        self.open.inc();
        let stream: Stream = if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            stream
        } else {
            Box::new(HeaderDeadline::new(
                stream,
                self.header_timeout,
                self.timeouts.clone(),
            ))
        };
        // The permit is held until the connection (and every request on it) is done.
        let out = self.inner.process_new(stream, shutdown).await;
        self.open.dec();
        out
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}
