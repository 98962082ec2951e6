//! A node and its control plane, end to end: the real `edgeward control-plane` on a Git
//! repository of desired state, the real `edgeward proxy` with `[control_plane]`, curl
//! clients. Policy changes committed to Git reach the node; the node keeps serving, and
//! restarts, with its last-known-good bundle while the control plane is away; telemetry for
//! the outage arrives afterwards, counted exactly.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use support::site::{Site, POLICIES};
use support::{curl, free_port, pki, wait_for};

const CP_ID: &str = "spiffe://acme.example/control-plane";

/// The fleet's own policy: the site's test policies plus one forbid that the local config of
/// the node does not have, so a served bundle is told apart from the local file.
fn fleet_policies(blocked: &str) -> String {
    format!(
        "{POLICIES}\n@id(\"fleet-blocked\")\nforbid (principal, action, resource)\nwhen {{ resource.path like \"/public/{blocked}*\" }};\n"
    )
}

struct ControlPlane {
    child: Child,
    config: PathBuf,
    api: u16,
    log: PathBuf,
}

impl ControlPlane {
    fn start(config: &Path, api: u16) -> Self {
        let log = config.with_extension("log");
        let child = Command::new(env!("CARGO_BIN_EXE_edgeward"))
            .args(["control-plane", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start edgeward control-plane");
        let mut cp = Self {
            child,
            config: config.to_path_buf(),
            api,
            log,
        };
        wait_for("control plane health", Duration::from_secs(20), || {
            if let Ok(Some(status)) = cp.child.try_wait() {
                panic!(
                    "control plane exited with {status}:\n{}",
                    std::fs::read_to_string(&cp.log).unwrap_or_default()
                );
            }
            (cp.get("/healthz").0 == 200).then_some(())
        });
        cp
    }

    fn get(&self, path: &str) -> (u16, String) {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "2", "-w", "\n%{http_code}"])
            .arg(format!("http://127.0.0.1:{}{path}", self.api))
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_owned())
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn restart(&mut self) {
        self.kill();
        *self = Self::start(&self.config.clone(), self.api);
    }

    /// Requests the control plane stored for `node`, summed over its telemetry points.
    fn requests_of(&self, node: &str) -> Option<u64> {
        let (status, body) = self.get(&format!("/api/telemetry?node={node}&since=0"));
        if status != 200 {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        Some(
            v.as_array()?
                .iter()
                .filter_map(|p| p["requests"].as_u64())
                .sum(),
        )
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.kill();
    }
}

fn git(repo: &Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["-c", "user.name=test", "-c", "user.email=test@example.com"])
        .args(args)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn commit(repo: &Path, file: &str, text: &str, message: &str) {
    let path = repo.join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", message]);
}

/// The desired state of one node, `berlin-gw-1`: its config is the test site's own (ports of
/// its real upstreams), without what the control plane fills in.
fn desired_repo(dir: &Path, site: &Site) -> PathBuf {
    let repo = dir.join("fleet");
    let mut node: toml::Table = std::fs::read_to_string(&site.config)
        .unwrap()
        .parse()
        .unwrap();
    for key in ["authz", "trust_domains", "control_plane"] {
        node.remove(key);
    }
    node["node"].as_table_mut().unwrap().remove("data_dir");
    let mut fleet = toml::Table::new();
    fleet.insert("spiffe_id".into(), pki::PROXY_ID.into());
    node.insert("fleet".into(), fleet.into());
    std::fs::create_dir_all(repo.join("shared/trust")).unwrap();
    std::fs::copy(
        support::repo().join("policies/schema.cedarschema"),
        repo.join("shared/schema.cedarschema"),
    )
    .unwrap();
    std::fs::copy(
        site.pki.bundle(),
        repo.join("shared/trust/acme.example.pem"),
    )
    .unwrap();
    std::fs::create_dir_all(repo.join("sites/berlin")).unwrap();
    std::fs::write(
        repo.join("sites/berlin/site.toml"),
        "# the site of the test node\n",
    )
    .unwrap();
    std::fs::create_dir_all(repo.join("nodes/berlin-gw-1")).unwrap();
    std::fs::write(
        repo.join("nodes/berlin-gw-1/node.toml"),
        toml::to_string(&node).unwrap(),
    )
    .unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    commit(
        &repo,
        "shared/policies/site.cedar",
        &fleet_policies("blocked"),
        "first revision",
    );
    repo
}

fn status(site: &Site, path: &str) -> u16 {
    curl(&site.client(&site.device), &[], &site.url(path)).status
}

fn access_lines(log: &str) -> u64 {
    log.lines()
        .filter(|l| l.contains("edgeward::access"))
        .count() as u64
}

#[test]
fn a_node_follows_git_keeps_serving_without_its_control_plane_and_reports_the_outage_exactly() {
    let quic = free_port();
    let api = free_port();
    let data = tempfile::tempdir().unwrap();
    let mut site = Site::start_managed(
        &format!("data_dir = \"{}\"", data.path().display()),
        &format!(
            "\n[control_plane]\naddress = \"127.0.0.1:{quic}\"\nspiffe_id = \"{CP_ID}\"\ntelemetry_interval = \"1s\"\n"
        ),
    );
    // Locally, /public/blocked is allowed: only the fleet's bundle forbids it.
    assert_eq!(status(&site, "/public/blocked"), 200);

    let dir = tempfile::tempdir().unwrap();
    let repo = desired_repo(dir.path(), &site);
    let (cert, key) = site.pki.issue("cp", CP_ID);
    let config = dir.path().join("cp.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\ngit = \"{}\"\nref = \"main\"\npoll_interval = \"200ms\"\n\
             [listen]\nquic = \"127.0.0.1:{quic}\"\napi = \"127.0.0.1:{api}\"\n\
             [identity]\ncert = \"{}\"\nkey = \"{}\"\nbundle = \"{}\"\n\
             [store]\nsqlite = \"{}\"\n",
            repo.display(),
            cert.display(),
            key.display(),
            site.pki.bundle().display(),
            dir.path().join("cp.db").display()
        ),
    )
    .unwrap();
    let mut cp = ControlPlane::start(&config, api);

    // The first bundle arrives and is enforced.
    let enforced = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for("the first bundle enforced", Duration::from_secs(20), || {
            (status(&site, "/public/blocked") == 403).then_some(())
        })
    }));
    if enforced.is_err() {
        panic!(
            "no bundle enforced.\nproxy:\n{}\ncontrol plane:\n{}",
            site.proxy.log_text(),
            std::fs::read_to_string(&cp.log).unwrap_or_default()
        );
    }
    assert!(site.proxy.log_text().contains("bundle applied"));
    assert_eq!(status(&site, "/public/x"), 200);

    // The site's own CRL holds under the bundle: a certificate revoked on the site is refused.
    let operator = site.client(&site.operator);
    assert_eq!(curl(&operator, &[], &site.url("/public/x")).status, 200);
    site.pki.revoke(&site.operator.0);
    wait_for(
        "the revoked operator refused",
        Duration::from_secs(10),
        || (curl(&operator, &[], &site.url("/public/x")).status == 0).then_some(()),
    );

    // A policy change committed to Git is enforced within seconds.
    commit(
        &repo,
        "shared/policies/site.cedar",
        &fleet_policies("other"),
        "move the block",
    );
    wait_for(
        "the second bundle enforced",
        Duration::from_secs(10),
        || {
            (status(&site, "/public/other") == 403 && status(&site, "/public/blocked") == 200)
                .then_some(())
        },
    );

    // An invalid commit is refused by the control plane; the node keeps its policy.
    commit(
        &repo,
        "shared/policies/broken.cedar",
        "permit (principal, action, resource) when { nonsense };",
        "broken",
    );
    wait_for("the revision refused", Duration::from_secs(10), || {
        let (_, body) = cp.get("/api/revisions");
        body.contains("broken.cedar").then_some(())
    });
    assert_eq!(status(&site, "/public/other"), 403);
    assert_eq!(status(&site, "/public/x"), 200);

    // The control plane goes away and comes back under load: no request fails.
    let (stop, handle) = site.load();
    wait_for("load running", Duration::from_secs(10), || {
        (site.local.requests().len() > 10).then_some(())
    });
    cp.kill();
    let before = site.local.requests().len();
    wait_for(
        "load while the control plane is down",
        Duration::from_secs(10),
        || (site.local.requests().len() > before + 10).then_some(()),
    );
    assert_eq!(
        status(&site, "/public/other"),
        403,
        "the bundle's policy stays in force"
    );

    // The node restarts while the control plane is down: it serves its last-known-good bundle.
    stop.store(true, Ordering::Relaxed);
    let codes = handle.join().unwrap();
    assert!(
        codes.len() > 10 && codes.iter().all(|c| *c == 200),
        "{codes:?}"
    );
    // Stopped with Ctrl-C (a fast stop) under load: every request the node served up to its
    // last moment is in the telemetry it writes to disk (the requests the stop cuts off are
    // neither served nor counted).
    let served_first = stop_under_load(&mut site, support::Proxy::interrupt);
    site.proxy = support::Proxy::start(&site.config, site.admin);
    assert!(
        site.proxy
            .log_text()
            .contains("starting from the last-known-good bundle"),
        "{}",
        site.proxy.log_text()
    );
    assert_eq!(status(&site, "/public/other"), 403);
    assert_eq!(status(&site, "/public/blocked"), 200);

    // Back: under load again, then the outage's telemetry arrives, counted exactly.
    let (stop, handle) = site.load();
    cp.restart();
    wait_for("the node reconnected", Duration::from_secs(30), || {
        let (_, m) = site.proxy.admin_get("/metrics");
        m.contains("edgeward_control_plane_connected 1")
            .then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    let codes = handle.join().unwrap();
    assert!(codes.iter().all(|c| *c == 200), "{codes:?}");
    let served = served_first + access_lines(&site.proxy.log_text());
    let counted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for("every request counted", Duration::from_secs(20), || {
            let n = cp.requests_of("berlin-gw-1")?;
            (n >= served).then_some(n)
        })
    }));
    let Ok(stored) = counted else {
        panic!(
            "served {served}, the control plane counted {:?}\nproxy:\n{}\ncontrol plane:\n{}",
            cp.requests_of("berlin-gw-1"),
            site.proxy
                .log_text()
                .lines()
                .filter(|l| !l.contains("edgeward::access"))
                .collect::<Vec<_>>()
                .join("\n"),
            std::fs::read_to_string(&cp.log).unwrap_or_default()
        );
    };
    assert_eq!(
        stored, served,
        "the control plane's count equals what the node served"
    );

    // Stopped gracefully (SIGTERM) under load: the requests that finish during the grace
    // period are counted too; they arrive once the node is back.
    let served = served_first + stop_under_load(&mut site, support::Proxy::terminate);
    site.proxy = support::Proxy::start(&site.config, site.admin);
    wait_for("every request counted", Duration::from_secs(20), || {
        let n = cp.requests_of("berlin-gw-1")?;
        (n >= served).then_some(())
    });
    assert_eq!(cp.requests_of("berlin-gw-1"), Some(served));
}

/// Stops the node with `stop_node` while the load runs; returns the requests it served, from
/// its access log.
fn stop_under_load(site: &mut Site, stop_node: fn(&mut support::Proxy)) -> u64 {
    let (stop, handle) = site.load();
    let before = site.local.requests().len();
    wait_for("load before the stop", Duration::from_secs(10), || {
        (site.local.requests().len() > before + 20).then_some(())
    });
    stop_node(&mut site.proxy);
    stop.store(true, Ordering::Relaxed);
    let _ = handle.join().unwrap();
    access_lines(&site.proxy.log_text())
}

#[test]
fn a_corrupt_lkg_is_reported_and_the_node_starts_from_its_local_config() {
    let data = tempfile::tempdir().unwrap();
    let bundle = data.path().join("bundles/0123");
    std::fs::create_dir_all(&bundle).unwrap();
    std::fs::write(bundle.join("@manifest.json"), "{ not json").unwrap();
    std::os::unix::fs::symlink("bundles/0123", data.path().join("current")).unwrap();
    let site = Site::start_managed(
        &format!("data_dir = \"{}\"", data.path().display()),
        &format!(
            "\n[control_plane]\naddress = \"127.0.0.1:{}\"\nspiffe_id = \"{CP_ID}\"\n",
            free_port()
        ),
    );
    let log = site.proxy.log_text();
    assert!(
        log.contains("is corrupt") && log.contains("starting from the local config"),
        "{log}"
    );
    assert_eq!(status(&site, "/public/x"), 200);
}

#[test]
fn with_neither_a_usable_local_config_nor_an_lkg_the_node_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\nid = \"n1\"\nsite = \"berlin\"\nzone = \"a\"\nregion = \"eu\"\ndata_dir = \"{}\"\n\
             [control_plane]\naddress = \"127.0.0.1:7443\"\nspiffe_id = \"{CP_ID}\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_edgeward"))
        .args(["proxy", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("`authz` is required") && err.contains("no usable last-known-good bundle"),
        "{err}"
    );
}
