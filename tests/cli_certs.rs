//! The certificate CLI, run as the real binary: every command, and every bad-input class of
//! the certificate issue, each with its exit code, its message, and no files left behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_edgeward");

fn ew(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run edgeward")
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = ew(dir, args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command that must fail with `code`, say `needle`, and write nothing new.
fn refused(dir: &Path, args: &[&str], code: i32, needle: &str) {
    let before = list(dir);
    let out = ew(dir, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
    assert!(
        stderr.contains(needle),
        "{args:?}: expected `{needle}` in: {stderr}"
    );
    assert_eq!(list(dir), before, "{args:?} left files behind");
}

fn list(dir: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            all.push(p);
        }
    }
    all.sort();
    all
}

/// A trust domain `acme.example` with a root and a `berlin` site CA limited to `/site/berlin`.
fn site() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(
        d,
        &[
            "ca",
            "init",
            "--trust-domain",
            "acme.example",
            "--out",
            "root",
        ],
    );
    ok(
        d,
        &[
            "ca",
            "intermediate",
            "--ca",
            "root",
            "--name",
            "berlin",
            "--out",
            "berlin",
            "--path-prefix",
            "/site/berlin",
        ],
    );
    t
}

const API: &str = "spiffe://acme.example/site/berlin/service/api";
const CAM: &str = "spiffe://acme.example/site/berlin/device/cam-7";

#[test]
fn walkthrough_issue_csr_inspect_verify_revoke() {
    let t = site();
    let d = t.path();
    for f in [
        "root/ca.crt",
        "root/ca.key",
        "berlin/ca.crt",
        "berlin/ca.key",
        "berlin/chain.pem",
    ] {
        assert!(d.join(f).is_file(), "{f}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for k in ["root/ca.key", "berlin/ca.key"] {
            let mode = std::fs::metadata(d.join(k)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{k}");
        }
    }

    // A service certificate, and a device certificate through a CSR.
    ok(
        d,
        &[
            "cert",
            "issue",
            API,
            "--ca",
            "berlin",
            "--out",
            "api",
            "--dns",
            "api.local",
        ],
    );
    ok(d, &["cert", "csr", CAM, "--out", "cam"]);
    let csr = std::fs::read_to_string(d.join("cam.csr")).unwrap();
    assert!(csr.contains("CERTIFICATE REQUEST") && !csr.contains("PRIVATE KEY"));
    ok(
        d,
        &[
            "cert", "sign", "cam.csr", "--ca", "berlin", "--out", "cam.crt",
        ],
    );

    // Inspect: text and JSON.
    let text = ok(d, &["cert", "inspect", "api.crt"]);
    assert!(text.contains(API) && text.contains("sha256:") && text.contains("ECDSA P-256"));
    let json: serde_json::Value =
        serde_json::from_str(&ok(d, &["cert", "inspect", "cam.crt", "--json"])).unwrap();
    assert_eq!(json[0]["spiffe_id"], CAM);
    assert_eq!(json[0]["role"], "leaf");
    assert_eq!(json[1]["role"], "intermediate CA");
    assert!(json[0]["sha256_fingerprint"].as_str().unwrap().len() == 95);

    // Both verify.
    assert!(ok(d, &["cert", "verify", "api.crt", "--bundle", "root/ca.crt"]).contains("valid"));
    ok(d, &["cert", "verify", "cam.crt", "--bundle", "root/ca.crt"]);

    // Revoke the device, publish a CRL: its verification fails, the service's still passes.
    ok(
        d,
        &[
            "cert",
            "revoke",
            "cam.crt",
            "--ca",
            "berlin",
            "--reason",
            "key-compromise",
        ],
    );
    let again = ok(d, &["cert", "revoke", "cam.crt", "--ca", "berlin"]);
    assert!(again.contains("already revoked"));
    ok(d, &["ca", "crl", "--ca", "berlin", "--out", "berlin.crl"]);
    let out = ew(
        d,
        &[
            "cert",
            "verify",
            "cam.crt",
            "--bundle",
            "root/ca.crt",
            "--crl",
            "berlin.crl",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("revoked"));
    ok(
        d,
        &[
            "cert",
            "verify",
            "api.crt",
            "--bundle",
            "root/ca.crt",
            "--crl",
            "berlin.crl",
        ],
    );
}

#[test]
fn revoke_by_serial_and_renewal_check() {
    let t = site();
    let d = t.path();
    ok(d, &["cert", "issue", API, "--ca", "berlin", "--out", "api"]);
    let json: serde_json::Value =
        serde_json::from_str(&ok(d, &["cert", "inspect", "api.crt", "--json"])).unwrap();
    let serial = json[0]["serial"].as_str().unwrap().to_owned();
    ok(
        d,
        &["cert", "revoke", "--serial", &serial, "--ca", "berlin"],
    );
    ok(d, &["ca", "crl", "--ca", "berlin", "--out", "crl.pem"]);
    let out = ew(
        d,
        &[
            "cert",
            "verify",
            "api.crt",
            "--bundle",
            "root/ca.crt",
            "--crl",
            "crl.pem",
        ],
    );
    assert_eq!(out.status.code(), Some(1));

    // A fresh certificate is not due; at a tiny threshold it is.
    assert_eq!(
        ew(d, &["cert", "needs-renewal", "api.crt"]).status.code(),
        Some(1)
    );
    assert_eq!(
        ew(d, &["cert", "needs-renewal", "api.crt", "--at", "0.000001"])
            .status
            .code(),
        Some(0)
    );
}

#[test]
fn invalid_spiffe_ids_are_refused_with_their_rule() {
    let t = site();
    let d = t.path();
    for (id, rule) in [
        ("SPIFFE://acme.example/site/berlin/x", "scheme"),
        ("spiffe://acme.example/site/berlin/../admin", "`..`"),
        ("spiffe://acme.example/site/berlin/%2Fx", "percent"),
        ("spiffe://acme.example/site/berlin/x/", "end with `/`"),
        ("spiffe://acme.example", "no path"),
    ] {
        refused(
            d,
            &["cert", "issue", id, "--ca", "berlin", "--out", "x"],
            2,
            rule,
        );
        refused(d, &["cert", "csr", id, "--out", "x"], 2, rule);
    }
    refused(
        d,
        &[
            "cert",
            "issue",
            "spiffe://other.example/site/berlin/x",
            "--ca",
            "berlin",
            "--out",
            "x",
        ],
        2,
        "`other.example`",
    );
    refused(
        d,
        &[
            "cert",
            "issue",
            "spiffe://acme.example/site/paris/x",
            "--ca",
            "berlin",
            "--out",
            "x",
        ],
        2,
        "outside this CA's path prefix",
    );
}

#[test]
fn bad_ca_folders_are_refused() {
    let t = site();
    let d = t.path();
    refused(
        d,
        &["cert", "issue", API, "--ca", "nowhere", "--out", "x"],
        2,
        "does not exist",
    );

    // A key that does not match its certificate.
    std::fs::create_dir(d.join("mixed")).unwrap();
    std::fs::copy(d.join("berlin/ca.crt"), d.join("mixed/ca.crt")).unwrap();
    std::fs::copy(d.join("root/ca.key"), d.join("mixed/ca.key")).unwrap();
    refused(
        d,
        &["cert", "issue", API, "--ca", "mixed", "--out", "x"],
        2,
        "does not match",
    );

    // An expired CA (made by the library with a clock thirty days back).
    let now = time::OffsetDateTime::now_utc() - time::Duration::days(30);
    let td = edgeward_certs::TrustDomain::new("acme.example").unwrap();
    edgeward_certs::ca::init_root(
        &td,
        &edgeward_certs::ca::NewCa {
            out: &d.join("old"),
            ttl: std::time::Duration::from_secs(86_400),
            key_alg: Default::default(),
            force: false,
            now,
        },
    )
    .unwrap();
    refused(
        d,
        &[
            "cert",
            "issue",
            "spiffe://acme.example/x",
            "--ca",
            "old",
            "--out",
            "x",
        ],
        2,
        "expired",
    );
}

#[test]
fn bad_csrs_are_refused() {
    let t = site();
    let d = t.path();
    ok(d, &["cert", "csr", CAM, "--out", "cam"]);

    // A flipped byte in the signature.
    let pem_text = std::fs::read_to_string(d.join("cam.csr")).unwrap();
    let mut der = pem::parse(&pem_text).unwrap().into_contents();
    let last = der.len() - 3;
    der[last] ^= 0x01;
    let tampered = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", der));
    std::fs::write(d.join("tampered.csr"), tampered).unwrap();
    refused(
        d,
        &[
            "cert",
            "sign",
            "tampered.csr",
            "--ca",
            "berlin",
            "--out",
            "t.crt",
        ],
        2,
        "signature",
    );

    // Two URI SANs.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![
        rcgen::SanType::URI(CAM.try_into().unwrap()),
        rcgen::SanType::URI(
            "spiffe://acme.example/site/berlin/device/other"
                .try_into()
                .unwrap(),
        ),
    ];
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    std::fs::write(d.join("two.csr"), csr).unwrap();
    refused(
        d,
        &[
            "cert", "sign", "two.csr", "--ca", "berlin", "--out", "t.crt",
        ],
        2,
        "2 URI SANs",
    );

    // A CSR asking to be a CA: signed as a leaf anyway.
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![rcgen::SanType::URI(CAM.try_into().unwrap())];
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    std::fs::write(d.join("ca.csr"), csr).unwrap();
    ok(
        d,
        &[
            "cert",
            "sign",
            "ca.csr",
            "--ca",
            "berlin",
            "--out",
            "ca-req.crt",
        ],
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(d, &["cert", "inspect", "ca-req.crt", "--json"])).unwrap();
    assert_eq!(json[0]["ca"], serde_json::Value::Null);
    assert_eq!(json[0]["key_usage"]["key_cert_sign"], false);
}

#[test]
fn bad_ttls_outputs_and_pem_files_are_refused() {
    let t = site();
    let d = t.path();
    for ttl in ["0s", "-1h", "soon"] {
        refused(
            d,
            &[
                "cert",
                "issue",
                API,
                "--ca",
                "berlin",
                "--out",
                "x",
                &format!("--ttl={ttl}"),
            ],
            2,
            "ttl",
        );
    }
    refused(
        d,
        &[
            "cert",
            "issue",
            API,
            "--ca",
            "berlin",
            "--out",
            "no/such/dir/x",
        ],
        2,
        "cannot write",
    );
    std::fs::write(d.join("garbage.pem"), "this is not PEM at all").unwrap();
    refused(d, &["cert", "inspect", "garbage.pem"], 2, "garbage.pem");
    refused(
        d,
        &["cert", "verify", "root/ca.key", "--bundle", "root/ca.crt"],
        2,
        "where a certificate was expected",
    );
    refused(d, &["cert", "inspect", "root/ca.key"], 2, "PRIVATE KEY");

    // Nothing is overwritten without --force.
    ok(d, &["cert", "issue", API, "--ca", "berlin", "--out", "api"]);
    let before = std::fs::read(d.join("api.crt")).unwrap();
    refused(
        d,
        &["cert", "issue", API, "--ca", "berlin", "--out", "api"],
        2,
        "--force",
    );
    assert_eq!(std::fs::read(d.join("api.crt")).unwrap(), before);
    ok(
        d,
        &[
            "cert", "issue", API, "--ca", "berlin", "--out", "api", "--force",
        ],
    );
    assert_ne!(std::fs::read(d.join("api.crt")).unwrap(), before);
    refused(
        d,
        &[
            "ca",
            "init",
            "--trust-domain",
            "acme.example",
            "--out",
            "root",
        ],
        2,
        "--force",
    );
    refused(
        d,
        &["ca", "init", "--trust-domain", "Acme", "--out", "r2"],
        2,
        "trust domain",
    );
}
