//! Issued certificates against the SVID profile (read back with x509-parser, field by field),
//! and against a real rustls handshake with `WebPkiClientVerifier`.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ::time::OffsetDateTime;
use edgeward_certs::ca::{self, Ca, KeyAlg, NewCa};
use edgeward_certs::issue::{self, ExtraSans, LeafRequest};
use edgeward_certs::revoke::{self, Reason, Target};
use edgeward_certs::{pem_io, verify, SpiffeId, TrustDomain};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use x509_parser::prelude::*;

const DAY: Duration = Duration::from_secs(86_400);

struct Pki {
    _dir: tempfile::TempDir,
    root: Ca,
    site: Ca,
}

fn new_ca(out: &Path, now: OffsetDateTime, ttl: Duration) -> NewCa<'_> {
    NewCa {
        out,
        ttl,
        key_alg: KeyAlg::P256,
        force: false,
        now,
    }
}

fn pki(td: &str) -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let now = OffsetDateTime::now_utc();
    let td = TrustDomain::new(td).unwrap();
    let root_dir = dir.path().join("root");
    ca::init_root(&td, &new_ca(&root_dir, now, 3650 * DAY)).unwrap();
    let root = Ca::load(&root_dir, now).unwrap();
    let site_dir = dir.path().join("site");
    let prefix = edgeward_certs::PathPrefix::parse("/site/berlin").unwrap();
    ca::create_intermediate(
        &root,
        "berlin",
        Some(&prefix),
        &new_ca(&site_dir, now, 365 * DAY),
    )
    .unwrap();
    let site = Ca::load(&site_dir, now).unwrap();
    Pki {
        _dir: dir,
        root,
        site,
    }
}

fn issue_at(ca: &Ca, id: &str, now: OffsetDateTime, ttl: Duration, out: &Path) -> Vec<Vec<u8>> {
    let id = SpiffeId::parse(id).unwrap();
    let sans = ExtraSans {
        dns: vec![],
        ips: vec!["127.0.0.1".parse().unwrap()],
    };
    let req = LeafRequest {
        id: &id,
        sans: &sans,
        ttl,
        now,
    };
    issue::issue(ca, &req, KeyAlg::P256, out, false).unwrap();
    pem_io::read_certificates(&issue::with_ext(out, "crt")).unwrap()
}

#[test]
fn leaf_matches_the_svid_profile_field_by_field() {
    let pki = pki("acme.example");
    let out = pki.site.dir.join("api");
    let sans = ExtraSans {
        dns: vec!["api.berlin.local".into()],
        ips: vec!["127.0.0.1".parse().unwrap()],
    };
    let id = SpiffeId::parse("spiffe://acme.example/site/berlin/service/api").unwrap();
    let now = OffsetDateTime::now_utc();
    let req = LeafRequest {
        id: &id,
        sans: &sans,
        ttl: DAY,
        now,
    };
    issue::issue(&pki.site, &req, KeyAlg::P256, &out, false).unwrap();
    let chain = pem_io::read_certificates(&issue::with_ext(&out, "crt")).unwrap();
    assert_eq!(chain.len(), 2, "leaf, then the site CA, without the root");

    let (_, leaf) = X509Certificate::from_der(&chain[0]).unwrap();
    let san = leaf.subject_alternative_name().unwrap().unwrap().value;
    let uris: Vec<_> = san
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) => Some(*u),
            _ => None,
        })
        .collect();
    assert_eq!(uris, ["spiffe://acme.example/site/berlin/service/api"]);
    assert!(san
        .general_names
        .iter()
        .any(|n| matches!(n, GeneralName::DNSName("api.berlin.local"))));
    let bc = leaf.basic_constraints().unwrap().unwrap();
    assert!(!bc.value.ca);
    let ku = leaf.key_usage().unwrap().unwrap();
    assert!(ku.critical);
    assert!(ku.value.digital_signature());
    assert!(!ku.value.key_cert_sign() && !ku.value.crl_sign());
    let eku = leaf.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
    let ext = leaf.extensions_map().unwrap();
    assert!(ext.contains_key(&oid_registry::OID_X509_EXT_SUBJECT_KEY_IDENTIFIER));
    assert!(ext.contains_key(&oid_registry::OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER));
    assert!(leaf.raw_serial().len() >= 8, "at least 64 bits of serial");
    let nb = leaf.validity().not_before.timestamp();
    assert!(
        nb < now.unix_timestamp() - 60,
        "notBefore is set back for clock skew"
    );

    let (_, site) = X509Certificate::from_der(&chain[1]).unwrap();
    let bc = site.basic_constraints().unwrap().unwrap();
    assert!(bc.critical && bc.value.ca);
    assert_eq!(bc.value.path_len_constraint, Some(0));
    let ku = site.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign());
    let site_uris: Vec<_> = site
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) => Some(*u),
            _ => None,
        })
        .collect();
    assert_eq!(site_uris, ["spiffe://acme.example"]);
    assert_eq!(pki.root.cert.ca, Some(Some(1)));
}

#[test]
fn leaf_lifetime_is_clamped_to_the_issuer() {
    let pki = pki("acme.example");
    let id = SpiffeId::parse("spiffe://acme.example/site/berlin/service/long").unwrap();
    let sans = ExtraSans::default();
    let req = LeafRequest {
        id: &id,
        sans: &sans,
        ttl: 3650 * DAY,
        now: OffsetDateTime::now_utc(),
    };
    let (_, leaf) = issue::issue(
        &pki.site,
        &req,
        KeyAlg::P256,
        &pki.site.dir.join("long"),
        false,
    )
    .unwrap();
    assert!(leaf.clamped);
    assert_eq!(leaf.not_after, pki.site.cert.not_after);
}

#[test]
fn chain_from_a_site_ca_verifies_against_the_root_with_webpki() {
    let pki = pki("acme.example");
    let now = OffsetDateTime::now_utc();
    let chain = issue_at(
        &pki.site,
        "spiffe://acme.example/site/berlin/device/cam",
        now,
        DAY,
        &pki.site.dir.join("cam"),
    );
    let roots = vec![pki.root.cert.der.clone()];
    let v = verify::verify_svid(&chain, &roots, &[], now).unwrap();
    assert_eq!(
        v.id.to_string(),
        "spiffe://acme.example/site/berlin/device/cam"
    );

    // Of another trust domain's root: refused.
    let other = self::pki("other.example");
    let err = verify::verify_svid(&chain, std::slice::from_ref(&other.root.cert.der), &[], now)
        .unwrap_err();
    assert!(matches!(err, verify::VerifyError::Chain(_)), "{err}");
}

// ---- a real TLS handshake, in memory, with rustls on both ends ----

fn server_config(
    pki: &Pki,
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(pki.root.cert.der.clone()))
        .unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .with_crls(crls)
    .allow_unknown_revocation_status()
    .build()
    .unwrap();
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let name = format!(
        "proxy{}",
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let server_chain = issue_at(
        &pki.site,
        "spiffe://acme.example/site/berlin/service/proxy",
        OffsetDateTime::now_utc(),
        DAY,
        &pki.site.dir.join(&name),
    );
    let key = key_der(&pki.site.dir.join(format!("{name}.key")));
    Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                server_chain.into_iter().map(CertificateDer::from).collect(),
                key,
            )
            .unwrap(),
    )
}

fn key_der(path: &Path) -> PrivateKeyDer<'static> {
    let blocks = pem_io::read_blocks(path, pem_io::Kind::PrivateKey).unwrap();
    PrivateKeyDer::Pkcs8(blocks[0].clone().into())
}

/// Runs a handshake between a client presenting `chain`/`key` and the server; true if accepted.
fn handshake(
    server: Arc<rustls::ServerConfig>,
    pki: &Pki,
    chain: Vec<Vec<u8>>,
    key: PrivateKeyDer<'static>,
) -> Result<(), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(pki.root.cert.der.clone()))
        .unwrap();
    let client_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain.into_iter().map(CertificateDer::from).collect(), key)
        .unwrap();
    let name = rustls::pki_types::ServerName::IpAddress(
        "127.0.0.1".parse::<std::net::IpAddr>().unwrap().into(),
    );
    let mut client = rustls::ClientConnection::new(Arc::new(client_config), name).unwrap();
    let mut server = rustls::ServerConnection::new(server).unwrap();

    // Pump records both ways until both sides are done or one fails.
    client.writer().write_all(b"ping").unwrap();
    for _ in 0..20 {
        let mut buf = Vec::new();
        client.write_tls(&mut buf).unwrap();
        server.read_tls(&mut &buf[..]).unwrap();
        server.process_new_packets().map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        server.write_tls(&mut buf).unwrap();
        client.read_tls(&mut &buf[..]).unwrap();
        client.process_new_packets().map_err(|e| e.to_string())?;
        let mut got = [0u8; 4];
        if !server.is_handshaking() && server.reader().read_exact(&mut got).is_ok() {
            assert_eq!(&got, b"ping");
            return Ok(());
        }
    }
    Err("handshake did not finish".into())
}

#[test]
fn rustls_accepts_a_site_leaf_and_refuses_expired_foreign_and_revoked_ones() {
    let pki = pki("acme.example");
    let now = OffsetDateTime::now_utc();
    let dir = pki.site.dir.clone();

    // Good leaf: accepted.
    let good = issue_at(
        &pki.site,
        "spiffe://acme.example/site/berlin/device/good",
        now,
        DAY,
        &dir.join("good"),
    );
    handshake(
        server_config(&pki, vec![]),
        &pki,
        good.clone(),
        key_der(&dir.join("good.key")),
    )
    .unwrap();

    // Expired leaf (issued two days ago for one hour): refused.
    let expired = issue_at(
        &pki.site,
        "spiffe://acme.example/site/berlin/device/old",
        now - 2 * DAY,
        Duration::from_secs(3600),
        &dir.join("old"),
    );
    let err = handshake(
        server_config(&pki, vec![]),
        &pki,
        expired,
        key_der(&dir.join("old.key")),
    )
    .unwrap_err();
    assert!(err.contains("xpired"), "{err}");

    // A leaf of another root: refused.
    let other = self::pki("acme.example");
    let foreign = issue_at(
        &other.site,
        "spiffe://acme.example/site/berlin/device/foreign",
        now,
        DAY,
        &other.site.dir.join("f"),
    );
    let err = handshake(
        server_config(&pki, vec![]),
        &pki,
        foreign,
        key_der(&other.site.dir.join("f.key")),
    )
    .unwrap_err();
    assert!(err.contains("invalid peer certificate"), "{err}");

    // Revoked, with the CRL from `ca crl`: refused; the CRL does not touch the good leaf.
    let bad = issue_at(
        &pki.site,
        "spiffe://acme.example/site/berlin/device/bad",
        now,
        DAY,
        &dir.join("bad"),
    );
    revoke::revoke(
        &pki.site,
        Target::File(&issue::with_ext(&dir.join("bad"), "crt")),
        Reason::default(),
        now,
    )
    .unwrap();
    let crl_path = dir.join("site.crl");
    revoke::write_crl(&pki.site, &crl_path, 7 * DAY, false, now).unwrap();
    let crl = pem_io::read_blocks(&crl_path, pem_io::Kind::Crl).unwrap();
    let crls: Vec<CertificateRevocationListDer<'static>> =
        crl.into_iter().map(Into::into).collect();
    let err = handshake(
        server_config(&pki, crls.clone()),
        &pki,
        bad.clone(),
        key_der(&dir.join("bad.key")),
    )
    .unwrap_err();
    assert!(err.contains("Revoked"), "{err}");
    handshake(
        server_config(&pki, crls),
        &pki,
        good,
        key_der(&dir.join("good.key")),
    )
    .unwrap();

    // And `cert verify`'s library path agrees.
    let crl_ders = pem_io::read_blocks(&crl_path, pem_io::Kind::Crl).unwrap();
    let err = verify::verify_svid(
        &bad,
        std::slice::from_ref(&pki.root.cert.der),
        &crl_ders,
        now,
    )
    .unwrap_err();
    assert!(matches!(err, verify::VerifyError::Revoked));
}

#[test]
fn expired_ca_refuses_to_issue() {
    let dir = tempfile::tempdir().unwrap();
    let long_ago = OffsetDateTime::now_utc() - 30 * DAY;
    let td = TrustDomain::new("acme.example").unwrap();
    ca::init_root(&td, &new_ca(dir.path(), long_ago, DAY)).unwrap();
    let err = Ca::load(dir.path(), OffsetDateTime::now_utc())
        .err()
        .unwrap();
    assert!(err.to_string().contains("expired"), "{err}");
}
