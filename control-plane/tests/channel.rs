//! End to end: the real control plane on a Git repository, and a real quinn client with node
//! certificates from our CA code.

mod support;

use edgeward_control_plane::otlp::reference_batch;
use edgeward_wire::protocol::close;
use edgeward_wire::{AckResult, Message, MAX_MESSAGE_BYTES};
use support::{register, Fleet, Pki, Session, BERLIN_ID};

/// Registers as berlin-gw-1 and returns the session and the bundle it was sent.
async fn berlin(fleet: &Fleet) -> (Session, edgeward_wire::Bundle) {
    let conn = fleet
        .connect_as(&fleet.pki, "berlin", BERLIN_ID)
        .await
        .expect("handshake");
    let mut s = Session::open(conn).await;
    s.send(&register("berlin-gw-1", BERLIN_ID)).await;
    match s.recv().await {
        Message::Bundle(b) => (s, b),
        other => panic!("expected a Bundle, got {other:?}"),
    }
}

#[tokio::test]
async fn a_node_gets_its_bundle_acks_it_and_a_batch_sent_twice_is_stored_once() {
    let fleet = Fleet::start().await;
    let (mut s, bundle) = berlin(&fleet).await;

    // The bundle is the published one, addressed to this node, and its hash verifies.
    bundle.verify_hash().expect("hash verifies");
    bundle.check_paths().expect("paths");
    assert_eq!(bundle.node_id, "berlin-gw-1");
    let published = fleet.cp().publisher.current().expect("published");
    assert_eq!(
        bundle.version,
        published.nodes["berlin-gw-1"].bundle.version
    );
    assert!(bundle.files["proxy.toml"].contains("berlin-gw-1"));
    assert!(bundle
        .files
        .contains_key("policies/site-berlin-sensors.cedar"));

    // The ack is recorded as applied.
    s.send(&Message::BundleAck {
        version: bundle.version.clone(),
        result: AckResult::Applied,
    })
    .await;

    // One batch, sent twice (its first ack "lost"): acked twice, stored once.
    let batch = reference_batch(
        1_700_000_000,
        10,
        &[("allow", "site", 40), ("deny", "none", 2)],
        1,
        None,
    );
    for _ in 0..2 {
        s.send(&Message::Telemetry {
            seq: 1,
            otlp: batch.clone(),
            dropped_before: 0,
        })
        .await;
        assert_eq!(s.recv().await, Message::TelemetryAck { seq: 1 });
    }
    let store = &fleet.cp().store;
    let series = store.series(Some("berlin-gw-1"), 0).expect("series");
    assert_eq!(series.iter().map(|p| p.requests).sum::<u64>(), 42);
    assert_eq!(series.iter().map(|p| p.denies).sum::<u64>(), 2);
    let node = store.node("berlin-gw-1").expect("query").expect("row");
    assert!(node.online);
    assert_eq!(
        node.applied_hash.as_deref(),
        Some(bundle.version.hash.as_str())
    );
    assert_eq!(node.desired_hash, node.applied_hash);

    // A batch that is not OTLP is not acked; the session goes on.
    s.send(&Message::Telemetry {
        seq: 2,
        otlp: vec![0xff; 3],
        dropped_before: 0,
    })
    .await;
    s.send(&Message::Telemetry {
        seq: 3,
        otlp: batch.clone(),
        dropped_before: 5,
    })
    .await;
    assert_eq!(s.recv().await, Message::TelemetryAck { seq: 3 });
    let kinds: Vec<String> = store
        .events(Some("berlin-gw-1"), 10)
        .expect("events")
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert!(kinds.contains(&"telemetry-refused".to_owned()), "{kinds:?}");
    let series = store.series(Some("berlin-gw-1"), 0).expect("series");
    assert_eq!(series.iter().map(|p| p.requests).sum::<u64>(), 84);
    assert_eq!(series.iter().map(|p| p.dropped).sum::<u64>(), 5);

    // Disconnecting marks the node offline.
    s.conn.close(0u32.into(), b"bye");
    for _ in 0..50 {
        if !store.node("berlin-gw-1").expect("q").expect("row").online {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(!store.node("berlin-gw-1").expect("q").expect("row").online);

    // Reconnecting with the bundle it has: no Bundle is sent, and a batch resent after the
    // reconnect is acked and still not counted twice.
    let conn = fleet
        .connect_as(&fleet.pki, "berlin", BERLIN_ID)
        .await
        .expect("handshake");
    let mut s = Session::open(conn).await;
    let mut again = register("berlin-gw-1", BERLIN_ID);
    if let Message::Register {
        bundle_version: v, ..
    } = &mut again
    {
        *v = Some(bundle.version.clone());
    }
    s.send(&again).await;
    s.send(&Message::Telemetry {
        seq: 3,
        otlp: batch,
        dropped_before: 0,
    })
    .await;
    assert_eq!(s.recv().await, Message::TelemetryAck { seq: 3 });
    let series = store.series(Some("berlin-gw-1"), 0).expect("series");
    assert_eq!(series.iter().map(|p| p.requests).sum::<u64>(), 84);
    assert!(store.node("berlin-gw-1").expect("q").expect("row").online);
}

#[tokio::test]
async fn an_invalid_commit_is_refused_and_a_valid_one_is_pushed() {
    let fleet = Fleet::start().await;
    let (mut s, first) = berlin(&fleet).await;
    let api = fleet.cp().api;

    // A policy that does not validate against the schema: refused as a whole.
    let bad = fleet.commit_file(
        "sites/berlin/policies/broken.cedar",
        "permit (principal is Edgeward::Robot, action, resource);\n",
    );
    let (status, body) = support::http(api, "POST", "/api/sync").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"outcome\":\"refused\""), "{body}");
    let published = fleet.cp().publisher.current().expect("published");
    assert_eq!(published.revision, first.version.commit);
    let (_, revisions) = support::http(api, "GET", "/api/revisions").await;
    assert!(revisions.contains(&bad), "{revisions}");
    assert!(revisions.contains("broken.cedar"), "{revisions}");

    // Fixing it publishes, and the connected node is sent its new bundle.
    fleet.commit_file(
        "sites/berlin/policies/broken.cedar",
        "@id(\"berlin-readers\")\npermit (principal in Edgeward::Group::\"readers\", action in Edgeward::Action::\"read\", resource);\n",
    );
    let (_, body) = support::http(api, "POST", "/api/sync").await;
    assert!(body.contains("\"outcome\":\"published\""), "{body}");
    // Paris's bundle did not change: it keeps its version and is not pushed.
    let published = fleet.cp().publisher.current().expect("published");
    assert_eq!(
        published.nodes["paris-gw-1"].bundle.version.commit,
        first.version.commit
    );
    assert_ne!(published.revision, first.version.commit);
    match s.recv().await {
        Message::Bundle(b) => {
            b.verify_hash().expect("hash");
            assert_ne!(b.version, first.version);
            assert!(b.files.contains_key("policies/site-berlin-broken.cedar"));
        }
        other => panic!("expected the new Bundle, got {other:?}"),
    }
}

#[tokio::test]
async fn the_last_good_bundles_stay_published_across_a_restart_with_a_broken_head() {
    let mut fleet = Fleet::start().await;
    let (s, first) = berlin(&fleet).await;

    // HEAD becomes a policy that does not validate: refused, the first revision stays.
    let bad = fleet.commit_file(
        "sites/berlin/policies/broken.cedar",
        "permit (principal is Edgeward::Robot, action, resource);\n",
    );
    let (_, body) = support::http(fleet.cp().api, "POST", "/api/sync").await;
    assert!(body.contains("\"outcome\":\"refused\""), "{body}");

    // The control plane restarts on the same store and repository, HEAD still broken.
    fleet.cp.take().expect("running").stop().await;
    drop(s);
    fleet.launch("").await;
    let publisher = &fleet.cp().publisher;
    let published = publisher
        .current()
        .expect("the last good revision is published");
    assert_eq!(published.revision, first.version.commit);
    assert_eq!(
        publisher.refused().expect("HEAD refused again").revision,
        bad
    );
    let (_, revisions) = support::http(fleet.cp().api, "GET", "/api/revisions").await;
    let revisions: serde_json::Value = serde_json::from_str(&revisions).expect("json");
    assert_eq!(
        revisions["published"]["revision"], first.version.commit,
        "{revisions}"
    );
    assert_eq!(revisions["refused"]["revision"], bad, "{revisions}");

    // The node is accepted and gets the same bundle.
    let (_, again) = berlin(&fleet).await;
    again.verify_hash().expect("hash");
    assert_eq!(again, first);

    // Registering with that bundle: accepted, nothing to send, the session serves.
    let conn = fleet
        .connect_as(&fleet.pki, "berlin", BERLIN_ID)
        .await
        .expect("handshake");
    let mut s = Session::open(conn).await;
    let mut register = register("berlin-gw-1", BERLIN_ID);
    if let Message::Register { bundle_version, .. } = &mut register {
        *bundle_version = Some(first.version.clone());
    }
    s.send(&register).await;
    s.send(&Message::Telemetry {
        seq: 1,
        otlp: reference_batch(1_700_000_000, 10, &[("allow", "site", 1)], 0, None),
        dropped_before: 0,
    })
    .await;
    assert_eq!(s.recv().await, Message::TelemetryAck { seq: 1 });
}

#[tokio::test]
async fn a_node_certificate_of_another_trust_domain_is_refused_at_the_handshake() {
    let fleet = Fleet::start().await;
    let other = Pki::for_domain(&fleet.dir.path().join("evil"), "evil.example");
    let id = "spiffe://evil.example/site/berlin/node/berlin-gw-1";
    // TLS 1.3: the client may finish before the server refuses its certificate, so the refusal
    // shows on the connection at the latest.
    if let Ok(conn) = fleet.connect_as(&other, "evil", id).await {
        let (code, reason) = support::closed(&conn).await;
        assert_eq!(
            code,
            u32::MAX,
            "closed by TLS, not by the session: {reason}"
        );
    }
    let events = fleet.cp().store.events(None, 10).expect("events");
    assert!(
        events.iter().any(|e| e.kind == "handshake-refused"),
        "{events:?}"
    );
    assert!(fleet.cp().shared.connected_ids().is_empty());
}

#[tokio::test]
async fn unknown_nodes_and_mismatched_registers_are_refused() {
    let fleet = Fleet::start().await;

    // A valid certificate that no published node carries.
    let ghost = "spiffe://acme.example/site/berlin/node/ghost";
    let conn = fleet
        .connect_as(&fleet.pki, "ghost", ghost)
        .await
        .expect("handshake");
    let mut s = Session::open(conn).await;
    s.send(&register("ghost", ghost)).await;
    let (code, reason) = s.closed().await;
    assert_eq!(code, close::REFUSED);
    assert!(
        reason.contains("no node of the published desired state"),
        "{reason}"
    );

    // Berlin's certificate registering as Paris.
    let conn = fleet
        .connect_as(&fleet.pki, "berlin", BERLIN_ID)
        .await
        .expect("handshake");
    let mut s = Session::open(conn).await;
    s.send(&register("paris-gw-1", BERLIN_ID)).await;
    let (code, reason) = s.closed().await;
    assert_eq!(code, close::REFUSED);
    assert!(reason.contains("belongs to node `berlin-gw-1`"), "{reason}");
    let events = fleet
        .cp()
        .store
        .events(Some("berlin-gw-1"), 5)
        .expect("events");
    assert_eq!(events[0].kind, "register-refused");
}

#[tokio::test]
async fn an_unknown_message_version_is_refused() {
    let fleet = Fleet::start().await;
    let (mut s, _) = berlin(&fleet).await;
    let body = br#"{"version":2,"msg":{"type":"Heartbeat","at_unix":1}}"#;
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    s.send_raw(&frame).await;
    let (code, reason) = s.closed().await;
    assert_eq!(code, close::PROTOCOL);
    assert!(
        reason.contains("message version 2 is not supported"),
        "{reason}"
    );
}

#[tokio::test]
async fn an_oversized_frame_is_refused_from_its_header() {
    let fleet = Fleet::start().await;
    let (mut s, _) = berlin(&fleet).await;
    s.send_raw(&((MAX_MESSAGE_BYTES + 1) as u32).to_be_bytes())
        .await;
    let (code, reason) = s.closed().await;
    assert_eq!(code, close::PROTOCOL);
    assert!(reason.contains("larger than the limit"), "{reason}");
}

#[tokio::test]
async fn a_first_message_other_than_register_is_refused() {
    let fleet = Fleet::start().await;
    let conn = fleet
        .connect_as(&fleet.pki, "berlin", BERLIN_ID)
        .await
        .expect("handshake");
    let mut s = Session::open(conn).await;
    s.send(&Message::Heartbeat { at_unix: 1 }).await;
    let (code, reason) = s.closed().await;
    assert_eq!(code, close::PROTOCOL);
    assert!(reason.contains("must be Register"), "{reason}");
}

#[tokio::test]
async fn a_node_that_does_not_register_within_ten_seconds_is_closed() {
    let fleet = Fleet::start().await;
    let conn = fleet
        .connect_as(&fleet.pki, "berlin", BERLIN_ID)
        .await
        .expect("handshake");
    let (code, reason) = support::closed(&conn).await;
    assert_eq!(code, close::REGISTER_TIMEOUT);
    assert!(reason.contains("no Register within 10 s"), "{reason}");
}

#[tokio::test]
async fn the_control_plane_sends_heartbeats() {
    let fleet = Fleet::start().await;
    let (mut s, _) = berlin(&fleet).await;
    let msg = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        edgeward_wire::read_frame(&mut s.recv),
    )
    .await
    .expect("a frame within 15 s")
    .expect("a frame");
    assert!(matches!(msg, Message::Heartbeat { .. }), "{msg:?}");
}

#[tokio::test]
async fn a_revoked_node_certificate_is_refused_at_the_handshake() {
    let mut fleet = Fleet::prepare();
    let (cert, key) = fleet.pki.issue("berlin", BERLIN_ID);
    let crl = fleet.pki.revoke(&cert);
    fleet
        .launch(&format!("crls = [\"{}\"]", crl.display()))
        .await;
    if let Ok(conn) = fleet.connect_with(&cert, &key).await {
        let (code, reason) = support::closed(&conn).await;
        assert_eq!(
            code,
            u32::MAX,
            "closed by TLS, not by the session: {reason}"
        );
    }
    let events = fleet.cp().store.events(None, 10).expect("events");
    assert!(
        events
            .iter()
            .any(|e| e.kind == "handshake-refused" && e.message.contains("Revoked")),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_silent_node_is_closed_after_30_s_and_marked_offline() {
    let fleet = Fleet::start().await;
    let (s, _) = berlin(&fleet).await;
    // The node reads nothing and sends nothing (the control plane's heartbeats keep QUIC busy).
    let (code, reason) = s.closed().await;
    assert_eq!(code, close::SILENCE, "{reason}");
    let node = fleet
        .cp()
        .store
        .node("berlin-gw-1")
        .expect("q")
        .expect("row");
    assert!(!node.online);
    assert!(node.since.is_some());
    let events = fleet
        .cp()
        .store
        .events(Some("berlin-gw-1"), 1)
        .expect("events");
    assert_eq!(events[0].kind, "offline");
    assert!(events[0].message.contains("30 s"), "{events:?}");
}

#[tokio::test]
async fn a_newer_connection_of_the_same_node_replaces_the_older_one() {
    let fleet = Fleet::start().await;
    let (old, _) = berlin(&fleet).await;
    let (mut new, _) = berlin(&fleet).await;
    let (code, reason) = old.closed().await;
    assert_eq!(code, close::REPLACED, "{reason}");
    // The newer session serves, and the node stays online.
    new.send(&Message::Telemetry {
        seq: 1,
        otlp: reference_batch(1_700_000_000, 10, &[("allow", "site", 1)], 0, None),
        dropped_before: 0,
    })
    .await;
    assert_eq!(new.recv().await, Message::TelemetryAck { seq: 1 });
    assert!(
        fleet
            .cp()
            .store
            .node("berlin-gw-1")
            .expect("q")
            .expect("row")
            .online
    );
    assert_eq!(fleet.cp().shared.connected_ids(), vec!["berlin-gw-1"]);
}
