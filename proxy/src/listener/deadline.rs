//! The whole-header deadline of HTTP/1 connections, as a wrapper around the client stream.
//!
//! The wrapper watches the bytes the client sends for the end of a request header (an empty
//! line, `\r\n\r\n`). While a header is incomplete, a read that is still pending at the
//! deadline writes `408` to the client and fails, so pingora closes the connection. Once the
//! header is complete the clock stops; it restarts at the first byte the client sends after
//! the proxy wrote a final (non-1xx) response header, i.e. at the next request.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// What a client whose header is late receives.
pub const TIMEOUT_RESPONSE: &[u8] = b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain\r\ncontent-length: 16\r\nconnection: close\r\n\r\nrequest timeout\n";

/// Where the connection is in the request/response cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// A request header is arriving; `matched` bytes of `\r\n\r\n` were seen last.
    Header { matched: u8 },
    /// The header is complete; the proxy is handling the request.
    Request,
    /// A final response was written; the next byte read starts the next header.
    Idle,
    /// The deadline passed: `written` bytes of the 408 are out.
    TimedOut { written: usize },
}

/// Advances the `\r\n\r\n` matcher over `bytes`; returns the new state, or `None` once the
/// header's end was found.
fn scan(mut matched: u8, bytes: &[u8]) -> Option<u8> {
    const END: &[u8; 4] = b"\r\n\r\n";
    for &b in bytes {
        matched = if b == END[matched as usize] {
            matched + 1
        } else if b == b'\r' {
            1
        } else {
            0
        };
        if matched == 4 {
            return None;
        }
    }
    Some(matched)
}

/// Whether a write starts a final response header (`HTTP/1.x` then a status that is not 1xx).
fn starts_final_response(buf: &[u8]) -> bool {
    buf.len() >= 10
        && buf.starts_with(b"HTTP/1.")
        && buf[8] == b' '
        && matches!(buf[9], b'2'..=b'5')
}

/// How much [`HeaderDeadline::next_request`] reads while waiting for the next request: a
/// usual request header at once, without holding a larger buffer while a connection idles.
const NEXT_REQUEST_READ: usize = 1024;

/// A client stream with the header deadline.
pub struct HeaderDeadline {
    inner: Stream,
    timeout: Duration,
    phase: Phase,
    sleep: Pin<Box<Sleep>>,
    timeouts: Counter,
    /// Bytes read by [`HeaderDeadline::next_request`], handed out before anything else.
    pending: Vec<u8>,
    pending_at: usize,
}

impl HeaderDeadline {
    /// Wraps a newly accepted stream: the first header's clock starts now.
    pub fn new(inner: Stream, timeout: Duration, timeouts: Counter) -> Self {
        Self {
            inner,
            timeout,
            phase: Phase::Header { matched: 0 },
            sleep: Box::pin(tokio::time::sleep(timeout)),
            timeouts,
            pending: Vec::new(),
            pending_at: 0,
        }
    }

    /// Waits for the first bytes of the next request on a kept-alive connection and keeps them
    /// for the next read; `Ok(false)` when the client closed the connection instead. This is
    /// how an idle connection waits without pingora's per-request state (see `listener.rs`).
    pub async fn next_request(&mut self, idle: Duration) -> std::io::Result<bool> {
        // The connection's one timer also bounds the idle wait (a byte that arrives restarts
        // it as the header deadline), so waiting holds no second timer.
        self.sleep.as_mut().reset(Instant::now() + idle);
        // The read buffer lives on the stack of one poll, not in the waiting future: an idle
        // connection holds no buffer at all, and what arrived is kept at its own size.
        std::future::poll_fn(|cx| {
            let mut buf = [0u8; NEXT_REQUEST_READ];
            let mut read = ReadBuf::new(&mut buf);
            match Pin::new(&mut *self).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) => {
                    let n = read.filled().len();
                    self.pending = read.filled().to_vec();
                    self.pending_at = 0;
                    Poll::Ready(Ok(n > 0))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                // Idle past `idle`: the connection is done.
                Poll::Pending if self.sleep.as_mut().poll(cx).is_ready() => Poll::Ready(Ok(false)),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    fn start_clock(&mut self) {
        let at = Instant::now() + self.timeout;
        self.sleep.as_mut().reset(at);
    }

    /// Writes what is left of the 408, then fails the read.
    fn poll_timed_out(
        &mut self,
        cx: &mut Context<'_>,
        mut written: usize,
    ) -> Poll<std::io::Result<()>> {
        while written < TIMEOUT_RESPONSE.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &TIMEOUT_RESPONSE[written..]) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => break,
                Poll::Ready(Ok(n)) => {
                    written += n;
                    self.phase = Phase::TimedOut { written };
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        if Pin::new(&mut self.inner).poll_flush(cx).is_pending() {
            return Poll::Pending;
        }
        self.phase = Phase::TimedOut {
            written: TIMEOUT_RESPONSE.len(),
        };
        Poll::Ready(Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the request header did not arrive within limits.header_timeout",
        )))
    }
}

impl AsyncRead for HeaderDeadline {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.pending_at < this.pending.len() {
            // Already scanned when they were read.
            let n = buf.remaining().min(this.pending.len() - this.pending_at);
            buf.put_slice(&this.pending[this.pending_at..this.pending_at + n]);
            this.pending_at += n;
            if this.pending_at == this.pending.len() {
                this.pending = Vec::new();
                this.pending_at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        if let Phase::TimedOut { written } = this.phase {
            return this.poll_timed_out(cx, written);
        }
        let before = buf.filled().len();
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        match res {
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                if new.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                if this.phase == Phase::Idle {
                    this.start_clock();
                    this.phase = Phase::Header { matched: 0 };
                }
                if let Phase::Header { matched } = this.phase {
                    this.phase = match scan(matched, new) {
                        Some(m) => Phase::Header { matched: m },
                        None => Phase::Request,
                    };
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                if matches!(this.phase, Phase::Header { .. })
                    && this.sleep.as_mut().poll(cx).is_ready()
                {
                    this.timeouts.inc();
                    tracing::info!(
                        timeout = ?this.timeout,
                        "request header not complete within limits.header_timeout: 408 and close"
                    );
                    this.phase = Phase::TimedOut { written: 0 };
                    return this.poll_timed_out(cx, 0);
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

impl AsyncWrite for HeaderDeadline {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.phase == Phase::Request && starts_final_response(buf) {
            this.phase = Phase::Idle;
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.phase == Phase::Request && bufs.first().is_some_and(|b| starts_final_response(b)) {
            this.phase = Phase::Idle;
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl fmt::Debug for HeaderDeadline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeaderDeadline")
            .field("inner", &self.inner)
            .field("phase", &self.phase)
            .finish()
    }
}

#[async_trait]
impl Shutdown for HeaderDeadline {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for HeaderDeadline {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for HeaderDeadline {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }
    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }
    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for HeaderDeadline {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }
    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }
    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for HeaderDeadline {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for HeaderDeadline {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }
    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for HeaderDeadline {
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        if self.pending_at < self.pending.len() {
            // Bytes already taken off the stream cannot be peeked at there: "not supported".
            return Ok(false);
        }
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(5);

    async fn connected(header_timeout: Duration) -> (tokio::net::TcpStream, HeaderDeadline) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let stream: Stream = Box::new(pingora::protocols::l4::stream::Stream::from(server));
        let conn = HeaderDeadline::new(stream, header_timeout, Counter::default());
        (client, conn)
    }

    #[test]
    fn finds_the_end_of_a_header_across_reads() {
        assert_eq!(scan(0, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), None);
        let m = scan(0, b"GET / HTTP/1.1\r\nHost: x\r").unwrap();
        let m = scan(m, b"\n").unwrap();
        assert_eq!(scan(m, b"\r\n"), None);
        // A lone CR or LF does not end it; `\r\r\n\r\n` does.
        assert_eq!(scan(0, b"a\r\nb\nc\r"), Some(1));
        assert_eq!(scan(0, b"\r\r\n\r\n"), None);
        assert_eq!(scan(0, b"\n\n"), Some(0));
    }

    #[test]
    fn only_final_response_headers_restart_the_clock() {
        assert!(starts_final_response(b"HTTP/1.1 200 OK\r\n"));
        assert!(starts_final_response(
            b"HTTP/1.1 503 Service Unavailable\r\n"
        ));
        assert!(!starts_final_response(b"HTTP/1.1 100 Continue\r\n"));
        assert!(!starts_final_response(
            b"HTTP/1.1 101 Switching Protocols\r\n"
        ));
        assert!(!starts_final_response(b"hello world"));
        assert!(!starts_final_response(b"HTTP/1.1"));
    }

    #[tokio::test]
    async fn the_next_request_is_waited_for_and_then_read_whole() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, mut conn) = connected(Duration::from_secs(5)).await;

        let request = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
        client.write_all(request).await.unwrap();
        assert!(conn.next_request(IDLE).await.unwrap());
        assert_eq!(
            conn.phase,
            Phase::Request,
            "the bytes waited for were scanned"
        );
        let mut got = vec![0u8; request.len()];
        conn.read_exact(&mut got).await.unwrap();
        assert_eq!(got, request);
        assert!(conn.pending.is_empty(), "nothing is held once handed out");

        // More than one read's worth: the rest comes from the stream after the kept bytes.
        let big = [
            b"GET /b HTTP/1.1\r\nx-pad: ".as_slice(),
            &[b'a'; 3000],
            b"\r\n\r\n",
        ]
        .concat();
        client.write_all(&big).await.unwrap();
        assert!(conn.next_request(IDLE).await.unwrap());
        let mut got = vec![0u8; big.len()];
        conn.read_exact(&mut got).await.unwrap();
        assert_eq!(got, big);

        drop(client);
        assert!(
            !conn.next_request(IDLE).await.unwrap(),
            "a closed connection has no next request"
        );
    }

    #[tokio::test]
    async fn a_connection_idle_past_the_limit_has_no_next_request() {
        let (_client, mut conn) = connected(Duration::from_secs(5)).await;
        conn.phase = Phase::Idle;
        let idle = Duration::from_millis(50);
        let started = Instant::now();
        assert!(!conn.next_request(idle).await.unwrap());
        assert!(started.elapsed() >= idle);
        assert_eq!(
            conn.phase,
            Phase::Idle,
            "no 408 for a client that sent nothing"
        );
    }

    #[tokio::test]
    async fn the_first_byte_after_idling_starts_the_header_clock() {
        use tokio::io::AsyncWriteExt;
        let header_timeout = Duration::from_secs(30);
        let (mut client, mut conn) = connected(header_timeout).await;
        conn.phase = Phase::Idle;
        client.write_all(b"GET / HT").await.unwrap();
        assert!(conn.next_request(Duration::from_millis(50)).await.unwrap());
        assert_eq!(conn.phase, Phase::Header { matched: 0 });
        let left = conn.sleep.deadline() - Instant::now();
        assert!(
            left > Duration::from_secs(20),
            "the header deadline, not the idle limit, runs now ({left:?} left)"
        );
    }
}
