//! How a node stops. pingora's Unix signals are kept (SIGTERM: graceful stop, SIGQUIT:
//! graceful upgrade, SIGINT: fast stop), except that a fast stop first runs the node's last
//! words: the telemetry window in progress goes to the on-disk queue, so a node stopped with
//! Ctrl-C loses none of the counts it has not reported yet (nothing is lost silently). A
//! graceful stop writes it from the control service itself, within pingora's grace period.

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch, UnixShutdownSignalWatch};

/// What runs on SIGINT, before the runtimes are stopped.
pub type LastWords = Box<dyn Fn() + Send + Sync>;

/// pingora's signal watch with [`LastWords`] on a fast stop.
pub struct Signals {
    last_words: Option<LastWords>,
}

impl Signals {
    /// Runs `last_words` (if any) when SIGINT asks for a fast stop.
    pub fn new(last_words: Option<LastWords>) -> Self {
        Self { last_words }
    }
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        let signal = UnixShutdownSignalWatch.recv().await;
        if let (ShutdownSignal::FastShutdown, Some(last_words)) = (&signal, &self.last_words) {
            tracing::info!("SIGINT: writing what is not reported yet, then stopping");
            last_words();
        }
        signal
    }
}
