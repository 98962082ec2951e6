//! What can go wrong on the channel, grouped by who was at fault: the peer (size, version,
//! shape, hash, paths) or the transport.

/// A frame or bundle that cannot be used, or a stream that failed.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("message of {len} bytes is larger than the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error(
        "message version {0} is not supported: this build speaks version {ours}",
        ours = crate::PROTOCOL_VERSION
    )]
    UnknownVersion(u16),
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("bundle hash `{claimed}` does not match its content (`{actual}`)")]
    HashMismatch { claimed: String, actual: String },
    #[error("bundle path `{path}` is not allowed: {reason}")]
    BadPath { path: String, reason: &'static str },
    #[error("the peer closed the stream")]
    Closed,
    #[error("reading from the stream failed: {0}")]
    Read(String),
    #[error("writing to the stream failed: {0}")]
    Write(String),
}
