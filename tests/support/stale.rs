//! An HTTP/1.1 upstream whose kept-alive connections go stale: it answers the first request
//! of each connection (after `delay`, so that concurrent requests open connections of their
//! own) and keeps the connection open, then closes it without an answer when the next request
//! arrives, as an upstream that restarted or timed out idle connections would. Real sockets, on
//! a thread of the test process.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct StaleUpstream {
    pub port: u16,
    /// Connections accepted so far.
    pub connections: Arc<AtomicUsize>,
}

impl StaleUpstream {
    pub fn start(delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the stale upstream");
        let port = listener.local_addr().expect("local address").port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                counter.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || serve(stream, delay));
            }
        });
        Self { port, connections }
    }
}

fn serve(mut stream: TcpStream, delay: Duration) {
    if !read_head(&mut stream) {
        return;
    }
    std::thread::sleep(delay);
    let body = "ok\n";
    let answer = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nx-served-by: stale\r\n\r\n{body}",
        body.len()
    );
    if stream.write_all(answer.as_bytes()).is_err() {
        return;
    }
    // The next request on this connection is not answered: the connection just closes.
    let _ = read_head(&mut stream);
}

/// Reads one request header; false when the connection closed first.
fn read_head(stream: &mut TcpStream) -> bool {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return false,
        }
    }
    true
}
