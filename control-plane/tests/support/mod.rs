//! The control plane under test: a PKI made with the product's CA code, the example fleet
//! committed to a Git repository made at test time, the real control plane started in
//! process, and a real quinn client with a node certificate.

#![allow(dead_code)]

#[path = "../../../tests/support/pki.rs"]
pub mod pki;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use edgeward_control_plane::config::Config;
use edgeward_control_plane::run::{self, Running};
use edgeward_wire::{protocol, read_frame, write_frame, Message};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub use pki::Pki;

pub const BERLIN_ID: &str = "spiffe://acme.example/site/berlin/node/berlin-gw-1";
pub const CP_ID: &str = "spiffe://acme.example/control-plane";

/// A fleet repository, a PKI and a running control plane, all in one temporary folder.
pub struct Fleet {
    pub dir: tempfile::TempDir,
    pub pki: Pki,
    pub repo: PathBuf,
    pub cp: Option<Running>,
}

impl Fleet {
    /// The example fleet (with the test root as trust material), committed, and the control
    /// plane started on it.
    pub async fn start() -> Fleet {
        let mut fleet = Fleet::prepare();
        fleet.launch("").await;
        fleet
    }

    /// The PKI and the repository, without a control plane yet.
    pub fn prepare() -> Fleet {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::new(&dir.path().join("pki"));
        let repo = dir.path().join("fleet");
        copy_dir(&example_desired(), &repo);
        std::fs::create_dir_all(repo.join("shared/trust")).expect("mkdir");
        std::fs::copy(pki.bundle(), repo.join("shared/trust/acme.example.pem")).expect("trust");
        git(&repo, &["init", "-q", "-b", "main"]);
        commit_all(&repo, "the example fleet");
        Fleet {
            dir,
            pki,
            repo,
            cp: None,
        }
    }

    /// Starts the control plane; `identity_extra` is added to its `[identity]` table.
    pub async fn launch(&mut self, identity_extra: &str) {
        let (cert, key) = self.pki.issue("cp", CP_ID);
        let config_text = format!(
            "[source]\ngit = \"{}\"\nref = \"main\"\npoll_interval = \"1h\"\n\
             [listen]\nquic = \"127.0.0.1:0\"\napi = \"127.0.0.1:0\"\n\
             [identity]\ncert = \"{}\"\nkey = \"{}\"\nbundle = \"{}\"\n{identity_extra}\n\
             [store]\nsqlite = \"{}\"\n",
            self.repo.display(),
            cert.display(),
            key.display(),
            self.pki.bundle().display(),
            self.dir.path().join("cp.db").display()
        );
        let file = self.dir.path().join("cp.toml");
        std::fs::write(&file, &config_text).expect("config");
        let config = Config::load(&file).expect("config is valid");
        self.cp = Some(run::start(&config).await.expect("control plane starts"));
    }

    pub fn cp(&self) -> &Running {
        self.cp.as_ref().expect("running")
    }

    /// Writes `rel` in the repository and commits it.
    pub fn commit_file(&self, rel: &str, text: &str) -> String {
        let path = self.repo.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
        commit_all(&self.repo, &format!("change {rel}"))
    }

    /// Connects as a node with a certificate for `id` issued by `pki`.
    pub async fn connect_as(
        &self,
        pki: &Pki,
        name: &str,
        id: &str,
    ) -> Result<quinn::Connection, String> {
        let (cert, key) = pki.issue(name, id);
        self.connect_with(&cert, &key).await
    }

    /// Connects as a node with the certificate and key files given.
    pub async fn connect_with(&self, cert: &Path, key: &Path) -> Result<quinn::Connection, String> {
        connect(self.cp().quic, &self.pki.bundle(), cert, key).await
    }
}

/// Connects to `addr` with the node chain and key, trusting `bundle` for the server.
pub async fn connect(
    addr: std::net::SocketAddr,
    bundle: &Path,
    cert: &Path,
    key: &Path,
) -> Result<quinn::Connection, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for der in edgeward_certs::pem_io::read_certificates(bundle).expect("bundle") {
        roots.add(CertificateDer::from(der)).expect("root");
    }
    let chain: Vec<CertificateDer<'static>> = edgeward_certs::pem_io::read_certificates(cert)
        .expect("chain")
        .into_iter()
        .map(CertificateDer::from)
        .collect();
    let key_pem = std::fs::read(key).expect("key");
    let key = PrivateKeyDer::from_pem_slice(&key_pem).expect("key parses");
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .expect("client cert");
    tls.alpn_protocols = vec![protocol::ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("quic tls");
    let mut endpoint =
        quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let connecting = endpoint
        .connect(addr, "localhost")
        .map_err(|e| e.to_string())?;
    connecting.await.map_err(|e| e.to_string())
}

/// The node's side of one session.
pub struct Session {
    pub conn: quinn::Connection,
    pub send: quinn::SendStream,
    pub recv: quinn::RecvStream,
}

impl Session {
    pub async fn open(conn: quinn::Connection) -> Session {
        let (send, recv) = conn.open_bi().await.expect("stream");
        Session { conn, send, recv }
    }

    pub async fn send(&mut self, msg: &Message) {
        write_frame(&mut self.send, msg).await.expect("send");
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.send.write_all(bytes).await.expect("send raw");
    }

    /// The next message that is not a heartbeat.
    pub async fn recv(&mut self) -> Message {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), read_frame(&mut self.recv))
                .await
                .expect("a message within 10 s")
                .expect("a message");
            if !matches!(msg, Message::Heartbeat { .. }) {
                return msg;
            }
        }
    }

    /// Waits for the control plane to close the connection: its code and reason.
    pub async fn closed(&self) -> (u32, String) {
        closed(&self.conn).await
    }
}

/// The application close code and reason of a connection the server closed.
pub async fn closed(conn: &quinn::Connection) -> (u32, String) {
    let e = tokio::time::timeout(Duration::from_secs(45), conn.closed())
        .await
        .expect("closed within 45 s");
    match e {
        quinn::ConnectionError::ApplicationClosed(c) => (
            u32::try_from(c.error_code.into_inner()).expect("code"),
            String::from_utf8_lossy(&c.reason).into_owned(),
        ),
        other => (u32::MAX, other.to_string()),
    }
}

pub fn register(node_id: &str, spiffe_id: &str) -> Message {
    Message::Register {
        node_id: node_id.into(),
        spiffe_id: spiffe_id.into(),
        site: "berlin".into(),
        zone: "eu-central-a".into(),
        region: "eu-central".into(),
        software_version: "0.1.0".into(),
        bundle_version: None,
    }
}

/// A plain HTTP/1.1 request to the API; the status and body.
pub async fn http(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn example_desired() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/fleet/desired")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).expect("copy");
        }
    }
}

fn git(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["-c", "user.name=test", "-c", "user.email=test@example.com"])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn commit_all(repo: &Path, message: &str) -> String {
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", message]);
    git(repo, &["rev-parse", "HEAD"])
}
