//! Tests of the publish decision: once per revision, content-addressed bundles, refusal keeps
//! the last good set.

use std::collections::BTreeMap;
use std::path::Path;

use super::*;

fn node(id: &str, policy: &str) -> RenderedNode {
    RenderedNode {
        node_id: id.into(),
        spiffe_id: edgeward_certs::SpiffeId::parse(&format!("spiffe://acme.example/node/{id}"))
            .expect("id"),
        site: "berlin".into(),
        zone: "z".into(),
        region: "r".into(),
        files: BTreeMap::from([("policies/a.cedar".to_owned(), policy.to_owned())]),
    }
}

fn desired(revision: &str, nodes: Vec<RenderedNode>) -> Desired {
    Desired {
        revision: revision.into(),
        sites: BTreeSet::from(["berlin".to_owned()]),
        nodes,
    }
}

#[test]
fn a_revision_is_evaluated_once() {
    assert_eq!(plan("c1", None, None), Plan::Evaluate);
    assert_eq!(plan("c1", Some("c1"), None), Plan::Skip);
    assert_eq!(plan("c2", Some("c1"), Some("c2")), Plan::Skip);
    assert_eq!(plan("c3", Some("c1"), Some("c2")), Plan::Evaluate);
}

#[test]
fn bundles_carry_the_commit_and_a_hash_that_verifies() {
    let p = build(desired("c1", vec![node("a", "x"), node("b", "y")]), 10);
    assert_eq!(p.nodes.len(), 2);
    let a = &p.nodes["a"];
    assert_eq!(a.bundle.version.commit, "c1");
    a.bundle.verify_hash().expect("hash verifies");
    assert_eq!(a.bundle.node_id, "a");
    assert_eq!(
        p.by_spiffe_id("spiffe://acme.example/node/b")
            .map(|n| n.node_id.as_str()),
        Some("b")
    );
}

#[test]
fn unchanged_nodes_keep_their_bundle_version() {
    let old = build(desired("c1", vec![node("a", "x"), node("b", "y")]), 10);
    let mut new = build(
        desired("c2", vec![node("a", "x"), node("b", "z"), node("c", "x")]),
        20,
    );
    assert_eq!(carry_over(Some(&old), &mut new), vec!["b", "c"]);
    assert_eq!(new.nodes["a"].bundle.version.commit, "c1");
    assert_eq!(new.nodes["b"].bundle.version.commit, "c2");
    assert_eq!(new.revision, "c2");
    let mut fresh = build(desired("c2", vec![node("a", "x")]), 20);
    assert_eq!(carry_over(None, &mut fresh), vec!["a"]);
}

#[test]
fn an_invalid_revision_is_refused_and_the_last_good_set_stays() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(Path::new(":memory:")).expect("store"));
    let td = TrustDomain::new("acme.example").expect("td");
    let publisher = Publisher::new(
        SourceKind::Folder(dir.path().to_path_buf()),
        td,
        store.clone(),
    );
    let good = Arc::new(build(desired("c1", vec![node("a", "x")]), 10));
    publisher.current.store(Some(good.clone()));

    // A folder without schema or nodes renders to problems.
    std::fs::create_dir_all(dir.path().join("nodes/a")).expect("mkdir");
    std::fs::write(dir.path().join("nodes/a/node.toml"), "[node]\n").expect("write");
    let outcome = publisher.sync(100);
    let SyncOutcome::Refused { revision, problems } = outcome else {
        panic!("expected a refusal, got {outcome:?}");
    };
    assert!(problems >= 1);
    assert_eq!(publisher.current().expect("still published").revision, "c1");
    let refused = publisher.refused().expect("kept");
    assert_eq!(refused.revision, revision);
    assert!(refused
        .problems
        .iter()
        .any(|p| p.file == "shared/schema.cedarschema"));
    assert_eq!(
        store.events(None, 5).expect("events")[0].kind,
        "revision-refused"
    );

    // The same revision is not evaluated again.
    assert_eq!(publisher.sync(101), SyncOutcome::Unchanged { revision });
}

#[test]
fn a_source_that_cannot_be_read_changes_nothing() {
    let store = Arc::new(Store::open(Path::new(":memory:")).expect("store"));
    let td = TrustDomain::new("acme.example").expect("td");
    let kind = SourceKind::Git {
        repo: "/nonexistent/fleet".into(),
        reference: "main".into(),
    };
    let publisher = Publisher::new(kind, td, store);
    assert!(matches!(
        publisher.sync(1),
        SyncOutcome::SourceFailed { .. }
    ));
    assert!(publisher
        .last_error()
        .expect("kept")
        .contains("/nonexistent/fleet"));
    assert!(publisher.current().is_none());
}

#[test]
fn a_published_set_kept_in_the_store_is_restored_and_an_unreadable_one_is_not() {
    let store = Arc::new(Store::open(Path::new(":memory:")).expect("store"));
    let td = TrustDomain::new("acme.example").expect("td");
    let kind = SourceKind::Folder("/nonexistent/fleet".into());
    let publisher = Publisher::new(kind.clone(), td.clone(), store.clone());
    assert_eq!(publisher.restore(), None);
    assert!(publisher.current().is_none());

    // What a publish records is what a new publisher on the same store starts with.
    let good = build(desired("c1", vec![node("a", "x")]), 10);
    publisher.record_desired(&good, 10);
    let restarted = Publisher::new(kind.clone(), td.clone(), store.clone());
    assert_eq!(restarted.restore().as_deref(), Some("c1"));
    assert_eq!(restarted.current().as_deref(), Some(&good));
    assert_eq!(restarted.subscribe().borrow().as_deref(), Some(&good));

    // A kept bundle that no longer verifies is not served: nothing is published.
    let mut tampered = good.clone();
    let mut bundle = (*tampered.nodes["a"].bundle).clone();
    bundle
        .files
        .insert("policies/a.cedar".into(), "forbid".into());
    tampered.nodes.get_mut("a").expect("a").bundle = Arc::new(bundle);
    publisher.record_desired(&tampered, 20);
    let restarted = Publisher::new(kind, td, store);
    assert_eq!(restarted.restore(), None);
    assert!(restarted.current().is_none());
}
