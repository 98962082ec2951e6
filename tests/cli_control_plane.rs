//! End-to-end tests of `edgeward control-plane`: the real binary on the example fleet, and its
//! exit codes for bad input.

mod support;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{free_port, repo, Pki};

const BIN: &str = env!("CARGO_BIN_EXE_edgeward");

fn get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let name = e.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &to.join(name));
        } else {
            std::fs::copy(e.path(), to.join(name)).expect("copy");
        }
    }
}

/// Runs `edgeward control-plane --config CONFIG` to its exit: the exit code and stderr.
fn run_to_exit(config: &Path) -> (Option<i32>, String) {
    let out = Command::new(BIN)
        .args(["control-plane", "--config"])
        .arg(config)
        .output()
        .expect("run");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_example_fleet_is_published_and_served_until_sigterm() {
    let tmp = tempfile::tempdir().expect("tmp");
    let pki = Pki::new(&tmp.path().join("pki"));
    let (cert, key) = pki.issue("cp", "spiffe://acme.example/control-plane");
    let desired = tmp.path().join("desired");
    copy_dir(&repo().join("examples/fleet/desired"), &desired);
    std::fs::create_dir_all(desired.join("shared/trust")).expect("mkdir");
    std::fs::copy(pki.bundle(), desired.join("shared/trust/acme.example.pem")).expect("trust");
    let api = free_port();
    let config = tmp.path().join("cp.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\nfolder = \"desired\"\n[listen]\nquic = \"127.0.0.1:0\"\napi = \"127.0.0.1:{api}\"\n\
             [identity]\ncert = \"{}\"\nkey = \"{}\"\nbundle = \"{}\"\n[store]\nsqlite = \"state/cp.db\"\n",
            cert.display(),
            key.display(),
            pki.bundle().display()
        ),
    )
    .expect("config");

    let mut child = Command::new(BIN)
        .args(["control-plane", "--config"])
        .arg(&config)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let deadline = Instant::now() + Duration::from_secs(20);
    let fleet = loop {
        if let Some(body) = get(api, "/api/fleet").filter(|b| b.contains("paris-gw-1")) {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "the control plane did not serve its API"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(fleet.contains("berlin-gw-1"), "{fleet}");
    assert!(get(api, "/").expect("page").contains("Edgeward fleet"));

    // SIGTERM stops it cleanly.
    let pid = child.id().to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0));
    assert!(tmp.path().join("state/cp.db").exists());
}

#[test]
fn bad_input_exits_2_and_names_every_problem() {
    let tmp = tempfile::tempdir().expect("tmp");
    let config = tmp.path().join("cp.toml");
    std::fs::write(&config, "[source]\nfolder = \"x\"\nbranch = \"main\"\n").expect("write");
    let (code, err) = run_to_exit(&config);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("branch"), "{err}");

    std::fs::write(
        &config,
        "[source]\nfolder = \"x\"\n[identity]\ncert = \"no.crt\"\nkey = \"no.key\"\nbundle = \"no-root.crt\"\n",
    )
    .expect("write");
    let (code, err) = run_to_exit(&config);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no-root.crt"), "{err}");
}

#[test]
fn a_key_that_is_not_the_certificates_is_named_as_the_control_planes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let pki = Pki::new(&tmp.path().join("pki"));
    let (cert, _) = pki.issue("cp", "spiffe://acme.example/control-plane");
    let (_, other_key) = pki.issue("other", "spiffe://acme.example/other");
    std::fs::create_dir_all(tmp.path().join("desired")).expect("mkdir");
    let config = tmp.path().join("cp.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\nfolder = \"desired\"\n[listen]\nquic = \"127.0.0.1:0\"\napi = \"127.0.0.1:0\"\n\
             [identity]\ncert = \"{}\"\nkey = \"{}\"\nbundle = \"{}\"\n[store]\nsqlite = \"state/cp.db\"\n",
            cert.display(),
            other_key.display(),
            pki.bundle().display()
        ),
    )
    .expect("config");
    let (code, err) = run_to_exit(&config);
    assert_eq!(code, Some(2), "{err}");
    // It names the control plane's own config key and file, not a node's certificate.
    assert!(err.contains("identity.key"), "{err}");
    assert!(err.contains("is not the key of the certificate"), "{err}");
    assert!(!err.contains("node"), "{err}");
}
