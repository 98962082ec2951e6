//! Log output for the long-running commands (`proxy`, `control-plane`): `tracing` to stderr,
//! human or JSON, the level from `RUST_LOG`. pingora's own `log` lines come through the bridge.
//!
//! pingora logs every failed client TLS handshake at ERROR ("Downstream handshake error"): a
//! client without a certificate, a port scanner, a peer that gives up. Anyone who can reach a
//! listener could fill the node's log, so those lines are let through at most once a second;
//! every one is counted in `edgeward_tls_handshake_failures_total`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use clap::ValueEnum;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Log output format.
#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let throttle = HandshakeFailures::new();
    let _ = match format {
        LogFormat::Human => builder.finish().with(throttle).try_init(),
        LogFormat::Json => builder.json().finish().with(throttle).try_init(),
    };
}

/// Where pingora accepts connections and logs their failed handshakes.
const LISTENING: &str = "pingora_core::services::listening";

/// Counts pingora's failed-handshake lines and lets one a second through.
struct HandshakeFailures {
    start: Instant,
    /// The second (since `start`) of the last line let through, plus one; 0 for none yet.
    last: AtomicU64,
}

impl HandshakeFailures {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last: AtomicU64::new(0),
        }
    }
}

impl<S: Subscriber> Layer<S> for HandshakeFailures {
    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        if *event.metadata().level() != Level::ERROR {
            return true;
        }
        // pingora's lines come through the `log` bridge, which carries their target in a field.
        let mut seen = Seen::default();
        event.record(&mut seen);
        let target = seen.target.as_deref().unwrap_or(event.metadata().target());
        if target != LISTENING || !seen.handshake {
            return true;
        }
        edgeward_proxy::metrics::TLS_HANDSHAKE_FAILURES.inc();
        let second = self.start.elapsed().as_secs() + 1;
        let last = self.last.load(Ordering::Relaxed);
        first_in_its_second(second, last)
            && self
                .last
                .compare_exchange(last, second, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

/// Whether a line in `second` is the first since the one let through in `last`.
fn first_in_its_second(second: u64, last: u64) -> bool {
    second > last
}

/// An event's target (as the `log` bridge records it) and whether its message is about a
/// handshake (a failure or a timeout).
#[derive(Default)]
struct Seen {
    target: Option<String>,
    handshake: bool,
}

impl Visit for Seen {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.handshake = format!("{value:?}").contains("handshake");
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.handshake = value.contains("handshake"),
            "log.target" => self.target = Some(value.to_owned()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_a_second() {
        assert!(first_in_its_second(1, 0));
        assert!(!first_in_its_second(1, 1));
        assert!(first_in_its_second(2, 1));
        assert!(first_in_its_second(9, 2));
    }
}
