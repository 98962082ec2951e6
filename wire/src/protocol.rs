//! The session rules both sides follow, and the QUIC close codes that name why a connection
//! ended. See the crate documentation for the whole protocol.

use std::time::Duration;

/// The ALPN protocol id of the control channel (RFC 7301); a handshake without it fails.
pub const ALPN: &[u8] = b"edgeward-ctl/1";

/// The node must open its stream and send `Register` within this time after the handshake.
pub const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);

/// Each side sends a `Heartbeat` at this interval.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);

/// A side that hears nothing (no frame of any type) for this long closes the connection.
pub const SILENCE_TIMEOUT: Duration = Duration::from_secs(30);

/// QUIC application close codes (the `error_code` of CONNECTION_CLOSE); the reason phrase
/// carries a human-readable explanation.
pub mod close {
    /// The control plane is shutting down; reconnect with backoff.
    pub const SHUTDOWN: u32 = 0;
    /// A bad frame (oversized, unknown version, malformed) or a message not allowed here.
    pub const PROTOCOL: u32 = 1;
    /// No `Register` within [`super::REGISTER_TIMEOUT`].
    pub const REGISTER_TIMEOUT: u32 = 2;
    /// The node is not in the published desired state, or its `Register` does not match its
    /// certificate. Retrying with the same identity will not help until the desired state
    /// changes.
    pub const REFUSED: u32 = 3;
    /// Nothing heard for [`super::SILENCE_TIMEOUT`].
    pub const SILENCE: u32 = 4;
    /// A newer connection of the same node replaced this one.
    pub const REPLACED: u32 = 5;
    /// The control plane failed internally; retry with backoff.
    pub const INTERNAL: u32 = 6;
}
