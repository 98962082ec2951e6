//! The memo answers exactly as a fresh decision would, and only keys on what policies read.

use super::*;
use crate::authz::testkit::{self, facts, NOW};
use crate::authz::Authorizer;

const CAPACITY: usize = 64;

const CAM: &str = "spiffe://acme.example/site/berlin/device/cam-7";
const OTHER: &str = "spiffe://acme.example/site/berlin/device/cam-8";

fn policy(condition: &str) -> String {
    format!(
        "@id(\"p\")\npermit (principal is Edgeward::Device, action, resource) when {{ {condition} }};\n"
    )
}

fn reads(condition: &str) -> ContextReads {
    let text = policy(condition);
    testkit::snapshot(&[("p.cedar", &text)], None).memo.reads()
}

#[test]
fn finds_which_context_fields_policies_read() {
    let none = ContextReads {
        time: false,
        headers: false,
    };
    assert_eq!(reads("context.site == \"berlin\""), none);
    assert_eq!(
        reads("context.peer_ip.isLoopback() && context.tls.mtls"),
        none
    );
    assert_eq!(
        reads("context.time.hour < 12"),
        ContextReads {
            time: true,
            headers: false
        }
    );
    assert_eq!(
        reads("context.headers.contains({name: \"x-a\", value: \"1\"})"),
        ContextReads {
            time: false,
            headers: true
        }
    );
    assert!(reads("context[\"time\"].weekday == 1").time);
    assert_eq!(testkit::starter().memo.reads(), none);
}

#[test]
fn the_whole_context_or_an_unknown_access_reads_everything() {
    let mut r = ContextReads {
        time: false,
        headers: false,
    };
    r.visit(&serde_json::json!({"==": {"left": {"Var": "context"}, "right": {"Var": "context"}}}));
    assert_eq!(r, ContextReads::ALL);
    let mut r = ContextReads {
        time: false,
        headers: false,
    };
    r.visit(&serde_json::json!({".": {"left": {"Var": "context"}}}));
    assert_eq!(r, ContextReads::ALL);
    // A record literal with a field named `Var` is not the variable.
    let mut r = ContextReads {
        time: false,
        headers: false,
    };
    r.visit(&serde_json::json!({"Record": {"Var": {"Value": "context"}}}));
    assert!(!r.time && !r.headers);
}

#[test]
fn memoized_decisions_equal_fresh_ones_across_the_facts_that_matter() {
    let text = policy("context.time.hour < 12 && resource.path != \"/no\"");
    let snapshot = testkit::snapshot(&[("p.cedar", &text)], None);
    let authorizer = Authorizer::new();
    let morning = facts(Some(CAM), "GET", "/x");
    let afternoon = RequestFacts {
        now_unix: NOW + 8 * 3600,
        ..morning.clone()
    };
    let no = facts(Some(CAM), "GET", "/no");
    for _ in 0..3 {
        for f in [&morning, &afternoon, &no] {
            let fresh = authorizer.decide(&snapshot, f);
            let kept = authorizer.decide_memoized(&snapshot, f, CAPACITY);
            assert_eq!(*kept, fresh, "{f:?}");
        }
    }
    assert!(
        authorizer
            .decide_memoized(&snapshot, &morning, CAPACITY)
            .allowed
    );
    assert!(
        !authorizer
            .decide_memoized(&snapshot, &afternoon, CAPACITY)
            .allowed
    );
    assert!(!authorizer.decide_memoized(&snapshot, &no, CAPACITY).allowed);
    assert_eq!(snapshot.memo.len(), 3);
}

#[test]
fn headers_are_in_the_key_only_when_a_policy_reads_them() {
    let text = policy("context.headers.contains({name: \"x-shift\", value: \"day\"})");
    let snapshot = testkit::snapshot(&[("p.cedar", &text)], None);
    let authorizer = Authorizer::new();
    let bare = facts(Some(CAM), "GET", "/x");
    let day = RequestFacts {
        headers: vec![("x-shift".into(), "day".into())],
        ..bare.clone()
    };
    assert!(
        !authorizer
            .decide_memoized(&snapshot, &bare, CAPACITY)
            .allowed
    );
    assert!(
        authorizer
            .decide_memoized(&snapshot, &day, CAPACITY)
            .allowed
    );
    assert!(
        !authorizer
            .decide_memoized(&snapshot, &bare, CAPACITY)
            .allowed
    );

    // The starter policies read neither time nor headers: one entry serves both.
    let starter = testkit::starter();
    let later = RequestFacts {
        now_unix: NOW + 3600,
        ..day.clone()
    };
    authorizer.decide_memoized(&starter, &bare, CAPACITY);
    authorizer.decide_memoized(&starter, &later, CAPACITY);
    assert_eq!(starter.memo.len(), 1);
}

#[test]
fn identities_paths_and_addresses_are_never_shared() {
    let snapshot = testkit::snapshot(
        &[(
            "p.cedar",
            "@id(\"p\")\npermit (principal == Edgeward::Device::\"spiffe://acme.example/site/berlin/device/cam-7\", action, resource) when { context.peer_ip.isInRange(ip(\"10.49.0.0/16\")) };\n",
        )],
        None,
    );
    let authorizer = Authorizer::new();
    let cam = facts(Some(CAM), "GET", "/x");
    let other = facts(Some(OTHER), "GET", "/x");
    let outside = RequestFacts {
        peer_ip: "192.0.2.1".parse().expect("ip"),
        ..cam.clone()
    };
    let anonymous = facts(None, "GET", "/x");
    assert!(
        authorizer
            .decide_memoized(&snapshot, &cam, CAPACITY)
            .allowed
    );
    assert!(
        !authorizer
            .decide_memoized(&snapshot, &other, CAPACITY)
            .allowed
    );
    assert!(
        !authorizer
            .decide_memoized(&snapshot, &outside, CAPACITY)
            .allowed
    );
    assert!(
        !authorizer
            .decide_memoized(&snapshot, &anonymous, CAPACITY)
            .allowed
    );
    assert!(
        authorizer
            .decide_memoized(&snapshot, &cam, CAPACITY)
            .allowed
    );
    assert_eq!(snapshot.memo.len(), 4);
}

#[test]
fn the_memo_is_bounded() {
    let snapshot = testkit::starter();
    let authorizer = Authorizer::new();
    for i in 0..CAPACITY + 10 {
        let f = facts(Some(CAM), "GET", &format!("/p/{i}"));
        authorizer.decide_memoized(&snapshot, &f, CAPACITY);
        assert!(snapshot.memo.len() <= CAPACITY);
    }
    assert!(!snapshot.memo.is_empty());

    // Off: every request is evaluated, nothing is kept.
    let off = testkit::starter();
    let f = facts(Some(CAM), "GET", "/x");
    assert_eq!(
        *authorizer.decide_memoized(&off, &f, 0),
        authorizer.decide(&off, &f)
    );
    assert!(off.memo.is_empty());
}
