//! The cost of extracting a peer's identity from its certificate: parse the DER leaf and check
//! it against the X509-SVID profile (exactly one URI SAN, a valid SPIFFE ID, not a CA, key
//! usage), as the proxy does after rustls verified the chain.
//!
//! The leaf is issued at bench start by `edgeward_certs` (a root, a site CA, then the leaf,
//! in a temporary folder), as the CLI would issue it; nothing is checked in.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use edgeward_certs::ca::{self, Ca, KeyAlg, NewCa};
use edgeward_certs::issue::{self, ExtraSans, LeafRequest};
use edgeward_certs::{pem_io, profile, CertView, PathPrefix, SpiffeId, TrustDomain};
use time::OffsetDateTime;

const DAY: Duration = Duration::from_secs(86_400);
const ID: &str = "spiffe://acme.example/site/berlin/device/sensor-1";

/// Issues a P-256 device leaf with a DNS and an IP SAN; returns its DER.
fn issue_leaf() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("temp dir");
    let now = OffsetDateTime::now_utc();
    let new_ca = |out| NewCa {
        out,
        ttl: 365 * DAY,
        key_alg: KeyAlg::P256,
        force: false,
        now,
    };

    // The trust domain's root, then a site CA limited to /site/berlin.
    let root_dir = dir.path().join("root");
    let td = TrustDomain::new("acme.example").expect("trust domain");
    ca::init_root(&td, &new_ca(&root_dir)).expect("root CA");
    let root = Ca::load(&root_dir, now).expect("load root");
    let site_dir = dir.path().join("berlin");
    let prefix = PathPrefix::parse("/site/berlin").expect("prefix");
    ca::create_intermediate(&root, "berlin", Some(&prefix), &new_ca(&site_dir)).expect("site CA");
    let site = Ca::load(&site_dir, now).expect("load site CA");

    // The leaf, as `edgeward cert issue` writes it: leaf first, then the site CA.
    let id = SpiffeId::parse(ID).expect("id");
    let sans = ExtraSans {
        dns: vec!["sensor-1.berlin.local".to_owned()],
        ips: vec!["10.49.0.5".parse().expect("ip")],
    };
    let req = LeafRequest {
        id: &id,
        sans: &sans,
        ttl: DAY,
        now,
    };
    let out = dir.path().join("sensor-1");
    issue::issue(&site, &req, KeyAlg::P256, &out, false).expect("issue leaf");
    let chain = pem_io::read_certificates(&issue::with_ext(&out, "crt")).expect("read chain");
    chain.into_iter().next().expect("leaf in chain")
}

fn bench_identity(c: &mut Criterion) {
    let der = issue_leaf();
    let view = CertView::parse(&der).expect("leaf parses");
    let id = profile::check_leaf(&view).expect("leaf fits the profile");
    assert_eq!(id.to_string(), ID);

    let mut group = c.benchmark_group("identity");
    group.bench_function("parse_and_check_leaf", |b| {
        b.iter(|| {
            let view = CertView::parse(black_box(&der)).expect("leaf parses");
            profile::check_leaf(&view).expect("leaf fits the profile")
        })
    });
    group.bench_function("check_leaf_only", |b| {
        b.iter(|| profile::check_leaf(black_box(&view)))
    });
    group.finish();
}

/// Short runs: the whole suite fits in a few minutes on two cores.
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_identity
}
criterion_main!(benches);
