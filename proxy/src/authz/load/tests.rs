//! Loading: what is refused, with which file and line, and that nothing is half-loaded.

use cedar_policy::PolicyId;

use super::*;
use crate::authz::testkit::{self, try_load};

const DEVICE_READ: &str = r#"@id("device-read")
permit (principal is Edgeward::Device, action in Edgeward::Action::"read", resource);
"#;

fn problems(files: &[(&str, &str)], entities: Option<&str>) -> Vec<LoadProblem> {
    match try_load(files, entities).1 {
        Ok(_) => panic!("the set should be refused"),
        Err(e) => e.problems,
    }
}

fn file_name(problem: &LoadProblem) -> String {
    problem
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[test]
fn ids_come_from_annotation_or_file_stem_and_index() {
    let text = format!(
        "{DEVICE_READ}\n// next\npermit (principal, action, resource == Edgeward::Route::\"x\");\n"
    );
    let snapshot = testkit::snapshot(&[("a.cedar", &text)], None);
    assert_eq!(snapshot.policy_count(), 2);
    let named = snapshot
        .policy_ref(&PolicyId::new("device-read"))
        .expect("annotated id");
    assert_eq!(named.line, 1);
    let unnamed = snapshot.policy_ref(&PolicyId::new("a:1")).expect("stem id");
    assert_eq!(unnamed.line, 5);
    assert!(unnamed.file.ends_with("a.cedar"));
}

#[test]
fn syntax_error_is_refused_with_file_and_line() {
    let bad = format!("{DEVICE_READ}\npermit (principal, action, resource) when {{ 1 + }};\n");
    let found = problems(&[("a.cedar", DEVICE_READ), ("bad.cedar", &bad)], None);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(file_name(&found[0]), "bad.cedar");
    assert_eq!(found[0].line, Some(4));
    assert!(
        found[0].to_string().contains("bad.cedar:4:"),
        "{}",
        found[0]
    );
}

#[test]
fn schema_violation_is_refused_with_file_and_line() {
    let text = "permit (principal is Edgeward::Device, action, resource)\nwhen { principal.serial == \"x\" };\n";
    let found = problems(&[("typo.cedar", text)], None);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(file_name(&found[0]), "typo.cedar");
    assert_eq!(found[0].line, Some(2));
    assert!(found[0].message.contains("serial"), "{}", found[0].message);
}

#[test]
fn a_mistake_checked_once_per_action_is_reported_once() {
    // Strict validation checks the policy for every action it can apply to; a typo in the
    // context is found once per action, at the same place.
    let text = "permit (principal, action, resource)\nwhen { context.sitee == \"x\" };\n";
    let found = problems(&[("typo.cedar", text)], None);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].line, Some(2));
    // The one problem names every action, in a fixed order.
    assert!(
        found[0].message.contains("\"DELETE\", \"GET\", \"HEAD\""),
        "{}",
        found[0].message
    );
}

#[test]
fn unknown_entity_type_in_a_policy_is_refused() {
    let text = "permit (principal == Edgeward::Robot::\"r\", action, resource);\n";
    let found = problems(&[("robot.cedar", text)], None);
    assert!(
        found.iter().any(|p| p.message.contains("Robot")),
        "{found:?}"
    );
}

#[test]
fn duplicate_id_across_files_is_refused() {
    let found = problems(&[("a.cedar", DEVICE_READ), ("b.cedar", DEVICE_READ)], None);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(file_name(&found[0]), "b.cedar");
    assert!(found[0]
        .message
        .contains("duplicate policy id `device-read`"));
    assert!(
        found[0].message.contains("a.cedar:1"),
        "{}",
        found[0].message
    );
}

#[test]
fn every_error_is_reported_at_once() {
    let found = problems(
        &[
            ("a.cedar", "permit (principal, action, resource"),
            ("b.cedar", "forbid ;"),
        ],
        None,
    );
    let files: Vec<String> = found.iter().map(file_name).collect();
    assert!(files.contains(&"a.cedar".to_owned()) && files.contains(&"b.cedar".to_owned()));
}

#[test]
fn templates_are_refused() {
    let found = problems(
        &[(
            "t.cedar",
            "permit (principal == ?principal, action, resource);",
        )],
        None,
    );
    assert!(found[0].message.contains("templates"), "{found:?}");
}

#[test]
fn empty_folder_loads_with_no_policies() {
    let snapshot = testkit::snapshot(&[], None);
    assert_eq!(snapshot.policy_count(), 0);
}

#[test]
fn non_cedar_files_are_ignored() {
    let snapshot = testkit::snapshot(
        &[("README.md", "not a policy"), ("a.cedar", DEVICE_READ)],
        None,
    );
    assert_eq!(snapshot.policy_count(), 1);
}

#[test]
fn entities_with_unknown_type_are_refused() {
    let entities = r#"[{"uid":{"type":"Edgeward::Robot","id":"r"},"attrs":{},"parents":[]}]"#;
    let found = problems(&[("a.cedar", DEVICE_READ)], Some(entities));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(file_name(&found[0]), "entities.json");
    assert!(found[0].message.contains("Robot"), "{}", found[0]);
}

#[test]
fn entities_may_not_override_derived_attributes() {
    let entities = r#"[
  {"uid":{"type":"Edgeward::Workload","id":"spiffe://acme.example/site/berlin/service/api"},
   "attrs":{"site":"munich"},"parents":[]}
]"#;
    let found = problems(&[], Some(entities));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].message.contains("`site`"), "{}", found[0]);
    assert_eq!(found[0].line, Some(2));
}

#[test]
fn entities_must_use_the_type_the_identity_maps_to() {
    let entities = r#"[{"uid":{"type":"Edgeward::Workload","id":"spiffe://acme.example/site/berlin/device/cam-7"},"attrs":{},"parents":[]}]"#;
    let found = problems(&[], Some(entities));
    assert!(found[0].message.contains("Edgeward::Device"), "{found:?}");
    let bad_id = r#"[{"uid":{"type":"Edgeward::Device","id":"cam-7"},"attrs":{},"parents":[]}]"#;
    let found = problems(&[], Some(bad_id));
    assert!(
        found[0].message.contains("not a valid SPIFFE ID"),
        "{found:?}"
    );
}

#[test]
fn entities_with_a_group_of_unknown_type_are_refused() {
    let entities = r#"[{"uid":{"type":"Edgeward::Workload","id":"spiffe://acme.example/a"},"attrs":{},
      "parents":[{"type":"Edgeward::Team","id":"ops"}]}]"#;
    assert!(!problems(&[], Some(entities)).is_empty());
}

#[test]
fn invalid_json_is_refused_with_line() {
    let found = problems(&[], Some("[\n  {\"uid\": }\n]"));
    assert_eq!(found[0].line, Some(2), "{found:?}");
}

#[test]
fn missing_schema_is_refused() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let result = PolicySnapshot::load(tmp.path(), &tmp.path().join("nope.cedarschema"), None);
    let found = result.err().map(|e| e.problems).unwrap_or_default();
    assert!(
        found[0].message.contains("cannot read the schema"),
        "{found:?}"
    );
}

#[test]
fn reload_keeps_the_last_good_set_on_error() {
    let (tmp, first) = try_load(&[("a.cedar", DEVICE_READ)], None);
    let store = PolicyStore::new(first.expect("loads"));
    let dir = tmp.path().join("policies");
    std::fs::write(dir.join("b.cedar"), "permit (").expect("write");
    let schema = tmp.path().join("schema.cedarschema");
    assert!(store.reload(&dir, &schema, None).is_err());
    assert_eq!(store.current().policy_count(), 1);
    std::fs::write(dir.join("b.cedar"), "forbid (principal, action, resource);").expect("write");
    assert!(store.reload(&dir, &schema, None).is_ok());
    assert_eq!(store.current().policy_count(), 2);
}

#[test]
fn starter_policies_load() {
    let snapshot = testkit::starter();
    assert_eq!(snapshot.policy_count(), 6);
    assert!(snapshot
        .policy_ref(&PolicyId::new("baseline-no-device-admin"))
        .is_some());
}

#[test]
fn line_col_counts_from_one() {
    assert_eq!(line_col("ab\ncd", 0), (1, 1));
    assert_eq!(line_col("ab\ncd", 4), (2, 2));
    assert_eq!(line_col("ab", 99), (1, 3));
}
