//! How a node stops gracefully (SIGTERM, or SIGQUIT once a new process has the listeners).
//! pingora closes the listeners, tells every connection to stop (an HTTP/1 connection closes
//! after the request it serves, an HTTP/2 connection sends GOAWAY and closes once its streams
//! are done), then waits a fixed grace period before it stops its runtimes, which cuts what is
//! still running. The requests in flight get up to [`GRACE`]; the node exits as soon as its
//! last client connection has closed, not at the end of the grace period, so an idle node
//! stops at once. A connection still open when the grace period ends is cut by pingora, as
//! before.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pingora::server::ExecutionPhase;
use tokio::sync::broadcast;

use crate::signals::LastWords;

/// How long the requests in flight have to finish once a graceful stop starts.
pub const GRACE: Duration = Duration::from_secs(2);

/// How often the drain looks at the open connections.
const POLL: Duration = Duration::from_millis(5);

/// Client connections open on the proxy listeners of this process (a process runs one node).
static OPEN: AtomicUsize = AtomicUsize::new(0);

/// One open client connection, counted until it is dropped.
pub struct OpenConnection(());

impl OpenConnection {
    pub fn count() -> Self {
        OPEN.fetch_add(1, Ordering::Relaxed);
        Self(())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::Release);
    }
}

/// The client connections open now.
pub fn open_connections() -> usize {
    OPEN.load(Ordering::Acquire)
}

/// What the drain does after one look, `waited` into the grace period with `open`
/// connections left.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Every connection has closed: stop now.
    Exit,
    /// Look again after [`POLL`].
    Wait,
    /// The grace period is over: leave the stop to pingora, which cuts what is left.
    GiveUp,
}

pub fn next(open: usize, waited: Duration) -> Next {
    if open == 0 {
        Next::Exit
    } else if waited >= GRACE {
        Next::GiveUp
    } else {
        Next::Wait
    }
}

/// Watches pingora's phases on a thread of its own. Once a graceful stop's grace period
/// starts, it waits for the client connections to close; when they have, it says the node's
/// last words (the telemetry not reported yet) and exits the process with 0.
pub fn exit_when_drained(
    mut phases: broadcast::Receiver<ExecutionPhase>,
    last_words: Option<LastWords>,
) {
    let spawned = std::thread::Builder::new()
        .name("drain".into())
        .spawn(move || {
            loop {
                match phases.blocking_recv() {
                    Ok(ExecutionPhase::ShutdownGracePeriod) => break,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
            let start = Instant::now();
            loop {
                let open = open_connections();
                match next(open, start.elapsed()) {
                    Next::Wait => std::thread::sleep(POLL),
                    Next::GiveUp => {
                        tracing::warn!(
                            open,
                            "grace period over with connections still open: they are cut"
                        );
                        return;
                    }
                    Next::Exit => {
                        tracing::info!(
                            after_ms = start.elapsed().as_millis() as u64,
                            "every client connection has closed: stopping"
                        );
                        if let Some(last_words) = &last_words {
                            last_words();
                        }
                        std::process::exit(0);
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the drain thread: a graceful stop will take the whole grace period");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_once_no_connection_is_open_and_gives_up_at_the_grace_period() {
        assert_eq!(next(0, Duration::ZERO), Next::Exit);
        assert_eq!(next(0, GRACE * 2), Next::Exit);
        assert_eq!(next(3, Duration::from_millis(10)), Next::Wait);
        assert_eq!(next(1, GRACE), Next::GiveUp);
    }

    #[test]
    fn a_connection_counts_until_it_is_dropped() {
        let before = open_connections();
        let one = OpenConnection::count();
        assert!(open_connections() > before);
        drop(one);
        // Other tests in this process do not open proxy connections.
        assert_eq!(open_connections(), before);
    }
}
