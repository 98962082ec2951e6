//! `examples/gateway/`: its PKI script and config pass `edgeward check`, run as a user would;
//! the same config with a broken certificate or key file names the config key and the file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_edgeward");

/// Runs the example's PKI script into `dir/pki` and writes the example config, with its policy
/// paths pointing at the repository's policies and `edit` applied, to `dir/proxy.toml`.
fn example_config(dir: &Path, edit: impl FnOnce(String) -> String) -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let pki = Command::new(repo.join("examples/gateway/pki.sh"))
        .arg(dir.join("pki"))
        .env("EDGEWARD_BIN", BIN)
        .output()
        .expect("run pki.sh");
    assert!(
        pki.status.success(),
        "pki.sh: {}",
        String::from_utf8_lossy(&pki.stderr)
    );
    let text = std::fs::read_to_string(repo.join("examples/gateway/proxy.toml")).unwrap();
    let policies = repo.join("policies");
    let text = text.replace("../../policies", &policies.display().to_string());
    let config = dir.join("proxy.toml");
    std::fs::write(&config, edit(text)).unwrap();
    config
}

fn check(config: &Path) -> Output {
    Command::new(BIN)
        .arg("check")
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

#[test]
fn the_example_gateway_config_checks_with_certificates_from_its_script() {
    let dir = tempfile::tempdir().unwrap();
    let check = check(&example_config(dir.path(), |t| t));
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(
        stdout.contains("spiffe://acme.example/site/berlin/service/gateway"),
        "{stdout}"
    );
    assert!(stdout.contains("valid against the schema"), "{stdout}");
}

#[test]
fn a_broken_certificate_key_bundle_or_crl_file_is_named_by_its_config_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("garbage.pem"), "not a certificate\n").unwrap();
    let cases = [
        // (what the config names instead, the key it is under, what the error says)
        (
            r#"cert = "pki/gateway.crt""#,
            r#"cert = "pki/absent.crt""#,
            "`identity.cert` (",
            "cannot be read",
        ),
        (
            r#"cert = "pki/gateway.crt""#,
            r#"cert = "garbage.pem""#,
            "`identity.cert` (",
            "holds no PEM block",
        ),
        (
            r#"key = "pki/gateway.key""#,
            r#"key = "pki/sensor-1.key""#,
            "`identity.key` (",
            "is not the key of the certificate",
        ),
        (
            r#"key = "pki/gateway.key""#,
            r#"key = "pki/gateway.crt""#,
            "`identity.key` (",
            "where a private key was expected",
        ),
        (
            r#"bundle = "pki/root/ca.crt""#,
            r#"bundle = "pki/absent-root.crt""#,
            "`trust_domains[0].bundle` (trust domain `acme.example`)",
            "cannot read",
        ),
        (
            r#"crls = ["pki/berlin.crl"]"#,
            r#"crls = ["pki/absent.crl"]"#,
            "`trust_domains[0].crls[0]` (trust domain `acme.example`)",
            "cannot read",
        ),
    ];
    for (i, (from, to, key, reason)) in cases.into_iter().enumerate() {
        let case = dir.path().join(format!("case-{i}"));
        std::fs::create_dir(&case).unwrap();
        std::fs::copy(dir.path().join("garbage.pem"), case.join("garbage.pem")).unwrap();
        let config = example_config(&case, |t| {
            assert!(t.contains(from), "the example config has {from}");
            t.replace(from, to)
        });
        let out = check(&config);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "case {i}: {stderr}");
        assert!(
            stderr.contains(key) && stderr.contains(reason),
            "case {i}: {stderr}"
        );
        // The path is named once, not repeated by the reason.
        let path = to.split('"').nth(1).unwrap();
        assert_eq!(stderr.matches(path).count(), 1, "case {i}: {stderr}");
    }
}
