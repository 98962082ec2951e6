//! The node's side of the control plane: it is never on the request path.
//!
//! - [`boot`]: which config the node starts from (its last-known-good bundle, else the local
//!   file), so that a node whose control plane is away serves what it served before, across
//!   its own restart.
//! - [`lkg`]: bundles on disk, written atomically and checked against their hash.
//! - [`overlay`]: the local sections a bundle does not replace.
//! - [`client`]: the QUIC channel (register, bundles and acks, telemetry and acks, heartbeats)
//!   with reconnects, backoff and jitter.
//!
//! Telemetry is aggregated in [`crate::telemetry`] and queued on disk until acknowledged.

pub mod boot;
pub mod client;
pub mod lkg;
pub mod overlay;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::config::Config;
use crate::state::Shared;
use crate::telemetry::queue::Queue;
use lkg::LkgStore;
use overlay::Overlay;

/// The background service that keeps the node connected to its control plane and closes a
/// telemetry window every interval.
pub struct ControlService {
    pub shared: Arc<Shared>,
    pub local: Config,
    pub overlay: Overlay,
    pub store: LkgStore,
    pub queue: Arc<Queue>,
}

impl ControlService {
    /// Prepares the service for a node whose local config names a control plane.
    pub fn new(shared: Arc<Shared>, local: Config) -> Result<Self, String> {
        let overlay = Overlay::from_local(&local)?;
        let cp = local
            .control_plane
            .as_ref()
            .ok_or("the local config has no [control_plane]")?;
        let data_dir = local
            .node
            .data_dir
            .clone()
            .ok_or("the local config has no node.data_dir")?;
        let queue = Queue::open(&data_dir.join("telemetry"), cp.telemetry_queue_bytes.get())
            .map_err(|e| format!("the telemetry queue: {e}"))?;
        shared.telemetry.enable();
        Ok(Self {
            shared,
            store: LkgStore::new(&data_dir),
            local,
            overlay,
            queue: Arc::new(queue),
        })
    }
}

#[async_trait]
impl BackgroundService for ControlService {
    async fn start(&self, shutdown: ShutdownWatch) {
        let Some(cp) = self.local.control_plane.clone() else {
            return;
        };
        // Aggregation runs whether or not the control plane is reachable.
        let (shared, queue, locality) = (
            self.shared.clone(),
            self.queue.clone(),
            self.local.node.locality.clone(),
        );
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(cp.telemetry_interval);
            tick.tick().await;
            loop {
                let stopping = tokio::select! {
                    _ = stop.changed() => true,
                    _ = tick.tick() => false,
                };
                // On shutdown the last, partial window goes to disk too: nothing served is
                // left out of the counts (pingora's grace period gives this the time).
                close_window(&shared, &queue, &locality);
                if stopping {
                    return;
                }
            }
        });
        client::run(self, shutdown).await;
    }
}

/// Closes the current telemetry window into the queue (when anything happened in it).
pub fn close_window(shared: &Shared, queue: &Queue, locality: &crate::config::Locality) {
    let window = shared.telemetry.take(crate::telemetry::now_ns());
    if window.is_empty() {
        return;
    }
    let bytes = crate::telemetry::otlp::encode(&window, locality);
    match queue.push(&bytes) {
        Ok(Some(_)) => {}
        Ok(None) => tracing::warn!(
            bytes = bytes.len(),
            "a telemetry batch larger than the whole queue was dropped"
        ),
        Err(e) => tracing::error!(error = %e, "cannot queue telemetry; the batch is dropped"),
    }
    // The queue keeps the running total; the counter follows it (`fetch_max`: a window closed
    // on two threads at once cannot count a drop twice).
    shared
        .metrics
        .telemetry_dropped
        .inner()
        .fetch_max(queue.dropped_total(), std::sync::atomic::Ordering::Relaxed);
    shared.metrics.telemetry_queued.set(queue.len() as i64);
}

/// The delay before reconnect attempt `n` (0-based): doubling from 500 ms to 30 s, with the
/// upper half jittered so that a fleet does not reconnect in step.
pub fn backoff(n: u32, jitter: f64) -> Duration {
    let base = Duration::from_millis(500).saturating_mul(1u32 << n.min(6));
    let capped = base.min(Duration::from_secs(30));
    capped.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap_with_jitter() {
        assert_eq!(backoff(0, 1.0), Duration::from_millis(500));
        assert_eq!(backoff(1, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(10, 1.0), Duration::from_secs(30));
        assert_eq!(backoff(10, 0.0), Duration::from_secs(15));
        assert!(backoff(3, 0.5) < backoff(3, 1.0));
    }
}
