//! Test fixtures: policy folders written to a temporary directory with the real schema from
//! `policies/`, and request facts with plain defaults.

use std::path::{Path, PathBuf};

use edgeward_certs::SpiffeId;

use super::load::{AuthzLoadError, PolicySnapshot};
use super::request::{Locality, RequestFacts, TlsFacts};

/// The schema the proxy ships.
pub const SCHEMA: &str = include_str!("../../../policies/schema.cedarschema");

/// `policies/` of the repository.
pub fn starter_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

/// Writes `files` into `<tmp>/policies/`, the schema and, when given, `entities.json`; loads.
pub fn try_load(
    files: &[(&str, &str)],
    entities: Option<&str>,
) -> (tempfile::TempDir, Result<PolicySnapshot, AuthzLoadError>) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("policies");
    std::fs::create_dir(&dir).expect("policies dir");
    for (name, text) in files {
        std::fs::write(dir.join(name), text).expect("policy file");
    }
    let schema = tmp.path().join("schema.cedarschema");
    std::fs::write(&schema, SCHEMA).expect("schema");
    let entities_file = entities.map(|text| {
        let path = tmp.path().join("entities.json");
        std::fs::write(&path, text).expect("entities");
        path
    });
    let result = PolicySnapshot::load(&dir, &schema, entities_file.as_deref());
    (tmp, result)
}

/// Like [`try_load`], for sets that must load.
pub fn snapshot(files: &[(&str, &str)], entities: Option<&str>) -> PolicySnapshot {
    match try_load(files, entities).1 {
        Ok(snapshot) => snapshot,
        Err(e) => panic!("{e}"),
    }
}

/// The policies, schema and entities of `policies/`.
pub fn starter() -> PolicySnapshot {
    let dir = starter_dir();
    match PolicySnapshot::load(
        &dir,
        &dir.join("schema.cedarschema"),
        Some(&dir.join("entities.json")),
    ) {
        Ok(snapshot) => snapshot,
        Err(e) => panic!("{e}"),
    }
}

/// 2024-06-10 06:13:20 UTC, a Monday.
pub const NOW: i64 = 1_718_000_000;

/// A request on a Berlin node over mTLS from 10.49.0.5 to route `api` of service `api`.
pub fn facts(identity: Option<&str>, method: &str, path: &str) -> RequestFacts {
    RequestFacts {
        identity: identity.map(|id| SpiffeId::parse(id).expect("valid test id")),
        method: method.to_owned(),
        host: "api.acme.example".to_owned(),
        path: path.to_owned(),
        route: "api".to_owned(),
        service: "api".to_owned(),
        node: Locality {
            site: "berlin".to_owned(),
            zone: "berlin-a".to_owned(),
            region: "eu-central".to_owned(),
        },
        peer_ip: "10.49.0.5".parse().expect("ip"),
        tls: TlsFacts {
            version: "TLSv1.3".to_owned(),
            mtls: identity.is_some(),
            alpn: "h2".to_owned(),
        },
        now_unix: NOW,
        headers: Vec::new(),
    }
}
