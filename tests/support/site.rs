//! A whole test site: PKI, a local plaintext upstream, a cloud mTLS upstream, policies in a
//! folder of its own, and the proxy in front, on loopback.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::pki::{self, Pki};
use super::{free_port, Client, Proxy, Upstream};

/// The default test policies: the device may use everything but admin routes and the audit
/// route; the operator may use everything.
pub const POLICIES: &str = r#"
@id("device-most")
permit (principal == Edgeward::Device::"spiffe://acme.example/site/berlin/device/sensor-1", action, resource)
unless { resource.path like "/admin*" || resource == Edgeward::Route::"admin-host" || resource == Edgeward::Route::"audit" };

@id("operator-all")
permit (principal == Edgeward::Workload::"spiffe://acme.example/site/berlin/operator/alice", action, resource);
"#;

pub struct Site {
    pub dir: tempfile::TempDir,
    pub pki: Pki,
    pub local: Upstream,
    pub cloud: Upstream,
    pub proxy: Proxy,
    pub port: u16,
    pub admin: u16,
    pub config: PathBuf,
    pub policies: PathBuf,
    pub device: (PathBuf, PathBuf),
    pub operator: (PathBuf, PathBuf),
    pub crl: PathBuf,
    pub bundle: PathBuf,
}

impl Site {
    /// Starts a site with the default policies.
    pub fn start() -> Self {
        Self::start_with(POLICIES, |_| {})
    }

    /// Starts a site with `policies`; `prepare` runs after the PKI exists, before the proxy
    /// starts (to revoke a certificate, for example).
    pub fn start_with(policies: &str, prepare: impl FnOnce(&Pki)) -> Self {
        Self::start_full(policies, prepare, "", "")
    }

    /// Starts a site with the default policies and `extra` TOML appended to its config (more
    /// listeners, a `[limits]` table).
    pub fn start_extra(extra: &str) -> Self {
        Self::start_full(POLICIES, |_| {}, "", extra)
    }

    /// Starts a site whose proxy config has `node_extra` in its `[node]` table (a data
    /// folder) and `extra` appended (a `[control_plane]`).
    pub fn start_managed(node_extra: &str, extra: &str) -> Self {
        Self::start_full(POLICIES, |_| {}, node_extra, extra)
    }

    fn start_full(
        policies: &str,
        prepare: impl FnOnce(&Pki),
        node_extra: &str,
        extra: &str,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let pki = Pki::new(&d.join("pki"));
        let proxy_cert = pki.issue("proxy", pki::PROXY_ID);
        let device = pki.issue("device", pki::DEVICE_ID);
        let operator = pki.issue("operator", pki::OPERATOR_ID);
        let cloud_cert = pki.issue("cloud", pki::CLOUD_ID);
        prepare(&pki);
        let crl = pki.dir.join("site.crl");
        if !crl.exists() {
            edgeward_certs::revoke::write_crl(
                &pki.site,
                &crl,
                7 * pki::DAY,
                true,
                time::OffsetDateTime::now_utc(),
            )
            .expect("empty CRL");
        }

        // Policies in a folder of the site's own, so tests can change them.
        let policies_dir = d.join("policies");
        std::fs::create_dir_all(&policies_dir).expect("policies dir");
        std::fs::copy(
            super::repo().join("policies/schema.cedarschema"),
            policies_dir.join("schema.cedarschema"),
        )
        .expect("schema");
        std::fs::write(policies_dir.join("test.cedar"), policies).expect("policies");

        let local = Upstream::plain(d, "local", 0);
        let cloud = Upstream::mtls(d, "cloud", 0, &cloud_cert.0, &cloud_cert.1, &pki.bundle());
        let port = free_port();
        let admin = free_port();
        let config = d.join("proxy.toml");
        std::fs::write(
            &config,
            config_text(
                &pki,
                &proxy_cert,
                &crl,
                &policies_dir,
                port,
                admin,
                local.port,
                cloud.port,
            )
            .replacen("[identity]", &format!("{node_extra}\n[identity]"), 1)
                + extra,
        )
        .expect("config");
        let proxy = Proxy::start(&config, admin);
        Self {
            dir,
            local,
            cloud,
            proxy,
            port,
            admin,
            config,
            policies: policies_dir,
            device,
            operator,
            crl,
            bundle: pki.bundle(),
            pki,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    pub fn client<'a>(&'a self, creds: &'a (PathBuf, PathBuf)) -> Client<'a> {
        Client {
            cert: Some((&creds.0, &creds.1)),
            ca: self.ca(),
        }
    }

    pub fn anonymous(&self) -> Client<'_> {
        Client {
            cert: None,
            ca: self.ca(),
        }
    }

    pub fn ca(&self) -> &Path {
        &self.bundle
    }

    /// Runs GETs of `/public/load` as the device in a loop on a thread (one curl, ten requests
    /// on a keep-alive connection) until stopped; returns every status seen.
    pub fn load(&self) -> (Arc<AtomicBool>, std::thread::JoinHandle<Vec<u16>>) {
        let stop = Arc::new(AtomicBool::new(false));
        let (s, url, ca) = (
            stop.clone(),
            self.url("/public/load"),
            self.ca().to_path_buf(),
        );
        let (cert, key) = self.device.clone();
        let handle = std::thread::spawn(move || {
            let mut codes = Vec::new();
            while !s.load(Ordering::Relaxed) {
                let out = std::process::Command::new("curl")
                    .args([
                        "-s",
                        "--max-time",
                        "10",
                        "-o",
                        "/dev/null",
                        "-w",
                        "%{http_code}\n",
                    ])
                    .arg("--cacert")
                    .arg(&ca)
                    .arg("--cert")
                    .arg(&cert)
                    .arg("--key")
                    .arg(&key)
                    .args(std::iter::repeat_n(url.as_str(), 10))
                    .output()
                    .expect("curl");
                codes.extend(
                    String::from_utf8_lossy(&out.stdout)
                        .lines()
                        .filter_map(|l| l.parse::<u16>().ok()),
                );
            }
            codes
        });
        (stop, handle)
    }
}

#[allow(clippy::too_many_arguments)]
fn config_text(
    pki: &Pki,
    proxy: &(PathBuf, PathBuf),
    crl: &Path,
    policies: &Path,
    port: u16,
    admin: u16,
    local: u16,
    cloud: u16,
) -> String {
    format!(
        r#"
[node]
id = "berlin-gw-1"
site = "berlin"
zone = "eu-central-a"
region = "eu-central"

[identity]
cert = "{cert}"
key = "{key}"
reload_interval = "200ms"

[[trust_domains]]
name = "acme.example"
bundle = "{bundle}"
crls = ["{crl}"]

[[listeners]]
name = "mtls"
kind = "mtls"
address = "127.0.0.1:{port}"

[admin]
address = "127.0.0.1:{admin}"

[authz]
policies = "{policies}"
schema = "{policies}/schema.cedarschema"

[[routes]]
name = "app"
path_prefix = "/"
cluster = "app"

[[routes]]
name = "public"
path_prefix = "/public"
cluster = "app"

[[routes]]
name = "admin"
path_prefix = "/admin"
cluster = "app"

[[routes]]
name = "audit"
path_prefix = "/audit"
cluster = "app"
mode = "audit"

[[routes]]
name = "admin-host"
host = "admin.example"
path_prefix = "/"
cluster = "app"

[[clusters]]
name = "app"
[clusters.health]
path = "/healthz"
interval = "200ms"
timeout = "150ms"
healthy_threshold = 1
unhealthy_threshold = 1
[clusters.outlier]
consecutive_failures = 1
base_ejection = "1s"
max_ejection = "2s"

[[clusters.endpoints]]
address = "127.0.0.1:{local}"
site = "berlin"
zone = "eu-central-a"
region = "eu-central"

[[clusters.endpoints]]
address = "127.0.0.1:{cloud}"
site = "cloud"
zone = "eu-central-b"
region = "eu-central"
tls = true
spiffe_id = "{cloud_id}"
"#,
        cert = proxy.0.display(),
        key = proxy.1.display(),
        bundle = pki.bundle().display(),
        crl = crl.display(),
        policies = policies.display(),
        cloud_id = pki::CLOUD_ID,
    )
}
