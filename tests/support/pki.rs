//! A trust domain made at test time with the product's own CA code.

use std::path::{Path, PathBuf};
use std::time::Duration;

use edgeward_certs::ca::{self, Ca, KeyAlg, NewCa};
use edgeward_certs::issue::{self, ExtraSans, LeafRequest};
use edgeward_certs::revoke::{self, Reason, Target};
use edgeward_certs::{PathPrefix, SpiffeId, TrustDomain};
use time::OffsetDateTime;

pub const DAY: Duration = Duration::from_secs(86_400);
pub const PROXY_ID: &str = "spiffe://acme.example/site/berlin/service/proxy";
pub const DEVICE_ID: &str = "spiffe://acme.example/site/berlin/device/sensor-1";
pub const OPERATOR_ID: &str = "spiffe://acme.example/site/berlin/operator/alice";
pub const CLOUD_ID: &str = "spiffe://acme.example/region/eu-central/service/api";

/// The certificates of a test site, all in `dir`.
pub struct Pki {
    pub dir: PathBuf,
    pub root: Ca,
    pub site: Ca,
}

fn opts(out: &Path, ttl: Duration, now: OffsetDateTime) -> NewCa<'_> {
    NewCa {
        out,
        ttl,
        key_alg: KeyAlg::P256,
        force: true,
        now,
    }
}

impl Pki {
    /// A root for `acme.example` and the `berlin` site CA, in `dir`.
    pub fn new(dir: &Path) -> Self {
        Self::for_domain(dir, "acme.example")
    }

    /// The same for another trust domain name.
    pub fn for_domain(dir: &Path, td: &str) -> Self {
        let now = OffsetDateTime::now_utc();
        let td = TrustDomain::new(td).expect("trust domain");
        let root_dir = dir.join("root");
        ca::init_root(&td, &opts(&root_dir, 3650 * DAY, now)).expect("root");
        let root = Ca::load(&root_dir, now).expect("load root");
        let site_dir = dir.join("berlin");
        let prefix = PathPrefix::parse("/site/berlin").expect("prefix");
        ca::create_intermediate(
            &root,
            "berlin",
            Some(&prefix),
            &opts(&site_dir, 365 * DAY, now),
        )
        .expect("site CA");
        let site = Ca::load(&site_dir, now).expect("load site");
        Self {
            dir: dir.to_path_buf(),
            root,
            site,
        }
    }

    /// The root bundle file.
    pub fn bundle(&self) -> PathBuf {
        self.root.dir.join("ca.crt")
    }

    /// Issues `id` from the site CA (or the root for IDs outside `/site/berlin`) as
    /// `dir/name.crt` and `.key`, valid from `now` for `ttl`.
    pub fn issue_at(
        &self,
        name: &str,
        id: &str,
        now: OffsetDateTime,
        ttl: Duration,
    ) -> (PathBuf, PathBuf) {
        let id = SpiffeId::parse(id).expect("id");
        let ca = if id.path().starts_with("/site/berlin/") {
            &self.site
        } else {
            &self.root
        };
        let sans = ExtraSans {
            dns: vec!["localhost".into()],
            ips: vec!["127.0.0.1".parse().expect("ip")],
        };
        let req = LeafRequest {
            id: &id,
            sans: &sans,
            ttl,
            now,
        };
        let prefix = self.dir.join(name);
        issue::issue(ca, &req, KeyAlg::P256, &prefix, true).expect("issue");
        (
            issue::with_ext(&prefix, "crt"),
            issue::with_ext(&prefix, "key"),
        )
    }

    /// Issues `id`, valid for a day.
    pub fn issue(&self, name: &str, id: &str) -> (PathBuf, PathBuf) {
        self.issue_at(name, id, OffsetDateTime::now_utc(), DAY)
    }

    /// Revokes a certificate file and writes the site CA's CRL to `dir/site.crl`.
    pub fn revoke(&self, cert: &Path) -> PathBuf {
        let now = OffsetDateTime::now_utc();
        revoke::revoke(&self.site, Target::File(cert), Reason::default(), now).expect("revoke");
        let crl = self.dir.join("site.crl");
        revoke::write_crl(&self.site, &crl, 7 * DAY, true, now).expect("crl");
        crl
    }

    /// A leaf with two URI SANs, signed by the site CA with rcgen directly (our CLI refuses to
    /// make one).
    pub fn two_uri_leaf(&self, name: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::default();
        params.subject_alt_names = vec![
            rcgen::SanType::URI(DEVICE_ID.try_into().expect("uri")),
            rcgen::SanType::URI(OPERATOR_ID.try_into().expect("uri")),
        ];
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = OffsetDateTime::now_utc() - time::Duration::hours(1);
        params.not_after = OffsetDateTime::now_utc() + time::Duration::hours(1);
        let issuer = self.site.issuer().expect("issuer");
        let cert = params.signed_by(&key, &issuer).expect("sign");
        let chain =
            cert.pem() + &std::fs::read_to_string(self.site.dir.join("ca.crt")).expect("site crt");
        let crt = self.dir.join(format!("{name}.crt"));
        let k = self.dir.join(format!("{name}.key"));
        std::fs::write(&crt, chain).expect("write");
        std::fs::write(&k, key.serialize_pem()).expect("write");
        (crt, k)
    }
}
