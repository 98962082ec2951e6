use std::collections::BTreeMap;

use edgeward_wire::{Bundle, BundleVersion};

use super::*;

const SCHEMA: &str = include_str!("../../../../policies/schema.cedarschema");

fn overlay(dir: &Path) -> Overlay {
    let text = format!(
        "[node]\nid = \"n1\"\nsite = \"berlin\"\nzone = \"a\"\nregion = \"eu\"\ndata_dir = \"{}\"\n\
         [authz]\npolicies = \"p\"\nschema = \"p/schema.cedarschema\"\n\
         [control_plane]\naddress = \"127.0.0.1:7443\"\nspiffe_id = \"spiffe://acme.example/control-plane\"\n",
        dir.display()
    );
    let config = Config::from_toml_str(&text, &dir.join("local.toml")).expect("local config");
    Overlay::from_local(&config).expect("overlay")
}

fn bundle(node: &str, policy: &str) -> Bundle {
    let files = BTreeMap::from([
        (
            "proxy.toml".to_owned(),
            "[node]\nid = \"n1\"\nsite = \"berlin\"\nzone = \"a\"\nregion = \"eu\"\n\
             [authz]\npolicies = \"policies\"\nschema = \"policies/schema.cedarschema\"\n"
                .to_owned(),
        ),
        ("policies/schema.cedarschema".to_owned(), SCHEMA.to_owned()),
        ("policies/site.cedar".to_owned(), policy.to_owned()),
    ]);
    let mut b = Bundle {
        node_id: node.into(),
        version: BundleVersion {
            commit: "c1".into(),
            hash: String::new(),
        },
        files,
    };
    b.version.hash = b.content_hash();
    b
}

const GOOD: &str = "@id(\"all\")\npermit (principal, action, resource);\n";

#[test]
fn a_staged_and_committed_bundle_loads_back_and_is_served_through_current() {
    let dir = tempfile::tempdir().unwrap();
    let store = LkgStore::new(dir.path());
    assert!(store.load().unwrap().is_none());
    let b = bundle("n1", GOOD);
    store.stage(&b, &overlay(dir.path())).unwrap();
    assert_eq!(store.commit(&b.version.hash).unwrap(), None);
    assert_eq!(store.load().unwrap().unwrap(), b);
    let config = Config::load(&store.config_path()).unwrap();
    assert_eq!(config.authz.policies, dir.path().join("current/policies"));
    assert!(
        config.control_plane.is_some(),
        "the local overlay is in the effective config"
    );

    // A second bundle replaces it; the first is kept as the previous one.
    let b2 = bundle(
        "n1",
        "@id(\"none\")\nforbid (principal, action, resource);\n",
    );
    store.stage(&b2, &overlay(dir.path())).unwrap();
    let previous = store.commit(&b2.version.hash).unwrap();
    assert_eq!(store.load().unwrap().unwrap().version, b2.version);
    store.rollback(previous.as_deref()).unwrap();
    assert_eq!(store.load().unwrap().unwrap().version, b.version);
}

#[test]
fn a_corrupt_lkg_is_detected_and_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let store = LkgStore::new(dir.path());
    let b = bundle("n1", GOOD);
    store.stage(&b, &overlay(dir.path())).unwrap();
    store.commit(&b.version.hash).unwrap();
    std::fs::write(
        dir.path().join("current/policies/site.cedar"),
        "forbid (principal, action, resource);",
    )
    .unwrap();
    let err = store.load().unwrap_err().to_string();
    assert!(err.contains("corrupt") && err.contains("hash"), "{err}");
    std::fs::remove_file(dir.path().join("current/@manifest.json")).unwrap();
    assert!(store
        .load()
        .unwrap_err()
        .to_string()
        .contains("@manifest.json"));
}

#[test]
fn bad_bundles_are_refused_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let store = LkgStore::new(dir.path());
    let ov = overlay(dir.path());

    let other = bundle("n2", GOOD);
    let err = store.stage(&other, &ov).unwrap_err();
    assert!(err.contains("`n2`") && err.contains("`n1`"), "{err}");

    let mut tampered = bundle("n1", GOOD);
    tampered
        .files
        .insert("policies/extra.cedar".into(), GOOD.into());
    assert!(store.stage(&tampered, &ov).unwrap_err().contains("hash"));

    let invalid = bundle(
        "n1",
        "permit (principal, action, resource) when { nonsense };",
    );
    let err = store.stage(&invalid, &ov).unwrap_err();
    assert!(err.contains("policies refused"), "{err}");

    let mut escaping = bundle("n1", GOOD);
    escaping.files.insert("../outside".into(), "x".into());
    escaping.version.hash = escaping.content_hash();
    assert!(store.stage(&escaping, &ov).is_err());
    assert!(!dir.path().join("outside").exists());

    // Nothing staged, nothing current.
    let left: Vec<_> = std::fs::read_dir(dir.path().join("bundles"))
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    assert!(store.load().unwrap().is_none());
}
