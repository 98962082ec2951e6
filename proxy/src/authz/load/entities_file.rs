//! The entities file: groups and memberships in Cedar's JSON entities format.
//!
//! Device and workload entries are checked against their SPIFFE ID before Cedar validates the
//! file: the id must be a valid SPIFFE ID of the listed type, and the derived attributes
//! (`trust_domain`, `path`, `site`, `name`) are filled in from the ID; the file may leave them
//! out but may not give them other values. Routes come from the proxy config, never from here.

use std::path::Path;

use cedar_policy::{Entities, Schema};
use edgeward_certs::SpiffeId;
use serde_json::{Map, Value};

use super::LoadProblem;
use crate::authz::principal::DerivedPrincipal;
use crate::authz::{DEVICE_TYPE, ROUTE_TYPE, WORKLOAD_TYPE};

/// Reads, checks and validates the entities file; `None` when a problem was recorded.
pub(super) fn load(
    file: &Path,
    schema: &Schema,
    problems: &mut Vec<LoadProblem>,
) -> Option<Entities> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) => {
            problems.push(LoadProblem::new(
                file,
                format!("cannot read the entities file: {e}"),
            ));
            return None;
        }
    };
    let mut value: Value = match serde_json::from_str(&text) {
        Ok(value) => value,
        Err(e) => {
            let mut problem = LoadProblem::new(file, format!("invalid JSON: {e}"));
            problem.line = Some(e.line());
            problem.column = Some(e.column());
            problems.push(problem);
            return None;
        }
    };
    let before = problems.len();
    fill_derived_attrs(file, &text, &mut value, problems);
    if problems.len() > before {
        return None;
    }
    match Entities::from_json_value(value, Some(schema)) {
        Ok(entities) => Some(entities),
        Err(e) => {
            let mut problem = LoadProblem::new(file, error_chain(&e));
            problem.help = miette::Diagnostic::help(&e).map(|h| h.to_string());
            problems.push(problem);
            None
        }
    }
}

/// Checks device and workload entries against their SPIFFE ID and fills in the derived
/// attributes. Entries Cedar will reject anyway (not an object, no uid) are left to Cedar.
fn fill_derived_attrs(file: &Path, text: &str, value: &mut Value, problems: &mut Vec<LoadProblem>) {
    let Some(entries) = value.as_array_mut() else {
        problems.push(LoadProblem::new(file, "expected a JSON array of entities"));
        return;
    };
    for entry in entries.iter_mut().filter_map(Value::as_object_mut) {
        let Some((ty, id)) = entry.get("uid").and_then(uid_parts) else {
            continue;
        };
        let problem = |message: String| {
            let at = text.find(&format!("\"{id}\"")).unwrap_or(0);
            LoadProblem::new(file, message).at_offset(text, at)
        };
        if ty == ROUTE_TYPE {
            problems.push(problem(format!(
                "route `{id}` is listed; routes come from the proxy config, remove it"
            )));
            continue;
        }
        if ty != DEVICE_TYPE && ty != WORKLOAD_TYPE {
            continue;
        }
        let spiffe = match SpiffeId::parse(&id) {
            Ok(spiffe) => spiffe,
            Err(e) => {
                problems.push(problem(format!("`{id}` is not a valid SPIFFE ID: {e}")));
                continue;
            }
        };
        let derived = DerivedPrincipal::from_spiffe(&spiffe);
        if derived.kind.type_name() != ty {
            problems.push(problem(format!(
                "`{id}` maps to `{}`, not `{ty}`; list it with that type",
                derived.kind.type_name()
            )));
            continue;
        }
        let attrs = entry
            .entry("attrs")
            .or_insert_with(|| Value::Object(Map::new()));
        let Some(attrs) = attrs.as_object_mut() else {
            continue;
        };
        for (name, derived_value) in derived.attrs() {
            match attrs.get(name) {
                Some(Value::String(given)) if given == derived_value => {}
                Some(_) => problems.push(problem(format!(
                    "attribute `{name}` of `{id}` is derived from its SPIFFE ID (`{derived_value}`); remove it from the entities file"
                ))),
                None => {
                    attrs.insert(name.to_owned(), Value::String(derived_value.to_owned()));
                }
            }
        }
    }
}

/// The type and id of a uid in either JSON form: `{"type", "id"}` or `{"__entity": {...}}`.
fn uid_parts(uid: &Value) -> Option<(String, String)> {
    let uid = uid.get("__entity").unwrap_or(uid);
    let ty = uid.get("type")?.as_str()?;
    let id = uid.get("id")?.as_str()?;
    Some((ty.to_owned(), id.to_owned()))
}

/// The error and its sources, `outer: inner: ...`; Cedar's entity errors put the useful part
/// in the source.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = inner.source();
    }
    message
}
