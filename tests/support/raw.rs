//! A raw TLS client (rustls) for requests curl will not send: smuggling attempts, duplicate
//! headers, bodies that are themselves requests.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

fn pem_blocks(path: &Path, tag: &str) -> Vec<Vec<u8>> {
    let text = std::fs::read(path).expect("read pem");
    pem::parse_many(text)
        .expect("pem")
        .into_iter()
        .filter(|p| p.tag() == tag)
        .map(|p| p.into_contents())
        .collect()
}

/// A TLS client stream to the proxy.
pub type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// Opens an mTLS connection (HTTP/1.1 by ALPN) and completes the handshake.
pub fn connect(port: u16, ca: &Path, cert: &Path, key: &Path) -> Tls {
    let config = client_config(ca, cert, key, &[b"http/1.1"]);
    let name = ServerName::try_from("127.0.0.1").expect("name");
    let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("conn");
    let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).expect("handshake");
    }
    tls
}

/// Reads what arrives until the connection closes or stays silent for the socket's timeout.
pub fn read_all(tls: &mut Tls) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one response with a `Content-Length` body from a kept-alive connection; returns what
/// arrived (possibly nothing, when the proxy closed the connection instead).
pub fn read_response(tls: &mut Tls) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&out).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if body.len() >= len {
                return text;
            }
        }
        match tls.read(&mut buf) {
            Ok(0) | Err(_) => return text,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Sends `bytes` over one mTLS connection and returns everything the proxy answers until it
/// closes the connection or stays silent for a second.
pub fn send(port: u16, ca: &Path, cert: &Path, key: &Path, bytes: &[u8]) -> String {
    let mut tls = connect(port, ca, cert, key);
    tls.write_all(bytes).expect("write");
    tls.flush().expect("flush");
    read_all(&mut tls)
}

/// The status codes of every response in a raw HTTP/1.1 answer.
pub fn statuses(answer: &str) -> Vec<u16> {
    answer
        .split("HTTP/1.1 ")
        .skip(1)
        .filter_map(|s| s.get(..3)?.parse().ok())
        .collect()
}

/// The serial of the certificate the proxy serves now.
pub fn server_serial(port: u16, ca: &Path, cert: &Path, key: &Path) -> String {
    let tls = connect(port, ca, cert, key);
    let leaf = tls.conn.peer_certificates().expect("server certificate")[0].clone();
    edgeward_certs::CertView::parse(&leaf)
        .expect("parse")
        .serial
}

/// The rustls client config `connect` uses, with `alpn` offered.
pub fn client_config(ca: &Path, cert: &Path, key: &Path, alpn: &[&[u8]]) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for der in pem_blocks(ca, "CERTIFICATE") {
        roots.add(CertificateDer::from(der)).expect("root");
    }
    let chain: Vec<CertificateDer<'static>> = pem_blocks(cert, "CERTIFICATE")
        .into_iter()
        .map(CertificateDer::from)
        .collect();
    let key = PrivateKeyDer::try_from(pem_blocks(key, "PRIVATE KEY").remove(0)).expect("key");
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .expect("client auth");
    config.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    config
}
