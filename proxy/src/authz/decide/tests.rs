//! Decisions: default deny, forbid wins, errors deny, and the index changes nothing.

use super::*;
use crate::authz::testkit::{self, facts};

const CAM: &str = "spiffe://acme.example/site/berlin/device/cam-7";
const API: &str = "spiffe://acme.example/site/berlin/service/api";

fn decide(snapshot: &PolicySnapshot, facts: &RequestFacts) -> Decision {
    Authorizer::new().decide(snapshot, facts)
}

fn ids(decision: &Decision) -> Vec<&str> {
    decision.reasons.iter().map(|r| r.id.as_str()).collect()
}

const DEVICE_READ: &str = r#"@id("device-read")
permit (principal is Edgeward::Device, action in Edgeward::Action::"read", resource);
"#;

#[test]
fn permit_allows_with_its_id_file_and_line() {
    let snapshot = testkit::snapshot(&[("read.cedar", DEVICE_READ)], None);
    let decision = decide(&snapshot, &facts(Some(CAM), "GET", "/"));
    assert!(decision.allowed, "{decision:?}");
    assert_eq!(ids(&decision), ["device-read"]);
    assert!(decision.reasons[0].file.ends_with("read.cedar"));
    assert_eq!(decision.reasons[0].line, 1);
    assert!(decision.errors.is_empty());
}

#[test]
fn no_matching_permit_denies_by_default() {
    let snapshot = testkit::snapshot(&[("read.cedar", DEVICE_READ)], None);
    for (identity, method) in [(Some(CAM), "POST"), (Some(API), "GET"), (None, "GET")] {
        let decision = decide(&snapshot, &facts(identity, method, "/"));
        assert!(!decision.allowed, "{identity:?} {method}");
        assert!(decision.reasons.is_empty() && decision.errors.is_empty());
    }
}

#[test]
fn forbid_beats_permit() {
    let forbid = r#"@id("no-admin") forbid (principal, action, resource) when { resource.path like "/admin*" };"#;
    let snapshot = testkit::snapshot(&[("read.cedar", DEVICE_READ), ("z.cedar", forbid)], None);
    let decision = decide(&snapshot, &facts(Some(CAM), "GET", "/admin/x"));
    assert!(!decision.allowed);
    assert_eq!(ids(&decision), ["no-admin"]);
    assert!(decide(&snapshot, &facts(Some(CAM), "GET", "/data")).allowed);
}

/// `context.time.unix` times 10^13 overflows a Cedar Long at run time; strict validation
/// cannot see that, so the policy loads and errors on every request.
const OVERFLOW: &str = "context.time.unix * 10000000000000 > 0";

#[test]
fn an_erroring_permit_denies_even_when_another_permit_matches() {
    let erroring =
        format!("@id(\"overflow\") permit (principal, action, resource) when {{ {OVERFLOW} }};");
    let snapshot = testkit::snapshot(&[("read.cedar", DEVICE_READ), ("e.cedar", &erroring)], None);
    let request = facts(Some(CAM), "GET", "/");
    let decision = decide(&snapshot, &request);
    assert!(!decision.allowed, "{decision:?}");
    assert_eq!(ids(&decision), ["overflow"]);
    assert_eq!(decision.errors.len(), 1);
    assert!(
        decision.errors[0].contains("overflow"),
        "{:?}",
        decision.errors
    );

    // Cedar alone would have allowed: the erroring policy is skipped.
    let (req, entities) = build_request(&snapshot, &request).expect("builds");
    let plain = cedar_policy::Authorizer::new().is_authorized(&req, snapshot.policies(), &entities);
    assert_eq!(plain.decision(), CedarDecision::Allow);
}

#[test]
fn an_erroring_forbid_denies() {
    let erroring =
        format!("@id(\"bad-forbid\") forbid (principal, action, resource) when {{ {OVERFLOW} }};");
    let snapshot = testkit::snapshot(&[("read.cedar", DEVICE_READ), ("e.cedar", &erroring)], None);
    let decision = decide(&snapshot, &facts(Some(CAM), "GET", "/"));
    assert!(!decision.allowed);
    assert_eq!(ids(&decision), ["bad-forbid"]);
}

#[test]
fn no_policies_denies_everything() {
    let snapshot = testkit::snapshot(&[], None);
    for identity in [Some(CAM), Some(API), None] {
        assert!(!decide(&snapshot, &facts(identity, "GET", "/")).allowed);
    }
}

#[test]
fn unknown_method_denies_without_evaluation() {
    let snapshot = testkit::snapshot(
        &[("all.cedar", "permit (principal, action, resource);")],
        None,
    );
    assert!(decide(&snapshot, &facts(Some(CAM), "GET", "/")).allowed);
    for method in ["BREW", "get", "CONNECT", "TRACE"] {
        let decision = decide(&snapshot, &facts(Some(CAM), method, "/"));
        assert!(!decision.allowed, "{method}");
        assert!(
            decision.errors[0].contains(&format!("method `{method}`")),
            "{decision:?}"
        );
    }
}

#[test]
fn group_membership_comes_from_the_entities_file() {
    let entities = format!(
        r#"[{{"uid":{{"type":"Edgeward::Group","id":"ops"}},"attrs":{{}},"parents":[{{"type":"Edgeward::Group","id":"staff"}}]}},
            {{"uid":{{"type":"Edgeward::Group","id":"staff"}},"attrs":{{}},"parents":[]}},
            {{"uid":{{"type":"Edgeward::Workload","id":"{API}"}},"attrs":{{"labels":["prod"]}},
              "parents":[{{"type":"Edgeward::Group","id":"ops"}}]}}]"#
    );
    let policy = r#"permit (principal in Edgeward::Group::"staff", action, resource)
        when { principal has labels && principal.labels.contains("prod") && principal.site == "berlin" };"#;
    let snapshot = testkit::snapshot(&[("staff.cedar", policy)], Some(&entities));
    assert!(decide(&snapshot, &facts(Some(API), "DELETE", "/")).allowed);
    let other = "spiffe://acme.example/site/berlin/service/web";
    assert!(!decide(&snapshot, &facts(Some(other), "DELETE", "/")).allowed);
}

#[test]
fn anonymous_principal_is_its_own_type() {
    let policy = r#"permit (principal is Edgeward::Anonymous, action == Edgeward::Action::"GET", resource == Edgeward::Route::"public");"#;
    let snapshot = testkit::snapshot(&[("public.cedar", policy)], None);
    let mut request = facts(None, "GET", "/");
    request.route = "public".into();
    assert!(decide(&snapshot, &request).allowed);
    request.identity = Some(CAM.parse().expect("id"));
    assert!(!decide(&snapshot, &request).allowed);
}

#[test]
fn devices_and_workloads_are_told_apart() {
    let snapshot = testkit::snapshot(
        &[(
            "w.cedar",
            "permit (principal is Edgeward::Workload, action, resource);",
        )],
        None,
    );
    assert!(decide(&snapshot, &facts(Some(API), "GET", "/")).allowed);
    assert!(!decide(&snapshot, &facts(Some(CAM), "GET", "/")).allowed);
}

/// A small deterministic generator, so a failure reproduces.
struct Lcg(u64);

impl Lcg {
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        items[((self.0 >> 33) % items.len() as u64) as usize]
    }
}

#[test]
fn indexed_decision_equals_unindexed_on_generated_sets() {
    let effects = ["permit", "permit", "forbid"];
    let principals = [
        "principal",
        "principal is Edgeward::Device",
        "principal is Edgeward::Workload",
        "principal is Edgeward::Anonymous",
        r#"principal == Edgeward::Device::"spiffe://acme.example/site/berlin/device/cam-7""#,
        r#"principal == Edgeward::Anonymous::"anonymous""#,
        r#"principal in Edgeward::Group::"operators""#,
        r#"principal in Edgeward::Group::"staff""#,
        r#"principal is Edgeward::Workload in Edgeward::Group::"staff""#,
        r#"principal is Edgeward::Device in Edgeward::Group::"operators""#,
    ];
    // The workload is an operator, and operators are staff (a group in a group).
    let entities = format!(
        r#"[{{ "uid": {{ "type": "Edgeward::Group", "id": "staff" }}, "attrs": {{}}, "parents": [] }},
           {{ "uid": {{ "type": "Edgeward::Group", "id": "operators" }}, "attrs": {{}},
              "parents": [{{ "type": "Edgeward::Group", "id": "staff" }}] }},
           {{ "uid": {{ "type": "Edgeward::Workload", "id": "{API}" }}, "attrs": {{}},
              "parents": [{{ "type": "Edgeward::Group", "id": "operators" }}] }}]"#
    );
    let actions = [
        "action",
        r#"action == Edgeward::Action::"GET""#,
        r#"action == Edgeward::Action::"POST""#,
        r#"action in Edgeward::Action::"read""#,
        r#"action in [Edgeward::Action::"write", Edgeward::Action::"HEAD"]"#,
        r#"action in Edgeward::Action::"DELETE""#,
    ];
    let resources = [
        "resource",
        r#"resource == Edgeward::Route::"r0""#,
        r#"resource == Edgeward::Route::"r1""#,
        r#"resource in Edgeward::Route::"r2""#,
        r#"resource in Edgeward::Service::"s0""#,
        r#"resource is Edgeward::Route in Edgeward::Service::"s1""#,
        "resource is Edgeward::Route",
    ];
    let conditions = [
        "true",
        "true",
        "context.tls.mtls",
        r#"resource.path like "/admin*""#,
        r#"context.peer_ip.isInRange(ip("10.0.0.0/8"))"#,
        "context.time.hour < 12",
        OVERFLOW,
    ];
    let identities = [Some(CAM), Some(API), None];
    let methods = ["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"];
    let routes = ["r0", "r1", "r2", "r3"];
    let services = ["s0", "s1", "s2"];
    let paths = ["/", "/admin/x"];
    let ips = ["10.1.2.3", "192.168.0.1"];

    let authorizer = Authorizer::new();
    let mut rng = Lcg(7);
    let (mut allowed, mut compared) = (0, 0);
    for _set in 0..12 {
        let mut text = String::new();
        for _ in 0..30 {
            // Erroring conditions are kept rare so that allows and forbids stay common.
            let mut condition = rng.pick(&conditions);
            if condition == OVERFLOW && rng.pick(&[0, 1, 2, 3]) != 0 {
                condition = "true";
            }
            text.push_str(&format!(
                "{} ({}, {}, {}) when {{ {} }};\n",
                rng.pick(&effects),
                rng.pick(&principals),
                rng.pick(&actions),
                rng.pick(&resources),
                condition
            ));
        }
        let snapshot = testkit::snapshot(&[("gen.cedar", &text)], Some(&entities));
        for _ in 0..60 {
            let mut request = facts(rng.pick(&identities), rng.pick(&methods), rng.pick(&paths));
            request.route = rng.pick(&routes).to_string();
            request.service = rng.pick(&services).to_string();
            request.peer_ip = rng.pick(&ips).parse().expect("ip");
            let indexed = authorizer.decide(&snapshot, &request);
            let (req, entities) = build_request(&snapshot, &request).expect("builds");
            let full = authorizer.decide_unindexed(&snapshot, &req, &entities);
            assert_eq!(indexed, full, "policies:\n{text}\nrequest: {request:?}");
            allowed += usize::from(indexed.allowed);
            compared += 1;
        }
    }
    // The generator must exercise both outcomes for the comparison to mean anything.
    assert!(
        allowed > compared / 10 && allowed < compared * 9 / 10,
        "{allowed}/{compared}"
    );
}
