//! Retry eligibility (RFC 9110 section 9.2.2 for idempotent methods).

/// How an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The connection (or TLS handshake) to the upstream failed: nothing was sent.
    ConnectFailed,
    /// The request may have reached the upstream (reset, timeout or error after sending).
    AfterRequestSent,
}

/// Whether `method` is idempotent (RFC 9110 section 9.2.2). Methods are case-sensitive
/// (section 9.1), so `get` is not `GET`.
pub fn is_idempotent(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
    )
}

/// Whether another attempt may be made after attempt number `attempt` (1 for the first)
/// failed, with at most `max_retries` retries after the first attempt.
///
/// A failed connect sent nothing, so any method may move to another endpoint. Once the
/// request may have reached an upstream, only an idempotent method whose body can be sent
/// again is retried: anything else could act twice.
pub fn retry_allowed(
    method: &str,
    attempt: u32,
    max_retries: u32,
    failure: FailureKind,
    body_replayable: bool,
) -> bool {
    if attempt > max_retries {
        return false;
    }
    match failure {
        FailureKind::ConnectFailed => true,
        FailureKind::AfterRequestSent => is_idempotent(method) && body_replayable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use FailureKind::*;

    #[test]
    fn connect_failures_retry_any_method_within_budget() {
        assert!(retry_allowed("POST", 1, 2, ConnectFailed, false));
        assert!(retry_allowed("PATCH", 2, 2, ConnectFailed, false));
        assert!(!retry_allowed("GET", 3, 2, ConnectFailed, true));
        assert!(!retry_allowed("GET", 1, 0, ConnectFailed, true));
    }

    #[test]
    fn after_sending_only_idempotent_replayable_requests_retry() {
        for m in ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"] {
            assert!(retry_allowed(m, 1, 2, AfterRequestSent, true), "{m}");
            assert!(!retry_allowed(m, 1, 2, AfterRequestSent, false), "{m}");
        }
        for m in ["POST", "PATCH", "CONNECT", "get"] {
            assert!(!retry_allowed(m, 1, 2, AfterRequestSent, true), "{m}");
        }
    }
}
