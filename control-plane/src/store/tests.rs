//! Tests of the store: node status, bundle acks, telemetry dedup by sequence, retention.

use super::telemetry::{Point, Recorded};
use super::*;

fn store() -> Store {
    Store::open(Path::new(":memory:")).expect("open")
}

fn point(at: i64, requests: u64) -> Point {
    Point {
        at,
        width: 10,
        requests,
        denies: 1,
        on_site: requests - 1,
        off_site: 1,
        ..Point::default()
    }
}

#[test]
fn desired_then_connected_then_acks_update_one_row() {
    let s = store();
    s.upsert_desired("gw", "spiffe://td/gw", ("berlin", "z", "r"), ("c1", "h1"))
        .expect("desired");
    let cert = Validity {
        not_before: 50,
        not_after: 2000,
    };
    s.node_connected("gw", "0.1.0", None, cert, 100)
        .expect("connected");
    let n = s.node("gw").expect("query").expect("row");
    assert!(n.online);
    assert_eq!(
        (n.cert_not_before, n.cert_not_after),
        (Some(50), Some(2000))
    );
    assert_eq!(n.since, Some(100));
    assert_eq!(n.site, "berlin");
    assert_eq!(n.applied_hash, None);

    s.bundle_refused("gw", "c1", "h1", "bad policy", 110)
        .expect("refused");
    assert_eq!(
        s.node("gw").expect("q").expect("row").refusal.as_deref(),
        Some("bad policy")
    );
    // The same desired version keeps the refusal; a new one clears it.
    s.upsert_desired("gw", "spiffe://td/gw", ("berlin", "z", "r"), ("c1", "h1"))
        .expect("d");
    assert!(s.node("gw").expect("q").expect("row").refusal.is_some());
    s.upsert_desired("gw", "spiffe://td/gw", ("berlin", "z", "r"), ("c2", "h2"))
        .expect("d");
    assert!(s.node("gw").expect("q").expect("row").refusal.is_none());

    s.bundle_applied("gw", "c2", "h2", 120).expect("applied");
    s.node_disconnected("gw", "link lost", 130).expect("gone");
    let n = s.node("gw").expect("q").expect("row");
    assert_eq!((n.online, n.since), (false, Some(130)));
    assert_eq!(n.applied_hash.as_deref(), Some("h2"));
    let kinds: Vec<String> = s
        .events(Some("gw"), 10)
        .expect("events")
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, vec!["offline", "applied", "refused", "online"]);
}

#[test]
fn a_batch_resent_after_reconnect_is_not_counted_twice() {
    let s = store();
    assert_eq!(
        s.record_batch("gw", 1, &[point(0, 5)]).expect("b1"),
        Recorded::Stored
    );
    assert_eq!(
        s.record_batch("gw", 2, &[point(10, 7)]).expect("b2"),
        Recorded::Stored
    );
    assert_eq!(
        s.record_batch("gw", 2, &[point(10, 7)]).expect("dup"),
        Recorded::Duplicate
    );
    assert_eq!(
        s.record_batch("gw", 1, &[point(0, 5)]).expect("old"),
        Recorded::Duplicate
    );
    // Two batches for the same interval add up.
    assert_eq!(
        s.record_batch("gw", 3, &[point(10, 3)]).expect("b3"),
        Recorded::Stored
    );
    let series = s.series(Some("gw"), 0).expect("series");
    let totals: Vec<u64> = series.iter().map(|p| p.requests).collect();
    assert_eq!(totals, vec![5, 10]);
    assert_eq!(s.telemetry_seq("gw").expect("seq"), Some(3));
}

#[test]
fn compaction_keeps_totals_and_drops_what_is_past_retention() {
    let s = store();
    let now = 100_000;
    let old = now - FINE - 600; // folded into 5-minute points
    let points: Vec<Point> = (0..6).map(|i| point(old + i * 10, 4)).collect();
    s.record_batch("gw", 1, &points).expect("old batch");
    s.record_batch("gw", 2, &[point(now - 10, 9)])
        .expect("recent");
    s.record_batch("gw", 3, &[point(now - 50_000, 2)])
        .expect("past retention");
    s.event(now - 50_000, None, "x", "old").expect("event");

    s.compact(now, 40_000).expect("compact");
    let series = s.series(Some("gw"), 0).expect("series");
    let total: u64 = series.iter().map(|p| p.requests).sum();
    assert_eq!(total, 6 * 4 + 9);
    assert!(series.iter().any(|p| p.width == COARSE));
    assert!(series.iter().all(|p| p.at >= now - 40_000));
    assert!(s.events(None, 10).expect("events").is_empty());
}

fn published(revision: &str, at: i64) -> crate::publish::Published {
    use crate::publish::{Published, PublishedNode};
    let mut bundle = edgeward_wire::Bundle {
        node_id: "gw".into(),
        version: edgeward_wire::BundleVersion {
            commit: revision.into(),
            hash: String::new(),
        },
        files: [("proxy.toml".to_owned(), "[proxy]\n".to_owned())].into(),
    };
    bundle.version.hash = bundle.content_hash();
    let node = PublishedNode {
        node_id: "gw".into(),
        spiffe_id: "spiffe://td/gw".into(),
        site: "berlin".into(),
        zone: "z".into(),
        region: "r".into(),
        bundle: std::sync::Arc::new(bundle),
    };
    Published {
        revision: revision.into(),
        at,
        sites: ["berlin".to_owned(), "paris".to_owned()].into(),
        nodes: [("gw".to_owned(), node)].into(),
    }
}

fn desired_nodes(p: &crate::publish::Published) -> Vec<DesiredNode<'_>> {
    p.nodes
        .values()
        .map(|n| DesiredNode {
            id: &n.node_id,
            spiffe_id: &n.spiffe_id,
            site: &n.site,
            zone: &n.zone,
            region: &n.region,
            commit: &n.bundle.version.commit,
            hash: &n.bundle.version.hash,
        })
        .collect()
}

#[test]
fn the_published_set_is_saved_and_loaded_back_across_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cp.db");
    let s = Store::open(&path).expect("open");
    assert_eq!(
        s.load_published::<crate::publish::Published>()
            .expect("load"),
        None
    );

    let first = published("c1", 10);
    s.record_published("c1", 10, &first, &desired_nodes(&first))
        .expect("record");
    // A newer revision replaces the kept one.
    let second = published("c2", 20);
    s.record_published("c2", 20, &second, &desired_nodes(&second))
        .expect("record");
    let n = s.node("gw").expect("q").expect("row");
    assert_eq!(n.desired_commit.as_deref(), Some("c2"));
    assert_eq!(
        s.events(None, 1).expect("events")[0].kind,
        "revision-published"
    );
    drop(s);

    let s = Store::open(&path).expect("reopen");
    let loaded = s
        .load_published::<crate::publish::Published>()
        .expect("load")
        .expect("kept");
    assert_eq!(loaded, second);
    loaded.nodes["gw"].bundle.verify_hash().expect("hash");
    let revision: String = s
        .conn()
        .query_row("SELECT revision FROM published", [], |r| r.get(0))
        .expect("row");
    assert_eq!(revision, "c2");
}

#[test]
fn an_unreadable_published_row_is_an_error_naming_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cp.db");
    let s = Store::open(&path).expect("open");
    s.conn()
        .execute(
            "INSERT INTO published (id, revision, bundles_json, at) VALUES (1, 'c1', '{\"nodes\":', 5)",
            [],
        )
        .expect("insert");
    let e = s
        .load_published::<crate::publish::Published>()
        .expect_err("unreadable");
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");
}

const FINE: i64 = super::telemetry::FINE_FOR;
const COARSE: i64 = super::telemetry::COARSE_WIDTH;

#[test]
fn a_store_from_before_cert_not_before_gets_the_column_and_keeps_its_rows() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("cp.db");
    {
        let old = Connection::open(&path).expect("old store");
        old.execute_batch(
            "CREATE TABLE nodes (id TEXT PRIMARY KEY, spiffe_id TEXT NOT NULL DEFAULT '',
               site TEXT NOT NULL DEFAULT '', zone TEXT NOT NULL DEFAULT '',
               region TEXT NOT NULL DEFAULT '', software_version TEXT NOT NULL DEFAULT '',
               online INTEGER NOT NULL DEFAULT 0, last_contact INTEGER, since INTEGER,
               desired_commit TEXT, desired_hash TEXT, applied_commit TEXT, applied_hash TEXT,
               refusal TEXT, cert_not_after INTEGER, telemetry_seq INTEGER);
             INSERT INTO nodes (id, site, cert_not_after) VALUES ('gw', 'berlin', 2000);",
        )
        .expect("old schema");
    }
    let s = Store::open(&path).expect("open an older store");
    let n = s.node("gw").expect("query").expect("row");
    assert_eq!((n.site.as_str(), n.cert_not_after), ("berlin", Some(2000)));
    assert_eq!(n.cert_not_before, None);
    drop(s);
    // Opening it again finds the column there.
    Store::open(&path).expect("open again");
}
