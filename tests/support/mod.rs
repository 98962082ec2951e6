//! Test support: a real site on loopback. Certificates come from our own CA code at test
//! time; the upstreams are `examples/quickstart/upstream.py` (Python's http.server); the
//! proxy is the real `edgeward` binary; clients are curl and rustls.

#![allow(dead_code)]

pub mod h2echo;
pub mod pki;
pub mod procs;
pub mod raw;
pub mod site;
pub mod stale;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[allow(unused_imports)]
pub use pki::Pki;
#[allow(unused_imports)]
pub use procs::{Proxy, Upstream};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A free loopback port (bound and released; the race is acceptable on a test machine).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Polls `f` every 50 ms until it returns `Some`, or panics after `limit` with `what`.
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A curl answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

impl Answer {
    /// The value of a response header (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

/// Client credentials for curl.
pub struct Client<'a> {
    pub cert: Option<(&'a Path, &'a Path)>,
    pub ca: &'a Path,
}

/// Runs curl with extra args against `url`; status 0 means curl itself failed (e.g. the
/// handshake was refused).
pub fn curl(client: &Client<'_>, extra: &[&str], url: &str) -> Answer {
    let dir = tempfile::tempdir().expect("tempdir");
    let headers = dir.path().join("h");
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "10", "-o", "-", "-D"])
        .arg(&headers)
        .arg("--cacert")
        .arg(client.ca);
    if let Some((c, k)) = client.cert {
        cmd.arg("--cert").arg(c).arg("--key").arg(k);
    }
    cmd.args(["-w", "\n%{http_code}"]).args(extra).arg(url);
    let out = cmd.output().expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    Answer {
        status: code.trim().parse().unwrap_or(0),
        headers: std::fs::read_to_string(&headers).unwrap_or_default(),
        body: body.to_owned(),
    }
}
