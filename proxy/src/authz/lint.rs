//! Lints for a loaded policy set, for `edgeward policy validate`: what strict validation
//! accepts but a reviewer would question.
//!
//! Each lint is a cheap, sound check on the policies' scopes and JSON form; none evaluates a
//! policy. A lint is silenced for one policy with the annotation
//! `@lint_allow("over-broad, redundant")` (the names of [`LintKind`]).
//!
//! - **over-broad** (warning): a permit without a principal or without a resource constraint
//!   in its scope; conditions may still narrow it, which a reader has to check by hand.
//! - **never-applies** (error): a policy Cedar's typechecker proves always false; a principal
//!   that is no valid SPIFFE ID, or that the proxy would map to the other entity type; a permit
//!   whose whole scope an unconditional forbid covers. A group without an entry in the entities
//!   file is a warning: entities ship separately and the group may gain members.
//! - **redundant** (warning): a policy that equals another (annotations aside), or whose scope
//!   an unconditional policy of the same effect covers.
//! - **unknown-reference** (error, only with a config): a `Route` or `Service` the config does
//!   not have; such a policy never matches a request on that node.
//! - **suspicious** (warning): Cedar's other validator warnings (mixed scripts, bidi text).

use std::collections::BTreeSet;
use std::fmt;

use cedar_policy::{Policy, ValidationMode, ValidationWarning, Validator};
use edgeward_certs::SpiffeId;
use serde_json::Value;

use super::load::PolicySnapshot;
use super::principal::DerivedPrincipal;
use super::WORKLOAD_TYPE;
use super::{entity_uid, PolicyRef, DEVICE_TYPE, GROUP_TYPE, ROUTE_TYPE, SERVICE_TYPE};
use crate::config::Config;

/// How bad a finding is: errors fail `validate`, warnings only with `--deny-warnings`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Worth a look; the set works as written.
    Warning,
    /// The set does not do what it says.
    Error,
}

/// The lints, by the name used in `@lint_allow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LintKind {
    /// `over-broad`.
    OverBroad,
    /// `never-applies`.
    NeverApplies,
    /// `redundant`.
    Redundant,
    /// `unknown-reference`.
    UnknownReference,
    /// `suspicious`.
    Suspicious,
}

impl LintKind {
    /// The name shown in findings and accepted by `@lint_allow`.
    pub fn name(self) -> &'static str {
        match self {
            LintKind::OverBroad => "over-broad",
            LintKind::NeverApplies => "never-applies",
            LintKind::Redundant => "redundant",
            LintKind::UnknownReference => "unknown-reference",
            LintKind::Suspicious => "suspicious",
        }
    }
}

/// One finding, on one policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lint {
    /// Error or warning.
    pub severity: Severity,
    /// Which lint.
    pub kind: LintKind,
    /// The policy at fault.
    pub policy: PolicyRef,
    /// What is wrong, lowercase, user input in backticks.
    pub message: String,
}

impl fmt::Display for Lint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(
            f,
            "{}:{}:1: {level}: [{}] policy `{}` {}",
            self.policy.file.display(),
            self.policy.line,
            self.kind.name(),
            self.policy.id,
            self.message
        )
    }
}

/// A policy with what the lints compare: its JSON form without annotations.
struct Entry<'s> {
    policy: &'s Policy,
    reference: PolicyRef,
    json: Value,
}

impl Entry<'_> {
    fn scope(&self, part: &str) -> &Value {
        &self.json[part]
    }

    fn unconditional(&self) -> bool {
        self.json["conditions"]
            .as_array()
            .is_none_or(|c| c.is_empty())
    }

    /// True when every request in `other`'s scope is in this one's.
    fn scope_covers(&self, other: &Entry<'_>) -> bool {
        ["principal", "action", "resource"]
            .iter()
            .all(|part| self.scope(part)["op"] == "All" || self.scope(part) == other.scope(part))
    }

    fn allowed(&self) -> BTreeSet<&str> {
        self.policy
            .annotation("lint_allow")
            .map(|a| a.split(',').map(str::trim).collect())
            .unwrap_or_default()
    }
}

/// Lints every policy of `snapshot`; with `config`, also checks routes and services against
/// it. Findings come sorted by file, line and lint.
pub fn lint(snapshot: &PolicySnapshot, config: Option<&Config>) -> Vec<Lint> {
    let mut entries: Vec<Entry<'_>> = Vec::new();
    for policy in snapshot.policies.policies() {
        let Some(reference) = snapshot.policy_ref(policy.id()).cloned() else {
            continue;
        };
        let mut json = policy.to_json().unwrap_or(Value::Null);
        if let Some(map) = json.as_object_mut() {
            map.remove("annotations");
        }
        entries.push(Entry {
            policy,
            reference,
            json,
        });
    }
    entries.sort_by(|a, b| {
        (&a.reference.file, a.reference.line).cmp(&(&b.reference.file, b.reference.line))
    });

    let mut found = Vec::new();
    let mut push = |entry: &Entry<'_>, severity, kind: LintKind, message: String| {
        if !entry.allowed().contains(kind.name()) {
            found.push(Lint {
                severity,
                kind,
                policy: entry.reference.clone(),
                message,
            });
        }
    };

    // Cedar's own warnings, from the same strict validation the loader ran.
    let result = Validator::new(snapshot.schema.clone())
        .validate(&snapshot.policies, ValidationMode::Strict);
    for warning in result.validation_warnings() {
        let Some(entry) = entries
            .iter()
            .find(|e| e.policy.id() == warning.policy_id())
        else {
            continue;
        };
        let (severity, kind) = match warning {
            ValidationWarning::ImpossiblePolicy(_) => (Severity::Error, LintKind::NeverApplies),
            _ => (Severity::Warning, LintKind::Suspicious),
        };
        push(entry, severity, kind, format!("{warning}"));
    }

    for (i, entry) in entries.iter().enumerate() {
        let permit = entry.json["effect"] == "permit";

        // Over-broad: a permit must say whom and what in its scope.
        if permit {
            for part in ["principal", "resource"] {
                if entry.scope(part)["op"] == "All" {
                    push(
                        entry,
                        Severity::Warning,
                        LintKind::OverBroad,
                        format!("permits any {part} in its scope; constrain the {part} (`{part} in ...`, `{part} == ...`) rather than only in conditions"),
                    );
                }
            }
        }

        // Never applies: principals the proxy can never present, groups no one is in.
        for (ty, id) in entity_refs(&entry.json) {
            if let Some(message) = principal_problem(&ty, &id) {
                push(entry, Severity::Error, LintKind::NeverApplies, message);
            }
            if ty == GROUP_TYPE
                && snapshot
                    .entities
                    .get(&entity_uid(GROUP_TYPE, &id))
                    .is_none()
            {
                push(
                    entry,
                    Severity::Warning,
                    LintKind::NeverApplies,
                    format!("names group `{id}`, which has no entry in the entities file, so no one is in it"),
                );
            }
        }

        // Shadowed or redundant, against every other policy.
        for (j, other) in entries.iter().enumerate() {
            if i == j || !other.unconditional() || !other.scope_covers(entry) {
                continue;
            }
            let same_effect = other.json["effect"] == entry.json["effect"];
            let at = format!(
                "`{}` ({}:{})",
                other.reference.id,
                other.reference.file.display(),
                other.reference.line
            );
            if permit && !same_effect {
                push(
                    entry,
                    Severity::Error,
                    LintKind::NeverApplies,
                    format!(
                        "can never allow: the unconditional forbid {at} covers its whole scope"
                    ),
                );
            } else if same_effect && (entry.json != other.json || j < i) {
                push(
                    entry,
                    Severity::Warning,
                    LintKind::Redundant,
                    format!("is redundant: {at} has the same effect, no conditions, and covers its scope"),
                );
            }
        }
        for other in &entries[..i] {
            if other.json == entry.json && !other.unconditional() {
                push(
                    entry,
                    Severity::Warning,
                    LintKind::Redundant,
                    format!(
                        "is redundant: it is the same as `{}` ({}:{})",
                        other.reference.id,
                        other.reference.file.display(),
                        other.reference.line
                    ),
                );
            }
        }

        // Unknown references, against the config the set will run with.
        if let Some(config) = config {
            for (ty, id) in entity_refs(&entry.json) {
                if let Some(message) = reference_problem(config, &ty, &id) {
                    push(entry, Severity::Error, LintKind::UnknownReference, message);
                }
            }
        }
    }
    found
}

/// Every `(type, id)` entity reference in a policy's JSON form, scope and conditions.
fn entity_refs(json: &Value) -> BTreeSet<(String, String)> {
    fn walk(value: &Value, out: &mut BTreeSet<(String, String)>) {
        match value {
            Value::Object(map) => {
                if let (Some(Value::String(ty)), Some(Value::String(id))) =
                    (map.get("type"), map.get("id"))
                {
                    out.insert((ty.clone(), id.clone()));
                }
                map.values().for_each(|v| walk(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    walk(json, &mut out);
    out
}

/// Why a `Device` or `Workload` uid can never be the principal of a request.
fn principal_problem(ty: &str, id: &str) -> Option<String> {
    if ty != DEVICE_TYPE && ty != WORKLOAD_TYPE {
        return None;
    }
    let spiffe = match SpiffeId::parse(id) {
        Ok(spiffe) => spiffe,
        Err(e) => {
            return Some(format!(
                "names `{ty}::\"{id}\"`, which is not a valid SPIFFE ID: it {e}"
            ))
        }
    };
    let mapped = DerivedPrincipal::from_spiffe(&spiffe).kind.type_name();
    (mapped != ty)
        .then(|| format!("names `{ty}::\"{id}\"`, but the proxy maps that SPIFFE ID to `{mapped}`"))
}

/// Why a `Route` or `Service` uid is not served by `config`.
fn reference_problem(config: &Config, ty: &str, id: &str) -> Option<String> {
    let (kind, known): (&str, BTreeSet<&str>) = if ty == ROUTE_TYPE {
        (
            "route",
            config.routes.iter().map(|r| r.name.as_str()).collect(),
        )
    } else if ty == SERVICE_TYPE {
        (
            "service",
            config.routes.iter().map(|r| r.service.as_str()).collect(),
        )
    } else {
        return None;
    };
    (!known.contains(id)).then(|| {
        let list: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
        format!(
            "names {kind} `{id}`, which {} does not have (it has {})",
            config.source.display(),
            if list.is_empty() {
                "none".to_owned()
            } else {
                list.join(", ")
            }
        )
    })
}

#[cfg(test)]
mod tests;
