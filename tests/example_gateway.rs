//! `examples/gateway/`: its PKI script and config pass `edgeward check`, run as a user would.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_edgeward");

#[test]
fn the_example_gateway_config_checks_with_certificates_from_its_script() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let pki = Command::new(repo.join("examples/gateway/pki.sh"))
        .arg(dir.path().join("pki"))
        .env("EDGEWARD_BIN", BIN)
        .output()
        .expect("run pki.sh");
    assert!(
        pki.status.success(),
        "pki.sh: {}",
        String::from_utf8_lossy(&pki.stderr)
    );

    // The config as shipped, with its policy paths pointing at the repository's policies.
    let text = std::fs::read_to_string(repo.join("examples/gateway/proxy.toml")).unwrap();
    let policies = repo.join("policies");
    let text = text.replace("../../policies", &policies.display().to_string());
    let config = dir.path().join("proxy.toml");
    std::fs::write(&config, text).unwrap();

    let check = Command::new(BIN)
        .arg("check")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
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
