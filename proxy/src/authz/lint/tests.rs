//! Tests of the policy lints, on small sets validated against the real schema.

use std::path::Path;

use super::*;
use crate::authz::testkit;

const ENTITIES: &str =
    r#"[{ "uid": { "type": "Edgeward::Group", "id": "ops" }, "attrs": {}, "parents": [] }]"#;

fn lints(policies: &str) -> Vec<(Severity, LintKind, String)> {
    lints_with(policies, None)
}

fn lints_with(policies: &str, config: Option<&Config>) -> Vec<(Severity, LintKind, String)> {
    let snapshot = testkit::snapshot(&[("p.cedar", policies)], Some(ENTITIES));
    lint(&snapshot, config)
        .into_iter()
        .map(|l| (l.severity, l.kind, l.policy.id))
        .collect()
}

const SCOPED: &str = r#"@id("ok")
permit (principal in Edgeward::Group::"ops", action in Edgeward::Action::"read", resource == Edgeward::Route::"api");"#;

#[test]
fn a_scoped_permit_has_no_findings() {
    assert_eq!(lints(SCOPED), vec![]);
}

#[test]
fn permit_without_principal_or_resource_in_scope_is_over_broad() {
    let found = lints(
        r#"@id("any-principal") permit (principal, action, resource == Edgeward::Route::"api");
@id("any-resource") permit (principal in Edgeward::Group::"ops", action, resource)
  when { resource.path == "/x" };
@id("forbid-any") forbid (principal, action, resource) when { context.site == "" };"#,
    );
    assert_eq!(
        found,
        vec![
            (
                Severity::Warning,
                LintKind::OverBroad,
                "any-principal".into()
            ),
            (
                Severity::Warning,
                LintKind::OverBroad,
                "any-resource".into()
            ),
        ]
    );
}

#[test]
fn lint_allow_annotation_silences_one_lint_on_one_policy() {
    let found = lints(
        r#"@id("a") @lint_allow("over-broad") permit (principal, action, resource == Edgeward::Route::"api");"#,
    );
    assert_eq!(found, vec![]);
}

#[test]
fn condition_the_typechecker_proves_false_never_applies() {
    let found = lints(&format!(
        "{SCOPED}\n@id(\"dead\") permit (principal in Edgeward::Group::\"ops\", action, resource == Edgeward::Route::\"api\") when {{ false }};"
    ));
    assert!(
        found.contains(&(Severity::Error, LintKind::NeverApplies, "dead".into())),
        "{found:?}"
    );
}

#[test]
fn principal_of_the_wrong_type_or_not_a_spiffe_id_never_applies() {
    let found = lints(
        r#"@id("wrong-type") permit (principal == Edgeward::Device::"spiffe://acme.example/site/b/service/api", action, resource == Edgeward::Route::"api");
@id("not-spiffe") permit (principal == Edgeward::Workload::"api", action, resource == Edgeward::Route::"api");"#,
    );
    assert_eq!(
        found,
        vec![
            (Severity::Error, LintKind::NeverApplies, "wrong-type".into()),
            (Severity::Error, LintKind::NeverApplies, "not-spiffe".into()),
        ]
    );
}

#[test]
fn group_missing_from_the_entities_file_is_a_warning() {
    let found = lints(
        r#"@id("ghosts") permit (principal in Edgeward::Group::"ghosts", action, resource == Edgeward::Route::"api");"#,
    );
    assert_eq!(
        found,
        vec![(Severity::Warning, LintKind::NeverApplies, "ghosts".into())]
    );
}

#[test]
fn permit_under_an_unconditional_forbid_never_applies() {
    let found = lints(&format!(
        "{SCOPED}\n@id(\"no-ops\") forbid (principal in Edgeward::Group::\"ops\", action, resource);"
    ));
    assert_eq!(
        found,
        vec![(Severity::Error, LintKind::NeverApplies, "ok".into())]
    );
}

#[test]
fn duplicates_and_covered_policies_are_redundant() {
    let found = lints(&format!(
        "{SCOPED}\n@id(\"copy\") permit (principal in Edgeward::Group::\"ops\", action in Edgeward::Action::\"read\", resource == Edgeward::Route::\"api\");\n\
         @id(\"narrower\") permit (principal in Edgeward::Group::\"ops\", action == Edgeward::Action::\"GET\", resource == Edgeward::Route::\"api\") when {{ context.site == \"b\" }};\n\
         @id(\"wider\") permit (principal in Edgeward::Group::\"ops\", action, resource == Edgeward::Route::\"api\");"
    ));
    assert_eq!(
        found,
        vec![
            (Severity::Warning, LintKind::Redundant, "ok".into()),
            (Severity::Warning, LintKind::Redundant, "copy".into()),
            (Severity::Warning, LintKind::Redundant, "copy".into()),
            (Severity::Warning, LintKind::Redundant, "narrower".into()),
        ]
    );
}

#[test]
fn identical_conditional_policies_are_redundant_once() {
    let policy = r#"permit (principal in Edgeward::Group::"ops", action, resource == Edgeward::Route::"api") when { context.site == "b" };"#;
    let found = lints(&format!(
        "@id(\"first\") {policy}\n@id(\"second\") {policy}"
    ));
    assert_eq!(
        found,
        vec![(Severity::Warning, LintKind::Redundant, "second".into())]
    );
}

#[test]
fn routes_and_services_missing_from_the_config_are_errors() {
    let config = Config::from_toml_str(
        "[node]\nid = \"n\"\nsite = \"b\"\nzone = \"z\"\nregion = \"r\"\n\
         [authz]\npolicies = \"p\"\nschema = \"s\"\n\
         [[routes]]\nname = \"api\"\npath_prefix = \"/\"\ncluster = \"api\"\n\
         [[clusters]]\nname = \"api\"\n[[clusters.endpoints]]\naddress = \"127.0.0.1:1\"\n\
         site = \"b\"\nzone = \"z\"\nregion = \"r\"\n",
        Path::new("proxy.toml"),
    )
    .expect("config");
    let policies = format!(
        "{SCOPED}\n@id(\"svc\") permit (principal in Edgeward::Group::\"ops\", action, resource in Edgeward::Service::\"billing\");\n\
         @id(\"cond\") permit (principal in Edgeward::Group::\"ops\", action, resource in Edgeward::Service::\"api\") when {{ resource != Edgeward::Route::\"gone\" }};"
    );
    let found = lints_with(&policies, Some(&config));
    assert_eq!(
        found,
        vec![
            (Severity::Error, LintKind::UnknownReference, "svc".into()),
            (Severity::Error, LintKind::UnknownReference, "cond".into()),
        ]
    );
    assert_eq!(lints(&policies), vec![]);
}

#[test]
fn starter_policies_have_no_errors() {
    let found = lint(&testkit::starter(), None);
    let errors: Vec<String> = found
        .iter()
        .filter(|l| l.severity == Severity::Error)
        .map(ToString::to_string)
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn findings_print_in_the_cedar_tools_style() {
    let snapshot = testkit::snapshot(
        &[(
            "p.cedar",
            "\n@id(\"a\") permit (principal, action, resource == Edgeward::Route::\"api\");",
        )],
        None,
    );
    let text = lint(&snapshot, None)[0].to_string();
    assert!(text.ends_with("p.cedar:2:1: warning: [over-broad] policy `a` permits any principal in its scope; constrain the principal (`principal in ...`, `principal == ...`) rather than only in conditions"), "{text}");
}
