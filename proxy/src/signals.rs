//! How a node stops. pingora's Unix signals are kept (SIGTERM: graceful stop, SIGQUIT:
//! graceful upgrade, SIGINT: fast stop). A managed node's last words, the telemetry window in
//! progress written to the on-disk queue, are said twice: on SIGINT before pingora stops its
//! runtimes (a fast stop gives the control service no time to do it), and, whatever the
//! signal, once every runtime has stopped (`server::run` after pingora returns), so that the
//! requests that finished during the grace period or the shutdown are counted too. Nothing
//! served is left out (principle 3: nothing is lost silently); an empty window writes nothing.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch, UnixShutdownSignalWatch};

/// What runs on SIGINT, before the runtimes are stopped, and again after they have.
pub type LastWords = Arc<dyn Fn() + Send + Sync>;

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
