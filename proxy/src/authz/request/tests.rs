//! Request building: every context field reaches the policies as the schema says.

use super::*;
use crate::authz::testkit::{self, facts};
use crate::authz::Authorizer;

const CAM: &str = "spiffe://acme.example/site/berlin/device/cam-7";

#[test]
fn every_fact_reaches_the_policies() {
    let policy = r#"permit (principal is Edgeward::Device, action == Edgeward::Action::"PUT", resource in Edgeward::Service::"api")
when {
  principal.trust_domain == "acme.example" && principal.path == "/site/berlin/device/cam-7" &&
  principal.site == "berlin" && principal.name == "cam-7" &&
  resource.host == "api.acme.example" && resource.path == "/v1/x" &&
  context.site == "berlin" && context.zone == "berlin-a" && context.region == "eu-central" &&
  context.peer_ip == ip("10.49.0.5") &&
  context.tls == { version: "TLSv1.3", mtls: true, alpn: "h2" } &&
  context.time == { unix: 1718000000, hour: 6, weekday: 1 } &&
  context.headers.contains({ name: "x-tenant", value: "blue" })
};"#;
    let snapshot = testkit::snapshot(&[("all.cedar", policy)], None);
    let mut request = facts(Some(CAM), "PUT", "/v1/x");
    request.headers = vec![("X-Tenant".into(), "blue".into())];
    let decision = Authorizer::new().decide(&snapshot, &request);
    assert!(decision.allowed, "{decision:?}");
    request.headers.clear();
    assert!(!Authorizer::new().decide(&snapshot, &request).allowed);
}

#[test]
fn ipv4_mapped_peers_are_seen_as_ipv4() {
    let policy = r#"permit (principal, action, resource) when { context.peer_ip.isInRange(ip("10.49.0.0/16")) };"#;
    let snapshot = testkit::snapshot(&[("net.cedar", policy)], None);
    let mut request = facts(Some(CAM), "GET", "/");
    request.peer_ip = "::ffff:10.49.1.1".parse().expect("ip");
    assert!(Authorizer::new().decide(&snapshot, &request).allowed);
}

#[test]
fn plaintext_and_anonymous_requests_build() {
    let snapshot = testkit::snapshot(&[], None);
    let mut request = facts(None, "GET", "/");
    request.tls = TlsFacts::default();
    let (built, _) = build_request(&snapshot, &request).expect("builds");
    assert_eq!(
        built.principal().map(ToString::to_string).as_deref(),
        Some("Edgeward::Anonymous::\"anonymous\"")
    );
}

#[test]
fn unknown_method_is_an_error() {
    let snapshot = testkit::snapshot(&[], None);
    let err = build_request(&snapshot, &facts(Some(CAM), "PROPFIND", "/")).err();
    assert_eq!(err, Some(AuthzError::UnknownMethod("PROPFIND".into())));
}

#[test]
fn time_out_of_range_is_an_error() {
    let snapshot = testkit::snapshot(&[], None);
    let mut request = facts(Some(CAM), "GET", "/");
    request.now_unix = i64::MAX;
    assert_eq!(
        build_request(&snapshot, &request).err(),
        Some(AuthzError::TimeOutOfRange(i64::MAX))
    );
}

#[test]
fn select_headers_keeps_listed_names_lowercase_and_cuts_values() {
    let listed = vec!["x-tenant".to_owned(), "User-Agent".to_owned()];
    let long = "é".repeat(200);
    let picked = select_headers(
        &listed,
        [
            ("X-Tenant", "blue"),
            ("Authorization", "secret"),
            ("user-agent", long.as_str()),
        ],
    );
    assert_eq!(picked.len(), 2);
    assert_eq!(picked[0], ("x-tenant".to_owned(), "blue".to_owned()));
    assert_eq!(picked[1].0, "user-agent");
    assert_eq!(picked[1].1.len(), MAX_HEADER_VALUE);
    assert!(truncate(&"a".repeat(300)).len() == MAX_HEADER_VALUE);
    assert_eq!(truncate(&"é".repeat(200)).len(), 256);
    assert_eq!(truncate(&format!("a{}", "é".repeat(200))).len(), 255);
}

#[test]
fn conformance_is_checked_once_per_principal_type_and_action_and_a_refusal_is_kept() {
    let snapshot = testkit::snapshot(&[], None);
    build_request(&snapshot, &facts(Some(CAM), "GET", "/")).expect("builds");
    build_request(&snapshot, &facts(Some(CAM), "GET", "/x")).expect("builds");
    build_request(&snapshot, &facts(None, "GET", "/")).expect("builds");
    {
        let memo = snapshot.conforms.lock().unwrap();
        assert_eq!(memo.len(), 2, "{memo:?}");
        assert!(memo.values().all(|r| r.is_ok()));
    }
    // A pair the schema refused stays refused (denied), without validating again.
    snapshot.conforms.lock().unwrap().insert(
        ("Edgeward::Device".into(), "POST".into()),
        Err("not for devices".into()),
    );
    let err = build_request(&snapshot, &facts(Some(CAM), "POST", "/")).err();
    assert_eq!(err, Some(AuthzError::Schema("not for devices".into())));
}

#[test]
fn a_kept_context_is_never_used_for_other_facts() {
    let snapshot = testkit::snapshot(&[], None);
    let base = facts(Some(CAM), "GET", "/");
    let changes: [fn(&mut RequestFacts); 9] = [
        |f| f.node.site = "hamburg".into(),
        |f| f.node.zone = "hamburg-a".into(),
        |f| f.node.region = "eu-north".into(),
        |f| f.peer_ip = "10.49.0.9".parse().expect("ip"),
        |f| f.tls.version = "TLSv1.2".into(),
        |f| f.tls.mtls = !f.tls.mtls,
        |f| f.tls.alpn = "http/1.1".into(),
        |f| f.now_unix += 1,
        |f| f.headers.push(("x-tenant".into(), "red".into())),
    ];
    for (i, change) in changes.into_iter().enumerate() {
        let (first, _) = build_request(&snapshot, &base).expect("builds");
        assert_eq!(
            first.context(),
            Some(&build_context(&base).expect("context"))
        );
        let mut changed = base.clone();
        change(&mut changed);
        let (second, _) = build_request(&snapshot, &changed).expect("builds");
        let fresh = build_context(&changed).expect("context");
        assert_eq!(second.context(), Some(&fresh), "change {i}");
        assert_ne!(first.context(), second.context(), "change {i}");
    }
}
